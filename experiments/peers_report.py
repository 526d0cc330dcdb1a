"""The report of ``experiments/peers.py``: docs/results.md's generated section, the CSV, the plot.

Read from the committed cells (one JSON per (task, method, seed)); no LLM call. Only
(task, seed) pairs on which every method has its cell enter the tables, so every mean,
rank and paired difference compares the methods on the same pairs.

    python experiments/peers.py --report-only        # what calls this
"""

from __future__ import annotations

import json
import logging
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "results" / "peers"
TEST_SETS = ("execute", "heldout")
BEGIN, END = "<!-- peers:begin (written by experiments/peers.py) -->", "<!-- peers:end -->"

log = logging.getLogger("peers")


def _ci95(d: Sequence[float]) -> tuple[float, float, float]:
    from scipy import stats

    d = np.asarray(d, dtype=float)
    m = float(d.mean())
    if len(d) < 2:
        return m, float("nan"), float("nan")
    h = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
    return m, m - h, m + h


def complete_pairs(rows: list[dict], methods: Sequence[str]) -> set[tuple[str, int]]:
    """(task, seed) pairs on which every one of ``methods`` has a cell (failed ones count).

    Example:
        >>> rows = [{"task": "t", "seed": 0, "method": m} for m in ("a", "b")]
        >>> sorted(complete_pairs(rows + [{"task": "t", "seed": 1, "method": "a"}], ["a", "b"]))
        [('t', 0)]
    """
    have: dict[tuple[str, int], set[str]] = {}
    for r in rows:
        have.setdefault((r["task"], r["seed"]), set()).add(r["method"])
    return {pair for pair, got in have.items() if set(methods) <= got}


