"""Is race's final choice or its field of finalists the limit? Test scores of every finalist.

For each ``race`` cell of the search benchmark (``experiments/search.py``), every prompt
that entered its successive halving is scored on both test sets and on every labelled
query it can be scored on (the 20 validation queries and the pool items outside it, with
the labels the search saw), so that choice rules can be compared offline: the halving's
answer, the best of the finalists on all their labelled queries, on the validation
queries alone (what random search chooses by), on the pool alone, and the best on the
in-distribution test (the oracle). One JSON per cell under ``--out``; a rerun scores only
what is missing; ``--report-only`` prints the table, and a second one: how far above
best-of-n the prompts the benchmark has test-scored go on each task.

    python experiments/search_finalists.py --cells sentiment_v1:0,singular_to_plural_v1:1
    python experiments/search_finalists.py --report-only
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import search as S  # the benchmark's tasks, splits and cells

OUT = S.ROOT / "experiments" / "results" / "search-finalists"


def score_cell(spec: str, seed: int, ctx: dict[str, Any], out: Path) -> None:
    """Score every finalist of the ``race`` cell ``(spec, seed)``."""
    from iclopt.evaluation import Evaluator
    from iclopt.prompts import Prompt

    dst = out / f"{spec}__s{seed}.json"
    if dst.exists():
        return
    cell = json.loads((S.OUT / f"{spec}__race__s{seed}.json").read_text())
    task, indist = S.load(spec)
    ev = Evaluator(task, ctx["llm"], cache=ctx["cache"])
    demos_seen: list[list[int]] = []
    for e in cell["trace"]:
        if e["source"] == "halving" and e["demos"] not in demos_seen:
            demos_seen.append(e["demos"])
    rows = []
    for demos in demos_seen:
        p = Prompt(None, tuple(demos))
        labelled = list(task.val) + [x for i, x in enumerate(task.pool) if i not in set(demos)]
        per = ev.evaluate(p, labelled).per_example
        rows.append(
            {
                "demos": demos,
                "execute": ev.evaluate(p, task.test).score,
                "indist": ev.evaluate(p, indist).score,
                "n_val": len(task.val),
                "labelled": [[float(r["score"]), float(r["signal"])] for r in per],
            }
        )
    dst.write_text(
        json.dumps(
            {"chosen": cell["final"]["demos"], "chosen_indist": cell["indist"], "finalists": rows}
        )
    )
    print(
        f"{spec} seed {seed}: chosen {cell['indist']:.3f}, finalists "
        f"{[round(r['indist'], 3) for r in rows]}",
        flush=True,
    )


def report(out: Path) -> str:
    """The in-distribution test score of each choice rule, paired against the halving's."""
    rules: dict[str, list[float]] = {}
    cells = sorted(out.glob("*__s*.json"))
    for f in cells:
        d = json.loads(f.read_text())
        fin = d["finalists"]
        test = np.array([r["indist"] for r in fin])
        nv = fin[0]["n_val"]
        lab = [np.array(r["labelled"]) for r in fin]

        def best(values: list[float], test: np.ndarray = test) -> float:
            return float(test[int(np.argmax(values))])

        got = {
            "the halving's answer (race)": d["chosen_indist"],
            "best on all labelled queries (metric)": best([x[:, 0].mean() for x in lab]),
            "best on all labelled queries (signal)": best([x[:, 1].mean() for x in lab]),
            "best on the 20 validation queries (metric)": best([x[:nv, 0].mean() for x in lab]),
            "best on the pool queries (metric)": best([x[nv:, 0].mean() for x in lab]),
            "mean finalist": float(test.mean()),
            "best on the test itself (oracle)": float(test.max()),
        }
        for k, v in got.items():
            rules.setdefault(k, []).append(v)
    base = np.array(rules["the halving's answer (race)"])
    lines = [
        f"{len(cells)} race cells; in-distribution test score of the finalist each rule picks, "
        "and its paired difference against the halving's answer (points, 95 % t-interval):",
        "",
        "| rule | in-dist. | diff [95% CI] |",
        "|---|---|---|",
    ]
    for k, v in rules.items():
        m, lo, hi = S._ci([100 * (a - b) for a, b in zip(v, base)])
        lines.append(f"| {k} | {np.mean(v):.3f} | {m:+.1f} [{lo:+.1f}, {hi:+.1f}] |")
    return "\n".join(lines) + "\n"


