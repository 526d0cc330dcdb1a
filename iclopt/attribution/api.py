"""``iclopt.attribute``: explain a prompt's demonstrations with one call."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from iclopt.attribution.base import ATTRIBUTORS, Attribution, Attributor
from iclopt.data import Example, Task
from iclopt.errors import InputDataError
from iclopt.evaluation import Budget, ResultCache, Scoring
from iclopt.llms import LLM, get_llm
from iclopt.prompts import Prompt, Template

__all__ = ["attribute", "make_attributor"]


def _result_cache(cache: str | os.PathLike[str] | ResultCache | bool | None) -> ResultCache | None:
    if isinstance(cache, ResultCache):
        return cache
    if cache is True:
        from iclopt.api import default_cache_path

        return ResultCache(default_cache_path())
    if cache is False or cache is None:
        return None
    return ResultCache(cache)


def make_attributor(
    method: str,
    llm: LLM,
    *,
    template: Template | None = None,
    scoring: Scoring = "auto",
    max_new_tokens: int | None = None,
    cache: ResultCache | None = None,
    budget: Budget | None = None,
    seed: int | None = 0,
    **options: Any,
) -> Attributor:
    """Build a registered attributor with the settings that apply to it.

    ``detail`` takes ``layer``, ``lam``, ``center``, ``projection_dim`` and ``seed``;
    ``loo`` takes ``utility`` and the evaluator settings; ``shapley`` also takes
    ``max_permutations``, ``min_permutations``, ``tolerance``, ``truncation`` and ``seed``.

    Raises:
        UnknownNameError: Unknown method (the message lists the valid ones).
        InputDataError: An option the method does not take.
    """
    cls = ATTRIBUTORS.get(method)
    if cls.needs_hidden_states:
        kwargs: dict[str, Any] = {"llm": llm, "template": template, "seed": seed}
    else:
        kwargs = {
            "llm": llm,
            "template": template,
            "scoring": scoring,
            "max_new_tokens": max_new_tokens,
            "cache": cache,
            "budget": budget,
        }
        if method == "shapley":
            kwargs["seed"] = seed
    import inspect

    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    bad = sorted(k for k, v in options.items() if k not in accepted and v is not None)
    if bad:
        raise InputDataError(
            f"method {method!r} does not take {', '.join(bad)}; it takes "
            f"{', '.join(sorted(accepted - {'llm'}))}"
        )
    kwargs.update({k: v for k, v in options.items() if v is not None})
    return cls(**kwargs)


def attribute(
    task: Task,
    prompt: Prompt,
    *,
    llm: str | LLM = "smollm2",
    method: str = "detail",
    queries: Sequence[Example] | None = None,
    template: Template | None = None,
    scoring: Scoring = "auto",
    max_new_tokens: int | None = None,
    cache: str | os.PathLike[str] | ResultCache | bool = True,
    max_evaluations: int | None = None,
    seed: int | None = 0,
    **options: Any,
) -> Attribution:
    """Which demonstrations of ``prompt`` help, which hurt, which look mislabeled.

    Methods: ``"detail"`` (Zhou et al., NeurIPS 2024: influence functions of the ridge
    regression a transformer fits in context; one forward pass; white-box models),
    ``"loo"`` (leave-one-out, ``k + 1`` evaluations, any model) and ``"shapley"`` (Monte
    Carlo permutation Shapley values, Ghorbani and Zou 2019; any model).

    Args:
        task: The task; ``prompt.demos`` index ``task.pool``.
        prompt: The prompt to explain (at least one demonstration).
        llm: An :class:`~iclopt.llms.LLM` or a model name.
        method: ``"detail"``, ``"loo"`` or ``"shapley"``.
        queries: Labelled queries; default ``task.val``.
        template: Prompt template (completion style by default).
        scoring: How ``loo``/``shapley`` score answers (see :class:`Evaluator`).
        max_new_tokens: Generation cap for ``loo``/``shapley``.
        cache: As in :func:`iclopt.optimize`.
        max_evaluations: Cap on the evaluations ``loo``/``shapley`` may spend.
        seed: Seed of the method (DETAIL's projection, Shapley's permutations).
        **options: Method settings (``layer``, ``lam``, ``projection_dim``,
            ``max_permutations``, ``tolerance``, ``utility``, ...).

    Returns:
        The :class:`Attribution`; ``.save(dir)`` writes the JSON, Markdown and HTML report.

    Example:
        >>> import iclopt
        >>> task = iclopt.get_task("sentiment")
        >>> attr = iclopt.attribute(task, iclopt.Prompt(None, (0, 1, 2, 3)))  # doctest: +SKIP
        >>> attr.flagged, attr.ranking()  # doctest: +SKIP
    """
    model = get_llm(llm)
    budget = Budget(max_evaluations=max_evaluations) if max_evaluations is not None else None
    attributor = make_attributor(
        method,
        model,
        template=template,
        scoring=scoring,
        max_new_tokens=max_new_tokens,
        cache=_result_cache(cache) if not ATTRIBUTORS.get(method).needs_hidden_states else None,
        budget=budget,
        seed=seed,
        **options,
    )
    return attributor.attribute(task, prompt, queries)
