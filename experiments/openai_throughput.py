"""Benchmark: prompt evaluations per second through the openai backend, by concurrency.

Exports the embedded SmolLM2 (``iclopt models export``), serves it with the real
``transformers serve`` on loopback, and scores the same random k-shot prompts on the
validation queries at each concurrency (no cache; greedy generation, since this server
returns no log-probabilities). Checks that every concurrency gives the same answers.

    python experiments/openai_throughput.py --concurrency 1 4 16 --evaluations 4
    python experiments/openai_throughput.py --concurrency 1 4 16 --continuous-batching
    python experiments/openai_throughput.py --local   # the same work in-process, for scale
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2

from iclopt.datasets import get_task
from iclopt.evaluation import Evaluator
from iclopt.llms import OpenAIModel
from iclopt.llms.export import export_model
from iclopt.prompts import Prompt


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(model_dir: Path, port: int, threads: int, cb: bool, log: Path) -> subprocess.Popen:
    exe = shutil.which("transformers", path=str(Path(sys.executable).parent))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    cmd = [str(exe), "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--device", "cpu", "--dtype", "float32"]
    cmd += ["--continuous-batching"] if cb else []
    proc = subprocess.Popen(
        cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    body = {"model": str(model_dir), "prompt": "Hi", "max_tokens": 1, "temperature": 0}
    for _ in range(360):
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx2.post(f"http://127.0.0.1:{port}/v1/completions", json=body).status_code == 200:
                return proc
        except httpx2.TransportError:
            pass
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGTERM)
    raise SystemExit("server did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--evaluations", type=int, default=4, help="prompts scored per level")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="server torch threads")
    ap.add_argument("--continuous-batching", action="store_true")
    ap.add_argument("--local", action="store_true", help="in-process smollm2 instead")
    ap.add_argument("--out", type=Path, default=Path("runs/openai_throughput.json"))
    args = ap.parse_args()

    task = get_task("sentiment")
    rng = random.Random(args.seed)
    prompts = [
        Prompt(None, tuple(rng.sample(range(len(task.pool)), args.k)))
        for _ in range(args.evaluations)
    ]
    if args.local:
        from iclopt.llms import smollm2

        ev = Evaluator(
            task, smollm2(num_threads=args.threads), scoring="generate", max_new_tokens=3
        )
        start = time.perf_counter()
        evals = [ev.evaluate(p) for p in prompts]
        seconds = time.perf_counter() - start
        print(
            json.dumps(
                {
                    "backend": "smollm2 in-process (prefix-KV)",
                    "evaluations_per_s": round(len(prompts) / seconds, 3),
                    "seconds": round(seconds, 2),
                    "mean_score": round(sum(e.score for e in evals) / len(evals), 3),
                }
            )
        )
        return
    work = Path(tempfile.mkdtemp(prefix="iclopt-throughput-"))
    port = free_port()
    try:
        model_dir = export_model("smollm2", work / "smollm2-hf")
        proc = start_server(model_dir, port, args.threads, args.continuous_batching, work / "log")
        rows, answers = [], None
        try:
            for c in args.concurrency:
                llm = OpenAIModel(
                    str(model_dir), base_url=f"http://127.0.0.1:{port}/v1", concurrency=c
                )
                ev = Evaluator(task, llm, scoring="generate", max_new_tokens=3)
                start = time.perf_counter()
                evals = [ev.evaluate(p) for p in prompts]
                seconds = time.perf_counter() - start
                got = [[r["prediction"] for r in e.per_example] for e in evals]
                same = answers is None or got == answers
                answers = answers or got
                counters = llm.counters()
                rows.append(
                    {
                        "concurrency": c,
                        "evaluations": len(prompts),
                        "requests": counters["requests"],
                        "seconds": round(seconds, 2),
                        "evaluations_per_s": round(len(prompts) / seconds, 3),
                        "requests_per_s": round(counters["requests"] / seconds, 2),
                        "retries": counters.get("retries", 0),
                        "same_answers_as_first_level": same,
                        "mean_score": round(sum(e.score for e in evals) / len(evals), 3),
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "server": "transformers serve"
        + (" --continuous-batching" if args.continuous_batching else ""),
        "server_threads": args.threads,
        "task": task.name,
        "val_queries": len(task.val),
        "k": args.k,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("| concurrency | evaluations/s | requests/s | same answers |")
    print("|---:|---:|---:|:---:|")
    for r in rows:
        print(
            f"| {r['concurrency']} | {r['evaluations_per_s']:.3f} | {r['requests_per_s']:.2f} "
            f"| {'yes' if r['same_answers_as_first_level'] else 'NO'} |"
        )


if __name__ == "__main__":
    main()