def report(args: Any) -> str:
    """The generated section of docs/results.md, from the (task, seed) pairs that are complete.

    A pair enters once every method of ``--methods`` has its cell there, so that every
    mean, rank and paired difference compares the methods on the same pairs.
    """
    cells = [json.loads(p.read_text()) for p in sorted(args.out.glob("*__*__s*.json"))]
    methods = [m for m in args.methods if any(r["method"] == m for r in cells)]
    pairs = complete_pairs(cells, methods)
    all_pairs = {(r["task"], r["seed"]) for r in cells}
    rows = [r for r in cells if r["method"] in methods and (r["task"], r["seed"]) in pairs]
    ok = [r for r in rows if "error" not in r]
    failed = [r for r in rows if "error" in r]
    tasks = [t for t in dict.fromkeys(r["task"] for r in cells) if any(t == p[0] for p in pairs)]
    by: dict[tuple[str, str], list[dict]] = {}
    for r in ok:
        by.setdefault((r["task"], r["method"]), []).append(r)
    default = next((r["resolved"] for r in ok if r["method"] == "iclopt:default"), None)
    lines = [BEGIN, "", "## iclopt vs DSPy on SmolLM2-135M-Instruct", ""]
    seeds = sorted({seed for _, seed in pairs})
    lines += [
        f"{len(pairs)} (task, seed) pairs complete of {len(all_pairs)} started "
        f"({len(methods)} methods each; seeds {', '.join(map(str, seeds)) or 'none'}); "
        f"{len(ok)} runs ({len(failed)} failed) over {len(tasks)} task(s): "
        + ", ".join(tasks)
        + f". iclopt's default method at run time: `{default}`. Budget: "
        + ", ".join(sorted({f"{r['budget_calls']} LLM calls" for r in rows}))
        + f" on labelled data; k = {', '.join(sorted({str(r['k']) for r in rows}))}; "
        "test answers by greedy generation, scored with iclopt's metric for the task.",
        "",
        "LLM calls and prompt tokens: every call a method made on pool/validation data while "
        "choosing its prompt (cached answers included; DSPy's proposal and reflection calls "
        "included, shown apart as *meta*). Wall time: choosing plus scoring both test sets, "
        "on a shared result cache (a method that asks what an earlier one asked pays less "
        "time, never fewer counted calls).",
        "",
    ]
    for ts in TEST_SETS:
        lines += [f"### Test score ({ts}), mean ± std over seeds", ""]
        lines += [
            "| method | " + " | ".join(tasks) + " | mean | avg rank |",
            "|---|" + "---|" * (len(tasks) + 2),
        ]
        ranks = _ranks(by, tasks, methods, ts)
        for m in methods:
            cells, means = [], []
            for t in tasks:
                v = [r["scores"][ts] for r in by.get((t, m), [])]
                if v:
                    cells.append(f"{np.mean(v):.3f} ± {np.std(v):.3f} (n={len(v)})")
                    means.append(float(np.mean(v)))
                else:
                    cells.append("—")
            mean = f"{np.mean(means):.3f}" if len(means) == len(tasks) else "incomplete"
            rank = f"{ranks[m]:.2f}" if m in ranks else "—"
            lines.append(f"| {m} | " + " | ".join(cells) + f" | {mean} | {rank} |")
        lines.append("")
    lines += ["### Cost per run (mean over runs)", ""]
    lines += [
        "| method | LLM calls | of which meta | prompt tokens | test calls / query "
        "| empty answers (execute) | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in methods:
        rs = [r for r in ok if r["method"] == m]
        if not rs:
            continue
        tcq = [r.get("test_calls_per_query", {}).get("execute", 1.0) for r in rs]
        empty = [r.get("empty_answers", {}).get("execute", 0) for r in rs]
        lines.append(
            f"| {m} | {np.mean([r['calls'] for r in rs]):.0f} | "
            f"{np.mean([r['meta_calls'] for r in rs]):.0f} | "
            f"{np.mean([r['prompt_tokens'] for r in rs]):.0f} | {np.mean(tcq):.2f} | "
            f"{np.mean(empty):.1f} | {np.mean([r['seconds'] for r in rs]):.0f} |"
        )
    lines.append("")
    others = [m for m in methods if m != "iclopt:default"]
    if any(r["method"] == "iclopt:default" for r in ok) and others:
        lines += [
            "### iclopt's default minus each other method (paired by task and seed)",
            "",
            "Points of test score (x100), mean over the pairs with a 95 % t-interval; a "
            "positive number favours iclopt's default.",
            "",
        ]
        lines += [
            "| method | " + " | ".join(f"{ts}: diff [95% CI] (pairs)" for ts in TEST_SETS) + " |",
            "|---|" + "---|" * len(TEST_SETS),
        ]
        for m in others:
            cells = []
            for ts in TEST_SETS:
                d = 100 * np.asarray(_paired(ok, "iclopt:default", m, ts))
                if len(d):
                    mean, lo, hi = _ci95(d)
                    ci = f"[{lo:+.1f}, {hi:+.1f}]" if len(d) > 1 else "[one pair: no interval]"
                    cells.append(f"{mean:+.1f} {ci} ({len(d)})")
                else:
                    cells.append("—")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    if failed:
        lines += ["### Failed runs", ""]
        for r in failed:
            first = r["error"].strip().splitlines()[0][:200]
            lines.append(
                f"- {r['task']} {r['method']} seed {r['seed']}, after {r.get('calls', '?')} "
                f"calls ({r.get('meta_calls', '?')} meta): `{first}`"
            )
        lines.append("")
    try:
        plot(ok, methods, args.doc.parent / "peers.png")
        lines += ["![test score against LLM calls](peers.png)", ""]
    except ImportError:
        log.warning("matplotlib missing: no plot")
    commands = sorted({r["command"] for r in rows})
    hours = sum(float(r.get("seconds") or 0.0) for r in rows) / 3600
    machines = {json.dumps(r["machine"], sort_keys=True) for r in rows}
    lines += [
        "Reproduce from a fresh clone with one command,",
        "",
        "    make peers",
        "",
        "(it installs the dev extras, DSPy's `bench` extra included, then runs",
        "`python experiments/peers.py`): it runs every missing cell of the default suite",
        f"(8 tasks, seeds 0-2) and rewrites this section ({hours:.0f} hours of recorded run time",
        "here, on a cache shared with the search benchmark; committed cells are not run again).",
        "The cells above were run across sessions with these commands (each run records its",
        "own; `--report-only` rewrites this section):",
        "",
    ]
    again = "python experiments/peers.py --report-only"
    if args.out.resolve() != OUT.resolve():
        again += f" --out {shlex.quote(_relative(args.out))}"
    lines += ["```", *commands, again, "```", ""]
    for mch in sorted(machines):
        d = json.loads(mch)
        v = ", ".join(f"{k} {x}" for k, x in d["versions"].items())
        lines.append(
            f"Machine: {d['cpu']}, {d['cores']} cores, Python {d['python']}, {v}; "
            f"torch on {rows[0]['torch_threads']} thread(s), shared with other work."
        )
    lines += ["", END]
    return "\n".join(lines) + "\n"


def write_csv(args: Any) -> None:
    """One line per run: the numbers of the report, small enough to commit."""
    import csv

    rows = [json.loads(p.read_text()) for p in sorted(args.out.glob("*__*__s*.json"))]
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    with args.csv.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "task",
                "method",
                "resolved",
                "seed",
                "k",
                "budget_calls",
                "execute",
                "heldout",
                "calls",
                "meta_calls",
                "prompt_tokens",
                "test_calls_per_query",
                "empty_execute",
                "seconds",
                "error",
            ]
        )
        for r in rows:
            sc = r.get("scores", {})
            w.writerow(
                [
                    r["task"],
                    r["method"],
                    r.get("resolved", ""),
                    r["seed"],
                    r["k"],
                    r["budget_calls"],
                    sc.get("execute", ""),
                    sc.get("heldout", ""),
                    r.get("calls", ""),
                    r.get("meta_calls", ""),
                    r.get("prompt_tokens", ""),
                    r.get("test_calls_per_query", {}).get("execute", 1.0 if sc else ""),
                    r.get("empty_answers", {}).get("execute", ""),
                    round(r.get("seconds", 0.0), 1),
                    (r.get("error") or "").strip().splitlines()[0][:120] if r.get("error") else "",
                ]
            )


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _ranks(by: dict, tasks: list[str], methods: list[str], ts: str) -> dict[str, float]:
    """Average over tasks of each method's rank (1 = best mean score; ties share).

    Only methods with results on every task are ranked (a failed cell drops its method).
    """
    from scipy.stats import rankdata

    ranked = [m for m in methods if all(by.get((t, m)) for t in tasks)]
    if not ranked:
        return {}
    ranks = []
    for t in tasks:
        means = [-np.mean([r["scores"][ts] for r in by[(t, m)]]) for m in ranked]
        ranks.append(rankdata(means))
    avg = np.mean(ranks, axis=0)
    return dict(zip(ranked, map(float, avg)))


