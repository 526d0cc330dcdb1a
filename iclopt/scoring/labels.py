"""Label scoring: the most likely label is the answer (classification tasks)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from iclopt.data import Example
from iclopt.scoring.base import Scorer, gold_label_logprob, register_scorer

if TYPE_CHECKING:
    from iclopt.evaluation import Cost, Evaluator

__all__ = ["LabelProbScorer", "LabelScorer", "label_rows"]


def label_rows(
    evaluator: Evaluator, texts: list[str], queries: Sequence[Example], cost: Cost
) -> list[dict[str, Any]]:
    """Score every label after each text; the argmax is the prediction.

    Each label is scored together with what ends an answer in the demonstrations
    (:meth:`~iclopt.evaluation.Evaluator.label_affixes`). Rows carry ``label_logprobs``
    and ``gold_prob``: the gold label's probability normalized over the label set
    (``None`` for a query whose answer is not a label, e.g. an unlabelled probe).
    """
    labels = list(evaluator.task.labels or ())
    head, tail = evaluator.label_affixes()
    lps = evaluator._cached_call(
        "score", [(t, head + lab + tail) for t in texts for lab in labels], cost
    )
    rows = []
    for j, q in enumerate(queries):
        scores = lps[j * len(labels) : (j + 1) * len(labels)]
        best = max(range(len(labels)), key=lambda i: scores[i])
        by_label = dict(zip(labels, map(float, scores)))
        rows.append(
            {
                "id": q.id,
                "prediction": labels[best],
                "score": float(evaluator.metric(labels[best], q.answers)),
                "label_logprobs": by_label,
                "gold_prob": (
                    math.exp(gold_label_logprob(by_label, q.answers))
                    if any(a in by_label for a in q.answers)
                    else None  # an unlabelled probe query
                ),
            }
        )
    return rows


class _LabelArgmax(Scorer):
    """Label argmax; subclasses name the record field that is the signal."""

    mode = "labels"
    needs_labels = True
    signal_field = "score"

    def score(
        self, evaluator: Evaluator, texts: list[str], queries: Sequence[Example], cost: Cost
    ) -> list[dict[str, Any]]:
        """See :meth:`Scorer.score`."""
        rows = label_rows(evaluator, texts, queries, cost)
        for r in rows:
            r["signal"] = r[self.signal_field]
        return rows


@register_scorer("labels")
class LabelScorer(_LabelArgmax):
    """The most likely label (by log-likelihood) is the answer; the signal is the metric."""

    signal_name = "task metric"
    signal_field = "score"


@register_scorer("label-prob")
class LabelProbScorer(_LabelArgmax):
    """Label argmax as the answer; the signal is the gold label's normalized probability.

    The probability separates prompts on few queries where 0/1 accuracy cannot (a prompt
    that puts 0.9 on the gold label and one that puts 0.51 score the same accuracy); the
    answers are the same as :class:`LabelScorer`'s and share its cache entries.
    """

    signal_name = "gold-label probability"
    signal_field = "gold_prob"
