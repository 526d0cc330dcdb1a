"""Benchmark: one k-shot prompt on N validation queries, prefix-KV path vs plain batching.

Measures wall time of the same LLM work through both paths of ``HFModel`` (same outputs,
checked), distinct tokens per second, and the fraction of this machine's fp32 matmul peak
that the useful FLOPs reach. See docs/benchmarks.md for numbers and the exact command.

    python experiments/bench_eval.py --tasks sentiment_v1 active_to_passive_v1 --repeats 3
    python experiments/bench_eval.py --tasks sentiment_v1 --per-query --repeats 2

``--per-query`` gives every query its own k random demonstrations (as KATE, DPP and MDL
do), so the prompts share no prefix beyond a few tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from iclopt.data import load_task
from iclopt.llms import smollm2
from iclopt.llms.hf import _common_prefix_len
from iclopt.prompts import Template

BENCH = (
    Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks" / "instruction_induction"
)


def matmul_peak(n: int = 1024, reps: int = 30) -> float:
    """Best fp32 GFLOP/s of an n x n matmul on this machine (torch's threads)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(5):
        a @ b
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t) / 1e9)
    return best


def model_flops(cfg, n_tokens: int, contexts: list[int], logit_rows: int) -> float:
    """Matmul FLOPs of a Llama-style forward: weights, attention scores, LM head."""
    d, inter, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    kv = cfg.num_key_value_heads * (d // cfg.num_attention_heads)
    per_token = layers * (2 * d * d + 2 * d * kv + 3 * d * inter)  # q,o + k,v + mlp
    attn = sum(4 * layers * d * c for c in contexts)  # QK^T and AV for each token
    return 2.0 * per_token * n_tokens + attn + 2.0 * d * cfg.vocab_size * logit_rows


def distinct_work(seqs: list[list[int]], extra: list[int]) -> tuple[int, list[int]]:
    """Distinct tokens (shared prefix once) and their attention context lengths."""
    p = min(_common_prefix_len(seqs[0], s) for s in seqs)
    p = min(p, min(len(s) for s in seqs) - 1)
    contexts = list(range(1, p + 1))
    for s, e in zip(seqs, extra):
        contexts += list(range(p + 1, len(s) + e + 1))
    return len(contexts), contexts


def timed(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def bench_task(
    llm,
    name: str,
    k: int,
    n_queries: int,
    repeats: int,
    seed: int,
    peak: float,
    modes: list[str],
    per_query: bool = False,
):
    task = load_task(
        pool=BENCH / "induce" / f"{name}.json",
        val=BENCH / "valid" / f"{name}.json",
        val_size=n_queries,
    )
    rng = np.random.default_rng(seed)
    tmpl = Template()

    def draw():
        return [task.pool[i] for i in rng.choice(len(task.pool), size=k, replace=False)]

    demos = draw()
    prompts = [tmpl.render_text(None, draw() if per_query else demos, q.input) for q in task.val]
    seqs = llm.encode(prompts)
    cfg = llm.hf_model.config
    rows = []
    for mode in [m for m in modes if m == "generate" or task.labels]:
        if mode == "generate":

            def run():
                return llm.generate(prompts, max_new_tokens=8, stop=["\n"])
        else:
            labels = list(task.labels)
            rep = [p for p in prompts for _ in labels]
            # as the Evaluator scores labels: separator + label + what ends an answer
            conts = [
                tmpl.answer_separator + lab + tmpl.answer_end for _ in prompts for lab in labels
            ]

            def run(rep=rep, conts=conts):
                return llm.score(rep, conts)

        results, calls = {}, {}
        for pc in (True, False):
            llm.prefix_cache = pc
            before = llm.forward_calls
            run()  # warm-up; counts the forward passes of one run
            calls[pc] = llm.forward_calls - before
            results[pc] = timed(run, repeats)
        (t_kv, out_kv), (t_plain, out_plain) = results[True], results[False]
        if mode == "generate":
            same = out_kv == out_plain
            gen = [len(llm.encode([o])[0]) + 1 for o in out_kv]  # + the stop token
            n_tok, ctx = distinct_work(seqs, gen)
            logit_rows = sum(gen)
        else:
            same = float(np.max(np.abs(np.array(out_kv) - np.array(out_plain)))) < 1e-4
            n_lab = [
                len(llm.tokenizer(c, add_special_tokens=False)["input_ids"])
                for c in conts[: len(task.labels)]
            ]
            n_tok, ctx = distinct_work(seqs, [0] * len(seqs))
            n_tok += len(seqs) * (sum(n_lab) - len(n_lab))
            logit_rows = len(seqs) * sum(n_lab)
        flops = model_flops(cfg, n_tok, ctx, logit_rows)
        row = {
            "task": name,
            "mode": mode + (" per-query" if per_query else ""),
            "queries": len(prompts),
            "prompt_tokens_total": sum(len(s) for s in seqs),
            "distinct_tokens": n_tok,
            "plain_s": round(t_plain, 3),
            "kv_s": round(t_kv, 3),
            "speedup": round(t_plain / t_kv, 2),
            "kv_tokens_per_s": round(n_tok / t_kv),
            "plain_tokens_per_s": round(n_tok / t_plain),
            "kv_peak_frac": round(flops / t_kv / 1e9 / peak, 3),
            "plain_peak_frac": round(flops / t_plain / 1e9 / peak, 3),
            "same_outputs": bool(same),
            "kv_forward_calls": calls[True],
            "plain_forward_calls": calls[False],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    llm.prefix_cache = True
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--tasks", nargs="+", default=["sentiment_v1"])
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument(
        "--batch-overhead",
        type=int,
        default=None,
        help="HFModel.batch_overhead_tokens (default: the library's)",
    )
    ap.add_argument(
        "--modes",
        nargs="+",
        default=["generate", "labels"],
        choices=["generate", "labels"],
        help="labels runs only on classification tasks",
    )
    ap.add_argument(
        "--per-query", action="store_true", help="each query its own random demonstrations"
    )
    ap.add_argument("--out", type=Path, default=None, help="write all rows as JSON here")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    kw = {} if args.batch_overhead is None else {"batch_overhead_tokens": args.batch_overhead}
    llm = smollm2(batch_size=args.batch_size, **kw).load()
    peak = matmul_peak()
    print(
        f"# torch threads {torch.get_num_threads()}, fp32 matmul peak {peak:.1f} GFLOP/s",
        flush=True,
    )
    rows = []
    for name in args.tasks:
        rows += bench_task(
            llm,
            name,
            args.k,
            args.queries,
            args.repeats,
            args.seed,
            peak,
            args.modes,
            per_query=args.per_query,
        )
    print(
        "\n| task | mode | prompt tokens (all) | distinct | plain s | prefix-KV s | speedup "
        "| KV distinct tok/s | KV % of peak | plain % of peak | same outputs "
        "| forward passes KV / plain |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['task']} | {r['mode']} | {r['prompt_tokens_total']} | {r['distinct_tokens']} "
            f"| {r['plain_s']} | {r['kv_s']} | {r['speedup']}x | {r['kv_tokens_per_s']} "
            f"| {100 * r['kv_peak_frac']:.0f}% | {100 * r['plain_peak_frac']:.0f}% "
            f"| {r['same_outputs']} | {r['kv_forward_calls']} / {r['plain_forward_calls']} |"
        )
    if args.out:
        args.out.write_text(json.dumps({"peak_gflops": peak, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
