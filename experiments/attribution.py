"""Benchmark the attribution methods: noisy-demo detection, faithfulness, curation, reordering.

For each task and seed: a prompt of 20 random pool demonstrations (seeded) whose noisy
(mislabeled) members are known, explained by ``detail``, ``loo`` and ``shapley`` on 20
validation queries; then

* detection: AUROC of each method's "most suspect" ranking against the noisy set (and a
  seeded random ranking), and wall time;
* faithfulness: Spearman correlation of DETAIL's test influence with LOO's effects (and
  with Shapley values);
* curation: test score of the prompt, and after dropping its 4 most suspect demonstrations
  by each method (and 4 random ones);
* reordering: test score after ordering the demonstrations by DETAIL's test influence.

Tasks: ``ag_news_textlabel_redirect1_30_noisy`` (the last 30 % of the pool is mislabeled)
and ``sentiment_v1`` with the labels of 4 of the 20 demonstrations flipped by us.

Resumable: each (task, seed, step) writes one JSON file under ``--out`` and is skipped
when it exists. Run with one torch thread (another benchmark may use the other core)::

    nohup .venv/bin/python experiments/attribution.py > runs/attribution.log 2>&1 &
    .venv/bin/python experiments/attribution.py --summary   # the tables, from the files
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from iclopt.attribution import Detail, LeaveOneOut, Shapley, curate, reorder
from iclopt.data import Example, Task, load_task
from iclopt.evaluation import Evaluator, ResultCache
from iclopt.prompts import Prompt

BENCH = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "instruction_induction"
K = 20
DROP = 4


def load(name: str, test_size: int) -> Task:
    return load_task(
        pool=BENCH / "induce" / f"{name}.json",
        val=BENCH / "valid" / f"{name}.json",
        test=BENCH / "execute" / f"{name}.json",
        test_size=test_size,
    )


def setting(task_name: str, seed: int, test_size: int) -> tuple[Task, Prompt, list[int]]:
    """The task (with our flips applied), the prompt and the positions of its noisy demos."""
    rng = np.random.default_rng(1000 + seed)
    if task_name.endswith("_noisy"):
        task = load(task_name, test_size)
        p = int(task_name.rsplit("_", 2)[-2])
        # the mislabeled items are the last p % of the 100-item pool file: keys 100-p+1..100
        # (positions may shift: pool items that are also val/test inputs are dropped)
        ids = [int(i) for i in rng.choice(len(task.pool), K, replace=False)]
        noisy = [j for j, i in enumerate(ids) if int(task.pool[i].id) > 100 - p]
        return task, Prompt(None, tuple(ids)), noisy
    task = load(task_name, test_size)
    assert task.labels
    ids = [int(i) for i in rng.choice(len(task.pool), K, replace=False)]
    noisy = sorted(int(j) for j in rng.choice(K, 4, replace=False))
    pool = list(task.pool)
    for j in noisy:
        ex = pool[ids[j]]
        others = [lab for lab in task.labels if lab != ex.target]
        pool[ids[j]] = Example(ex.input, others[int(rng.integers(len(others)))], ex.id)
    flipped = Task(task.name + "_flip4", pool, task.val, task.test, task.metric, task.labels)
    return flipped, Prompt(None, tuple(ids)), noisy


def auroc(noisy: list[int], suspicion: np.ndarray) -> float | None:
    truth = np.zeros(len(suspicion))
    truth[noisy] = 1
    if truth.sum() in (0, len(truth)):
        return None
    return float(roc_auc_score(truth, suspicion))


def run_cell(path: Path, fn: Any) -> dict[str, Any]:
    if path.exists():
        return json.loads(path.read_text())
    start = time.perf_counter()
    row = fn()
    row["wall_s"] = time.perf_counter() - start
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(row, indent=1))
    os.replace(tmp, path)
    print(f"{path.parent.name}/{path.name}: {row['wall_s']:.1f} s", flush=True)
    return row


def attr_row(attr: Any, noisy: list[int], seconds: float) -> dict[str, Any]:
    return {
        "scores": attr.scores.tolist(),
        "suspect": None if attr.suspect is None else attr.suspect.tolist(),
        "errors": None if attr.errors is None else attr.errors.tolist(),
        "ranking": attr.ranking(),
        "auroc": auroc(noisy, attr.suspicion()),
        "seconds": seconds,
        "cost": attr.cost.as_dict(),
        "config": {k: v for k, v in attr.config.items() if k != "template"},
        "extra": {k: v for k, v in attr.extra.items() if k not in ("positions",)},
        "noisy": noisy,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--tasks", nargs="+", default=["sentiment_v1", "ag_news_textlabel_redirect1_30_noisy"]
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", nargs="+", default=["detail", "loo", "curation", "shapley"])
    ap.add_argument("--permutations", type=int, default=5, help="Shapley sample budget")
    ap.add_argument("--test-size", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="runs/attribution")
    ap.add_argument("--summary", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    if args.summary:
        summary(out, args.tasks, args.seeds)
        return
    from iclopt.llms import smollm2

    llm = smollm2(num_threads=args.threads).load()
    cache = ResultCache(out / "cache.sqlite")
    for step in args.steps:  # all seeds of a step before the next (cheap ones first)
        for task_name in args.tasks:
            for seed in args.seeds:
                task, prompt, noisy = setting(task_name, seed, args.test_size)
                cell = out / task_name / f"seed{seed}_{step}.json"

                def detail(
                    task: Task = task,
                    prompt: Prompt = prompt,
                    noisy: list[int] = noisy,
                    seed: int = seed,
                ) -> dict[str, Any]:
                    row: dict[str, Any] = {}
                    for name, kw in (
                        ("detail", {"rank_by": "self"}),
                        ("detail_center", {"rank_by": "self", "center": True}),
                    ):
                        t0 = time.perf_counter()
                        a = Detail(llm=llm, **kw).attribute(task, prompt)
                        row[name] = attr_row(a, noisy, time.perf_counter() - t0)
                        row[name]["auroc_test"] = auroc(noisy, -a.scores)
                    t0 = time.perf_counter()
                    a = Detail(llm=llm).attribute(task, prompt, queries=[])
                    row["detail_self_only"] = attr_row(a, noisy, time.perf_counter() - t0)
                    rng = np.random.default_rng(seed)
                    row["random"] = {"auroc": auroc(noisy, rng.permutation(K).astype(float))}
                    return row

                def loo(
                    task: Task = task, prompt: Prompt = prompt, noisy: list[int] = noisy
                ) -> dict[str, Any]:
                    t0 = time.perf_counter()
                    a = LeaveOneOut(llm=llm, cache=cache).attribute(task, prompt)
                    return {"loo": attr_row(a, noisy, time.perf_counter() - t0)}

                def shapley(
                    task: Task = task,
                    prompt: Prompt = prompt,
                    noisy: list[int] = noisy,
                    seed: int = seed,
                ) -> dict[str, Any]:
                    t0 = time.perf_counter()
                    a = Shapley(
                        llm=llm, cache=cache, max_permutations=args.permutations, seed=seed
                    ).attribute(task, prompt)
                    return {"shapley": attr_row(a, noisy, time.perf_counter() - t0)}

                def curation(
                    task: Task = task,
                    prompt: Prompt = prompt,
                    noisy: list[int] = noisy,
                    task_name: str = task_name,
                    seed: int = seed,
                ) -> dict[str, Any]:
                    ev = Evaluator(task, llm, cache=cache)
                    d = run_cell(out / task_name / f"seed{seed}_detail.json", lambda: detail())
                    lo = run_cell(out / task_name / f"seed{seed}_loo.json", lambda: loo())
                    base = ev.evaluate(prompt, task.test).score
                    row: dict[str, Any] = {"test_before": base, "k": K, "drop": DROP}
                    from iclopt.attribution import Attribution

                    def as_attr(r: dict[str, Any]) -> Attribution:
                        return Attribution(
                            method="x",
                            task=task.name,
                            model=llm.identity,
                            prompt=prompt,
                            demos=[task.pool[i] for i in prompt.demos],
                            scores=np.array(r["scores"]),
                            suspect=None if r["suspect"] is None else np.array(r["suspect"]),
                        )

                    rng = np.random.default_rng(seed)
                    rand = as_attr({"scores": rng.normal(size=K).tolist(), "suspect": None})
                    test_rank = as_attr({"scores": d["detail"]["scores"], "suspect": None})
                    for name, a in (
                        ("detail_self", as_attr(d["detail"])),
                        ("detail_test", test_rank),
                        ("loo", as_attr(lo["loo"])),
                        ("random", rand),
                    ):
                        cur = curate(task, a, drop=DROP)
                        removed = [j for j in range(K) if prompt.demos[j] not in cur.demos]
                        row[f"test_after_{name}"] = ev.evaluate(cur, task.test).score
                        row[f"noisy_removed_{name}"] = len(set(removed) & set(noisy))
                    for rule in ("helpful_last", "helpful_first"):
                        row[f"test_reorder_{rule}"] = ev.evaluate(
                            reorder(test_rank, rule), task.test
                        ).score
                    return row

                fn = {"detail": detail, "loo": loo, "shapley": shapley, "curation": curation}[step]
                run_cell(cell, fn)


def _mean(xs: list[float | None]) -> str:
    vals = [x for x in xs if x is not None]
    if not vals:
        return "n/a"
    return f"{np.mean(vals):.3f} ± {np.std(vals):.3f}" if len(vals) > 1 else f"{vals[0]:.3f}"


def summary(out: Path, tasks: list[str], seeds: list[int]) -> None:
    for task_name in tasks:
        cells: dict[str, dict[int, dict[str, Any]]] = {}
        for seed in seeds:
            for step in ("detail", "loo", "shapley", "curation"):
                p = out / task_name / f"seed{seed}_{step}.json"
                if p.exists():
                    cells.setdefault(step, {})[seed] = json.loads(p.read_text())
        if not cells:
            continue
        print(f"\n### {task_name} (seeds {', '.join(map(str, seeds))})\n")
        print(
            "| method | AUROC (mean ± std over seeds) | wall s per prompt | evaluations | seeds |"
        )
        print("|---|---|---|---|---|")
        rows = [
            ("detail (self influence)", "detail", "detail", "auroc"),
            ("detail (-test influence)", "detail", "detail", "auroc_test"),
            ("detail, centered (self influence)", "detail", "detail_center", "auroc"),
            ("detail, centered (-test influence)", "detail", "detail_center", "auroc_test"),
            ("detail, self influence only (no queries)", "detail", "detail_self_only", "auroc"),
            ("loo", "loo", "loo", "auroc"),
            ("shapley", "shapley", "shapley", "auroc"),
            ("random", "detail", "random", "auroc"),
        ]
        for label, step, key, metric in rows:
            got = [c[key] for c in cells.get(step, {}).values() if key in c]
            if not got:
                continue
            secs = [g.get("seconds") for g in got]
            evals = [g.get("cost", {}).get("evaluations") for g in got]
            n_evals = f"{np.mean(evals):.0f}" if evals[0] is not None else "-"
            print(
                f"| {label} | {_mean([g.get(metric) for g in got])} | "
                f"{_mean(secs) if secs[0] is not None else '-'} | {n_evals} | {len(got)} |"
            )
        det, lo, sh = cells.get("detail", {}), cells.get("loo", {}), cells.get("shapley", {})
        rho = [
            float(spearmanr(det[s]["detail"]["scores"], lo[s]["loo"]["scores"])[0])
            for s in det
            if s in lo
        ]
        rho_sh = [
            float(spearmanr(det[s]["detail"]["scores"], sh[s]["shapley"]["scores"])[0])
            for s in det
            if s in sh
        ]
        rho_ls = [
            float(spearmanr(lo[s]["loo"]["scores"], sh[s]["shapley"]["scores"])[0])
            for s in lo
            if s in sh
        ]
        speed = [lo[s]["loo"]["seconds"] / det[s]["detail"]["seconds"] for s in det if s in lo]
        speed_self = [
            lo[s]["loo"]["seconds"] / det[s]["detail_self_only"]["seconds"] for s in det if s in lo
        ]
        print()
        print(f"- Spearman(detail test influence, loo effect): {_mean(rho)} ({len(rho)} seeds)")
        print(f"- Spearman(detail test influence, Shapley): {_mean(rho_sh)} ({len(rho_sh)} seeds)")
        print(f"- Spearman(loo, Shapley): {_mean(rho_ls)} ({len(rho_ls)} seeds)")
        print(f"- loo time / detail time (with 20 queries): {_mean(speed)}")
        print(f"- loo time / detail time (self influence only): {_mean(speed_self)}")
        cur = list(cells.get("curation", {}).values())
        if cur:
            print()
            print("| curation (drop 4 of 20 by) | test before | test after | noisy among the 4 |")
            print("|---|---|---|---|")
            for name in ("detail_self", "detail_test", "loo", "random"):
                print(
                    f"| {name} | {_mean([c['test_before'] for c in cur])} | "
                    f"{_mean([c[f'test_after_{name}'] for c in cur])} | "
                    f"{_mean([c[f'noisy_removed_{name}'] for c in cur])} |"
                )
            for rule in ("helpful_last", "helpful_first"):
                before = _mean([c["test_before"] for c in cur])
                after = _mean([c[f"test_reorder_{rule}"] for c in cur])
                print(f"| reorder by detail, {rule} (all 20) | {before} | {after} | - |")


if __name__ == "__main__":
    main()
