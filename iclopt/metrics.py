"""Metrics comparing a prediction with the acceptable answers of an example.

Every metric is ``(prediction, answers) -> float`` in [0, 1] and takes the best score
over the acceptable answers. Two families:

* **User data** (``exact_match``, ``contains``, ``token_f1``, ``set_match``,
  ``label_accuracy``): the first line of the answer, lower-cased, whitespace collapsed,
  punctuation removed *except* where it belongs to a number, so ``-666`` is not ``666``,
  ``1.5`` is not ``1.9`` and ``.5`` is not the empty answer. Two answers that both parse
  as numbers are compared as numbers (``1.50`` equals ``1.5``).
* **The instruction-induction protocol** (``ii_exact_match``, ``ii_contains``,
  ``ii_token_f1``, ``ii_set_match``), as used by Honovich et al. (2022) and EASE (Wu et
  al., NeurIPS 2024) for the benchmark tasks: " and ", "Sentence 1:" and "Sentence 2:"
  removed, first line, cut at the first ".", lower-cased, "-" read as a space,
  punctuation stripped. It is kept exactly so that benchmark numbers compare with the
  papers'; it calls ``-666`` and ``666`` equal, so it is not the default for user data.
"""

from __future__ import annotations

import math
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
    "ii_contains",
    "ii_exact_match",
    "ii_normalize",
    "ii_set_match",
    "ii_token_f1",
    "label_accuracy",
    "normalize",
    "set_match",
    "token_f1",
]

Metric = Callable[[str, Sequence[str]], float]
METRICS: Registry[Metric] = Registry("metric")

_PUNCT = str.maketrans("", "", string.punctuation)
# a number: optional sign, digits with optional thousands commas and decimals, or .5
_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?")
_TOKEN = re.compile(r"[-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?|\w+", re.UNICODE)


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else ""


def _as_number(text: str) -> float | None:
    """The value of ``text`` if it is one number (surrounding punctuation aside)."""
    s = text.strip().rstrip(".!?;:").strip()
    if not _NUMBER.fullmatch(s):
        return None
    try:
        value = float(s.replace(",", ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def normalize(text: str) -> str:
    """Normalize an answer of user data: sign- and decimal-aware (module docstring).

    Example:
        >>> normalize("  The Answer-Is: -1.5!\\nmore")
        'the answer is -1.5'
    """
    return " ".join(_TOKEN.findall(_first_line(text).lower()))


def _equal(pred: str, gold: str) -> bool:
    a, b = _as_number(_first_line(pred)), _as_number(_first_line(gold))
    if a is not None and b is not None:
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return normalize(pred) == normalize(gold)


@METRICS.register("exact_match")
def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when the prediction equals an answer after :func:`normalize` (numbers by value).

    Example:
        >>> exact_match("-666", ["666"]), exact_match("Paris.", ["paris"])
        (0.0, 1.0)
    """
    return float(any(_equal(prediction, a) for a in answers))


def _contains(pred: str, answers: Sequence[str], norm: Callable[[str], str]) -> float:
    padded = f" {norm(pred)} "
    return float(any(norm(a) and f" {norm(a)} " in padded for a in answers))


def _f1(pred_tokens: list[str], answers: Sequence[str], norm: Callable[[str], str]) -> float:
    best = 0.0
    for ans in answers:
        gold = norm(ans).split()
        common = Counter(pred_tokens) & Counter(gold)
        overlap = sum(common.values())
        if not pred_tokens or not gold or overlap == 0:
            best = max(best, float(pred_tokens == gold))
            continue
        p, r = overlap / len(pred_tokens), overlap / len(gold)
        best = max(best, 2 * p * r / (p + r))
    return best


@METRICS.register("contains")
def contains(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when a normalized answer occurs, as whole words, in the normalized prediction."""
    return _contains(prediction, answers, normalize)


@METRICS.register("token_f1")
def token_f1(prediction: str, answers: Sequence[str]) -> float:
    """Best token-level F1 (SQuAD-style) between the prediction and an answer."""
    return _f1(normalize(prediction).split(), answers, normalize)


def _item_set(text: str) -> frozenset[str]:
    return frozenset(
        normalize(item) for item in re.split(r"[,;\s]+", _first_line(text)) if normalize(item)
    )


@METRICS.register("set_match")
def set_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when the prediction's comma/space separated items equal an answer's items."""
    pred = _item_set(prediction)
    return float(any(pred == _item_set(a) for a in answers))


@METRICS.register("label_accuracy")
def label_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when the predicted label is an answer, ignoring case and outer punctuation.

    Label scoring predicts a label verbatim; under generation the model may write
    "Positive." for the label "positive", which counts as correct.
    """

    def key(s: str) -> str:
        return _first_line(s).strip().strip(string.punctuation + " ").casefold()

    return float(any(key(prediction) == key(a) for a in answers))


# ----------------------------------------------------------------- the II protocol


def ii_normalize(text: str) -> str:
    """The instruction-induction protocol's normalization (module docstring).

    Example:
        >>> ii_normalize(" The Answer-Is.  ignored\\nsecond line")
        'the answer is'
    """
    text = text.replace(" and ", " ").replace("Sentence 1:", " ").replace("Sentence 2:", " ")
    first = _first_line(text).split(".")[0]
    first = first.lower().replace("-", " ").translate(_PUNCT)
    return " ".join(first.split())


@METRICS.register("ii_exact_match")
def ii_exact_match(prediction: str, answers: Sequence[str]) -> float:
    """Instruction-induction exact match: :func:`ii_normalize` on both sides."""
    pred = ii_normalize(prediction)
    return float(any(pred == ii_normalize(a) for a in answers))


@METRICS.register("ii_contains")
def ii_contains(prediction: str, answers: Sequence[str]) -> float:
    """Instruction-induction "gold contained in the answer" (whole words)."""
    return _contains(prediction, answers, ii_normalize)


@METRICS.register("ii_token_f1")
def ii_token_f1(prediction: str, answers: Sequence[str]) -> float:
    """Instruction-induction token F1."""
    return _f1(ii_normalize(prediction).split(), answers, ii_normalize)


@METRICS.register("ii_set_match")
def ii_set_match(prediction: str, answers: Sequence[str]) -> float:
    """Instruction-induction set match: the words after :func:`ii_normalize` as a set."""
    pred = frozenset(ii_normalize(prediction).split())
    return float(any(pred == frozenset(ii_normalize(a).split()) for a in answers))


_TASK_METRICS = {
    "common_concept": "token_f1",
    "informal_to_formal": "token_f1",
    "orthography_starts_with": "set_match",
    "taxonomy_animal": "set_match",
    "synonyms": "contains",
}


def default_metric_for(
    task_name: str, labels: Sequence[str] | None = None, *, protocol: bool = False
) -> str:
    """The metric for a task.

    Args:
        task_name: The task's name; instruction-induction task names pick the protocol's
            metric family member (token F1, set match, contains) as in EASE.
        labels: The label set of a classification task.
        protocol: The task comes from instruction-induction files: use the ``ii_``
            metrics; otherwise the sign- and decimal-aware ones.

    Example:
        >>> default_metric_for("synonyms", protocol=True), default_metric_for("mine")
        ('ii_contains', 'exact_match')
    """
    name = "exact_match"
    for prefix, metric in _TASK_METRICS.items():
        if task_name.startswith(prefix):
            name = metric
            break
    else:
        if labels and not protocol:
            name = "label_accuracy"
    return f"ii_{name}" if protocol else name


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
