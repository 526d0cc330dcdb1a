from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from iclopt.api import compare
from iclopt.cli import app
from iclopt.datasets import get_task
from iclopt.errors import InputDataError, UnknownNameError
from iclopt.evaluation import ResultCache
from iclopt.testing import FakeEmbedder, FakeLLM


def test_compare_table_and_plot(tmp_path):
    task = get_task("last_item")
    llm = FakeLLM()
    res = compare(
        task,
        ["random", "similarity", "best-of-n"],
        llm=llm,
        embedder=FakeEmbedder(),
        k=3,
        seeds=2,
        budget=2,
        cache=ResultCache(tmp_path / "c.sqlite"),
    )
    assert [r["method"] for r in res.summary] == ["random", "similarity", "best-of-n"]
    assert len(res.runs) == 6 and all(r["runs"] == 2 for r in res.summary)
    sim = [r for r in res.runs if r["method"] == "similarity"]
    assert sim[0]["prompt"] is None  # per-query: no single prompt
    # each test query was answered with its own prompt: one prompt text per query
    bon = next(r for r in res.runs if r["method"] == "best-of-n")
    assert bon["llm_calls"] == 2 * 20 + 20 + 50  # 2 searched evaluations + val + test
    paths = res.save(tmp_path / "out")
    assert all(p.exists() for p in paths.values())
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [r["method"] for r in rows] == ["random", "similarity", "best-of-n"]
    assert "| similarity |" in paths["md"].read_text()
    assert json.loads(paths["json"].read_text())["k"] == 3
    # the cost columns do not depend on the cache: a rerun reports the same calls
    again = compare(
        task,
        ["best-of-n"],
        llm=llm,
        embedder=FakeEmbedder(),
        k=3,
        seeds=[0],
        budget=2,
        cache=ResultCache(tmp_path / "c.sqlite"),
    )
    assert again.runs[0]["llm_calls"] == bon["llm_calls"] and again.runs[0]["cache_hits"] > 0


def test_compare_bad_input():
    task = get_task("sentiment")
    with pytest.raises(UnknownNameError, match="valid: best-of-n, dpp, ease, entropy"):
        compare(task, ["nope"], llm=FakeLLM(), cache=False)
    with pytest.raises(InputDataError, match="no methods"):
        compare(task, [], llm=FakeLLM(), cache=False)
    with pytest.raises(InputDataError, match="at least one seed"):
        compare(task, ["random"], llm=FakeLLM(), seeds=[], cache=False)


def test_compare_cli_bad_method(tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "compare",
            "--task",
            "sentiment",
            "--methods",
            "random,nope",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 2
    assert "unknown method 'nope'; valid:" in result.stderr and "similarity" in result.stderr
    assert not (tmp_path / "o").exists()


def test_select_cli(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["select", "--method", "similarity", "--task", "sentiment"])
    assert res.exit_code == 2
    assert [ln for ln in res.stderr.splitlines() if ln.strip()] == [
        "error: method 'similarity' picks demonstrations per query and cannot give one "
        "fixed prompt; pass --query"
    ]
    out = tmp_path / "sel.json"
    res = runner.invoke(
        app,
        [
            "select",
            "--method",
            "random",
            "--task",
            "sentiment",
            "--k",
            "4",
            "--seed",
            "3",
            "--out",
            str(out),
            "--no-cache",
        ],
    )
    assert res.exit_code == 0, res.output
    d = json.loads(out.read_text())
    task = get_task("sentiment")
    assert len(d["prompt"]["demos"]) == 4 and d["seed"] == 3
    first = d["prompt"]["demos"][0]
    assert task.pool[first["pool_id"]].input == first["input"]


def test_select_library_needs_query_for_per_query_methods():
    from iclopt.api import select

    with pytest.raises(InputDataError, match="pass a query"):
        select(get_task("sentiment"), "dpp", llm=FakeLLM(), embedder=FakeEmbedder())
    p = select(
        get_task("sentiment"),
        "dpp",
        llm=FakeLLM(),
        embedder=FakeEmbedder(),
        query="fun",
        k=3,
        cache=False,
    )
    assert len(p.demos) == 3
