"""Are demonstration effects learnable, and would learning them better choose better? Offline.

``race`` models a prompt's score as a sum of its demonstrations' effects (an additive
model) and lets that model pick prompts; its Thompson draws were hardly better than random
prompts (docs/benchmarks.md). Either the effects are not there, or one run does not see
enough prompts to learn them. This script tells the two apart from committed cells only
(no LLM call), with a ridge regression on demonstration indicators (scikit-learn), the
fixed-effects core of the additive model:

1. **Learning curve.** Best-of-n's random prompts of the 10 seeds of a task (600, all
   scored on the same 20 validation queries): fitted on ``N`` of them, how well does the
   fit predict the validation signal of 100 others (Pearson correlation, mean over 20
   random splits)? ``N = 54`` is about what one run of ``race`` or best-of-n sees.
2. **Does it carry over to the test?** For every prompt with an in-distribution test score
   (every method's answer and every finalist, current and superseded cells) the fit on
   the random prompts of the *other* seeds' runs (540; the prompt's own run left out, so
   its own validation score does not leak in) predicts a score; its correlation with the
   test score, and, over ``race``'s finalists (``experiments/search_finalists.py``), the
   test score of the finalist it ranks first against the halving's answer.
3. **What would a well-learned model build?** (``--construct``, the only part that calls
   the LLM.) The five demonstrations with the largest effects in the fit on all 600
   random prompts of a task (about ten runs' worth of calls), the largest last, scored
   on both test sets: what a search that had learned the additive effects as well as ten
   runs can would answer, against ``race``'s and best-of-n's answers. One JSON per task
   under ``experiments/results/search-additive/``; a rerun scores only what is missing.

    python experiments/search_additive.py
    python experiments/search_additive.py --construct
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import Ridge

sys.path.insert(0, str(Path(__file__).resolve().parent))

import search as S  # the benchmark's tasks and cells

OUT = S.ROOT / "experiments" / "results" / "search-additive"
SIZES = (30, 54, 120, 240, 480)
ALPHA = 10.0  # ridge penalty; the correlations are flat over 1-30


def _indicators(prompts: list[list[int]], n_pool: int) -> np.ndarray:
    x = np.zeros((len(prompts), n_pool))
    for i, demos in enumerate(prompts):
        x[i, demos] = 1.0
    return x


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")


def _cells(pattern: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(S.ROOT.glob(pattern))]


def _t_interval(d: np.ndarray) -> str:
    mean, lo, hi = S._ci(list(d))
    if np.isnan(lo):
        return f"{100 * mean:+.1f}"
    return f"{100 * mean:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def construct(spec: str, x: np.ndarray, y: np.ndarray, ctx: dict, k: int = 5) -> dict:
    """Score the prompt of the ``k`` largest fitted effects (largest last) on both tests."""
    from iclopt.evaluation import Evaluator
    from iclopt.prompts import Prompt

    dst = OUT / f"{spec}.json"
    if dst.exists():
        return json.loads(dst.read_text())
    coef = Ridge(alpha=ALPHA).fit(x, y).coef_
    demos = [int(i) for i in np.argsort(coef)[-k:]]  # ascending: the largest effect last
    task, indist = S.load(spec)
    ev = Evaluator(task, ctx["llm"], cache=ctx["cache"])
    p = Prompt(None, tuple(demos))
    row = {
        "demos": demos,
        "effects": [round(float(coef[i]), 4) for i in demos],
        "val": ev.evaluate(p, task.val).score,
        "execute": ev.evaluate(p, task.test).score,
        "indist": ev.evaluate(p, indist).score,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(row))
    return row


def _mean_indist(spec: str, method: str) -> float:
    return float(
        np.mean(
            [c["indist"] for c in _cells(f"experiments/results/search/{spec}__{method}__s*.json")]
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--construct", action="store_true", help="score the constructed prompts")
    ap.add_argument("--cache", type=Path, default=S.ROOT / ".iclopt-cache" / "search.sqlite")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    star = {spec: "*" if spec in S.DEV_TASKS else "" for spec in S.TASKS}
    print("Validation signal of held-out random prompts predicted by a ridge on demonstration")
    print("indicators fitted on N random prompts (Pearson r, mean of 20 splits):")
    print("| task | " + " | ".join(f"N = {n}" for n in SIZES) + " |")
    print("|---|" + "---|" * len(SIZES))
    runs: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = {}
    pools = {spec: len(S.load(spec)[0].pool) for spec in S.TASKS}
    for spec in S.TASKS:
        n_pool = pools[spec]
        cells = _cells(f"experiments/results/search/{spec}__best-of-n__s*.json")
        runs[spec] = {
            c["seed"]: (
                _indicators([e["demos"] for e in c["trace"]], n_pool),
                np.array([e["signal"] for e in c["trace"]]),
            )
            for c in cells
        }
        x = np.vstack([v[0] for v in runs[spec].values()])
        y = np.concatenate([v[1] for v in runs[spec].values()])
        row = []
        for n in SIZES:
            rs = []
            for _ in range(20):
                idx = rng.permutation(len(y))
                fit = Ridge(alpha=ALPHA).fit(x[idx[:n]], y[idx[:n]])
                te = idx[n : n + 100]
                rs.append(_corr(fit.predict(x[te]), y[te]))
            row.append(f"{np.mean(rs):+.2f}")
        print(f"| {spec}{star[spec]} | " + " | ".join(row) + f" |  ({len(y)} prompts)")

    print()
    print("Prompts with an in-distribution test score: the fit on the other runs' random")
    print("prompts against that score; over race's finalists, the finalist it ranks first")
    print("against the halving's answer (in-distribution, points):")
    print("| task | prompts | r with test score | finalist cells |")
    print("|---|---|---|---|")
    diffs = []
    for spec in S.TASKS:
        n_pool = pools[spec]

        def fit_without(seed: int, spec: str = spec) -> Ridge:
            rest = [v for s, v in runs[spec].items() if s != seed]
            return Ridge(alpha=ALPHA).fit(
                np.vstack([v[0] for v in rest]), np.concatenate([v[1] for v in rest])
            )

        fits = {s: fit_without(s) for s in runs[spec]}
        pred, test = [], []
        seen: set[tuple[tuple[int, ...], int]] = set()
        for c in _cells(f"experiments/results/search*/{spec}__*.json"):
            if not isinstance(c.get("final"), dict) or c.get("indist") is None:
                continue
            key = (tuple(c["final"]["demos"]), int(c["seed"]))
            if key in seen or c["seed"] not in fits:
                continue
            seen.add(key)
            pred.append(fits[c["seed"]].predict(_indicators([c["final"]["demos"]], n_pool))[0])
            test.append(float(c["indist"]))
        pred_a, test_a = np.array(pred), np.array(test)
        task_diffs = []
        for path in sorted(S.ROOT.glob(f"experiments/results/search-finalists/{spec}__s*.json")):
            c, seed = json.loads(path.read_text()), int(path.stem.rsplit("__s", 1)[1])
            if seed not in fits:
                continue
            fin = c["finalists"]
            p = fits[seed].predict(_indicators([f["demos"] for f in fin], n_pool))
            task_diffs.append(fin[int(np.argmax(p))]["indist"] - c["chosen_indist"])
        diffs += task_diffs
        print(
            f"| {spec}{star[spec]} | {len(test_a)} | {_corr(pred_a, test_a):+.2f} | "
            f"{len(task_diffs)}: "
            f"{_t_interval(np.array(task_diffs)) if task_diffs else '-'} |"
        )
    print(f"\nAll finalist cells ({len(diffs)}): {_t_interval(np.array(diffs))} points")

    if args.construct:
        import torch

        from iclopt.evaluation import ResultCache
        from iclopt.llms import smollm2

        torch.set_num_threads(1)
        ctx = {"llm": smollm2(num_threads=1).load(), "cache": ResultCache(args.cache)}
        for spec in S.TASKS:
            x = np.vstack([v[0] for v in runs[spec].values()])
            y = np.concatenate([v[1] for v in runs[spec].values()])
            construct(spec, x, y, ctx)
    if OUT.exists():
        print()
        print("The prompt of the 5 largest effects fitted on 600 random prompts")
        print(
            "| task | constructed (in-dist. / execute) "
            "| race in-dist. (10 seeds) | best-of-n in-dist. (10) |"
        )
        print("|---|---|---|---|")
        for spec in S.TASKS:
            path = OUT / f"{spec}.json"
            if path.exists():
                row = json.loads(path.read_text())
                print(
                    f"| {spec}{star[spec]} | {row['indist']:.3f} / {row['execute']:.3f} | "
                    f"{_mean_indist(spec, 'race'):.3f} | {_mean_indist(spec, 'best-of-n'):.3f} |"
                )


if __name__ == "__main__":
    main()
