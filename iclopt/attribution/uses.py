"""What attributions are for: find noisy demonstrations, curate and reorder prompts.

The uses DETAIL (Zhou et al., NeurIPS 2024) demonstrates: rank demonstrations by how
suspect they are, drop (or replace) the worst, and reorder by attribution.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from iclopt.attribution.base import Attribution
from iclopt.data import Task
from iclopt.errors import InputDataError
from iclopt.llms import LLM
from iclopt.params import Interval, Options, check_parameters
from iclopt.prompts import Prompt

__all__ = ["REORDER_RULES", "curate", "most_harmful", "reorder", "suspects"]

#: Reordering rules: where the most helpful demonstrations go.
REORDER_RULES = ("helpful_last", "helpful_first")


def suspects(attr: Attribution, top: int | None = None) -> list[int]:
    """Pool ids of the most suspect demonstrations (likely mislabeled or harmful), worst first.

    Args:
        attr: An attribution.
        top: How many; ``None`` for all, in order.
    """
    order = attr.ranking()
    if top is not None:
        order = order[:top]
    return [attr.prompt.demos[j] for j in order]


def curate(
    task: Task,
    attr: Attribution,
    *,
    drop: int = 4,
    replace: bool = False,
    seed: int | None = 0,
) -> Prompt:
    """Drop the ``drop`` most suspect demonstrations, or replace them from the pool.

    Args:
        task: The task whose pool the prompt indexes.
        attr: An attribution of the prompt.
        drop: How many demonstrations to remove (``0 <= drop <= k``; dropping all leaves
            a zero-shot prompt).
        replace: Put random unused pool items (seeded) in the freed places instead.
        seed: Seed of the replacements; ``None`` draws fresh entropy.

    Returns:
        The curated prompt; the remaining demonstrations keep their order.

    Example:
        >>> curate(task, attr, drop=4).demos  # doctest: +SKIP
    """
    k = len(attr.prompt.demos)
    check_parameters("curate", {"drop": [Interval(int, 0, k)]}, {"drop": drop})
    worst = set(attr.ranking()[:drop])
    demos: list[int | None] = [None if j in worst else d for j, d in enumerate(attr.prompt.demos)]
    if replace:
        unused = sorted(set(range(len(task.pool))) - set(attr.prompt.demos))
        if len(unused) < drop:
            raise InputDataError(f"the pool has only {len(unused)} unused items to replace {drop}")
        rng = np.random.default_rng(seed)
        fresh = iter(int(i) for i in rng.choice(unused, size=drop, replace=False))
        demos = [next(fresh) if d is None else d for d in demos]
    return Prompt(attr.prompt.instruction, tuple(d for d in demos if d is not None))


def reorder(attr: Attribution, rule: str = "helpful_last") -> Prompt:
    """The same demonstrations, ordered by their scores.

    Args:
        attr: An attribution of the prompt.
        rule: ``"helpful_last"`` (most helpful closest to the query; the default, since
            small models weigh the last demonstrations most) or ``"helpful_first"``.
    """
    check_parameters("reorder", {"rule": [Options(*REORDER_RULES)]}, {"rule": rule})
    order = np.argsort(attr.scores, kind="stable")  # least helpful first
    if rule == "helpful_first":
        order = order[::-1]
    return Prompt(attr.prompt.instruction, tuple(attr.prompt.demos[int(j)] for j in order))


def most_harmful(
    task: Task,
    prompt: Prompt,
    *,
    llm: str | LLM = "smollm2",
    method: str = "detail",
    queries: Sequence[Any] | None = None,
    **options: Any,
) -> int:
    """The pool id of the most harmful (or most likely mislabeled) demonstration of ``prompt``.

    One call, so that a search can propose replacing it. ``detail`` ranks by self
    influence; ``loo``/``shapley`` by the most negative contribution.

    Args:
        task: The task.
        prompt: The prompt (at least one demonstration).
        llm: The LLM or its name.
        method: An attribution method.
        queries: Queries (default ``task.val``; DETAIL's self influence needs none: pass
            ``[]`` for the cheapest call).
        **options: Passed to :func:`iclopt.attribute`.
    """
    from iclopt.attribution.api import attribute

    attr = attribute(task, prompt, llm=llm, method=method, queries=queries, **options)
    return attr.prompt.demos[attr.most_harmful()]
