"""Greedy generation judged by the task metric (the metric is also the signal)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from iclopt.data import Example
from iclopt.scoring.base import Scorer, register_scorer

if TYPE_CHECKING:
    from iclopt.evaluation import Cost, Evaluator

__all__ = ["GenerateScorer", "generate_rows"]


def generate_rows(
    evaluator: Evaluator, texts: list[str], queries: Sequence[Example], cost: Cost
) -> list[dict[str, Any]]:
    """Greedy answers judged by the metric; ``signal`` is the metric value."""
    preds = evaluator._cached_call("generate", [(t, "") for t in texts], cost)
    rows = []
    for q, pred in zip(queries, preds):
        value = float(evaluator.metric(pred, q.answers))
        rows.append({"id": q.id, "prediction": pred.strip(), "score": value, "signal": value})
    return rows


@register_scorer("generate")
class GenerateScorer(Scorer):
    """Greedy decoding up to the generation cap, then the task metric.

    The signal is the metric itself (0/1 for exact match, a fraction for token F1): on
    generation tasks the gold answer's likelihood ranks prompts worse than accuracy does
    (a prompt can make the gold answer likely without making it the greedy answer), so
    the metric is the default signal there.
    """

    mode = "generate"
    signal_name = "task metric"

    def score(
        self, evaluator: Evaluator, texts: list[str], queries: Sequence[Example], cost: Cost
    ) -> list[dict[str, Any]]:
        """See :meth:`Scorer.score`."""
        return generate_rows(evaluator, texts, queries, cost)
