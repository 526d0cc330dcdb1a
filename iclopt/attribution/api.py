"""``iclopt.attribute``: explain a prompt's demonstrations with one call."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from iclopt.attribution.base import ATTRIBUTORS, Attribution, Attributor
from iclopt.attribution.context import AttributionContext
from iclopt.data import Example, Task
from iclopt.evaluation import Budget, ResultCache, Scoring
from iclopt.llms import LLM, get_llm
from iclopt.prompts import Prompt, Template

__all__ = ["attribute", "make_attributor"]


def make_attributor(
    method: str,
    llm: LLM,
    *,
    template: Template | None = None,
    scoring: Scoring = "auto",
    max_new_tokens: int | None = None,
    cache: str | os.PathLike[str] | ResultCache | bool | None = None,
    budget: Budget | None = None,
    seed: int | None = 0,
    **options: Any,
) -> Attributor:
    """Build a registered attributor from the shared settings and its own options.

    The method takes the settings its constructor names (see
    :meth:`Attributor.from_context`) and its own options (``detail``: ``layer``, ``lam``,
    ``center``, ``rank_by``, ``projection_dim``; ``loo``: ``utility``; ``shapley``:
    ``utility``, ``max_permutations``, ``min_permutations``, ``tolerance``,
    ``truncation``). An option set to ``None`` is left to the method's default.

    Args:
        method: A name in :data:`~iclopt.attribution.ATTRIBUTORS`.
        llm: The model.
        template: Prompt template.
        scoring: How black-box methods score answers.
        max_new_tokens: Generation cap of black-box methods.
        cache: As in :func:`iclopt.optimize`; opened only for a method that takes a cache.
        budget: Charged for every evaluation.
        seed: Seed of the method.
        **options: The method's own settings.

    Raises:
        UnknownNameError: Unknown method (the message lists the valid ones).
        InputDataError: An option the method does not take.
    """
    context = AttributionContext(
        llm=llm,
        template=template,
        scoring=scoring,
        max_new_tokens=max_new_tokens,
        cache=cache,
        budget=budget,
        seed=seed,
    )
    given = {k: v for k, v in options.items() if v is not None}
    return ATTRIBUTORS.get(method).from_context(context, **given)


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
        cache=cache,
        budget=budget,
        seed=seed,
        **options,
    )
    return attributor.attribute(task, prompt, queries)
