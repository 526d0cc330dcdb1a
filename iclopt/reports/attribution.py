"""Write an attribution as JSON, Markdown and a self-contained HTML page with its bar chart.

Every piece of dataset text (inputs, outputs, instruction, task and model names) is
escaped: HTML-escaped in the page, and HTML- plus Markdown-escaped in the Markdown table,
so a demonstration holding ``<script>`` or ``|`` is shown, never interpreted. The chart's
tick labels hold positions and pool ids only (matplotlib would read ``$...$`` in text as
math).
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iclopt.errors import InputDataError, MissingDependencyError

if TYPE_CHECKING:  # pragma: no cover
    from iclopt.attribution.base import Attribution

__all__ = ["html_report", "markdown_report", "plot_attribution", "write_attribution"]

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-!|~])")


def _md(text: str, limit: int | None = 160) -> str:
    """Dataset text for a Markdown table cell: one line, HTML- and Markdown-escaped."""
    one = " ".join(str(text).split())
    if limit is not None and len(one) > limit:
        one = one[: limit - 1] + "…"
    return html.escape(_MD_SPECIAL.sub(r"\\\1", one), quote=False)


def _h(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _fmt(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.4g}"


def _score_label(method: str) -> str:
    return {
        "detail": "test influence (sum over queries)",
        "loo": "leave-one-out effect",
        "shapley": "Shapley value",
    }.get(method, "score")


def _suspect_label(attr: Attribution) -> str:
    if attr.config.get("rank_by") == "test":
        return "suspect (-test influence)"
    return "suspect (self influence)"


def _plt() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError("plots need matplotlib: pip install 'iclopt[plot]'") from None
    return plt


def plot_attribution(attr: Attribution, ax: Any = None) -> Any:
    """One horizontal bar per demonstration (top = first in the prompt), flagged in red.

    Bars show ``scores`` (with error bars where the method has them); for DETAIL a second
    panel shows DETAIL's self influence (the paper's "likely mislabeled" score).

    Returns:
        The matplotlib figure.
    """
    plt = _plt()
    n = len(attr.scores)
    flagged = set(attr.flagged)
    labels = [f"#{j + 1} (pool {pid})" for j, pid in enumerate(attr.prompt.demos)]
    colors = ["#d62728" if j in flagged else "#1f77b4" for j in range(n)]
    panels = 2 if attr.suspect is not None and ax is None else 1
    if ax is None:
        fig, axes = plt.subplots(
            1, panels, figsize=(5.2 * panels, 0.32 * n + 1.6), sharey=True, squeeze=False
        )
        axes = list(axes[0])
    else:
        fig, axes = ax.figure, [ax]
    y = list(range(n))
    xerr = None if attr.errors is None else [float(e) for e in attr.errors]
    axes[0].barh(y, [float(s) for s in attr.scores], xerr=xerr, color=colors, capsize=2)
    axes[0].axvline(0, color="black", linewidth=0.6)
    axes[0].set_yticks(y)
    axes[0].set_yticklabels(labels, fontsize=7)
    axes[0].invert_yaxis()
    axes[0].set_xlabel(f"{_score_label(attr.method)}  (higher = more helpful)", fontsize=8)
    if panels == 2 and attr.suspect is not None:
        second = attr.extra.get("self_influence")  # DETAIL: always show self influence
        if second is None or len(second) != n:
            second, label = attr.suspect, _suspect_label(attr)
        else:
            label = "self influence"
        axes[1].barh(y, [float(s) for s in second], color=colors)
        axes[1].set_xlabel(f"{label} (higher = more suspect)", fontsize=8)
    layer = attr.config.get("layer")
    title = f"{attr.method}" + (f", layer {layer}" if layer is not None else "")
    title += f" · red = flagged ({len(flagged)})"
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _png(attr: Attribution) -> bytes:
    plt = _plt()
    fig = plot_attribution(attr)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _cost_line(attr: Attribution) -> str:
    c = attr.cost
    return (
        f"{c.evaluations} evaluations, {c.llm_calls} LLM calls, {c.prompt_tokens} prompt "
        f"tokens, {c.cache_hits} cache hits, {c.seconds:.2f} s"
    )


def _settings(attr: Attribution) -> list[tuple[str, str]]:
    keep = [(k, v) for k, v in attr.config.items() if k != "template"]
    return [(k, json.dumps(v, ensure_ascii=False)) for k, v in keep]


def markdown_report(attr: Attribution) -> str:
    """The attribution as Markdown: header, settings, cost and one row per demonstration."""
    flagged = set(attr.flagged)
    rank = {p: r + 1 for r, p in enumerate(attr.ranking())}
    lines = [
        f"# Attribution: {_md(attr.method, None)} on {_md(attr.task, None)}",
        "",
        f"- model: {_md(attr.model, None)}",
        f"- queries: {len(attr.query_ids)}",
        f"- score: {_score_label(attr.method)}; higher = more helpful",
        f"- cost: {_cost_line(attr)}",
        f"- flagged (most suspect first): {', '.join(f'#{j + 1}' for j in attr.flagged) or 'none'}",
    ]
    if attr.prompt.instruction:
        lines.append(f"- instruction: {_md(attr.prompt.instruction, None)}")
    for k, v in _settings(attr):
        lines.append(f"- {_md(k, None)}: {_md(v, None)}")
    head = ["#", "pool id", "score"]
    if attr.errors is not None:
        head.append("std err")
    if attr.suspect is not None:
        head.append(_suspect_label(attr))
    head += ["suspect rank", "flagged", "input", "output"]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for j, (pid, ex) in enumerate(zip(attr.prompt.demos, attr.demos)):
        row = [str(j + 1), str(pid), _fmt(float(attr.scores[j]))]
        if attr.errors is not None:
            row.append(_fmt(float(attr.errors[j])))
        if attr.suspect is not None:
            row.append(_fmt(float(attr.suspect[j])))
        row += [
            str(rank[j]),
            "**yes**" if j in flagged else "",
            _md(ex.input),
            _md(ex.target, 60),
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def html_report(attr: Attribution, png: bytes) -> str:
    """A self-contained HTML page: settings, the inlined bar chart, the demonstrations."""
    flagged = set(attr.flagged)
    rank = {p: r + 1 for r, p in enumerate(attr.ranking())}
    img = base64.b64encode(png).decode("ascii")
    rows = []
    for j, (pid, ex) in enumerate(zip(attr.prompt.demos, attr.demos)):
        cells = [str(j + 1), _h(pid), _fmt(float(attr.scores[j]))]
        if attr.errors is not None:
            cells.append(_fmt(float(attr.errors[j])))
        if attr.suspect is not None:
            cells.append(_fmt(float(attr.suspect[j])))
        cells += [str(rank[j]), "yes" if j in flagged else "", _h(ex.input), _h(ex.target)]
        cls = ' class="flagged"' if j in flagged else ""
        rows.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = ["#", "pool id", "score"]
    if attr.errors is not None:
        head.append("std err")
    if attr.suspect is not None:
        head.append(_suspect_label(attr))
    head += ["suspect rank", "flagged", "input", "output"]
    settings = "".join(f"<li>{_h(k)}: {_h(v)}</li>" for k, v in _settings(attr))
    instr = (
        f"<p><b>instruction:</b> {_h(attr.prompt.instruction)}</p>"
        if attr.prompt.instruction
        else ""
    )
    title = f"Attribution: {_h(attr.method)} on {_h(attr.task)}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 80em; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
td, th {{ border: 1px solid #ccc; padding: 0.3em 0.5em; vertical-align: top; }}
tr.flagged td {{ background: #fde0e0; }}
</style></head>
<body>
<h1>{title}</h1>
<p>model {_h(attr.model)} &middot; {len(attr.query_ids)} queries &middot;
score: {_h(_score_label(attr.method))}, higher = more helpful &middot;
flagged rows in red</p>
<p>cost: {_h(_cost_line(attr))}</p>
{instr}
<ul>{settings}</ul>
<img alt="one bar per demonstration" src="data:image/png;base64,{img}">
<table>
<tr>{"".join(f"<th>{_h(c)}</th>" for c in head)}</tr>
{chr(10).join(rows)}
</table>
</body></html>
"""


def write_attribution(attr: Attribution, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``attribution.json``, ``attribution.md`` and ``attribution.html`` into ``out_dir``.

    All three are rendered first and then moved into place, so a failure leaves no
    half-written report.

    Returns:
        Paths written, by kind (``json``, ``md``, ``html``).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputDataError(f"{out}: exists and is not a directory")
    contents = {
        "json": json.dumps(attr.as_dict(), indent=2, ensure_ascii=False) + "\n",
        "md": markdown_report(attr),
        "html": html_report(attr, _png(attr)),
    }
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputDataError(f"{out}: cannot create ({exc.strerror})") from None
    tmps: dict[str, str] = {}
    try:
        for kind, text in contents.items():
            fd, tmp = tempfile.mkstemp(prefix=f".attribution.{kind}.", dir=out)
            tmps[kind] = tmp
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
        paths = {kind: out / f"attribution.{kind}" for kind in contents}
        for kind, tmp in tmps.items():
            os.replace(tmp, paths[kind])
        return paths
    except OSError as exc:
        raise InputDataError(f"{out}: cannot write the report ({exc.strerror})") from None
    finally:
        for tmp in tmps.values():
            Path(tmp).unlink(missing_ok=True)
