"""Greedy generation judged by the metric, with partial credit for a correct beginning."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from iclopt.data import Example
from iclopt.metrics import normalize
from iclopt.scoring.base import Scorer, register_scorer
from iclopt.scoring.generate import generate_rows

if TYPE_CHECKING:
    from iclopt.evaluation import Cost, Evaluator

__all__ = ["PrefixScorer", "prefix_share"]


def prefix_share(prediction: str, answers: Sequence[str]) -> float:
    """The longest share of an answer that ``prediction`` gets right from its start.

    Both sides are normalized (:func:`~iclopt.metrics.normalize`); the common prefix in
    characters is divided by the longer of the two, so an answer that runs on past the
    gold one loses credit too. Best over ``answers``.

    Example:
        >>> round(prefix_share("The cat was fed by the man.", ["The cat was fed by the men"]), 3)
        0.923
        >>> prefix_share("cats", ["cat"]), prefix_share("", ["cat"])
        (0.75, 0.0)
    """
    p = normalize(prediction)
    best = 0.0
    for answer in answers:
        g = normalize(answer)
        if not p and not g:
            return 1.0
        n = 0
        for a, b in zip(p, g):
            if a != b:
                break
            n += 1
        best = max(best, n / max(len(p), len(g)))
    return best


@register_scorer("prefix")
class PrefixScorer(Scorer):
    """Greedy answer + metric; signal: the metric with partial credit for a right start.

    The signal is ``(2 * metric + prefix share) / 3``: an exact answer scores 1, a wrong
    one the share of the gold answer it gets right from the start (:func:`prefix_share`)
    over 3, so an exact answer outranks every near one. It uses the greedy answer that
    the metric judges, so it costs no extra call. Measured on SmolLM2: choosing among
    random prompts by it picks better ones than accuracy where answers are sentences
    (``experiments/search_signals.py``, ``active_to_passive_v1``), but ``race`` searching
    with it chose worse prompts than with the metric on word and letter answers (the
    search benchmark, docs/benchmarks.md), so it is not a default.
    """

    mode = "generate"
    signal_name = "task metric with partial credit for a correct beginning"

    def score(
        self, evaluator: Evaluator, texts: list[str], queries: Sequence[Example], cost: Cost
    ) -> list[dict[str, Any]]:
        """See :meth:`Scorer.score`."""
        rows = generate_rows(evaluator, texts, queries, cost)
        for r, q in zip(rows, queries):
            r["signal"] = (2.0 * r["score"] + prefix_share(r["prediction"], q.answers)) / 3.0
        return rows
