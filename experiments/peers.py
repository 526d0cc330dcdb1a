"""iclopt against DSPy's optimizers on the same LLM, task splits, metric and LLM calls.

Every method gets the same SmolLM2 (in process), the same labelled data (pool = DSPy's
trainset, the 20 validation queries = DSPy's valset), the same k and about the same
number of LLM calls (``--calls``) on that data; each chosen prompt (program) is scored
on two test sets with iclopt's metric, by greedy generation. Tasks, pools and test sets
are the search benchmark's (``experiments/search.py``: its 8 tasks, ``NAME+flipP`` with a
mislabeled pool included, its loader):

- ``execute``: the task's 100 execute queries;
- ``heldout``: the search benchmark's in-distribution set, a seeded random sample of the
  ``valid`` examples after the first 20, up to ``--heldout-size``.

Methods (``--methods``, comma-separated):

- ``iclopt:default`` (``iclopt.bandits.DEFAULT_METHOD``, read at run time),
  ``iclopt:best-of-n`` and the selectors ``iclopt:similarity``, ``iclopt:uncertainty``,
  ``iclopt:entropy``, ``iclopt:random``;
- ``dspy:NAME:ADAPTER`` for NAME in labeled, bootstrap-rs, knn, mipro, simba, gepa and
  ADAPTER ``chat`` (DSPy's ChatAdapter as shipped) or ``completion`` (the task prompt
  rendered as iclopt renders it; see ``peers_dspy.CompletionAdapter``).

One JSON per (task, method, seed) in ``--out`` (committed as it finishes); a rerun only
runs what is missing. The default ``--methods`` is ``SUITE`` (below).

    python experiments/peers.py                      # run what is missing, then report
    python experiments/peers.py --report-only        # docs/results.md from what exists
    python experiments/peers.py --check-server       # in-process vs transformers serve

The DSPy side needs the ``bench`` extra: ``pip install -e ".[bench]"``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import shlex
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import search
from peers_report import OUT, report, write_csv, write_doc

ROOT = Path(__file__).resolve().parents[1]
BENCH = search.BENCH
ICLOPT_METHODS = ["default", "best-of-n", "similarity", "uncertainty", "entropy", "random"]
DSPY_OPTIMIZERS = ["labeled", "bootstrap-rs", "knn", "mipro", "simba", "gepa"]
ADAPTERS = ["chat", "completion"]
METHODS = [f"iclopt:{m}" for m in ICLOPT_METHODS] + [
    f"dspy:{o}:{a}" for o in DSPY_OPTIMIZERS for a in ADAPTERS
]
#: The suite run by default: every method with iclopt's completion prompt, and DSPy's
#: ChatAdapter as shipped where it is affordable on this machine (LabeledFewShot scores
#: the test sets only, MIPROv2 fails in its first meta calls). Left out, and run when
#: named in ``--methods``: the other chat cells, 30-45 min per (task, seed) each here
#: (about 1.5 s per chat call, over a thousand calls), and GEPA, about 2 hours per cell at
#: 1,200 metric calls (some 400 reflections of about 19 s; docs/results.md says what it did).
SUITE = [m for m in METHODS if not m.endswith(":chat") and not m.startswith("dspy:gepa:")]
SUITE += ["dspy:labeled:chat", "dspy:mipro:chat"]
MAX_ERRORS = 10**9  # DSPy's errors before it cancels an evaluation (see run_dspy)

log = logging.getLogger("peers")


# ---------------------------------------------------------------------- data
def load(task: str, args: Any) -> tuple[Any, list[Any]]:
    """The task (pool, val, test = execute) and the held-out in-distribution queries.

    The search benchmark's loader (``experiments/search.py``), so that both benchmarks
    see the same pools (``NAME+flipP`` included), validation queries and test sets.
    """
    return search.load(
        task,
        bench=args.bench,
        pool_size=args.pool_size,
        val_size=args.val_size,
        test_size=args.test_size,
        indist_size=args.heldout_size,
    )


def test_sets(task: Any, heldout: list[Any]) -> dict[str, list[Any]]:
    return {"execute": list(task.test), "heldout": heldout}


# ---------------------------------------------------------------------- iclopt's side
def run_iclopt(name: str, task: Any, heldout: list[Any], seed: int, args: Any, ctx: dict) -> dict:
    from iclopt import optimize
    from iclopt.bandits import DEFAULT_METHOD, OPTIMIZERS
    from iclopt.evaluation import Budget, Evaluator
    from iclopt.selectors import SELECTORS, FitContext

    llm, store, emb = ctx["llm"], ctx["cache"], ctx["embedder"]
    ev_kwargs: dict[str, Any] = {"scoring": args.scoring, "cache": store}
    scorer = Evaluator(task, llm, **ev_kwargs)
    resolved = DEFAULT_METHOD if name == "default" else name
    start = time.perf_counter()
    row: dict[str, Any] = {"resolved": resolved}
    evaluations = max(1, args.calls // len(task.val))
    if resolved in OPTIMIZERS:
        result = optimize(
            task,
            llm=llm,
            k=args.k,
            budget=evaluations,
            method=resolved,
            seed=seed,
            embedder=emb,
            scoring=args.scoring,
            max_llm_calls=args.calls,
            cache=store,
            evaluate_test=False,
        )
        cost = result.cost
        calls = cost["llm_calls"] + cost["cache_hits"]
        tokens = cost["prompt_tokens"] + cost["cached_tokens"]
        prompt = result.best
        row.update(val_score=result.val_score, prompt=prompt.as_dict(), config=result.config)
        search_s = time.perf_counter() - start
        scores = {
            n: scorer.evaluate(prompt, qs).score for n, qs in test_sets(task, heldout).items()
        }
    else:
        spent = Budget()
        fit = FitContext(
            llm=llm, embedder=emb, budget=evaluations, evaluator_kwargs=ev_kwargs, spent=spent
        )
        sel = SELECTORS.get(resolved)(seed=seed).fit(task, fit)
        if not sel.per_query:  # some search in their first select (entropy)
            row["prompt"] = sel.select(task, args.k).as_dict()
        calls = spent.spent.llm_calls + spent.spent.cache_hits
        tokens = spent.spent.prompt_tokens + spent.spent.cached_tokens
        search_s = time.perf_counter() - start
        scores = {}
        for n, qs in test_sets(task, heldout).items():
            if sel.per_query:
                prompts = [sel.select(task, args.k, query=q.input) for q in qs]
                scores[n] = scorer.evaluate_per_query(prompts, qs).score
            else:
                scores[n] = scorer.evaluate(sel.select(task, args.k), qs).score
        row["per_query"] = bool(sel.per_query)
    row.update(
        scores=scores,
        calls=int(calls),
        prompt_tokens=int(tokens),
        meta_calls=0,
        search_seconds=search_s,
        seconds=time.perf_counter() - start,
    )
    return row


# ---------------------------------------------------------------------- DSPy's side
def run_dspy(
    name: str, adapter_name: str, task: Any, heldout: list[Any], seed: int, args: Any, ctx: dict
) -> dict:
    import dspy
    import peers_dspy as P

    from iclopt.evaluation import Evaluator
    from iclopt.metrics import get_metric

    llm = ctx["llm"]
    metric = get_metric(task.metric)
    cap = Evaluator(task, llm, scoring="generate").max_new_tokens
    lm = P.IcloptLM(
        llm,
        cache=ctx["cache"],
        # ChatAdapter wraps the answer in "[[ ## output ## ]]" ... "[[ ## completed ## ]]"
        task_max_tokens=cap + 24,
        meta_max_tokens=args.meta_max_tokens,
        seed=seed,
    )
    adapter = P.ShippedChatAdapter() if adapter_name == "chat" else P.CompletionAdapter(cap)
    # parse failures score 0 (failure_score) instead of aborting the run: DSPy's default
    # (10 errors) stops BootstrapFewShotWithRandomSearch + ChatAdapter on SmolLM2
    dspy.configure(lm=lm, adapter=adapter, max_errors=MAX_ERRORS)
    trainset = P.to_dspy(task.pool)
    random.Random(seed).shuffle(trainset)  # LabeledFewShot ignores seeds (Random(0) inside)
    valset = P.to_dspy(task.val)
    setting = P.build_optimizer(
        name,
        k=args.k,
        calls=args.calls,
        seed=seed,
        trainset=trainset,
        valset=valset,
        metric=metric,
        lm=lm,
        embedder=ctx["embedder"],
        threads=args.dspy_threads,
    )
    try:
        return _compile_and_score(P, dspy, lm, setting, adapter_name, task, heldout, metric, args)
    finally:
        lm.close()


def _compile_and_score(
    P: Any,
    dspy: Any,
    lm: Any,
    setting: Any,
    adapter_name: str,
    task: Any,
    heldout: list[Any],
    metric: Any,
    args: Any,
) -> dict:
    start = time.perf_counter()
    row: dict[str, Any] = {
        "params": {**setting.params, "max_errors": MAX_ERRORS},
        "adapter": adapter_name,
    }
    try:
        program = setting.compile(dspy.Predict(P.task_signature()))
    except Exception as exc:  # recorded as a failed cell, never scored 0
        cost = lm.ledger.total("compile")
        row.update(
            error=f"{type(exc).__name__}: {exc}",
            error_type=type(exc).__name__,
            traceback=traceback.format_exc(),
            calls=cost["calls"],
            prompt_tokens=cost["prompt_tokens"],
            meta_calls=lm.ledger.total("compile", "meta")["calls"],
            ledger=lm.ledger.counts,
            seconds=time.perf_counter() - start,
        )
        return row
    search_s = time.perf_counter() - start
    row["program"] = P.describe(program)

    def score(example: Any, pred: Any, trace: Any = None) -> float:
        return float(metric(P.output_of(pred), example.answers))

    scores, failures, test_calls = {}, {}, {}
    for n, qs in test_sets(task, heldout).items():
        with lm.in_phase(f"test-{n}"):
            res = dspy.Evaluate(
                devset=P.to_dspy(qs),
                metric=score,
                num_threads=args.dspy_threads,
                display_progress=False,
                failure_score=0.0,
                max_errors=len(qs) + 1,
            )(program)
        scores[n] = float(np.mean([s for _, _, s in res.results]))
        failures[n] = sum(1 for _, p, _ in res.results if P.output_of(p) == "")
        test_calls[n] = lm.ledger.total(f"test-{n}")["calls"] / len(qs)
    compile_cost = lm.ledger.total("compile")
    row.update(
        scores=scores,
        empty_answers=failures,
        test_calls_per_query=test_calls,
        calls=compile_cost["calls"],
        prompt_tokens=compile_cost["prompt_tokens"],
        cache_hits=compile_cost["cache_hits"],
        meta_calls=lm.ledger.total("compile", "meta")["calls"],
        ledger=lm.ledger.counts,
        search_seconds=search_s,
        seconds=time.perf_counter() - start,
        llm_seconds=lm.state["seconds"],
    )
    return row


# ---------------------------------------------------------------------- running
def machine() -> dict[str, Any]:
    import importlib.metadata as md

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for pkg in ("iclopt", "dspy", "torch", "transformers"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def cell_path(out: Path, task: str, method: str, seed: int) -> Path:
    return out / f"{task}__{method.replace(':', '+')}__s{seed}.json"


def run_cell(task_name: str, method: str, seed: int, args: Any, ctx: dict) -> dict:
    task, heldout = ctx["tasks"].setdefault(task_name, load(task_name, args))
    side, *rest = method.split(":")
    if side == "iclopt" and len(rest) == 1:
        row = run_iclopt(rest[0], task, heldout, seed, args, ctx)
    elif side == "dspy" and len(rest) == 2:
        row = run_dspy(rest[0], rest[1], task, heldout, seed, args, ctx)
    else:
        raise SystemExit(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    return {
        "task": task_name,
        "method": method,
        "seed": seed,
        "k": args.k,
        "budget_calls": args.calls,
        "scoring": args.scoring,
        "sizes": {
            "pool": len(task.pool),
            "val": len(task.val),
            "execute": len(task.test),
            "heldout": len(heldout),
        },
        **row,
        "command": ctx["command"],
        "machine": ctx["machine"],
        "torch_threads": args.threads,
    }


def run(args: Any, llm: Any = None) -> list[Path]:
    """Run the missing (task, method, seed) cells; returns the files written.

    ``llm`` replaces the in-process SmolLM2 (one already loaded, in tests).
    """
    missing = [
        (seed, task, method)
        for seed in args.seeds
        for task in args.tasks
        for method in args.methods
        if not cell_path(args.out, task, method, seed).exists()
    ]
    if not missing:
        return []
    import torch

    from iclopt.embedders import default_embedder
    from iclopt.evaluation import ResultCache
    from iclopt.llms import get_llm

    torch.set_num_threads(args.threads)
    ctx: dict[str, Any] = {
        "llm": llm if llm is not None else get_llm("smollm2", num_threads=args.threads).load(),
        "cache": ResultCache(args.cache),
        "embedder": default_embedder(),
        "tasks": {},
        "command": " ".join(["python", "experiments/peers.py", *map(shlex.quote, args.argv)]),
        "machine": machine(),
    }
    written = []
    for seed, task, method in missing:
        path = cell_path(args.out, task, method, seed)
        log.info("run %s %s seed %d", task, method, seed)
        row = run_cell(task, method, seed, args, ctx)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(row, indent=1, default=str))
        tmp.replace(path)
        written.append(path)
        if "error" in row:
            log.info("FAILED %s %s seed %d: %s", task, method, seed, row["error"][:200])
        else:
            log.info(
                "done %s %s seed %d: execute %.3f heldout %.3f, %d calls (%d meta), %.0f s",
                task,
                method,
                seed,
                row["scores"]["execute"],
                row["scores"]["heldout"],
                row["calls"],
                row["meta_calls"],
                row["seconds"],
            )
    return written


# ---------------------------------------------------------------------- server check
def check_server(args: Any) -> str:
    """The in-process LM answers as the same model behind ``transformers serve`` does.

    For each task, ``k`` pool demos and five validation queries: the ChatAdapter prompt
    through DSPy's own client (``dspy.LM("openai/...")``) against the in-process
    :class:`IcloptLM`, and the completion prompt through iclopt's ``openai:`` backend
    inside :class:`IcloptLM` against the in-process one. Raw answers are compared.
    """
    import shutil
    import tempfile

    import dspy
    import peers_dspy as P

    sys.path.insert(0, str(ROOT / "tests"))
    from servers import TransformersServer

    from iclopt.evaluation import Evaluator
    from iclopt.llms import get_llm
    from iclopt.llms.export import export_model

    tmp = Path(tempfile.mkdtemp(prefix="peers-serve-"))
    export_model("smollm2", tmp / "model")  # what `iclopt models export smollm2 DIR` writes
    srv = TransformersServer(tmp / "model", tmp / "serve.log")
    srv.start()
    lines, same, total = [], 0, 0
    try:
        smol = get_llm("smollm2", num_threads=args.threads)
        served = get_llm(f"openai:{srv.model}", base_url=srv.base_url)
        for name in args.tasks:
            task, _ = load(name, args)
            cap = Evaluator(task, smol, scoring="generate").max_new_tokens
            pairs = [
                (
                    "chat",
                    P.ShippedChatAdapter(),
                    P.IcloptLM(smol, task_max_tokens=cap + 24),
                    dspy.LM(
                        f"openai/{srv.model}",
                        api_base=srv.base_url,
                        api_key="none",
                        temperature=0.0,
                        max_tokens=cap + 24,
                        cache=False,
                        num_retries=0,
                    ),
                ),
                (
                    "completion",
                    P.CompletionAdapter(cap),
                    P.IcloptLM(smol),
                    P.IcloptLM(served),
                ),
            ]
            prog = dspy.Predict(P.task_signature())
            prog.demos = P.to_dspy(task.pool[: args.k])
            for style, adapter, local, remote in pairs:
                for q in task.val[:5]:
                    answers = []
                    for lm in (local, remote):
                        with dspy.context(lm=lm, adapter=adapter):
                            try:
                                prog(input=q.input)
                            except Exception as exc:  # a parse failure: the raw text counts
                                log.info("%s: %s", style, type(exc).__name__)
                        answers.append(lm.history[-1]["outputs"][0])
                    total += 1
                    same += answers[0] == answers[1]
                    lines.append(
                        f"- {name}, {style}, `{q.input[:50]}`: in-process {answers[0]!r}, "
                        f"served {answers[1]!r}"
                    )
        return f"{same} of {total} raw answers identical\n" + "\n".join(lines)
    finally:
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> Any:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT, help="one JSON per cell (committed)")
    ap.add_argument(
        "--cache",
        type=Path,
        default=ROOT / ".iclopt-cache" / "search.sqlite",
        help="result cache (shared with experiments/search.py; not committed)",
    )
    ap.add_argument("--doc", type=Path, default=ROOT / "docs" / "results.md")
    ap.add_argument("--csv", type=Path, default=ROOT / "experiments" / "results" / "peers.csv")
    ap.add_argument("--bench", type=Path, default=BENCH)
    ap.add_argument("--tasks", default=",".join(search.TASKS))
    ap.add_argument("--methods", default=",".join(SUITE))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--calls", type=int, default=1200, help="LLM calls on labelled data")
    ap.add_argument("--pool-size", type=int, default=100)
    ap.add_argument("--val-size", type=int, default=20)
    ap.add_argument("--test-size", type=int, default=100)
    ap.add_argument("--heldout-size", type=int, default=200)
    ap.add_argument("--scoring", default="generate", choices=["generate", "auto"])
    ap.add_argument(
        "--meta-max-tokens",
        type=int,
        default=256,
        help="cap on tokens of DSPy's proposal/reflection answers",
    )
    ap.add_argument("--dspy-threads", type=int, default=8, help="DSPy num_threads (batched)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--no-report", action="store_true")
    ap.add_argument("--check-server", action="store_true")
    raw = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(raw)
    args.argv = raw
    args.tasks = [t for t in args.tasks.split(",") if t]
    args.methods = [m for m in args.methods.split(",") if m]
    args.seeds = [int(s) for s in args.seeds.split(",") if s]
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        ap.error(f"unknown method(s) {unknown}; valid: {', '.join(METHODS)}")
    return args


def main(argv: Sequence[str] | None = None, llm: Any = None) -> list[Path]:
    """Run what is missing and rewrite the report; returns the result files written."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # peers_dspy
    args.out.mkdir(parents=True, exist_ok=True)
    if args.check_server:
        print(check_server(args))
        return []
    written = [] if args.report_only else run(args, llm)
    if not args.no_report:
        write_doc(report(args), args.doc)
        write_csv(args)
        log.info("wrote %s and %s", args.doc, args.csv)
    return written


if __name__ == "__main__":
    main()
