"""`iclopt optimize --workers N --storage URL --study NAME` on the real SmolLM2, killed with
SIGKILL (the whole process group: the command and its worker processes) and started again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from test_resume import BUDGET, _command, _env, reference_run
from typer.testing import CliRunner

from iclopt.cli import app
from iclopt.study import read_study


def _complete(storage: str) -> int:
    try:
        _, trials = read_study(storage, "s")
    except Exception:  # the study is not created yet
        return 0
    return sum(t.state == "complete" for t in trials)


@pytest.mark.slow
def test_two_local_workers_killed_and_restarted_finish_the_study(tmp_path, tmp_path_factory):
    reference = reference_run(tmp_path_factory)
    (tmp_path / "b").mkdir()
    storage = f"sqlite:///{tmp_path / 'b' / 'study.db'}"
    out = tmp_path / "b" / "result.json"
    cmd = [
        *_command(tmp_path / "b", tmp_path / "b" / "cache.sqlite", out),
        "--workers",
        "2",
        "--storage",
        storage,
        "--study",
        "s",
    ]
    proc = subprocess.Popen(
        cmd, env=_env(), stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    end = time.monotonic() + 180
    while _complete(storage) < 2:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < end, "no progress"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not out.exists()
    _, trials = read_study(storage, "s")
    # the killed processes were on this machine: their running trials are failed at once
    # (not after the heartbeat's grace period), so their prompts are free again
    assert not [t for t in trials if t.state == "running"]
    paid_before = {t.key for t in trials if t.state == "complete"}

    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    _, trials = read_study(storage, "s")
    complete = [t for t in trials if t.state == "complete"]
    assert len(complete) == BUDGET and not [t for t in trials if t.state == "running"]
    assert max(Counter(t.key for t in complete).values()) == 1  # nothing evaluated twice
    assert paid_before <= {t.key for t in complete}  # paid trials kept, not redone
    # best-of-n with one seed proposes one sequence: the study holds the same prompts and
    # scores as the uninterrupted single-process run, whatever the interleaving
    pairs = sorted((tuple(e["demos"]), e["score"]) for e in result["trace"])
    assert pairs == sorted((tuple(e["demos"]), e["score"]) for e in reference["trace"])
    assert result["val_score"] == reference["val_score"] == max(p[1] for p in pairs)
    assert result["cost"]["evaluations"] == BUDGET

    shown = CliRunner().invoke(app, ["show", "--storage", storage, "--study", "s"])
    assert shown.exit_code == 0, shown.output
    assert f"{BUDGET} evaluations done" in shown.stdout and "0 running" in shown.stdout
    assert f"val score {result['val_score']:.3f}" in shown.stdout
    assert Path(out).exists()
