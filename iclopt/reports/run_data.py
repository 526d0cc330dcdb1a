"""What a run's report shows, read from its files: inputs checked, scores, trace points.

The reading half of :mod:`iclopt.reports.run`, with no figure or markup: a comparison
written by ``iclopt compare`` (:func:`load_comparison`), the check that a result, a
comparison and an attribution belong together (:func:`check_inputs`), the rows of the
scores figure (:func:`score_rows`) and one point per trace entry (:func:`trace_points`).
Trace entries are read with ``.get``, so results written before a trace key existed are
read too; an entry is *partial* (:func:`is_partial`) when it rests on fewer queries than
the validation set or on other queries.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iclopt.errors import InputDataError
from iclopt.reports.attribution import Source, as_doc

if TYPE_CHECKING:  # pragma: no cover
    from iclopt.results import OptimizationResult

__all__ = [
    "RANDOM_SOURCES",
    "ScoreRow",
    "check_inputs",
    "is_partial",
    "load_comparison",
    "score_rows",
    "trace_points",
]

#: Sources of trace entries that are random prompts (no model chose them).
RANDOM_SOURCES = ("initial", "random")


# ---------------------------------------------------------------------- reading inputs
def load_comparison(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``comparison.json`` from a folder written by ``iclopt compare`` (or the file).

    Raises:
        InputDataError: Missing, unreadable or not a comparison.
    """
    p = Path(path)
    file = p / "comparison.json" if p.is_dir() else p
    try:
        d = json.loads(file.read_text(encoding="utf-8"))
        rows = d["summary"]
        if not isinstance(rows, list) or not all(
            isinstance(r, dict) and "method" in r for r in rows
        ):
            raise TypeError("'summary' must be a list of rows with a 'method'")
        str(d["task"])
    except FileNotFoundError:
        where = f"no comparison.json in {p}" if p.is_dir() else f"{p}: file not found"
        raise InputDataError(f"{where} (write one with `iclopt compare --out DIR`)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputDataError(
            f"{file}: not an iclopt comparison ({type(exc).__name__}: {exc})"
        ) from None
    return dict(d)


def check_inputs(
    result: OptimizationResult,
    comparison: dict[str, Any] | None = None,
    attribution: Source | None = None,
    *,
    comparison_path: str | os.PathLike[str] = "the comparison",
    attribution_path: str | os.PathLike[str] = "the attribution",
) -> None:
    """Refuse a comparison of another task and an attribution of another prompt.

    Raises:
        InputDataError: One line naming the file and what does not match.
    """
    if comparison is not None and result.task and comparison.get("task") != result.task:
        raise InputDataError(
            f"{comparison_path}: a comparison on task {comparison.get('task')!r}, not on the "
            f"result's task {result.task!r}"
        )
    if attribution is not None:
        doc = as_doc(attribution)
        if result.task and doc.task and doc.task != result.task:
            raise InputDataError(
                f"{attribution_path}: an attribution on task {doc.task!r}, not on the "
                f"result's task {result.task!r}"
            )
        if tuple(doc.pool_ids) != tuple(result.best.demos):
            raise InputDataError(
                f"{attribution_path}: attributes the prompt {list(doc.pool_ids)}, "
                f"not the result's final prompt {list(result.best.demos)}"
            )


# ---------------------------------------------------------------------- the numbers
def _val_size(result: OptimizationResult) -> int | None:
    sizes = result.config.get("sizes")
    if isinstance(sizes, dict) and isinstance(sizes.get("val"), int):
        return int(sizes["val"])
    return None


def is_partial(entry: dict[str, Any], val_size: int | None) -> bool:
    """Whether a trace entry's score rests on fewer (or other) queries than the validation set."""
    queries = entry.get("queries", "val")
    if queries is not None and queries != "val":
        return True
    n = entry.get("n_queries")
    return isinstance(n, int) and val_size is not None and n < val_size


def _score(entry: dict[str, Any]) -> float | None:
    s = entry.get("score")
    if isinstance(s, (int, float)) and math.isfinite(float(s)):
        return float(s)
    return None


