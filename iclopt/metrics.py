"""Metrics comparing a prediction with the acceptable answers of an example.

Every metric is ``(prediction, answers) -> float`` in [0, 1] and takes the best score
over the acceptable answers. Normalization follows the instruction-induction protocol
used by EASE (Wu et al., 2024): first line of the answer, cut at the first ".",
lower-cased, "-" read as a space, punctuation stripped, whitespace collapsed.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from iclopt.errors import InputDataError
from iclopt.registry import Registry

__all__ = [
    "METRICS",
    "Metric",
    "contains",
    "default_metric_for",
    "exact_match",
    "get_metric",
    "label_accuracy",
    "normalize",
    "set_match",
    "token_f1",
]

Metric = Callable[[str, Sequence[str]], float]
METRICS: Registry[Metric] = Registry("metric")

_PUNCT = str.maketrans("", "", string.punctuation)


def normalize(text: str) -> str:
    """Normalize an answer for comparison (see the module docstring).

    Example:
        >>> normalize("  Five - perfectly.\\nmore")
        'five perfectly'
    """
    lines = text.strip().splitlines()
    first = lines[0] if lines else ""
    first = first.split(".")[0]
    first = first.lower().replace("-", " ").translate(_PUNCT)
    return " ".join(first.split())


@METRICS.register("exact_match")
def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when the normalized prediction equals a normalized answer."""
    pred = normalize(prediction)
    return float(any(pred == normalize(a) for a in answers))


@METRICS.register("contains")
def contains(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when a normalized answer occurs, as whole words, in the normalized prediction."""
    pred = f" {normalize(prediction)} "
    return float(any(normalize(a) and f" {normalize(a)} " in pred for a in answers))


@METRICS.register("token_f1")
def token_f1(prediction: str, answers: Sequence[str]) -> float:
    """Best token-level F1 (SQuAD-style) between the prediction and an answer."""
    pred = normalize(prediction).split()
    best = 0.0
    for ans in answers:
        gold = normalize(ans).split()
        common = Counter(pred) & Counter(gold)
        overlap = sum(common.values())
        if not pred or not gold or overlap == 0:
            best = max(best, float(pred == gold))
            continue
        p, r = overlap / len(pred), overlap / len(gold)
        best = max(best, 2 * p * r / (p + r))
    return best


def _as_set(text: str) -> frozenset[str]:
    first = text.strip().splitlines()[0] if text.strip() else ""
    items = re.split(r"[,\s]+", first.lower().replace(".", " "))
    return frozenset(i.translate(_PUNCT) for i in items if i.translate(_PUNCT))


@METRICS.register("set_match")
def set_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when the prediction's comma/space separated items equal an answer's items."""
    pred = _as_set(prediction)
    return float(any(pred == _as_set(a) for a in answers))


@METRICS.register("label_accuracy")
def label_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when the predicted label equals an answer exactly (after stripping)."""
    return float(any(prediction.strip() == a.strip() for a in answers))


_TASK_METRICS = {
    "common_concept": "token_f1",
    "informal_to_formal": "token_f1",
    "orthography_starts_with": "set_match",
    "taxonomy_animal": "set_match",
    "synonyms": "contains",
}


def default_metric_for(task_name: str, labels: Sequence[str] | None = None) -> str:
    """The benchmark protocol's metric for a task name; label accuracy for classification."""
    for prefix, metric in _TASK_METRICS.items():
        if task_name.startswith(prefix):
            return metric
    return "label_accuracy" if labels else "exact_match"


def get_metric(metric: str | Metric | Any) -> Metric:
    """Resolve a metric name or callable.

    Raises:
        UnknownNameError: An unknown name; the message lists the valid ones.
        InputDataError: Neither a name nor a callable.
    """
    if isinstance(metric, str):
        return METRICS.get(metric)
    if callable(metric):
        return metric
    raise InputDataError(f"metric must be a name or a callable, got {type(metric).__name__}")
