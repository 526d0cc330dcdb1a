"""The scorer contract: how one query's answer is produced, judged and measured.

A :class:`Scorer` turns rendered prompts into per-query records. Every record carries the
task metric (``score``, what an evaluation's score is the mean of) AND a continuous
``signal`` (what a search can learn from on few queries: the probability of the gold
label, the likelihood of the gold answer, or the metric itself). Each scorer states the
range of its signal, so reports never have to assume ``[0, 1]``.

Scorers are registered by name (``@register_scorer("labels")``) and looked up by the
:class:`~iclopt.evaluation.Evaluator`; a new way of scoring is one file and one decorator.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from iclopt.data import Example, Task
from iclopt.errors import InputDataError
from iclopt.registry import Registry

if TYPE_CHECKING:
    from iclopt.evaluation import Cost, Evaluator

__all__ = [
    "SCORERS",
    "Scorer",
    "gold_label_logprob",
    "register_scorer",
]

SCORERS: Registry[type[Scorer]] = Registry("scorer")


def register_scorer(name: str) -> Any:
    """Class decorator registering a scorer under ``name`` (sets ``cls.name``)."""

    def deco(cls: type[Scorer]) -> type[Scorer]:
        cls.name = name
        return SCORERS.register(name)(cls)

    return deco


def gold_label_logprob(label_logprobs: dict[str, float], answers: Sequence[str]) -> float:
    """Log-probability of the gold label, normalized over the label set (a log-softmax).

    With several acceptable answers the most likely one counts.

    Raises:
        InputDataError: None of ``answers`` is in the label set.

    Example:
        >>> round(math.exp(gold_label_logprob({"pos": 0.0, "neg": 0.0}, ["pos"])), 3)
        0.5
    """
    labels = list(label_logprobs)
    vals = np.array([label_logprobs[lab] for lab in labels], dtype=np.float64)
    norm = vals - np.logaddexp.reduce(vals)
    gold = [float(norm[labels.index(a)]) for a in answers if a in label_logprobs]
    if not gold:
        raise InputDataError(f"the answer {answers[0]!r} is not in the label set {labels}")
    return max(gold)


class Scorer(ABC):
    """Produces and judges the answers of rendered prompts, one record per query.

    Class attributes:
        name: Registry name (set by :func:`register_scorer`).
        mode: How predictions are made, part of every cache key: ``"generate"`` (greedy
            decoding) or ``"labels"`` (the most likely label). Scorers of one mode share
            cached answers.
        signal_name: What ``signal`` is, in words.
        signal_range: ``(low, high)`` of the signal (``-inf`` allowed).
        needs_labels: Whether the task must have a label set.
    """

    name: ClassVar[str] = ""
    mode: ClassVar[Literal["generate", "labels"]] = "generate"
    signal_name: ClassVar[str] = "task metric"
    signal_range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    needs_labels: ClassVar[bool] = False

    def check(self, task: Task) -> None:
        """Raise :class:`InputDataError` (one line) if this scorer does not fit ``task``."""
        if self.needs_labels and not task.labels:
            raise InputDataError(
                f"task {task.name!r} has no label set: scorer {self.name!r} needs a "
                "classification task (use 'generate' or 'gold-logprob')"
            )

    def calls_per_query(self, task: Task) -> int:
        """LLM calls one query costs (label scoring scores every label)."""
        return len(task.labels or ()) if self.mode == "labels" else 1

    @abstractmethod
    def score(
        self, evaluator: Evaluator, texts: list[str], queries: Sequence[Example], cost: Cost
    ) -> list[dict[str, Any]]:
        """Answer and judge each (rendered text, query) pair in one batched call.

        Args:
            evaluator: The evaluator (its cached, budgeted gateway and settings).
            texts: Rendered prompts, one per query.
            queries: The queries (their gold answers).
            cost: Charged with the calls.

        Returns:
            Per query: ``id``, ``prediction``, ``score`` (task metric) and ``signal``; label
            scorers add ``label_logprobs``.
        """

    def as_dict(self) -> dict[str, Any]:
        """JSON description (recorded in results)."""
        low, high = self.signal_range
        return {
            "name": self.name,
            "mode": self.mode,
            "signal": self.signal_name,
            "signal_range": [None if math.isinf(low) else low, None if math.isinf(high) else high],
        }
