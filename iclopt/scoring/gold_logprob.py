"""Greedy generation judged by the metric, with the gold answer's likelihood as the signal."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from iclopt.data import Example
from iclopt.scoring.base import Scorer, register_scorer
from iclopt.scoring.generate import generate_rows

if TYPE_CHECKING:
    from iclopt.evaluation import Cost, Evaluator

__all__ = ["GoldLogprobScorer"]


@register_scorer("gold-logprob")
class GoldLogprobScorer(Scorer):
    """Greedy answer + metric; signal: mean per-token log-likelihood of the gold answer.

    The gold answer (the first acceptable one) is scored as a continuation of the prompt
    through the cached ``score`` path, followed by what ends an answer in the
    demonstrations, so the likelihood includes stopping there. It costs a second call per
    query. Measured on SmolLM2 it ranks prompts better than accuracy on classification
    and worse on generation (a prompt can make the gold answer likely without making it
    the greedy answer): choose it by measurement, not by default.
    """

    mode = "generate"
    signal_name = "gold-answer log-likelihood per token"
    signal_range = (-math.inf, 0.0)

    def calls_per_query(self, task: Any) -> int:
        """One generation and one scoring call per query."""
        return 2

    def score(
        self, evaluator: Evaluator, texts: list[str], queries: Sequence[Example], cost: Cost
    ) -> list[dict[str, Any]]:
        """See :meth:`Scorer.score`."""
        rows = generate_rows(evaluator, texts, queries, cost)
        head, tail = evaluator.label_affixes()
        golds = [head + q.target + tail for q in queries]
        lps = evaluator._cached_call("score", list(zip(texts, golds)), cost)
        counts = evaluator.llm.count_tokens(golds)
        for r, lp, n in zip(rows, lps, counts):
            r["signal"] = float(lp) / max(1, n)
        return rows
