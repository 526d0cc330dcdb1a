"""Would a graded per-query signal rank generation prompts better than 0/1 accuracy?

On generation tasks ``race`` learns from the task metric per query, 0 or 1 under exact
match, so a prompt that gets close ("was written by the man" for "was written by the
men") counts the same as one that answers nonsense. A graded signal computed from the
same greedy answer costs no extra call. This script measures, before any of it is built,
whether such a signal picks better prompts: random 5-shot prompts per task (the search
benchmark's pools, validation queries and in-distribution test, ``experiments/search.py``),
each scored on the validation queries (keeping the predictions) and on the
in-distribution test; then, offline, the best of 15 of them chosen by each signal's
validation mean, averaged over 500 draws of 15 (the search issue's protocol), and the
rank correlation of each signal's validation mean with the test score.

Signals, each from the normalized greedy answer and the gold answers (best over answers):
``metric`` (the task metric), ``chars`` (difflib's similarity ratio of the two strings),
``prefix`` (the share of the gold answer that the answer gets right from its start,
:func:`iclopt.scoring.prefix.prefix_share`, the signal of the ``prefix`` scorer), ``tokens`` (token
F1), and blends of the metric with each (the metric plus half the graded value, so an
exact answer still outranks every near one).

    python experiments/search_signals.py --prompts 24            # scores what is missing
    python experiments/search_signals.py --report-only
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import search as S  # the benchmark's tasks, splits and cells

OUT = S.ROOT / "experiments" / "results" / "search-signals"
TASKS = [
    "singular_to_plural_v1",
    "active_to_passive_v1",
    "first_word_letter_v1+flip30",
    "first_word_letter_v1",
    "larger_animal_v1",
]
DRAWS = 500
PICK_FROM = 15


def score_task(spec: str, n_prompts: int, ctx: dict[str, Any], out: Path) -> None:
    """Score ``n_prompts`` random prompts of ``spec``; a rerun adds only missing ones."""
    from iclopt.evaluation import Evaluator
    from iclopt.prompts import Prompt

    dst = out / f"{spec}.json"
    have = json.loads(dst.read_text())["prompts"] if dst.exists() else []
    task, indist = S.load(spec)
    ev = Evaluator(task, ctx["llm"], cache=ctx["cache"])
    rng = np.random.default_rng(20261202)
    draws = [
        tuple(int(i) for i in rng.choice(len(task.pool), 5, replace=False))
        for _ in range(n_prompts)
    ]
    for demos in draws[len(have) :]:
        p = Prompt(None, demos)
        val = ev.evaluate(p, task.val).per_example
        have.append(
            {
                "demos": list(demos),
                "val": [
                    {"prediction": r["prediction"], "answers": list(q.answers)}
                    for r, q in zip(val, task.val)
                ],
                "val_metric": [float(r["score"]) for r in val],
                "indist": ev.evaluate(p, indist).score,
            }
        )
        tmp = dst.with_suffix(".tmp")
        tmp.write_text(json.dumps({"task": spec, "prompts": have}))
        tmp.replace(dst)
        print(
            f"{spec}: prompt {len(have)} val {np.mean(have[-1]['val_metric']):.2f} "
            f"in-dist {have[-1]['indist']:.3f}",
            flush=True,
        )


def _graded(pred: str, answers: list[str]) -> dict[str, float]:
    from iclopt.metrics import ii_normalize, ii_token_f1
    from iclopt.scoring.prefix import prefix_share

    p = ii_normalize(pred)
    chars = max(
        difflib.SequenceMatcher(None, p, g).ratio() if p or g else 1.0
        for g in (ii_normalize(a) for a in answers)
    )
    return {
        "chars": chars,
        "prefix": prefix_share(pred, answers),
        "tokens": float(ii_token_f1(pred, answers)),
    }


def signals(prompt: dict[str, Any]) -> dict[str, float]:
    """Each signal's mean over the validation queries of one scored prompt."""
    rows = [_graded(q["prediction"], q["answers"]) for q in prompt["val"]]
    metric = np.asarray(prompt["val_metric"])
    out = {"metric": float(metric.mean())}
    for name in ("chars", "prefix", "tokens"):
        v = np.asarray([r[name] for r in rows])
        out[name] = float(v.mean())
        out[f"metric+{name}/2"] = float((metric + 0.5 * v).mean())
    return out


def report(out: Path) -> str:
    """Best-of-15 by each signal (mean in-distribution test) and rank correlations."""
    from scipy.stats import spearmanr

    files = sorted(out.glob("*.json"))
    if not files:
        return "no scored prompts yet"
    names: list[str] = []
    lines = []
    table: dict[str, dict[str, tuple[float, float]]] = {}
    for f in files:
        d = json.loads(f.read_text())
        ps = d["prompts"]
        if len(ps) < PICK_FROM:
            continue
        sig = [signals(p) for p in ps]
        names = list(sig[0])
        test = np.asarray([p["indist"] for p in ps])
        rng = np.random.default_rng(0)
        row = {}
        for name in names:
            v = np.asarray([s[name] for s in sig])
            picks = []
            for _ in range(DRAWS):
                idx = rng.choice(len(ps), PICK_FROM, replace=False)
                # ties: the mean test score of the tied prompts (no order favoured)
                best = v[idx].max()
                picks.append(float(test[idx][v[idx] == best].mean()))
            rho = float(spearmanr(v, test).statistic) if np.ptp(v) > 0 else float("nan")
            row[name] = (float(np.mean(picks)), rho)
        picks = [
            float(test[rng.choice(len(ps), PICK_FROM, replace=False)].max()) for _ in range(DRAWS)
        ]
        row["random pick"] = (float(test.mean()), float("nan"))
        row["best possible"] = (float(np.mean(picks)), float("nan"))
        table[f"{d['task']} (n={len(ps)})"] = row
    cols = ["random pick", *names, "best possible"]
    lines.append(
        f"In-distribution test score of the best of {PICK_FROM} random prompts chosen by each "
        f"signal's mean on the validation queries ({DRAWS} draws); in brackets, the rank "
        "correlation of that mean with the test score over all the task's prompts:"
    )
    lines.append("")
    lines.append("| task | " + " | ".join(cols) + " |")
    lines.append("|---" * (len(cols) + 1) + "|")
    for task, row in table.items():
        cells = []
        for c in cols:
            m, rho = row[c]
            cells.append(f"{m:.3f}" if np.isnan(rho) else f"{m:.3f} ({rho:+.2f})")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    means = {c: np.mean([row[c][0] for row in table.values()]) for c in cols}
    lines.append("| mean | " + " | ".join(f"{means[c]:.3f}" for c in cols) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--prompts", type=int, default=24, help="random prompts per task")
    ap.add_argument("--cache", type=Path, default=S.ROOT / ".iclopt-cache" / "signals.sqlite")
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        import torch

        from iclopt.evaluation import ResultCache
        from iclopt.llms import smollm2

        torch.set_num_threads(1)
        ctx = {"llm": smollm2(num_threads=1).load(), "cache": ResultCache(args.cache)}
        for spec in args.tasks.split(","):
            score_task(spec, args.prompts, ctx, args.out)
    print(report(args.out))


if __name__ == "__main__":
    main()
