"""Benchmark: many workers on one study (docs/benchmarks.md, "Many workers").

``walltime``: the wall time of `iclopt optimize --workers N` (N local processes, 1 torch
thread each, one SQLite study) to spend a budget of evaluations, for each N; also the
span from the first trial's start to the last trial's end (without process start-up and
model loading) and how the trials spread over the workers. Every run pays every
evaluation (``--no-cache``).

``overhead``: what the study storage adds per trial: the same search (best-of-n, the fake
LLM, so the evaluations themselves cost ~nothing) without a study, on SQLite, and on
PostgreSQL when ``--postgres URL`` names a server (one database per run is created).

    python experiments/workers.py walltime --workers 1,2,4 --budget 120 --val-size 8
    python experiments/workers.py walltime --workers 1,2 --budget 24 --val-size 8 --server
    python experiments/workers.py overhead --trials 200 --postgres postgresql://postgres@127.0.0.1:5432
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from iclopt.datasets import get_task


def _task_files(folder: Path, val_size: int) -> list[str]:
    task = get_task("sentiment")
    args = []
    for name, rows in (("pool", task.pool), ("val", task.val[:val_size])):
        path = folder / f"{name}.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            for ex in rows:
                f.write(json.dumps({"input": ex.input, "output": ex.output}) + "\n")
        args += [f"--{name}", str(path)]
    return args


def walltime(args: argparse.Namespace) -> list[dict]:
    if not args.server:
        return _walltime(args, args.model, [])
    # the embedded SmolLM2 behind the real `transformers serve`, as openai_throughput.py does
    sys.path.insert(0, str(Path(__file__).parent))
    from openai_throughput import free_port, start_server

    from iclopt.llms.export import export_model

    with tempfile.TemporaryDirectory(prefix="iclopt-serve-") as tmp:
        model_dir = export_model("smollm2", Path(tmp) / "smollm2-hf")
        port = free_port()
        proc = start_server(model_dir, port, 1, args.continuous_batching, Path(tmp) / "log")
        try:
            base = ["--base-url", f"http://127.0.0.1:{port}/v1"]
            return _walltime(args, f"openai:{model_dir}", base)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)


def _walltime(args: argparse.Namespace, model: str, extra: list[str]) -> list[dict]:
    from iclopt.study import read_study

    rows = []
    for n in [int(x) for x in args.workers.split(",")]:
        with tempfile.TemporaryDirectory(prefix="iclopt-workers-") as tmp:
            folder = Path(tmp)
            storage = f"sqlite:///{folder / 'study.db'}"
            cmd = [
                sys.executable,
                "-m",
                "iclopt.cli",
                "optimize",
                *_task_files(folder, args.val_size),
                *["--k", str(args.k), "--budget", str(args.budget), "--seed", "0"],
                *["--workers", str(n), "--storage", storage, "--study", "bench"],
                *["--model", model, "--no-cache", "--quiet", "--out", str(folder / "r.json")],
                *extra,
            ]
            env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
            start = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            wall = time.perf_counter() - start
            if proc.returncode != 0:
                raise SystemExit(proc.stderr)
            _, trials = read_study(storage, "bench")
            done = [t for t in trials if t.state == "complete"]
            frozen = _frozen(storage)
            span = (
                max(t.datetime_complete for t in frozen) - min(t.datetime_start for t in frozen)
            ).total_seconds()
            result = json.loads((folder / "r.json").read_text())
            row = {
                "workers": n,
                "evaluations": len(done),
                "wall_s": round(wall, 1),
                "search_s": round(span, 1),
                "per_worker": sorted(Counter(t.attrs["worker"] for t in done).values()),
                "llm_calls": result["cost"]["llm_calls"],
                "val_score": result["val_score"],
            }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def _frozen(storage: str) -> list:
    import optuna

    study = optuna.load_study(study_name="bench", storage=storage)
    return [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]


def overhead(args: argparse.Namespace) -> list[dict]:
    import iclopt
    from iclopt.testing import FakeLLM

    task = get_task("sentiment")

    def run(**study: str) -> float:
        start = time.perf_counter()
        res = iclopt.optimize(
            task,
            llm=FakeLLM(),
            k=5,
            budget=args.trials,
            seed=0,
            cache=False,
            evaluate_test=False,
            **study,
        )
        assert len(res.trace) == args.trials
        return time.perf_counter() - start

    run()  # warm-up: imports, first evaluation
    rows = []
    plain = min(run() for _ in range(args.repeats))
    rows.append({"storage": "none", "seconds": round(plain, 3), "per_trial_ms": 0.0})
    backends = []
    with tempfile.TemporaryDirectory(prefix="iclopt-overhead-") as tmp:
        backends.append(("sqlite", lambda i: f"sqlite:///{Path(tmp) / f'study{i}.db'}"))
        if args.postgres:
            backends.append(("postgresql", lambda i: _pg_database(args.postgres, i)))
        for name, url in backends:
            times = [run(storage=url(i), study="overhead") for i in range(args.repeats)]
            best = min(times)
            rows.append(
                {
                    "storage": name,
                    "seconds": round(best, 3),
                    "per_trial_ms": round(1000 * (best - plain) / args.trials, 1),
                }
            )
    for row in rows:
        print(json.dumps(row), flush=True)
    return rows


def _pg_database(server: str, i: int) -> str:
    import psycopg

    name = f"iclopt_overhead_{os.getpid()}_{i}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    w = sub.add_parser("walltime", help="wall time to spend a budget with N workers")
    w.add_argument("--workers", default="1,2,4")
    w.add_argument("--budget", type=int, default=120)
    w.add_argument("--val-size", type=int, default=8)
    w.add_argument("--k", type=int, default=5)
    w.add_argument("--model", default="smollm2")
    w.add_argument(
        "--server",
        action="store_true",
        help="serve the embedded SmolLM2 with `transformers serve` (1 thread) and use it",
    )
    w.add_argument("--continuous-batching", action="store_true")
    o = sub.add_parser("overhead", help="storage overhead per trial (fake LLM)")
    o.add_argument("--trials", type=int, default=200)
    o.add_argument("--repeats", type=int, default=3)
    o.add_argument("--postgres", default=None, help="postgresql://USER@HOST:PORT of a server")
    args = parser.parse_args()
    walltime(args) if args.what == "walltime" else overhead(args)


if __name__ == "__main__":
    main()
