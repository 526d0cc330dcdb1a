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

Everything here renders from the JSON form, :meth:`Attribution.as_dict
<iclopt.attribution.Attribution.as_dict>`, which is what ``attribution.json`` holds: each
function takes an attribution or that dictionary, so a saved file is re-rendered without a
model (``render_attribution(json.loads(path.read_text()))``), and this module imports
nothing from :mod:`iclopt.attribution`. How the scores read (a change of the prompt's
utility, or a share of a unitless influence, and what one score measures) is the
``labels`` entry of that form, which the attributor class declares.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from iclopt.artifacts import json_text, write_files
from iclopt.data import Example
from iclopt.errors import InputDataError
from iclopt.reports._page import figure_png, h, img_tag, md, page, plt, signed

__all__ = [
    "DEFAULT_LABELS",
    "AttributionDoc",
    "Scale",
    "advice",
    "as_doc",
    "html_report",
    "html_section",
    "markdown_report",
    "markdown_section",
    "plot_attribution",
    "readable_scale",
    "render_attribution",
    "verdicts",
    "write_attribution",
]


#: How scores read when the JSON form has no ``labels`` (a method the registry lacks).
DEFAULT_LABELS: dict[str, str] = {
    "scale": "change",
    "measure": "its contribution to the prompt's score",
}


class _SupportsAsDict(Protocol):
    def as_dict(self) -> dict[str, Any]: ...


def _arr(value: Any) -> np.ndarray | None:
    return None if value is None else np.asarray(value, dtype=float)


@dataclass(frozen=True)
class AttributionDoc:
    """The JSON form of an attribution, read once into what the report draws.

    Attributes:
        method: Registered name of the method.
        task: Task name.
        model: Identity of the LLM.
        instruction: The prompt's instruction, or ``None``.
        pool_ids: Pool id of each demonstration, in prompt order.
        demos: The demonstrations.
        scores: ``n`` contributions; higher = more helpful.
        suspect: ``n`` "likely mislabeled" scores, or ``None``.
        errors: ``n`` standard errors of ``scores``, or ``None``.
        flagged: Flagged positions, most suspect first.
        n_queries: How many queries the scores are about.
        cost: What computing it cost (``Cost.as_dict()``).
        config: The method's settings.
        extra: Method-specific values.
        labels: How the scores read: ``scale`` (``"change"`` or ``"share"``) and
            ``measure`` (what one score is, as a phrase).

    Example:
        >>> doc = AttributionDoc.from_dict({
        ...     "method": "loo", "prompt": {"instruction": None, "demos": [4, 2]},
        ...     "demos": [{"input": "a", "output": "x"}, {"input": "b", "output": ["y", "z"]}],
        ...     "scores": [0.1, -0.2], "flagged": [1], "config": {"utility": "metric"},
        ... })
        >>> doc.pool_ids, doc.demos[1].target, readable_scale(doc).fmt(1)
        ([4, 2], 'y', '−20.0 pts')
    """

    method: str
    task: str
    model: str
    instruction: str | None
    pool_ids: list[int]
    demos: list[Example]
    scores: np.ndarray
    suspect: np.ndarray | None
    errors: np.ndarray | None
    flagged: list[int]
    n_queries: int
    cost: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_LABELS))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AttributionDoc:
        """Read :meth:`Attribution.as_dict`'s form (``attribution.json``).

        Raises:
            KeyError, TypeError, ValueError: ``d`` is not such a dictionary.
        """
        scores = _arr(d["scores"])
        demos = [Example.from_dict(x) for x in d["demos"]]
        if scores is None or len(scores) != len(demos):
            raise ValueError("'scores' must hold one value per demonstration")
        prompt = d.get("prompt") or {}
        return cls(
            method=str(d["method"]),
            task=str(d.get("task", "")),
            model=str(d.get("model", "")),
            instruction=prompt.get("instruction"),
            pool_ids=[int(i) for i in prompt.get("demos", [])],
            demos=demos,
            scores=scores,
            suspect=_arr(d.get("suspect")),
            errors=_arr(d.get("errors")),
            flagged=[int(j) for j in d.get("flagged", [])],
            n_queries=len(d.get("query_ids", [])),
            cost=dict(d.get("cost") or {}),
            config=dict(d.get("config") or {}),
            extra=dict(d.get("extra") or {}),
            labels={**DEFAULT_LABELS, **dict(d.get("labels") or {})},
        )


