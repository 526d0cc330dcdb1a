"""The report of one run: a page a person would rather look at than read.

:func:`write_run_report` renders a saved :class:`~iclopt.results.OptimizationResult`
(optionally with a comparison written by ``iclopt compare`` and an attribution of the
final prompt written by ``iclopt attribute``) as one self-contained HTML page, or as
Markdown with its figures as PNG files beside it. The sections, in order:

1. the final prompt, as the model sees it;
2. its validation and test scores next to the random-prompt baseline and the
   comparison's methods (bars with error bars);
3. the search trace: each evaluation's score and the best so far against LLM calls,
   coloured by the candidate's source, partial evaluations hollow;
4. the attribution of the final prompt, with one sentence of advice;
5. cost, and the configuration, folded.

It reads files only: nothing here loads a model. What the page shows is read and
checked in :mod:`iclopt.reports.run_data`; this module draws and lays it out. An entry is
*partial* when it rests on fewer queries than the validation set (``n_queries`` below
``config.sizes.val``) or on other queries (``queries`` is not ``"val"``); partial entries
are drawn hollow. Scores are plotted on their own range; nothing assumes they lie in
[0, 1].
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iclopt.artifacts import write_files
from iclopt.reports._page import figure_png, h, img_tag, md, page, plt
from iclopt.reports.attribution import Source, as_doc
from iclopt.reports.run_data import ScoreRow, check_inputs, score_rows, trace_points

if TYPE_CHECKING:  # pragma: no cover
    from iclopt.results import OptimizationResult

__all__ = ["html_run_report", "markdown_run_report", "trace_figure", "write_run_report"]

#: What a query placeholder looks like in the rendered prompt.
QUERY_PLACEHOLDER = "{your input}"


# ---------------------------------------------------------------------- figures
def _scores_png(rows: list[ScoreRow]) -> bytes:
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(max(4.5, 1.25 * len(rows) + 2.0), 3.4))
    width = 0.38
    x = list(range(len(rows)))
    values: list[float] = []
    for offset, key, label, color in (
        (-width / 2, "val", "validation", "#1f77b4"),
        (width / 2, "test", "test", "#ff7f0e"),
    ):
        means = [getattr(r, key) for r in rows]
        errs = [getattr(r, f"{key}_err") or 0.0 for r in rows]
        xs = [i + offset for i, m in zip(x, means) if m is not None]
        ms = [float(m) for m in means if m is not None]
        es = [float(e) for e, m in zip(errs, means) if m is not None]
        values += [m + e for m, e in zip(ms, es)] + [m - e for m, e in zip(ms, es)]
        if xs:
            ax.bar(xs, ms, width, yerr=es, capsize=4, label=label, color=color)
    ax.set_xticks(x)
    # "$" escaped: matplotlib would read "$...$" in a method name as math
    names = [r.name.replace("$", r"\$") for r in rows]
    ax.set_xticklabels(names, rotation=18, ha="right", fontsize=8)
    ax.set_ylabel("score (± error bar)", fontsize=8)
    if values and min(values) >= 0 and max(values) <= 1:
        ax.set_ylim(0, 1.05)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    return figure_png(fig)


def trace_figure(points: list[dict[str, Any]], by_calls: bool) -> Any:
    """The search trace: one dot per evaluation (partial ones hollow), the best so far.

    Args:
        points: From :func:`trace_points`.
        by_calls: Whether ``x`` counts LLM calls (else evaluations).

    Returns:
        The matplotlib figure (a second panel shows the mean signal where entries have one).
    """
    pyplot = plt()
    signals = [p for p in points if p["signal"] is not None]
    rows = 2 if signals else 1
    fig, axes = pyplot.subplots(
        rows, 1, figsize=(8.0, 3.4 if rows == 1 else 5.2), sharex=True, squeeze=False
    )
    ax = axes[0][0]
    sources = list(dict.fromkeys(p["source"] for p in points))
    cmap = pyplot.get_cmap("tab10")
    color = {s: cmap(i % 10) for i, s in enumerate(sources)}
    for s in sources:
        mine = [p for p in points if p["source"] == s and p["score"] is not None]
        full = [p for p in mine if not p["partial"]]
        part = [p for p in mine if p["partial"]]
        if full:
            ax.scatter(
                [p["x"] for p in full], [p["score"] for p in full], s=22, color=color[s], label=s
            )
        if part:
            ax.scatter(
                [p["x"] for p in part],
                [p["score"] for p in part],
                s=26,
                facecolors="none",
                edgecolors=[color[s]],
                label=f"{s} (partial)",
            )
    best_x, best_y, best = [], [], -math.inf
    for p in points:
        if not p["partial"] and p["score"] is not None:
            best = max(best, p["score"])
        if best > -math.inf:
            best_x.append(p["x"])
            best_y.append(best)
    if best_x:
        ax.step(best_x, best_y, where="post", color="black", linewidth=1.2, label="best so far")
    ax.set_ylabel("validation score", fontsize=8)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.grid(alpha=0.25)
    if signals:
        ax2 = axes[1][0]
        ax2.scatter(
            [p["x"] for p in signals],
            [p["signal"] for p in signals],
            s=14,
            color=[color[p["source"]] for p in signals],
        )
        ax2.set_ylabel("mean signal", fontsize=8)
        ax2.grid(alpha=0.25)
    axes[-1][0].set_xlabel(
        "LLM calls so far (cached or not)" if by_calls else "evaluation", fontsize=8
    )
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------- text pieces
def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _pm(mean: float | None, err: float | None) -> str:
    if mean is None:
        return "n/a"
    return _fmt(mean) + (f" ± {err:.3f}" if err is not None else "")


def _rendered(result: OptimizationResult) -> str:
    shown = result.render(QUERY_PLACEHOLDER)
    if isinstance(shown, str):
        return shown
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in shown)


def _trace_summary(points: list[dict[str, Any]]) -> str:
    if not points:
        return "The result holds no trace."
    partial = sum(p["partial"] for p in points)
    by_source = Counter(p["source"] for p in points)
    parts = ", ".join(f"{n} {s}" for s, n in by_source.items())
    text = f"{len(points)} evaluations ({parts})"
    if partial:
        text += (
            f"; {partial} partial (on fewer or other queries than the validation set), drawn "
            "hollow and left out of the best-so-far line"
        )
    return text + "."


_COST_KEYS = (
    ("evaluations", "evaluations"),
    ("llm_calls", "LLM calls"),
    ("prompt_tokens", "prompt tokens"),
    ("cache_hits", "cache hits"),
    ("seconds", "seconds"),
)


def _cost_rows(
    result: OptimizationResult, attribution: Source | None
) -> list[tuple[str, dict[str, Any]]]:
    rows = [("search (validation)", dict(result.cost)), ("test set", dict(result.test_cost))]
    if attribution is not None:
        doc = as_doc(attribution)
        rows.append((f"attribution ({doc.method})", dict(doc.cost)))
    total: dict[str, Any] = {}
    for _, c in rows:
        for k, _title in _COST_KEYS:
            v = c.get(k)
            if isinstance(v, (int, float)):
                total[k] = total.get(k, 0) + v
    rows.append(("total", total))
    return rows


def _cost_cell(key: str, value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "n/a"
    return f"{value:.1f}" if key == "seconds" else f"{int(value):,}"


def _headline(result: OptimizationResult, rows: list[ScoreRow]) -> str:
    c = result.cost
    text = f"Final prompt: validation {_fmt(result.val_score)}, test {_fmt(result.test_score)}"
    rnd = next((r for r in rows if r.name.startswith("random")), None)
    if rnd is not None and rnd.val is not None:
        text += f"; random prompts: validation {_fmt(rnd.val)}"
    calls = c.get("llm_calls")
    if isinstance(calls, int):
        text += f"; the search made {calls:,} LLM calls"
    return text + "."


# ---------------------------------------------------------------------- the page
@dataclass
class _Parts:
    """Everything both renderings need, computed once."""

    rows: list[ScoreRow]
    baseline: str
    points: list[dict[str, Any]]
    by_calls: bool
    figures: dict[str, bytes]


def _parts(
    result: OptimizationResult,
    comparison: dict[str, Any] | None,
    attribution: Source | None,
) -> _Parts:
    from iclopt.reports.attribution import _png as attribution_png

    rows, baseline = score_rows(result, comparison)
    points = trace_points(result)
    by_calls = bool(points) and any(p["x"] != p["step"] for p in points)
    figures = {"scores": _scores_png(rows)}
    if points:
        figures["trace"] = figure_png(trace_figure(points, by_calls))
    if attribution is not None:
        figures["attribution"] = attribution_png(attribution)
    return _Parts(rows, baseline, points, by_calls, figures)


def _title(result: OptimizationResult) -> str:
    return f"iclopt run report: {result.task or 'task'}"


def _subtitle(result: OptimizationResult) -> str:
    cfg = result.config
    bits = [f"model {result.model or 'n/a'}"]
    for key in ("method", "k", "seed"):
        if key in cfg:
            bits.append(f"{key} {cfg[key]}")
    budget = cfg.get("budget")
    if isinstance(budget, dict) and budget.get("max_evaluations") is not None:
        bits.append(f"budget {budget['max_evaluations']} evaluations")
    sizes = cfg.get("sizes")
    if isinstance(sizes, dict):
        bits.append(", ".join(f"{k} {v}" for k, v in sizes.items()))
    return " · ".join(str(b) for b in bits)


def html_run_report(
    result: OptimizationResult,
    *,
    comparison: dict[str, Any] | None = None,
    attribution: Source | None = None,
) -> str:
    """The run report as one self-contained HTML page (figures inlined, no fetches)."""
    from iclopt.reports.attribution import html_section

    parts = _parts(result, comparison, attribution)
    body = [
        f"<h1>{h(_title(result))}</h1>",
        f'<p class="note">{h(_subtitle(result))}</p>',
        f"<p><b>{h(_headline(result, parts.rows))}</b></p>",
        '<h2 id="prompt">1. The final prompt, as the model sees it</h2>',
        f'<p class="note">For a query, {h(QUERY_PLACEHOLDER)} stands for its input; the '
        "model continues after the last line.</p>",
        f'<pre class="prompt">{h(_rendered(result))}</pre>',
        '<h2 id="scores">2. Scores next to the baselines</h2>',
        img_tag(parts.figures["scores"], "scores", "validation and test scores, with baselines"),
        f'<p class="note">{h(parts.baseline)}</p>',
        "<table><tr><th>prompt</th><th>validation</th><th>test</th><th>how</th></tr>",
    ]
    for r in parts.rows:
        body.append(
            f'<tr><td>{h(r.name)}</td><td class="num">{h(_pm(r.val, r.val_err))}</td>'
            f'<td class="num">{h(_pm(r.test, r.test_err))}</td><td>{h(r.note)}</td></tr>'
        )
    body.append("</table>")
    if comparison is not None and comparison.get("model") not in (None, result.model):
        body.append(
            f'<p class="note">note: the comparison was run with model '
            f"{h(comparison.get('model'))}, the result with {h(result.model)}.</p>"
        )
    body += ['<h2 id="trace">3. The search</h2>']
    if "trace" in parts.figures:
        body.append(img_tag(parts.figures["trace"], "trace", "score of each evaluation"))
    body.append(f'<p class="note">{h(_trace_summary(parts.points))}</p>')
    if parts.points:
        body.append("<details><summary>every evaluation</summary><table>")
        body.append(
            "<tr><th>step</th><th>source</th><th>score</th><th>queries</th>"
            "<th>LLM calls</th><th>cache hits</th><th>seconds</th><th>demos</th></tr>"
        )
        for p in parts.points:
            e = p["entry"]
            q = e.get("queries", "val")
            nq = p["n_queries"] if p["n_queries"] is not None else ("val" if q == "val" else len(q))
            body.append(
                f'<tr><td class="num">{h(p["step"])}</td><td>{h(p["source"])}'
                f"{' (partial)' if p['partial'] else ''}</td>"
                f'<td class="num">{h(_fmt(p["score"]))}</td><td class="num">{h(nq)}</td>'
                f'<td class="num">{h(e.get("llm_calls", "n/a"))}</td>'
                f'<td class="num">{h(e.get("cache_hits", "n/a"))}</td>'
                f'<td class="num">{h(e.get("seconds", "n/a"))}</td>'
                f"<td>{h(e.get('demos', ''))}</td></tr>"
            )
        body.append("</table></details>")
    body.append('<h2 id="attribution">4. Which demonstrations help</h2>')
    if attribution is not None:
        body.append(html_section(attribution, parts.figures["attribution"]))
    else:
        body.append(
            '<p class="note">No attribution given: `iclopt attribute RESULT.json --out DIR` '
            "writes one; pass DIR/attribution.json as --attribution.</p>"
        )
    body += [
        '<h2 id="cost">5. Cost</h2>',
        "<table><tr><th></th>" + "".join(f"<th>{h(t)}</th>" for _, t in _COST_KEYS) + "</tr>",
    ]
    for name, c in _cost_rows(result, attribution):
        cells = "".join(f'<td class="num">{h(_cost_cell(k, c.get(k)))}</td>' for k, _ in _COST_KEYS)
        body.append(f"<tr><td>{h(name)}</td>{cells}</tr>")
    body.append("</table>")
    config = {"template": result.template.as_dict(), **result.config}
    body += [
        '<details id="config"><summary>configuration</summary>',
        f"<pre>{h(json.dumps(config, indent=2, ensure_ascii=False, default=str))}</pre>",
        "</details>",
    ]
    return page(_title(result), "\n".join(body))


def markdown_run_report(
    result: OptimizationResult,
    *,
    comparison: dict[str, Any] | None = None,
    attribution: Source | None = None,
    image_stem: str = "report",
) -> tuple[str, dict[str, bytes]]:
    """The run report as Markdown, and its figures by file name (``STEM.NAME.png``)."""
    from iclopt.reports.attribution import markdown_section

    parts = _parts(result, comparison, attribution)
    files = {f"{image_stem}.{name}.png": png for name, png in parts.figures.items()}
    fence = "~~~~"
    lines = [
        f"# {md(_title(result), None)}",
        "",
        md(_subtitle(result), None),
        "",
        f"**{md(_headline(result, parts.rows), None)}**",
        "",
        "## 1. The final prompt, as the model sees it",
        "",
        f"{fence}text",
        _rendered(result).replace(fence, "~ ~ ~ ~"),
        fence,
        "",
        "## 2. Scores next to the baselines",
        "",
        f"![scores]({image_stem}.scores.png)",
        "",
        md(parts.baseline, None),
        "",
        "| prompt | validation | test | how |",
        "|---|---|---|---|",
    ]
    for r in parts.rows:
        lines.append(
            f"| {md(r.name)} | {_pm(r.val, r.val_err)} | {_pm(r.test, r.test_err)} | "
            f"{md(r.note, None)} |"
        )
    lines += ["", "## 3. The search", ""]
    if "trace" in parts.figures:
        lines += [f"![search trace]({image_stem}.trace.png)", ""]
    lines += [md(_trace_summary(parts.points), None), "", "## 4. Which demonstrations help", ""]
    if attribution is not None:
        lines += markdown_section(attribution, f"{image_stem}.attribution.png")
    else:
        lines.append(
            md("No attribution given: `iclopt attribute RESULT.json --out DIR` writes one.", None)
        )
    lines += [
        "",
        "## 5. Cost",
        "",
        "| | " + " | ".join(t for _, t in _COST_KEYS) + " |",
        "|---|" + "---|" * len(_COST_KEYS),
    ]
    for name, c in _cost_rows(result, attribution):
        lines.append(
            f"| {md(name)} | " + " | ".join(_cost_cell(k, c.get(k)) for k, _ in _COST_KEYS) + " |"
        )
    config = {"template": result.template.as_dict(), **result.config}
    text = json.dumps(config, indent=2, ensure_ascii=False, default=str).replace(fence, "~ ~")
    lines += [
        "",
        "<details><summary>configuration</summary>",
        "",
        f"{fence}json",
        text,
        fence,
        "",
        "</details>",
    ]
    return "\n".join(lines) + "\n", files


def write_run_report(
    result: OptimizationResult,
    out: str | os.PathLike[str],
    *,
    comparison: dict[str, Any] | None = None,
    attribution: Source | None = None,
) -> list[Path]:
    """Write the report to ``out``: HTML, or Markdown (plus PNGs beside it) for ``.md``.

    Everything is rendered first and then written all-or-nothing (see
    :func:`iclopt.artifacts.write_files`).

    Returns:
        The paths written, the report first.

    Raises:
        InputDataError: ``out`` cannot be written, or the inputs do not belong together.
    """
    path = Path(out)
    check_inputs(result, comparison, attribution)
    if path.suffix.lower() == ".md":
        text, figures = markdown_run_report(
            result, comparison=comparison, attribution=attribution, image_stem=path.stem
        )
        files: dict[str | os.PathLike[str], str | bytes] = {path: text}
        files.update({path.with_name(name): png for name, png in figures.items()})
        return write_files(files)
    return write_files(
        {path: html_run_report(result, comparison=comparison, attribution=attribution)}
    )