@dataclass(frozen=True)
class ScoreRow:
    """One bar group of the scores figure.

    Attributes:
        name: What it is ("this run", "random prompts (this search)", a method name).
        val: Validation score (mean), or ``None``.
        val_err: Its error bar, or ``None``.
        test: Test score (mean), or ``None``.
        test_err: Its error bar, or ``None``.
        note: How the numbers were obtained.
    """

    name: str
    val: float | None
    val_err: float | None
    test: float | None
    test_err: float | None
    note: str


def _se(score: float | None, n: int | None) -> float | None:
    """Largest standard error of a mean of ``n`` values in [0, 1] with this mean, if it is one."""
    if score is None or not n or not 0.0 <= score <= 1.0:
        return None
    return math.sqrt(score * (1 - score) / n)


def score_rows(
    result: OptimizationResult, comparison: dict[str, Any] | None = None
) -> tuple[list[ScoreRow], str]:
    """The rows of the scores figure and one sentence on where the baseline comes from."""
    val_n = _val_size(result)
    sizes = result.config.get("sizes") if isinstance(result.config.get("sizes"), dict) else {}
    test_n = sizes.get("test") if isinstance(sizes, dict) else None
    method = str(result.config.get("method", "search"))
    rows = [
        ScoreRow(
            f"this run ({method})",
            result.val_score,
            _se(result.val_score, val_n),
            result.test_score,
            _se(result.test_score, test_n if isinstance(test_n, int) else None),
            "the final prompt; whiskers: the largest standard error of a mean over the "
            "queries (scores in [0, 1])",
        )
    ]
    randoms = [
        s
        for e in result.trace
        if e.get("source") in RANDOM_SOURCES
        and not is_partial(e, val_n)
        and (s := _score(e)) is not None
    ]
    if randoms:
        mean = sum(randoms) / len(randoms)
        std = math.sqrt(sum((s - mean) ** 2 for s in randoms) / len(randoms))
        rows.append(
            ScoreRow(
                "random prompts (this search)",
                mean,
                std,
                None,
                None,
                f"mean ± std of the {len(randoms)} random prompts the search drew, on the "
                "validation set; the result holds no test score for them",
            )
        )
    compared = comparison.get("summary", []) if comparison is not None else []
    for r in compared:
        rows.append(
            ScoreRow(
                f"{r['method']} (compare)",
                r.get("val_mean"),
                r.get("val_std"),
                r.get("test_mean"),
                r.get("test_std"),
                f"mean ± std over {r.get('runs', '?')} seeds (iclopt compare)",
            )
        )
    has_random_cmp = any(r.get("method") == "random" for r in compared)
    if has_random_cmp and randoms:
        why = (
            'Random-prompt baseline: the comparison\'s "random" row (validation and test), and '
            "the random prompts this search drew (validation only)."
        )
    elif has_random_cmp:
        why = 'Random-prompt baseline: the comparison\'s "random" row.'
    elif randoms:
        why = (
            "Random-prompt baseline: the random prompts this search drew, on the validation "
            "set only (the result holds no random prompt's test score; "
            "iclopt compare --methods random,... and --compare DIR add one)."
        )
    else:
        why = "This result holds no random-prompt baseline (its search drew no random prompt); " + (
            "shown: the comparison's methods."
            if compared
            else "run iclopt compare --methods random,best-of-n ... and pass "
            "--compare DIR to add one."
        )
    return rows, why


# ---------------------------------------------------------------------- the trace
def trace_points(result: OptimizationResult) -> list[dict[str, Any]]:
    """Per trace entry: x (cumulative LLM calls needed), score, source, partial, signal."""
    val_n = _val_size(result)
    calls = 0
    points = []
    for i, e in enumerate(result.trace):
        calls += int(e.get("llm_calls") or 0) + int(e.get("cache_hits") or 0)
        points.append(
            {
                "step": e.get("step", i),
                "x": calls,
                "score": _score(e),
                "source": str(e.get("source") or (e.get("info") or {}).get("source") or "?"),
                "partial": is_partial(e, val_n),
                "n_queries": e.get("n_queries"),
                "signal": e.get("signal") if isinstance(e.get("signal"), (int, float)) else None,
                "entry": e,
            }
        )
    if points and points[-1]["x"] == 0:  # no call counts: plot against the step
        for p in points:
            p["x"] = p["step"]
    return points