def _paired(rows: list[dict], a: str, b: str, ts: str) -> list[float]:
    pa = {(r["task"], r["seed"]): r["scores"][ts] for r in rows if r["method"] == a}
    pb = {(r["task"], r["seed"]): r["scores"][ts] for r in rows if r["method"] == b}
    return [pa[key] - pb[key] for key in sorted(set(pa) & set(pb))]


def plot(rows: list[dict], methods: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(TEST_SETS), figsize=(6.5 * len(TEST_SETS), 4.8), squeeze=False)
    for ax, ts in zip(axes[0], TEST_SETS):
        for m in methods:
            rs = [r for r in rows if r["method"] == m]
            if not rs:
                continue
            x = np.mean([r["calls"] for r in rs])
            y = np.mean([r["scores"][ts] for r in rs])
            marker = "o" if m.startswith("iclopt") else ("s" if m.endswith(":chat") else "^")
            ax.scatter([x + 1], [y], marker=marker, s=40)
            ax.annotate(
                m.removeprefix("dspy:").removeprefix("iclopt:"),
                (x + 1, y),
                fontsize=7,
                xytext=(3, 2),
                textcoords="offset points",
            )
        ax.set_xscale("log")
        ax.set_xlabel("LLM calls on labelled data + 1 (log)")
        ax.set_ylabel(f"mean test score ({ts})")
        ax.set_title(f"{ts}: o iclopt, s DSPy chat, ^ DSPy completion", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_doc(text: str, doc: Path) -> None:
    """Replace the generated section of ``doc`` (or append it), keeping everything else."""
    old = doc.read_text() if doc.exists() else "# Results\n"
    if BEGIN in old and END in old:
        head, _, tail = old.partition(BEGIN)
        _, _, tail = tail.partition(END)
        new = head + text.rstrip("\n") + tail
    else:
        new = old.rstrip("\n") + "\n\n" + text
    doc.write_text(new)
