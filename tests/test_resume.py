"""Crash safety: `iclopt optimize` killed with SIGKILL resumes where it stopped, and two
processes writing one result cache neither corrupt it nor fail with "database is locked".

The resume test runs the real CLI on the real SmolLM2 (a small labelled task so that it
stays fast) and kills it at several points: while it starts, in the middle of the search,
and inside a cache write (a test hook in :mod:`iclopt.store` stalls the first write
transaction of the process before it commits, and the test kills it there).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from multiprocessing import get_context
from pathlib import Path

import pytest

from iclopt.datasets import get_task
from iclopt.evaluation import ResultCache
from iclopt.store import _PAUSE_ENV

VAL = 4  # validation queries: 2 labels each = 8 cache rows per evaluation
BUDGET = 5


def _write_task(folder: Path) -> list[str]:
    task = get_task("sentiment")
    for name, rows in (("pool", task.pool[:16]), ("val", task.val[:VAL]), ("test", task.test[:6])):
        with open(folder / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for ex in rows:
                f.write(json.dumps({"input": ex.input, "output": ex.output}) + "\n")
    return [
        "--pool",
        str(folder / "pool.jsonl"),
        "--val",
        str(folder / "val.jsonl"),
        "--test",
        str(folder / "test.jsonl"),
    ]


def _command(folder: Path, cache: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "iclopt.cli",
        "optimize",
        *_write_task(folder),
        "--k",
        "2",
        "--budget",
        str(BUDGET),
        "--method",  # one full evaluation per cache transaction: the rows count evaluations
        "best-of-n",
        "--seed",
        "3",
        "--cache",
        str(cache),
        "--out",
        str(out),
        "--quiet",
    ]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **extra}


def _rows(cache: Path) -> int:
    if not cache.exists():
        return 0
    conn = sqlite3.connect(cache, timeout=30)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM kv").fetchone()[0])
    except sqlite3.OperationalError:  # the table is not there yet
        return 0
    finally:
        conn.close()


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _wait(cond, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {what}: {proc.stderr.read()}")  # type: ignore[union-attr]
        if time.monotonic() > end:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _integrity(cache: Path) -> None:
    conn = sqlite3.connect(cache)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def _comparable(result: dict) -> dict:
    return {
        "prompt": result["prompt"],
        "val_score": result["val_score"],
        "test_score": result["test_score"],
        "trace": [(e["demos"], e["instruction"], e["score"]) for e in result["trace"]],
    }


_REFERENCE: dict = {}


def reference_run(tmp_path_factory) -> dict:
    """The uninterrupted run of :func:`_command` on a fresh cache (once per session)."""
    if not _REFERENCE:
        folder = tmp_path_factory.mktemp("reference")
        out = folder / "result.json"
        ref = subprocess.run(
            _command(folder, folder / "cache.sqlite", out),
            capture_output=True,
            text=True,
            env=_env(),
            timeout=300,
            check=False,
        )
        assert ref.returncode == 0, ref.stderr
        _REFERENCE.update(json.loads(out.read_text()))
    return _REFERENCE


@pytest.mark.slow
def test_kill_9_at_several_points_then_resume_equals_an_uninterrupted_run(
    tmp_path, tmp_path_factory
):
    reference = reference_run(tmp_path_factory)
    (tmp_path / "b").mkdir()
    paid = reference["cost"]["llm_calls"]
    assert paid == BUDGET * VAL * 2 and reference["cost"]["cache_hits"] == 0

    cache, out = tmp_path / "b" / "cache.sqlite", tmp_path / "b" / "result.json"
    cmd = _command(tmp_path / "b", cache, out)
    per_eval = VAL * 2

    # 1. killed while it starts (loading the model, nothing paid yet)
    proc = subprocess.Popen(cmd, env=_env(), stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    _kill(proc)
    # 2. killed in the middle of the search, after two evaluations were paid
    proc = subprocess.Popen(cmd, env=_env(), stderr=subprocess.PIPE, text=True)
    _wait(lambda: _rows(cache) >= 2 * per_eval, proc, "two evaluations")
    _kill(proc)
    assert not out.exists()
    # 3. killed inside a cache write: the first new evaluation's transaction
    marker = tmp_path / "b" / "in-write"
    before = _rows(cache)
    proc = subprocess.Popen(
        cmd, env=_env(**{_PAUSE_ENV: str(marker)}), stderr=subprocess.PIPE, text=True
    )
    _wait(marker.exists, proc, "the cache write")
    _kill(proc)
    assert _rows(cache) == before  # the killed transaction left nothing behind
    assert before % per_eval == 0 and before >= 2 * per_eval
    _integrity(cache)
    assert not out.exists() and not list(out.parent.glob(".result.json.*"))

    # 4. the same command again: it finishes, paying only for what was never paid
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    resumed = json.loads(out.read_text())
    assert _comparable(resumed) == _comparable(reference)
    n_paid = before // per_eval
    trace = resumed["trace"]
    assert all(e["llm_calls"] == 0 and e["cache_hits"] == per_eval for e in trace[:n_paid])
    assert all(e["llm_calls"] == per_eval for e in trace[n_paid:])
    assert resumed["cost"]["llm_calls"] == paid - before
    _integrity(cache)


def _writer(path: str, start: int, n: int, seed: int) -> int:
    cache = ResultCache(path)
    for i in range(0, n, 10):
        # overlapping keys: both processes write keys start .. start+n, in their own order
        keys = [f"k{(start + (i + j) * seed) % 600}" for j in range(10)]
        cache.put_many({k: {"v": k, "blob": "x" * 200} for k in keys})
        got = cache.get_many(keys)
        assert set(got) == set(keys)
    cache.close()
    return n


def test_two_processes_write_one_cache_at_the_same_time(tmp_path):
    path = str(tmp_path / "cache.sqlite")
    ctx = get_context("spawn")
    with ctx.Pool(2) as pool:
        jobs = [pool.apply_async(_writer, (path, 0, 600, s)) for s in (1, 7)]
        assert [j.get(timeout=120) for j in jobs] == [600, 600]
    cache = ResultCache(path)
    assert len(cache) == 600
    values = cache.get_many([f"k{i}" for i in range(600)])
    assert all(values[f"k{i}"]["v"] == f"k{i}" for i in range(600))
    cache.close()
    _integrity(Path(path))
