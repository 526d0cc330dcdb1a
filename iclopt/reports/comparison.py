"""Write a method comparison as Markdown, CSV, JSON and a bar chart with error bars."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

from iclopt.artifacts import json_text, write_files
from iclopt.errors import InputDataError, MissingDependencyError

__all__ = ["SUMMARY_COLUMNS", "markdown_table", "write_comparison"]

SUMMARY_COLUMNS = (
    ("method", "method"),
    ("test_mean", "test mean"),
    ("test_std", "test std"),
    ("val_mean", "val mean"),
    ("val_std", "val std"),
    ("llm_calls", "LLM calls"),
    ("prompt_tokens", "prompt tokens"),
    ("seconds", "wall s"),
    ("runs", "seeds"),
)


def _fmt(key: str, value: Any) -> str:
    if value is None:
        return "n/a"
    if key in ("test_mean", "test_std", "val_mean", "val_std"):
        return f"{value:.3f}"
    if key == "seconds":
        return f"{value:.1f}"
    if isinstance(value, float):
        return f"{value:.0f}"
    return str(value)


def markdown_table(summary: list[dict[str, Any]]) -> str:
    """The summary as a Markdown table (means over seeds; calls/tokens/seconds per run)."""
    head = "| " + " | ".join(title for _, title in SUMMARY_COLUMNS) + " |"
    sep = "|" + "|".join("---" for _ in SUMMARY_COLUMNS) + "|"
    rows = [
        "| " + " | ".join(_fmt(k, r.get(k)) for k, _ in SUMMARY_COLUMNS) + " |" for r in summary
    ]
    return "\n".join([head, sep, *rows]) + "\n"


def _plot(summary: list[dict[str, Any]], title: str) -> bytes:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError("plots need matplotlib: pip install 'iclopt[plot]'") from None
    names = [r["method"] for r in summary]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(names) + 1.5), 3.6))
    x = range(len(names))
    width = 0.38
    for offset, key, label in ((-width / 2, "val", "validation"), (width / 2, "test", "test")):
        means = [r[f"{key}_mean"] if r[f"{key}_mean"] is not None else 0.0 for r in summary]
        stds = [r[f"{key}_std"] or 0.0 for r in summary]
        ax.bar([i + offset for i in x], means, width, yerr=stds, capsize=4, label=label)
    ax.set_xticks(list(x))
    ax.set_xticklabels(names, rotation=20, ha="right")
    ax.set_ylabel("score (mean ± std over seeds)")
    ax.set_ylim(0, 1.05)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=120)
    plt.close(fig)
    return png.getvalue()


def write_comparison(result: dict[str, Any], out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``comparison.{md,csv,json}`` and ``comparison.png`` into ``out_dir``.

    Args:
        result: ``{"task", "model", "k", "seeds", "summary": [...], "runs": [...]}`` as
            returned by :meth:`iclopt.api.ComparisonResult.as_dict`.
        out_dir: Folder (created).

    Returns:
        Paths written, by kind.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputDataError(f"{out}: exists and is not a directory")
    summary = result["summary"]
    paths = {k: out / f"comparison.{k}" for k in ("md", "csv", "json", "png")}
    title = f"{result['task']} · {result['model']} · k={result['k']} · {len(result['seeds'])} seeds"
    md = f"# {title}\n\n" + markdown_table(summary)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[k for k, _ in SUMMARY_COLUMNS])
    writer.writeheader()
    for r in summary:
        writer.writerow({k: r.get(k) for k, _ in SUMMARY_COLUMNS})
    write_files(
        {
            paths["md"]: md,
            paths["csv"]: buf.getvalue(),
            paths["json"]: json_text(result),
            paths["png"]: _plot(summary, title),
        }
    )
    return paths
