"""`iclopt report`: one page for a run (prompt, scores, search, attribution, cost)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from iclopt.cli._common import O_QUIET, InputDataError, app, check_out_path, one_line_errors
from iclopt.cli._feedback import Feedback


def render_report(
    result_path: Path,
    out_path: Path,
    *,
    compare_dir: Path | None = None,
    attribution_path: Path | None = None,
    result: Any = None,
) -> list[Path]:
    """Read the inputs, check they belong together, write the report; no model is loaded.

    Args:
        result_path: The result JSON (read unless ``result`` is given).
        out_path: ``.html`` (one page) or ``.md`` (Markdown and PNGs beside it).
        compare_dir: A folder written by ``iclopt compare`` (or its comparison.json).
        attribution_path: An ``attribution.json`` of the result's final prompt.
        result: The :class:`~iclopt.results.OptimizationResult`, when already in memory.

    Returns:
        The files written, the report first.
    """
    from iclopt.attribution.base import Attribution
    from iclopt.reports.run import write_run_report
    from iclopt.reports.run_data import check_inputs, load_comparison
    from iclopt.results import OptimizationResult

    res = result if result is not None else OptimizationResult.load(result_path)
    comparison = load_comparison(compare_dir) if compare_dir is not None else None
    attr = Attribution.load(attribution_path) if attribution_path is not None else None
    check_inputs(
        res,
        comparison,
        attr,
        comparison_path=compare_dir or "",
        attribution_path=attribution_path or "",
    )
    check_out_path(out_path)
    return write_run_report(res, out_path, comparison=comparison, attribution=attr)


def report_path_for(out_path: Path | None) -> Path:
    """Where ``optimize --report`` writes the page: beside --out, as ``RESULT.html``.

    Raises:
        InputDataError: No --out, or the page's path cannot be written.
    """
    if out_path is None:
        raise InputDataError("--report writes the page next to the result: give --out FILE.json")
    path = out_path.with_suffix(".html")
    if path == out_path:
        raise InputDataError(f"{out_path}: --out must not end in .html with --report")
    check_out_path(path)
    return path


def save_run(
    result: Any, out_path: Path | None, report_path: Path | None, *, quiet: bool
) -> dict[str, Path]:
    """Write the result (and its report) of ``optimize`` and print the artifact summary.

    Returns:
        The artifacts written, by kind.
    """
    fb = Feedback(quiet)
    written: dict[str, Path] = {}
    if out_path is not None:
        result.save(out_path)
        written["result"] = out_path
    if report_path is not None and out_path is not None:
        with fb.step("writing the report"):
            render_report(out_path, report_path, result=result)
        written["report"] = report_path
    c = result.cost
    test = "n/a" if result.test_score is None else f"{result.test_score:.3f}"
    hits = int(c.get("cache_hits", 0))
    calls = int(c.get("llm_calls", 0)) + hits  # what the budget counted
    cached = f" ({hits:,} from the cache)" if hits else ""
    fb.artifacts(
        written,
        headline=f"done: val {result.val_score:.3f}, test {test} after "
        f"{c.get('evaluations', 0)} evaluations and {calls:,} LLM calls{cached}; wrote",
    )
    return written


@app.command()
@one_line_errors
def report(
    result: Path = typer.Argument(..., help="A JSON result written by `iclopt optimize --out`."),
    compare_dir: Path = typer.Option(
        None,
        "--compare",
        help="A folder written by `iclopt compare --out DIR` on the same task: its methods are drawn next to this run.",
    ),
    attribution: Path = typer.Option(
        None,
        "--attribution",
        help="attribution.json written by `iclopt attribute RESULT.json` (the final prompt's).",
    ),
    out_path: Path = typer.Option(
        Path("report.html"),
        "--out",
        help="The report: .html (one self-contained page) or .md (Markdown, figures as PNG files beside it).",
    ),
    quiet: bool = O_QUIET,
) -> None:
    """Write the report of a run: prompt, scores, search, attribution, cost, configuration.

    The final prompt as the model sees it; its scores next to the random-prompt baseline
    and the --compare methods; the search trace; the attribution of its demonstrations;
    cost and configuration. Reads saved files only (no model is loaded).
    """
    fb = Feedback(quiet)
    with fb.step("writing the report"):
        paths = render_report(
            result, out_path, compare_dir=compare_dir, attribution_path=attribution
        )
    written = {"report": paths[0], **{f"figure {i}": p for i, p in enumerate(paths[1:], 1)}}
    fb.artifacts(written, final="report")