def headroom(out: Path) -> str:
    """How far above best-of-n the prompts the benchmark test-scored go, per task.

    Every distinct prompt with an in-distribution test score: the answers of every method
    and variant (current and superseded cells) and every finalist scored here. Their 90th
    percentile and maximum are a reference, not a bound (a search may find better prompts
    than any seen), and the maximum is inflated by the test's own noise (about 3 points of
    standard error on 200 queries).
    """
    lines = [
        "In-distribution test score per task: best-of-n and race (mean of 5 seeds), and the "
        "distinct prompts with a test score (every method's answer, every finalist):",
        "",
        "| task | best-of-n | race | prompts | 90th percentile | max | best-of-n + 3 points |",
        "|---|---|---|---|---|---|---|",
    ]
    dirs = [S.OUT, S.ROOT / "experiments" / "results" / "search-superseded"]
    for spec in S.TASKS:
        seen: dict[tuple[int, ...], float] = {}
        by_method: dict[str, list[float]] = {}
        for f in [p for d in dirs for p in sorted(d.glob(f"{spec}__*__s*.json"))]:
            cell = json.loads(f.read_text())
            if cell.get("indist") is None or not isinstance(cell.get("final"), dict):
                continue
            seen[tuple(cell["final"]["demos"])] = float(cell["indist"])
            if f.parent == S.OUT:
                by_method.setdefault(cell["method"], []).append(float(cell["indist"]))
        for f in sorted(out.glob(f"{spec}__s*.json")):
            for fin in json.loads(f.read_text())["finalists"]:
                seen[tuple(fin["demos"])] = float(fin["indist"])
        if not seen or "best-of-n" not in by_method:
            continue
        v = np.array(list(seen.values()))
        bon, race = np.mean(by_method["best-of-n"]), np.mean(by_method.get("race", [np.nan]))
        star = "*" if spec in S.DEV_TASKS else ""
        lines.append(
            f"| {spec}{star} | {bon:.3f} | {race:.3f} | {len(v)} | {np.quantile(v, 0.9):.3f} "
            f"| {v.max():.3f} | {bon + 0.03:.3f} |"
        )
    return "\n".join(lines) + "\n"


def bootstrap_filter(out: Path) -> str:
    """Would DSPy's bootstrap filter have picked better finalists?

    BootstrapFewShot keeps a demonstration only where the model answers it right as a
    query. Here a pool item's *ease* is its mean metric as a query over a cell's
    finalists (the ones not showing it); a finalist's ease is the mean ease of its
    demonstrations. The line reports how that correlates with the finalist's
    in-distribution test score within each cell.
    """
    corr: dict[str, float] = {}
    for f in sorted(out.glob("*__s*.json")):
        fin = json.loads(f.read_text())["finalists"]
        nv, k = fin[0]["n_val"], len(fin[0]["demos"])
        n_pool = len(fin[0]["labelled"]) - nv + k
        seen = np.full((len(fin), n_pool), np.nan)
        for a, r in enumerate(fin):
            cols = [i for i in range(n_pool) if i not in set(r["demos"])]
            seen[a, cols] = np.array(r["labelled"])[nv:, 0]
        ease = np.nanmean(seen, axis=0)
        demo_ease = [float(np.nanmean(ease[r["demos"]])) for r in fin]
        corr[f.stem] = float(np.corrcoef(demo_ease, [r["indist"] for r in fin])[0, 1])
    if not corr:
        return ""
    v = np.array(list(corr.values()))
    lo, hi = min(corr, key=corr.__getitem__), max(corr, key=corr.__getitem__)
    return (
        f"Bootstrap filter: within-cell correlation of the finalists' demonstration ease with "
        f"their in-distribution test score, mean {v.mean():+.2f} over {len(v)} cells "
        f"(positive in {int((v > 0).sum())}; lowest {corr[lo]:+.2f} {lo}, "
        f"highest {corr[hi]:+.2f} {hi})\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--cells", default="", help="TASK:SEED,... (race cells to score)")
    ap.add_argument("--cache", type=Path, default=S.ROOT / ".iclopt-cache" / "search.sqlite")
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report_only and args.cells:
        import torch

        from iclopt.evaluation import ResultCache
        from iclopt.llms import smollm2

        torch.set_num_threads(1)
        ctx = {"llm": smollm2(num_threads=1).load(), "cache": ResultCache(args.cache)}
        for item in args.cells.split(","):
            spec, _, seed = item.rpartition(":")
            score_cell(spec, int(seed), ctx, args.out)
    print(report(args.out))
    print(headroom(args.out))
    print(bootstrap_filter(args.out))


if __name__ == "__main__":
    main()
