"""Smoke test of experiments/peers.py: real DSPy optimizers on the real SmolLM2, tiny sizes.

Skipped when DSPy (the ``bench`` extra) is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

# found, not imported: DSPy loads only when these tests run, not for the whole session
if importlib.util.find_spec("dspy") is None:
    if os.environ.get("ICLOPT_REQUIRE_DSPY"):  # CI: the smoke test must run, never skip
        raise ImportError("ICLOPT_REQUIRE_DSPY is set but DSPy is not installed")
    pytest.skip("DSPy is not installed: pip install -e '.[bench]'", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"

pytestmark = pytest.mark.slow


def _module(name: str):
    if str(EXPERIMENTS) not in sys.path:
        sys.path.insert(0, str(EXPERIMENTS))
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


METHODS = [
    "iclopt:default",
    "dspy:labeled:chat",
    "dspy:labeled:completion",
    "dspy:knn:completion",
    "dspy:bootstrap-rs:completion",
    "dspy:mipro:completion",
    "dspy:simba:completion",
    "dspy:gepa:completion",
]
TINY = ["--tasks", "sentiment_v1", "--seeds", "0", "--k", "2", "--calls", "4"]
TINY += ["--pool-size", "6", "--val-size", "2", "--test-size", "1", "--heldout-size", "1"]
TINY += ["--meta-max-tokens", "16", "--dspy-threads", "2", "--methods", ",".join(METHODS)]


def test_the_ledger_counts_every_call_and_completion_prompts_are_iclopts(smol, bench, tmp_path):
    import dspy

    bridge = _module("peers_dspy")
    from iclopt.data import load_task
    from iclopt.evaluation import Evaluator, ResultCache
    from iclopt.prompts import Prompt

    task = load_task(
        pool=bench / "induce" / "sentiment_v1.json",
        val=bench / "valid" / "sentiment_v1.json",
        pool_size=4,
        val_size=2,
    )
    lm = bridge.IcloptLM(smol, cache=ResultCache(tmp_path / "c.sqlite"), task_max_tokens=4)
    prog = dspy.Predict(bridge.task_signature())
    prog.demos = bridge.to_dspy(task.pool[:2])
    with dspy.context(lm=lm, adapter=bridge.CompletionAdapter(max_new_tokens=4)):
        for q in [*task.val, task.val[0]]:  # the last one is answered by the cache
            prog(input=q.input)
    # the exact text iclopt's evaluator renders for the same demos and query
    want = Evaluator(task, smol).render(Prompt(None, (0, 1)), task.val[1].input)
    assert lm.history[1]["messages"][0]["content"] == want
    assert lm.ledger.total() == {
        "calls": 3,
        "prompt_tokens": sum(smol.count_tokens([want]))
        + 2 * smol.count_tokens([lm.history[0]["messages"][0]["content"]])[0],
        "cache_hits": 1,
    }
    assert lm.ledger.total(kind="meta")["calls"] == 0
    # a plain string prompt (as GEPA's reflection sends) is a meta call in chat format
    with dspy.context(lm=lm):
        lm("Say hi.", max_tokens=2)
    assert lm.ledger.total(kind="meta")["calls"] == 1 and len(lm.history) == 4


def test_smoke_every_dspy_optimizer_runs_resumes_and_reports(smol, bench, tmp_path):
    peers = _module("peers")
    out, doc = tmp_path / "runs", tmp_path / "results.md"
    doc.write_text("# Results\n\nWritten by hand, kept.\n")
    csv = tmp_path / "peers.csv"
    args = [*TINY, "--bench", str(bench), "--out", str(out), "--doc", str(doc), "--csv", str(csv)]
    args += ["--cache", str(tmp_path / "cache.sqlite")]  # never the benchmark's shared cache
    written = peers.main(args, llm=smol)
    assert len(written) == len(METHODS)
    rows = {json.loads(p.read_text())["method"]: json.loads(p.read_text()) for p in written}
    assert set(rows) == set(METHODS)
    for method, r in rows.items():
        assert r["sizes"] == {"pool": 6, "val": 2, "execute": 1, "heldout": 1}, method
        if "error" in r:  # a 135M model may fail DSPy's structured meta prompts; nothing else
            assert r["error_type"] == "AdapterParseError", (method, r["traceback"])
            assert r["calls"] > 0
            continue
        assert set(r["scores"]) == {"execute", "heldout"}, method
        assert all(0.0 <= s <= 1.0 for s in r["scores"].values()), method
    assert rows["iclopt:default"]["calls"] == 4  # held to the budget exactly
    assert rows["dspy:labeled:completion"]["calls"] == 0
    assert rows["dspy:labeled:completion"]["program"]["demos"]  # k labelled demos
    assert rows["dspy:bootstrap-rs:completion"]["calls"] > 0
    assert rows["dspy:gepa:completion"]["meta_calls"] > 0  # reflection calls are counted
    # knn bootstraps from the neighbours at inference: more than one call per test query
    assert rows["dspy:knn:completion"]["test_calls_per_query"]["execute"] > 1
    text = doc.read_text()
    assert text.startswith("# Results\n\nWritten by hand, kept.\n")
    marks = _module("peers_report")
    assert text.count(marks.BEGIN) == 1 and text.count(marks.END) == 1
    for method in METHODS:
        assert f"| {method} |" in text
    assert "iclopt's default minus each other method" in text
    assert "python experiments/peers.py" in text
    assert len(csv.read_text().splitlines()) == 1 + len(METHODS)
    # resumable: a rerun runs nothing and rewrites the same report
    stamps = {p: p.stat().st_mtime_ns for p in written}
    assert peers.main(args, llm=smol) == []
    assert {p: p.stat().st_mtime_ns for p in written} == stamps
    assert doc.read_text() == text
