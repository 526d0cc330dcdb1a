from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from iclopt.cli import app
from iclopt.cli._common import EvalOptions, LLMOptions, TaskOptions, group, option_groups

runner = CliRunner()


def _run(args):
    return runner.invoke(app, args)


def _one_line_error(result, needle):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output and needle in lines[0]


@pytest.fixture()
def files(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps([{"input": f"x{i}", "output": f"y{i}"} for i in range(8)]))
    val = tmp_path / "val.json"
    val.write_text(json.dumps([{"input": f"q{i}", "output": f"y{i}"} for i in range(4)]))
    return tmp_path, good


@pytest.mark.parametrize(
    ("make", "extra", "needle"),
    [
        (lambda d: None, ["--pool", "{d}/missing.json"], "missing.json: file not found"),
        (lambda d: None, ["--pool", "{d}/[bold]x[/].json"], "[bold]x[/].json: file not found"),
        (lambda d: (d / "bad.json").write_text("[{"), ["--pool", "{d}/bad.json"], "invalid JSON"),
        (lambda d: (d / "e.json").write_text("[]"), ["--pool", "{d}/e.json"], "pool is empty"),
        (
            lambda d: (d / "nc.json").write_text('[{"text": "a", "output": "b"}]'),
            ["--pool", "{d}/nc.json"],
            "no column 'input'",
        ),
        (
            lambda d: (d / "u.csv").write_bytes(b"input,output\ncaf\xe9,x\n"),
            ["--pool", "{d}/u.csv"],
            "not valid UTF-8",
        ),
        (lambda d: None, ["--pool", "{d}/good.json", "--k", "50"], "larger than the pool"),
        (lambda d: None, ["--pool", "{d}/good.json", "--model", "nope"], "unknown model 'nope'"),
        (lambda d: None, ["--pool", "{d}/good.json", "--method", "nope"], "valid: best-of-n"),
        (lambda d: None, ["--pool", "{d}/good.json", "--metric", "bleu"], "unknown metric"),
    ],
)
def test_bad_input_one_line_exit_2_no_artifact(files, make, extra, needle):
    d, _ = files
    make(d)
    args = ["optimize", "--val", str(d / "val.json"), "--out", str(d / "r.json")]
    args += [a.format(d=d) for a in extra]
    result = _run(args)
    _one_line_error(result, needle)
    assert not (d / "r.json").exists()


def test_budget_below_one_is_usage_error(files):
    _, good = files
    result = _run(["optimize", "--pool", str(good), "--val", str(good), "--budget", "0"])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_no_task_given():
    _one_line_error(_run(["optimize"]), "no task")


def test_listing_commands():
    assert "sentiment" in _run(["tasks"]).stdout
    assert "best-of-n" in _run(["methods"]).stdout


def test_optimize_end_to_end_real_model(tmp_path, bench):
    """The issue's command, through the installed entry point, with the real SmolLM2."""
    out = tmp_path / "r.json"
    cmd = [
        sys.executable,
        "-m",
        "iclopt.cli",
        "optimize",
        "--pool",
        str(bench / "induce" / "sentiment_v1.json"),
        "--val",
        str(bench / "valid" / "sentiment_v1.json"),
        "--test",
        str(bench / "execute" / "sentiment_v1.json"),
        "--k",
        "5",
        "--budget",
        "3",
        "--test-size",
        "20",
        "--out",
        str(out),
        "--cache",
        str(tmp_path / "cache.sqlite"),
    ]
    env = {**os.environ, "COLUMNS": "120"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "val score" in proc.stdout and "test score" in proc.stdout
    d = json.loads(out.read_text())
    assert len(d["prompt"]["demos"]) == 5
    # the default search spends the LLM calls of 3 evaluations (20 queries x 2 labels)
    assert d["config"]["method"] == "race" and len(d["trace"]) > 3
    assert 100 <= sum(e["calls"] for e in d["trace"]) <= 3 * 20 * 2
    assert all(e["n_queries"] < 20 for e in d["trace"][:3])  # partial evaluations
    assert {"pool_id", "input", "output"} <= set(d["prompt"]["demos"][0])
    assert 0 <= d["val_score"] <= 1 and 0 <= d["test_score"] <= 1
    assert d["cost"]["llm_calls"] > 0 and d["config"]["seed"] == 0
    assert d["model"].startswith("SmolLM2-135M-Instruct")
    # a rerun pays nothing twice: every answer comes from the cache
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    again = json.loads(out.read_text())
    assert proc.returncode == 0
    assert again["cost"]["llm_calls"] == 0 and again["val_score"] == d["val_score"]
    show = subprocess.run(
        [sys.executable, "-m", "iclopt.cli", "show", str(out), "--query", "Loved it."],
        capture_output=True,
        text=True,
        env=env,
    )
    assert show.returncode == 0 and show.stdout.rstrip().endswith("Input: Loved it.\nOutput:")


# ---------------------------------------------------------------------- option groups
def test_the_commands_share_one_definition_of_each_option_group():
    commands = typer.main.get_command(app).commands
    own = {("attribute", "template"), ("attribute", "max_new_tokens")}  # its own help
    for name in ("optimize", "compare", "attribute", "select"):
        params = {p.name: p for p in commands[name].params}
        for options in (TaskOptions, LLMOptions, EvalOptions):
            for f in dataclasses.fields(options):
                assert f.name in params, (name, f.name)
                if (name, f.name) not in own:
                    assert params[f.name].help == f.metadata["option"].help, (name, f.name)
                    assert f.default == f.metadata["option"].default


def test_option_groups_hand_a_command_one_dataclass_per_group():
    seen = []
    toy = typer.Typer()

    @toy.command()
    @option_groups
    def run(
        source: TaskOptions = group(),
        k: int = typer.Option(3),
        backend: LLMOptions = group(model=typer.Option("other", help="Its own model.")),
    ) -> None:
        seen.append((source, k, backend))

    result = CliRunner().invoke(toy, ["--task", "sentiment", "--k", "4", "--timeout", "2"])
    assert result.exit_code == 0, result.output
    assert seen == [(TaskOptions(task="sentiment"), 4, LLMOptions(model="other", timeout=2.0))]
    assert "Its own model." in CliRunner().invoke(toy, ["--help"]).output
    with pytest.raises(TypeError, match="no option"):

        @option_groups
        def bad(source: TaskOptions = group(nope=typer.Option(1))) -> None: ...
