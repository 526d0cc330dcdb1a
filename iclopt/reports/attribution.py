"""Write an attribution as JSON, Markdown and a self-contained HTML page with its bar chart.

The page reads as a verdict, not a dump: the scores are put on a scale a person can read
(see :func:`readable_scale`: points of the task's score, percent of the gold label's
probability, or a share of the total influence), each demonstration gets a verdict
("helps", "hurts", "looks mislabeled"), one sentence says what to do, and the method's
internal parameters are folded at the end.

Every piece of dataset text (inputs, outputs, instruction, task and model names) is
escaped: HTML-escaped in the page, and HTML- plus Markdown-escaped in the Markdown table,
so a demonstration holding ``<script>`` or ``|`` is shown, never interpreted. The chart's
tick labels hold positions and pool ids only (matplotlib would read ``$...$`` in text as
math).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from iclopt.artifacts import json_text, write_files
from iclopt.errors import InputDataError
from iclopt.reports._page import figure_png, h, img_tag, md, page, plt, signed

if TYPE_CHECKING:  # pragma: no cover
    from iclopt.attribution.base import Attribution

__all__ = [
    "Scale",
    "advice",
    "html_report",
    "html_section",
    "markdown_report",
    "markdown_section",
    "plot_attribution",
    "readable_scale",
    "verdicts",
    "write_attribution",
]


@dataclass(frozen=True)
class Scale:
    """Attribution scores on a scale a person reads.

    Attributes:
        values: ``n`` values, one per demonstration in prompt order; higher = more helpful.
        errors: ``n`` standard errors on the same scale, or ``None``.
        header: Column header / axis label.
        unit: Appended to each number (``" pts"``, ``" %"``).
        digits: Decimals shown.
        explain: One sentence saying what a value means.
    """

    values: np.ndarray
    errors: np.ndarray | None
    header: str
    unit: str
    digits: int
    explain: str

    def fmt(self, j: int) -> str:
        """Value ``j`` as text, with its standard error when there is one."""
        text = signed(float(self.values[j]), self.digits, self.unit)
        if self.errors is not None:
            text += f" ± {float(self.errors[j]):.{self.digits}f}"
        return text


def readable_scale(attr: Attribution) -> Scale:
    """Put ``attr.scores`` on a readable scale.

    * leave-one-out / Shapley on the task's metric: change of the prompt's mean score, in
      percentage points (the score is a fraction: 0.05 is 5 points);
    * on the gold label's log-probability: the change as a percentage of that
      probability, ``100 (exp(score) - 1)`` (a geometric mean over the queries);
    * DETAIL's test influence, which has no unit: each demonstration's share of the total
      absolute influence, in percent (the shares' magnitudes sum to 100).
    """
    scores = np.asarray(attr.scores, dtype=float)
    errors = None if attr.errors is None else np.asarray(attr.errors, dtype=float)
    q = len(attr.query_ids)
    on = f"on the {q} queries" if q else "on the queries"
    utility = attr.config.get("utility")
    if attr.method == "detail":
        total = float(np.abs(scores).sum())
        values = scores / total * 100 if total > 0 else np.zeros_like(scores)
        return Scale(
            values,
            None,
            "share of the influence, %",
            " %",
            0,
            f"DETAIL's test influence {on}, as a share of the total over the "
            f"{len(scores)} demonstrations (positive: it pulls the model toward the right "
            "answers).",
        )
    verb = (
        "how much the prompt's score drops without it"
        if attr.method == "loo"
        else "its average contribution over random orders (Shapley value)"
    )
    if utility == "logprob":
        values = np.expm1(scores) * 100
        errs = None if errors is None else np.exp(scores) * errors * 100
        return Scale(
            values,
            errs,
            "effect on the gold label's probability, %",
            " %",
            1,
            f"{verb.capitalize()}, as a change of the probability the model gives the right "
            f"label {on} (geometric mean).",
        )
    if utility == "metric":
        return Scale(
            scores * 100,
            None if errors is None else errors * 100,
            "effect on the score, points",
            " pts",
            1,
            f"{verb.capitalize()}, in points of the task's score {on} (1 point = 0.01).",
        )
    return Scale(scores, errors, "score (higher = more helpful)", "", 3, "Higher = more helpful.")


def _self_influence(attr: Attribution) -> np.ndarray | None:
    """DETAIL's self influence in multiples of its median, or ``None`` without one."""
    raw = attr.extra.get("self_influence")
    if raw is None or len(raw) != len(attr.scores):
        return None
    values = np.asarray(raw, dtype=float)
    med = float(np.median(values))
    return values / med if med > 0 else values


def _suspect_is_self_influence(attr: Attribution) -> bool:
    return attr.suspect is not None and attr.config.get("rank_by") == "self"


def _other_suspect(attr: Attribution) -> np.ndarray | None:
    """A suspect score that repeats neither the scores nor the self influence, if any."""
    if attr.suspect is None or _suspect_is_self_influence(attr):
        return None
    s = np.asarray(attr.suspect, dtype=float)
    if np.allclose(s, -np.asarray(attr.scores, dtype=float)):
        return None  # "suspect = -score": the same column with its sign flipped
    if attr.method == "detail" and attr.config.get("rank_by") == "test":
        return None
    return s


def verdicts(attr: Attribution, scale: Scale | None = None) -> list[str]:
    """One word or two per demonstration: helps, hurts, within noise, looks mislabeled."""
    scale = scale or readable_scale(attr)
    flagged = set(attr.flagged)
    out = []
    for j, v in enumerate(scale.values):
        if j in flagged:
            out.append("looks mislabeled" if _suspect_is_self_influence(attr) else "hurts")
        elif scale.errors is not None and abs(v) < 2 * scale.errors[j]:
            out.append("within noise")
        elif round(float(v), scale.digits) == 0:
            out.append("no effect")
        else:
            out.append("helps" if v > 0 else "hurts a little")
    return out


def _which(attr: Attribution, positions: list[int]) -> str:
    names = [f"#{j + 1} (pool {attr.prompt.demos[j]})" for j in positions]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def advice(attr: Attribution, scale: Scale | None = None) -> str:
    """One sentence saying what to do about the flagged demonstrations (plain text)."""
    scale = scale or readable_scale(attr)
    flagged = attr.flagged
    if not flagged:
        return "Nothing to fix: no demonstration is flagged as harmful or likely mislabeled."
    who = _which(attr, flagged)
    if _suspect_is_self_influence(attr):
        several = len(flagged) > 1
        labels = ", ".join(repr(attr.demos[j].target) for j in flagged)
        return (
            f"Check the label{'s' if several else ''} of {who} ({labels}): "
            f"{'they look' if several else 'it looks'} mislabeled; fix or replace "
            f"{'them' if several else 'it'}, then score the prompt again."
        )
    effects = ", ".join(scale.fmt(j) for j in flagged)
    return (
        f"Try the prompt without {who}, flagged as harmful ({scale.header}: {effects}); "
        f"iclopt.attribution.curate(task, attr, drop={len(flagged)}) builds that prompt."
    )


def plot_attribution(attr: Attribution, ax: Any = None) -> Any:
    """One horizontal bar per demonstration (top = first in the prompt), flagged in red.

    Bars show :func:`readable_scale` (with error bars where the method has them); for
    DETAIL a second panel shows the self influence (the paper's "likely mislabeled"
    score) in multiples of its median.

    Returns:
        The matplotlib figure.
    """
    pyplot = plt()
    scale = readable_scale(attr)
    n = len(scale.values)
    flagged = set(attr.flagged)
    labels = [f"#{j + 1} (pool {pid})" for j, pid in enumerate(attr.prompt.demos)]
    colors = ["#d62728" if j in flagged else "#1f77b4" for j in range(n)]
    second = _self_influence(attr)
    panels = 2 if second is not None and ax is None else 1
    if ax is None:
        fig, axes = pyplot.subplots(
            1, panels, figsize=(4.6 * panels, 0.32 * n + 1.5), sharey=True, squeeze=False
        )
        axes = list(axes[0])
    else:
        fig, axes = ax.figure, [ax]
    y = list(range(n))
    xerr = None if scale.errors is None else [float(e) for e in scale.errors]
    axes[0].barh(y, [float(v) for v in scale.values], xerr=xerr, color=colors, capsize=2)
    axes[0].axvline(0, color="black", linewidth=0.6)
    axes[0].set_yticks(y)
    axes[0].set_yticklabels(labels, fontsize=7)
    axes[0].invert_yaxis()
    axes[0].set_xlabel(f"{scale.header}  (right = helps)", fontsize=8)
    if panels == 2 and second is not None:
        axes[1].barh(y, [float(s) for s in second], color=colors)
        axes[1].axvline(1, color="grey", linewidth=0.6, linestyle=":")
        axes[1].set_xlabel("self influence, × median (right = more suspect)", fontsize=8)
    title = f"{attr.method}: red = flagged ({len(flagged)})"
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _png(attr: Attribution) -> bytes:
    return figure_png(plot_attribution(attr))


def cost_line(attr: Attribution) -> str:
    """What computing the attribution cost, as one line."""
    c = attr.cost
    return (
        f"{c.evaluations} evaluations, {c.llm_calls} LLM calls, {c.prompt_tokens} prompt "
        f"tokens, {c.cache_hits} cache hits, {c.seconds:.1f} s"
    )


def _settings(attr: Attribution) -> list[tuple[str, str]]:
    keep = [(k, v) for k, v in attr.config.items() if k != "template"]
    keep += [(f"extra.{k}", v) for k, v in attr.extra.items()]
    return [(k, json.dumps(v, ensure_ascii=False)) for k, v in keep]


def _columns(attr: Attribution, scale: Scale) -> tuple[list[str], list[list[tuple[str, bool]]]]:
    """Header and rows (cell text, whether it is a number) of the demonstrations table."""
    self_infl = _self_influence(attr)
    other = _other_suspect(attr)
    head = ["#", "pool id", scale.header]
    if self_infl is not None:
        head.append("self influence, × median")
    if other is not None:
        head.append("suspect score")
    head += ["verdict", "input", "output"]
    words = verdicts(attr, scale)
    rows = []
    for j, (pid, ex) in enumerate(zip(attr.prompt.demos, attr.demos)):
        row = [(str(j + 1), True), (str(pid), True), (scale.fmt(j), True)]
        if self_infl is not None:
            row.append((f"{float(self_infl[j]):.1f}", True))
        if other is not None:
            row.append((f"{float(other[j]):.3g}", True))
        row += [(words[j], False), (ex.input, False), (ex.target, False)]
        rows.append(row)
    return head, rows


def html_section(attr: Attribution, png: bytes) -> str:
    """The attribution as an HTML fragment: advice, chart, table, folded parameters."""
    scale = readable_scale(attr)
    flagged = set(attr.flagged)
    head, rows = _columns(attr, scale)
    body = []
    for j, row in enumerate(rows):
        cls = ' class="flagged"' if j in flagged else ""
        cells = "".join(
            f'<td class="num">{h(t)}</td>' if num else f"<td>{h(t)}</td>" for t, num in row
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    settings = "".join(f"<dt>{h(k)}</dt><dd>{h(v)}</dd>" for k, v in _settings(attr))
    return f"""<p class="advice">{h(advice(attr, scale))}</p>
<p class="note">{h(scale.explain)} Flagged rows are red.</p>
{img_tag(png, "attribution", "one bar per demonstration; flagged ones in red")}
<table>
<tr>{"".join(f"<th>{h(c)}</th>" for c in head)}</tr>
{chr(10).join(body)}
</table>
<p class="note">cost: {h(cost_line(attr))}</p>
<details><summary>{h(attr.method)} parameters</summary><dl>{settings}</dl></details>"""


def html_report(attr: Attribution, png: bytes) -> str:
    """A self-contained HTML page: advice, the inlined bar chart, the demonstrations."""
    title = f"Attribution: {attr.method} on {attr.task}"
    instr = (
        f"<p><b>instruction:</b> {h(attr.prompt.instruction)}</p>"
        if attr.prompt.instruction
        else ""
    )
    body = f"""<h1>{h(title)}</h1>
<p>model {h(attr.model)} &middot; {len(attr.prompt.demos)} demonstrations &middot;
{len(attr.query_ids)} queries</p>
{instr}
{html_section(attr, png)}"""
    return page(title, body)


def markdown_section(attr: Attribution, image: str | None = None) -> list[str]:
    """The attribution as Markdown lines (``image``: a relative path to the chart PNG)."""
    scale = readable_scale(attr)
    head, rows = _columns(attr, scale)
    lines = [f"**{md(advice(attr, scale), None)}**", "", md(scale.explain, None), ""]
    if image is not None:
        lines += [f"![one bar per demonstration]({image})", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    flagged = set(attr.flagged)
    for j, row in enumerate(rows):
        cells = [md(t, 60 if i == len(row) - 1 else 160) for i, (t, _) in enumerate(row)]
        if j in flagged:
            cells[len(cells) - 3] = f"**{cells[len(cells) - 3]}**"
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"cost: {md(cost_line(attr), None)}", ""]
    lines += ["<details><summary>parameters</summary>", ""]
    lines += [f"- {md(k, None)}: {md(v, None)}" for k, v in _settings(attr)]
    lines += ["", "</details>"]
    return lines


def markdown_report(attr: Attribution) -> str:
    """The attribution as Markdown: advice, one row per demonstration, folded parameters."""
    lines = [
        f"# Attribution: {md(attr.method, None)} on {md(attr.task, None)}",
        "",
        f"model {md(attr.model, None)} · {len(attr.prompt.demos)} demonstrations · "
        f"{len(attr.query_ids)} queries",
        "",
    ]
    if attr.prompt.instruction:
        lines += [f"instruction: {md(attr.prompt.instruction, None)}", ""]
    return "\n".join(lines + markdown_section(attr)) + "\n"


def write_attribution(attr: Attribution, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``attribution.json``, ``attribution.md`` and ``attribution.html`` into ``out_dir``.

    All three are rendered first and then moved into place, so a failure leaves no
    half-written report; they get the file mode of the user's umask.

    Returns:
        Paths written, by kind (``json``, ``md``, ``html``).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputDataError(f"{out}: exists and is not a directory")
    contents = {
        "json": json_text(attr.as_dict()),
        "md": markdown_report(attr),
        "html": html_report(attr, _png(attr)),
    }
    paths = {kind: out / f"attribution.{kind}" for kind in contents}
    write_files({paths[kind]: text for kind, text in contents.items()})
    return paths