#: What the functions here render: an attribution, its JSON form, or that form read.
Source = AttributionDoc | Mapping[str, Any] | _SupportsAsDict


def as_doc(attr: Source) -> AttributionDoc:
    """An attribution, its JSON form or an :class:`AttributionDoc`, as the latter."""
    if isinstance(attr, AttributionDoc):
        return attr
    if isinstance(attr, Mapping):
        return AttributionDoc.from_dict(attr)
    return AttributionDoc.from_dict(attr.as_dict())


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


def readable_scale(attr: Source) -> Scale:
    """Put ``attr.scores`` on a readable scale (the method's ``labels`` say which).

    * a change of the prompt's utility (leave-one-out, Shapley) on the task's metric:
      change of the prompt's mean score, in percentage points (the score is a fraction:
      0.05 is 5 points);
    * on the gold label's log-probability: the change as a percentage of that
      probability, ``100 (exp(score) - 1)`` (a geometric mean over the queries);
    * an influence, which has no unit (DETAIL's test influence, ``scale="share"``): each
      demonstration's share of the total absolute influence, in percent (the shares'
      magnitudes sum to 100).
    """
    attr = as_doc(attr)
    scores = attr.scores
    errors = attr.errors
    q = attr.n_queries
    on = f"on the {q} queries" if q else "on the queries"
    utility = attr.config.get("utility")
    verb = attr.labels["measure"]
    if attr.labels["scale"] == "share":
        total = float(np.abs(scores).sum())
        values = scores / total * 100 if total > 0 else np.zeros_like(scores)
        return Scale(
            values,
            None,
            "share of the influence, %",
            " %",
            0,
            f"{verb[:1].upper()}{verb[1:]} {on}, as a share of the total over the "
            f"{len(scores)} demonstrations (positive: it pulls the model toward the right "
            "answers).",
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


def _self_influence(attr: AttributionDoc) -> np.ndarray | None:
    """DETAIL's self influence in multiples of its median, or ``None`` without one."""
    raw = attr.extra.get("self_influence")
    if raw is None or len(raw) != len(attr.scores):
        return None
    values = np.asarray(raw, dtype=float)
    med = float(np.median(values))
    return values / med if med > 0 else values


def _suspect_is_self_influence(attr: AttributionDoc) -> bool:
    return attr.suspect is not None and attr.config.get("rank_by") == "self"


def _other_suspect(attr: AttributionDoc) -> np.ndarray | None:
    """A suspect score that repeats neither the scores nor the self influence, if any."""
    if attr.suspect is None or _suspect_is_self_influence(attr):
        return None
    if np.allclose(attr.suspect, -attr.scores):
        return None  # "suspect = -score": the same column with its sign flipped
    return attr.suspect


def verdicts(attr: Source, scale: Scale | None = None) -> list[str]:
    """One word or two per demonstration: helps, hurts, within noise, looks mislabeled."""
    attr = as_doc(attr)
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


def _which(attr: AttributionDoc, positions: list[int]) -> str:
    names = [f"#{j + 1} (pool {attr.pool_ids[j]})" for j in positions]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def advice(attr: Source, scale: Scale | None = None) -> str:
    """One sentence saying what to do about the flagged demonstrations (plain text)."""
    attr = as_doc(attr)
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


def plot_attribution(attr: Source, ax: Any = None) -> Any:
    """One horizontal bar per demonstration (top = first in the prompt), flagged in red.

    Bars show :func:`readable_scale` (with error bars where the method has them); for
    DETAIL a second panel shows the self influence (the paper's "likely mislabeled"
    score) in multiples of its median.

    Returns:
        The matplotlib figure.
    """
    attr = as_doc(attr)
    pyplot = plt()
    scale = readable_scale(attr)
    n = len(scale.values)
    flagged = set(attr.flagged)
    labels = [f"#{j + 1} (pool {pid})" for j, pid in enumerate(attr.pool_ids)]
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


def _png(attr: Source) -> bytes:
    return figure_png(plot_attribution(attr))


def cost_line(attr: Source) -> str:
    """What computing the attribution cost, as one line."""
    c = as_doc(attr).cost

    def n(key: str) -> Any:
        return c.get(key, 0)

    return (
        f"{n('evaluations')} evaluations, {n('llm_calls')} LLM calls, {n('prompt_tokens')} "
        f"prompt tokens, {n('cache_hits')} cache hits, {float(n('seconds')):.1f} s"
    )


def _settings(attr: AttributionDoc) -> list[tuple[str, str]]:
    keep = [(k, v) for k, v in attr.config.items() if k != "template"]
    keep += [(f"extra.{k}", v) for k, v in attr.extra.items()]
    return [(k, json.dumps(v, ensure_ascii=False)) for k, v in keep]


def _columns(attr: AttributionDoc, scale: Scale) -> tuple[list[str], list[list[tuple[str, bool]]]]:
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
    for j, (pid, ex) in enumerate(zip(attr.pool_ids, attr.demos)):
        row = [(str(j + 1), True), (str(pid), True), (scale.fmt(j), True)]
        if self_infl is not None:
            row.append((f"{float(self_infl[j]):.1f}", True))
        if other is not None:
            row.append((f"{float(other[j]):.3g}", True))
        row += [(words[j], False), (ex.input, False), (ex.target, False)]
        rows.append(row)
    return head, rows


def html_section(attr: Source, png: bytes) -> str:
    """The attribution as an HTML fragment: advice, chart, table, folded parameters."""
    attr = as_doc(attr)
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


def html_report(attr: Source, png: bytes) -> str:
    """A self-contained HTML page: advice, the inlined bar chart, the demonstrations."""
    attr = as_doc(attr)
    title = f"Attribution: {attr.method} on {attr.task}"
    instr = f"<p><b>instruction:</b> {h(attr.instruction)}</p>" if attr.instruction else ""
    body = f"""<h1>{h(title)}</h1>
<p>model {h(attr.model)} &middot; {len(attr.pool_ids)} demonstrations &middot;
{attr.n_queries} queries</p>
{instr}
{html_section(attr, png)}"""
    return page(title, body)


def markdown_section(attr: Source, image: str | None = None) -> list[str]:
    """The attribution as Markdown lines (``image``: a relative path to the chart PNG)."""
    attr = as_doc(attr)
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


def markdown_report(attr: Source) -> str:
    """The attribution as Markdown: advice, one row per demonstration, folded parameters."""
    attr = as_doc(attr)
    lines = [
        f"# Attribution: {md(attr.method, None)} on {md(attr.task, None)}",
        "",
        f"model {md(attr.model, None)} · {len(attr.pool_ids)} demonstrations · "
        f"{attr.n_queries} queries",
        "",
    ]
    if attr.instruction:
        lines += [f"instruction: {md(attr.instruction, None)}", ""]
    return "\n".join(lines + markdown_section(attr)) + "\n"


def render_attribution(attr: Mapping[str, Any] | _SupportsAsDict) -> dict[str, str]:
    """The three files of an attribution, by kind (``json``, ``md``, ``html``), as text.

    Args:
        attr: An attribution or its JSON form (a loaded ``attribution.json``); both render
            the same files.
    """
    data = dict(attr) if isinstance(attr, Mapping) else attr.as_dict()
    doc = AttributionDoc.from_dict(data)
    return {
        "json": json_text(data),
        "md": markdown_report(doc),
        "html": html_report(doc, _png(doc)),
    }


def write_attribution(
    attr: Mapping[str, Any] | _SupportsAsDict, out_dir: str | os.PathLike[str]
) -> dict[str, Path]:
    """Write ``attribution.json``, ``attribution.md`` and ``attribution.html`` into ``out_dir``.

    All three are rendered first (:func:`render_attribution`) and then moved into place,
    so a failure leaves no half-written report; they get the file mode of the user's umask.

    Returns:
        Paths written, by kind (``json``, ``md``, ``html``).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputDataError(f"{out}: exists and is not a directory")
    contents = render_attribution(attr)
    paths = {kind: out / f"attribution.{kind}" for kind in contents}
    write_files({paths[kind]: text for kind, text in contents.items()})
    return paths
