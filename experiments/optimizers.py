"""Optimizer benchmark: neural, ease, gp, tpe and best-of-n at equal budget on SmolLM2.

k = 5 ordered exemplars, 60 evaluations of the 20 validation queries (neural spends part
of its 60 re-scoring its top prompts on extra pool queries), the same initial design for
every model-based method (and best-of-n's first draws) for a seed, the test score of the
chosen prompt on the 100 test queries. One JSON per (task, method, seed) in the output
folder: a rerun only runs what is missing. One shared result cache, so the shared initial
design is paid for once.

    python experiments/optimizers.py                 # run what is missing, then report
    python experiments/optimizers.py --report-only   # table + plot from what exists

Torch runs on one thread (``--threads``) so the machine keeps a free core.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT.parent / "shared" / "benchmarks" / "instruction_induction"
TASKS = [
    "sentiment_v1",
    "first_word_letter_v1",
    "larger_animal_v1",
    "ag_news_textlabel_redirect1_0_noisy",
]
METHODS = ["neural", "ease", "gp", "tpe", "best-of-n"]

log = logging.getLogger("optimizers")


def load(task: str) -> Any:
    from iclopt.data import load_task

    return load_task(
        pool=BENCH / "induce" / f"{task}.json",
        val=BENCH / "valid" / f"{task}.json",
        test=BENCH / "execute" / f"{task}.json",
        name=task,
    )


def incumbents(trace: list[Any]) -> list[Any]:
    """Best validation prompt after each step (earliest of ties); re-scoring steps keep it."""
    out, best, best_score = [], None, float("-inf")
    for e in trace:
        if e.on_val and e.score > best_score:
            best, best_score = e.prompt, e.score
        out.append(best)
    return out


def parse_method(spec: str) -> tuple[str, dict[str, Any]]:
    """``name`` or a variant ``name@key=value@key=value`` (values parsed as JSON).

    Example:
        >>> parse_method("neural@rescore=0@n_rescore=3")
        ('neural', {'rescore': 0, 'n_rescore': 3})
    """
    name, *pairs = spec.split("@")
    kw = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        kw[key] = json.loads(value)
    return name, kw


def run_one(task_name: str, method: str, seed: int, args: Any, ctx: dict[str, Any]) -> dict:
    from iclopt.bandits import OPTIMIZERS
    from iclopt.bandits.model_based import ModelBasedOptimizer
    from iclopt.evaluation import Budget, Evaluator
    from iclopt.search import run_search

    task = ctx["tasks"].setdefault(task_name, load(task_name))
    llm, store, emb = ctx["llm"], ctx["cache"], ctx["embedder"]
    name, overrides = parse_method(method)
    cls = OPTIMIZERS.get(name)
    kwargs: dict[str, Any] = {"k": args.k, "seed": seed, **overrides}
    if issubclass(cls, ModelBasedOptimizer):
        kwargs["embedder"] = emb
    opt = cls(**kwargs)
    budget = Budget(max_evaluations=args.budget)
    ev = Evaluator(task, llm, cache=store, budget=budget)
    start = time.perf_counter()
    trace = run_search(opt, ev, budget)
    wall = time.perf_counter() - start
    final, why = opt.recommend()
    test_ev = Evaluator(task, llm, cache=store)

    tests: dict[Any, float] = {}

    def test_of(p: Any) -> float:
        if p not in tests:
            tests[p] = test_ev.evaluate(p, task.test).score
        return tests[p]

    inc = incumbents(trace)
    checkpoints = sorted({c for c in args.checkpoints if c < len(trace)})
    curve = [{"evaluations": c, "test": test_of(inc[c - 1])} for c in checkpoints if c > 0]
    final_test = test_of(final)
    curve.append({"evaluations": len(trace), "test": final_test})
    val_argmax = inc[-1]
    # per-round overhead with every observation in: one more (untimed-by-the-loop) ask
    t0 = time.perf_counter()
    try:
        opt.ask()
        overhead_end = time.perf_counter() - t0
    except Exception as exc:
        overhead_end = None
        log.info("final ask failed: %s", exc)
    model_steps = [
        e.optimizer_seconds for e in trace if e.info.get("source") not in ("initial", "rescore")
    ]
    llm_steps = [e.cost.seconds for e in trace if e.cost.llm_calls > 0]
    return {
        "task": task_name,
        "method": method,
        "seed": seed,
        "k": args.k,
        "budget": args.budget,
        "final": final.as_dict(),
        "selection": why,
        "val_score": next(e.score for e in trace if e.on_val and e.prompt == final),
        "test_score": final_test,
        "val_argmax": val_argmax.as_dict(),
        "val_argmax_test": test_of(val_argmax),
        "curve": curve,
        "trace": [e.as_dict() for e in trace],
        "config": opt.config() | {"embedder": emb.identity if emb is not None else None},
        "seconds": wall,
        "overhead_mean_s": float(np.mean(model_steps)) if model_steps else 0.0,
        "overhead_last10_s": float(np.mean(model_steps[-10:])) if model_steps else 0.0,
        "overhead_at_end_s": overhead_end,
        "llm_seconds_per_eval": float(np.mean(llm_steps)) if llm_steps else None,
        # every call the method needed, cache hits included: the first method in the list
        # no longer appears to pay for the shared initial design alone
        "llm_calls": int(sum(e.cost.calls for e in trace)),
        "llm_calls_missed": int(sum(e.cost.llm_calls for e in trace)),
    }


def best_so_far(trace: list[dict]) -> list[float]:
    out, best = [], float("-inf")
    for e in trace:
        if e["queries"] == "val":
            best = max(best, e["score"])
        out.append(best)
    return out


def report(out: Path, args: Any) -> str:
    rows = [json.loads(p.read_text()) for p in sorted(out.glob("*__*__s*.json"))]
    by: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        by.setdefault((r["task"], r["method"]), []).append(r)
    tasks = [t for t in TASKS if any(k[0] == t for k in by)]
    variants = sorted({k[1] for k in by} - set(METHODS))
    methods = [m for m in METHODS + variants if any(k[1] == m for k in by)]
    # tasks every method has run on (so partial runs compare like with like)
    shared = [t for t in tasks if all((t, m) in by for m in methods)]
    lines = [
        "| method | "
        + " | ".join(tasks)
        + " | mean over tasks | mean over "
        + ", ".join(shared)
        + " |",
        "|---|" + "---|" * (len(tasks) + 2),
    ]
    for m in methods:
        cells, means = [], []
        for t in tasks:
            v = [r["test_score"] for r in by.get((t, m), [])]
            if v:
                cells.append(f"{np.mean(v):.3f} ± {np.std(v):.3f} (n={len(v)})")
                means.append(np.mean(v))
            else:
                cells.append("—")
        mean = f"{np.mean(means):.3f}" if len(means) == len(tasks) else "incomplete"
        common = [np.mean([r["test_score"] for r in by[(t, m)]]) for t in shared]
        common_mean = f"{np.mean(common):.3f}" if common else "—"
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {mean} | {common_mean} |")
    lines += ["", "Validation score of the chosen prompt (mean over seeds):", ""]
    lines += ["| method | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    for m in methods:
        cells = []
        for t in tasks:
            v = [r["val_score"] for r in by.get((t, m), [])]
            cells.append(f"{np.mean(v):.3f}" if v else "—")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Optimizer overhead per round (s; mean over runs) and LLM time per evaluation:",
        "",
    ]
    lines += [
        "| method | mean per model step | last 10 steps | one ask at the end (60 obs.) "
        "| LLM s / eval (misses) |",
        "|---|---|---|---|---|",
    ]
    for m in methods:
        rs = [r for r in rows if r["method"] == m]
        ends = [r["overhead_at_end_s"] for r in rs if r["overhead_at_end_s"] is not None]
        llm = [r["llm_seconds_per_eval"] for r in rs if r["llm_seconds_per_eval"]]
        lines.append(
            f"| {m} | {np.mean([r['overhead_mean_s'] for r in rs]):.3f} | "
            f"{np.mean([r['overhead_last10_s'] for r in rs]):.3f} | "
            f"{np.mean(ends) if ends else float('nan'):.3f} | "
            f"{np.mean(llm) if llm else float('nan'):.2f} |"
        )
    for m in methods:
        rs = [r for r in rows if r["method"] == m and r["final"] != r["val_argmax"]]
        if m.startswith("neural") and any(r["method"] == m for r in rows):
            n = sum(r["method"] == m for r in rows)
            diff = [r["test_score"] - r["val_argmax_test"] for r in rs]
            lines += [
                "",
                f"{m}, final choice vs the validation argmax: a different prompt in "
                f"{len(rs)} of {n} runs; test change where different: "
                + (", ".join(f"{d:+.2f}" for d in diff) or "none")
                + f" (mean over all {n} runs {sum(diff) / n:+.4f})",
            ]
    text = "\n".join(lines) + "\n"
    (out / "table.md").write_text(text)
    try:
        # variants (name@...) are ablations on fewer seeds: table only
        plot(by, tasks, [m for m in methods if "@" not in m], out / "optimizers.png")
    except ImportError:
        log.warning("matplotlib missing: no plot")
    return text


def plot(by: dict, tasks: list[str], methods: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(tasks), figsize=(4.2 * len(tasks), 7), squeeze=False)
    for j, t in enumerate(tasks):
        for m in methods:
            runs = by.get((t, m), [])
            if not runs:
                continue
            curves = [best_so_far(r["trace"]) for r in runs]
            n = min(len(c) for c in curves)
            mean = np.mean([c[:n] for c in curves], axis=0)
            axes[0][j].plot(range(1, n + 1), mean, label=m)
            pts: dict[int, list[float]] = {}
            for r in runs:
                for c in r["curve"]:
                    pts.setdefault(c["evaluations"], []).append(c["test"])
            xs = sorted(pts)
            axes[1][j].plot(xs, [np.mean(pts[x]) for x in xs], marker="o", label=m)
        axes[0][j].set_title(t, fontsize=9)
        axes[0][j].set_xlabel("evaluations")
        axes[1][j].set_xlabel("evaluations")
    axes[0][0].set_ylabel("best-so-far validation score")
    axes[1][0].set_ylabel("test score of the incumbent")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def overhead(args: Any) -> str:
    """Per-round optimizer time at 60 observations, without the LLM (synthetic rewards).

    Each model-based method is set up on the real task with the real encoder, told the
    shared design plus random prompts up to 60 observations (rewards drawn at random),
    then timed over ``--overhead-rounds`` asks (each followed by a tell).
    """
    import torch

    from iclopt.bandits import OPTIMIZERS, Trial
    from iclopt.bandits.candidates import initial_design
    from iclopt.embedders import default_embedder

    torch.set_num_threads(args.threads)
    task = load(args.tasks.split(",")[0])
    emb = default_embedder()
    rng = np.random.default_rng(0)
    lines = [
        f"Optimizer time per round at 60 observations ({task.name}, k={args.k}, "
        f"{args.threads} torch thread(s), median of {args.overhead_rounds} rounds):",
        "",
        "| method | median s / round | min | max |",
        "|---|---|---|---|",
    ]
    for method in [m for m in args.methods.split(",") if m != "best-of-n"]:
        opt = OPTIMIZERS.get(method)(k=args.k, seed=0, embedder=emb, n_init=15)
        opt.setup(task, budget=1000)  # no re-scoring phase in sight
        if method == "tpe":  # Optuna learns only from trials it asked for (and asks fast)
            for _ in range(60):
                opt.tell(opt.ask(), float(rng.random()))
        else:  # the design plus random prompts, told directly
            for p in initial_design(task, args.k, (None,), 0, 60):
                opt.tell(Trial(p), float(rng.random()))
        times = []
        for _ in range(args.overhead_rounds):
            t0 = time.perf_counter()
            t = opt.ask()
            times.append(time.perf_counter() - t0)
            opt.tell(t, float(rng.random()))
        lines.append(f"| {method} | {np.median(times):.3f} | {min(times):.3f} | {max(times):.3f} |")
        log.info(lines[-1])
    text = "\n".join(lines) + "\n"
    (args.out / "overhead.md").write_text(text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "optimizers")
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--budget", type=int, default=60)
    ap.add_argument("--checkpoints", default="15,30,45", help="incumbent test score after these")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument(
        "--overhead", action="store_true", help="only time optimizer rounds at 60 observations"
    )
    ap.add_argument("--overhead-rounds", type=int, default=5)
    args = ap.parse_args()
    args.checkpoints = [int(c) for c in args.checkpoints.split(",") if c]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.overhead:
        print(overhead(args))
        return
    if not args.report_only:
        import torch

        from iclopt.embedders import default_embedder
        from iclopt.evaluation import ResultCache
        from iclopt.llms import smollm2

        torch.set_num_threads(args.threads)
        ctx: dict[str, Any] = {
            "llm": smollm2(num_threads=args.threads).load(),
            "cache": ResultCache(args.out / "cache.sqlite"),
            "embedder": default_embedder(),
            "tasks": {},
        }
        tasks = args.tasks.split(",")
        methods = args.methods.split(",")
        for seed in [int(s) for s in args.seeds.split(",")]:
            for task in tasks:
                for method in methods:
                    path = args.out / f"{task}__{method}__s{seed}.json"
                    if path.exists():
                        continue
                    log.info("run %s %s seed %d", task, method, seed)
                    t0 = time.perf_counter()
                    row = run_one(task, method, seed, args, ctx)
                    tmp = path.with_suffix(".tmp")
                    tmp.write_text(json.dumps(row, indent=1))
                    tmp.replace(path)
                    log.info(
                        "done %s %s seed %d: val %.3f test %.3f (%.0f s, overhead %.3f s/round)",
                        task,
                        method,
                        seed,
                        row["val_score"],
                        row["test_score"],
                        time.perf_counter() - t0,
                        row["overhead_last10_s"],
                    )
                    report(args.out, args)
    print(report(args.out, args))


if __name__ == "__main__":
    main()
