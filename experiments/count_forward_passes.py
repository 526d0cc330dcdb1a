"""Forward passes of 20 per-query prompts, prefix-KV path vs plain (docs/benchmarks.md)."""

import json
from pathlib import Path

import numpy as np

from iclopt.data import load_task
from iclopt.llms import smollm2
from iclopt.prompts import Template

B = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks" / "instruction_induction"
task = load_task(
    pool=B / "induce/sentiment_v1.json", val=B / "valid/sentiment_v1.json", val_size=20
)
llm = smollm2(num_threads=1).load()
rng = np.random.default_rng(0)
t = Template()
prompts = [
    t.render_text(
        None, [task.pool[i] for i in rng.choice(len(task.pool), 5, replace=False)], q.input
    )
    for q in task.val
]
out = {}
for pc in (True, False):
    llm.prefix_cache = pc
    b = llm.forward_calls
    llm.generate(prompts, max_new_tokens=8, stop=["\n"])
    g = llm.forward_calls - b
    labels = ["negative", "positive"]
    b = llm.forward_calls
    llm.score(
        [p for p in prompts for _ in labels],
        [" " + lab + "\n\n" for _ in prompts for lab in labels],
    )
    s = llm.forward_calls - b
    out["kv" if pc else "plain"] = {"generate": g, "labels": s}
print(json.dumps(out))
