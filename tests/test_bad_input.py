"""The bad-input matrix: every command, as a user types it, given something wrong.

Each case must end with exit code 2, exactly one line on stderr that names the problem
(and where), no traceback, and no file left behind (no output, no half-written temp file).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from iclopt.cli import app
from iclopt.datasets import get_task
from iclopt.study import SharedStudy

runner = CliRunner()

POOL = [{"input": f"text number {i}", "output": "yes" if i % 2 else "no"} for i in range(8)]
VAL = [{"input": f"query {i}", "output": "yes" if i % 2 else "no"} for i in range(4)]


def _jsonl(rows: list) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def _files(d: Path) -> None:
    (d / "pool.json").write_text(json.dumps(POOL))
    (d / "val.jsonl").write_text(_jsonl(VAL))


def _result(d: Path, **change: object) -> None:
    """A result file as `iclopt optimize --out` writes it, with some fields changed."""
    first = get_task("sentiment").pool[0]
    base = {
        "format_version": 1,
        "task": "sentiment",
        "model": "SmolLM2-135M-Instruct-Q4_1:0000:float32",
        "prompt": {
            "instruction": None,
            "demos": [{"pool_id": 0, "id": first.id, "input": first.input, "output": first.output}],
        },
        "val_score": 0.5,
        "test_score": None,
        "template": {},
        "config": {"task_source": {"task": "sentiment"}},
        "trace": [],
    }
    base.update(change)
    (d / "result.json").write_text(json.dumps(base))


def _comparison(d: Path, task: str = "last_item") -> None:
    """A folder as `iclopt compare --out` writes it (only its comparison.json matters)."""
    _result(d)
    (d / "cmp").mkdir()
    summary = [{"method": "random", "val_mean": 0.5, "val_std": 0.1, "runs": 2}]
    (d / "cmp" / "comparison.json").write_text(json.dumps({"task": task, "summary": summary}))


def _attribution(d: Path, pool_ids: tuple[int, ...] = (5,)) -> None:
    """An attribution.json as `iclopt attribute` writes it, of the prompt ``pool_ids``."""
    _result(d)
    pool = get_task("sentiment").pool
    demos = [{"pool_id": i, "input": pool[i].input, "output": pool[i].output} for i in pool_ids]
    attr = {
        "method": "loo",
        "task": "sentiment",
        "prompt": {"instruction": None, "demos": list(pool_ids)},
        "demos": demos,
        "scores": [0.1] * len(pool_ids),
    }
    (d / "attribution.json").write_text(json.dumps(attr))


def _write(name: str, data: bytes | str) -> Callable[[Path], None]:
    def make(d: Path) -> None:
        _files(d)
        target = d / name
        if isinstance(data, bytes):
            target.write_bytes(data)
        else:
            target.write_text(data, encoding="utf-8")

    return make


def _unreadable(d: Path) -> None:
    _files(d)
    # a file that cannot be read, even by root: reading this process's memory at 0 fails
    (d / "locked.json").symlink_to("/proc/self/mem")


def _folder(d: Path) -> None:
    _files(d)
    (d / "dir.json").mkdir()


OPT = ["optimize", "--pool", "{d}/pool.json", "--val", "{d}/val.jsonl", "--out", "{d}/out.json"]
OPT_POOL = ["optimize", "--val", "{d}/val.jsonl", "--out", "{d}/out.json", "--pool"]

CASES = [
    # ---- optimize: the data files
    ("missing file", _files, [*OPT_POOL, "{d}/nope.json"], "nope.json: file not found"),
    ("unreadable file", _unreadable, [*OPT_POOL, "{d}/locked.json"], "locked.json: cannot read"),
    ("empty file", _write("e.json", ""), [*OPT_POOL, "{d}/e.json"], "e.json"),
    ("folder for a file", _folder, [*OPT_POOL, "{d}/dir.json"], "dir.json: is a directory"),
    (
        "compare: missing --out",
        _files,
        ["compare", "--pool", "{d}/pool.json", "--val", "{d}/val.jsonl", "--methods", "random"],
        "Missing option '--out'",
    ),
    ("bad JSON", _write("b.json", '[{"input": "a",'), [*OPT_POOL, "{d}/b.json"], "invalid JSON"),
    (
        "bad JSONL line",
        _write("b.jsonl", '{"input": "a", "output": "b"}\n{"input": \n'),
        [*OPT_POOL, "{d}/b.jsonl"],
        "invalid JSON on line 2",
    ),
    (
        "CSV with the wrong delimiter",
        _write("s.csv", "input;output\nhello;yes\nbye;no\n"),
        [*OPT_POOL, "{d}/s.csv"],
        "no column 'input'",
    ),
    (
        "CSV without a header",
        _write("h.csv", "hello,yes\nbye,no\nmore,yes\n"),
        [*OPT_POOL, "{d}/h.csv"],
        "no column 'input'",
    ),
    (
        "JSON of the wrong shape",
        _write("o.json", json.dumps({"input": "a", "output": "b"})),
        [*OPT_POOL, "{d}/o.json"],
        "o.json: expected a list of examples",
    ),
    (
        "list of strings",
        _write("l.json", json.dumps(["a", "b"])),
        [*OPT_POOL, "{d}/l.json"],
        "is not an object",
    ),
    (
        "null field",
        _write("n.json", json.dumps([{"input": "a", "output": None}, *POOL])),
        [*OPT_POOL, "{d}/n.json"],
        "column 'output'",
    ),
    (
        "non-string field",
        _write("i.json", json.dumps([{"input": {"x": 1}, "output": "yes"}, *POOL])),
        [*OPT_POOL, "{d}/i.json"],
        "column 'input' must be text",
    ),
    (
        "non-UTF-8 bytes",
        _write("latin.jsonl", '{"input": "caf\xe9", "output": "yes"}\n'.encode("latin-1")),
        [*OPT_POOL, "{d}/latin.jsonl"],
        "not valid UTF-8",
    ),
    ("missing column", _files, [*OPT, "--input-col", "text"], "no column 'text'"),
    ("empty pool", _write("e.json", "[]"), [*OPT_POOL, "{d}/e.json"], "pool is empty"),
    ("k larger than the pool", _files, [*OPT, "--k", "50"], "larger than the pool"),
    ("k zero", _files, [*OPT, "--k", "0"], "--k"),
    ("k negative", _files, [*OPT, "--k", "-3"], "--k"),
    ("unknown method", _files, [*OPT, "--method", "nope"], "unknown optimizer 'nope'"),
    ("unknown model", _files, [*OPT, "--model", "nope"], "unknown model 'nope'"),
    ("unknown metric", _files, [*OPT, "--metric", "bleu"], "unknown metric 'bleu'"),
    ("unknown scoring backend", _files, [*OPT, "--scoring", "vibes"], "--scoring"),
    ("budget zero", _files, [*OPT, "--budget", "0"], "--budget"),
    ("budget negative", _files, [*OPT, "--budget", "-5"], "--budget"),
    (
        "unwritable output path",
        _files,
        [*OPT[:-2], "--out", "/proc/iclopt-no-such/out.json"],
        "/proc/iclopt-no-such/out.json: cannot write",
    ),
    ("output path is a folder", _files, [*OPT[:-2], "--out", "{d}"], "is a directory"),
    (
        "unreachable storage",
        _files,
        [*OPT, "--storage", "postgresql://nobody@127.0.0.1:1/none", "--study", "s"],
        "postgresql://nobody@127.0.0.1:1/none: cannot open the study storage",
    ),
    (
        "storage that is not a URL",
        _files,
        [*OPT, "--storage", "{d}/study.db", "--study", "s"],
        "not a database URL",
    ),
    (
        "storage without a study name",
        _files,
        [*OPT, "--storage", "sqlite:///{d}/study.db"],
        "needs both --storage URL and --study NAME",
    ),
    # ---- compare
    (
        "compare: unknown method",
        _files,
        [
            *["compare", "--pool", "{d}/pool.json", "--val", "{d}/val.jsonl"],
            *["--methods", "nope", "--out", "{d}/cmp"],
        ],
        "unknown method 'nope'",
    ),
    (
        "compare: missing file",
        _files,
        [
            *["compare", "--pool", "{d}/gone.json", "--val", "{d}/val.jsonl"],
            *["--methods", "random", "--out", "{d}/cmp"],
        ],
        "gone.json: file not found",
    ),
    # ---- select
    (
        "select: per-query method without a query",
        _files,
        [
            *["select", "--pool", "{d}/pool.json", "--val", "{d}/val.jsonl"],
            *["--method", "similarity", "--out", "{d}/sel.json"],
        ],
        "pass --query",
    ),
    (
        "select: k larger than the pool",
        _files,
        [
            *["select", "--pool", "{d}/pool.json", "--val", "{d}/val.jsonl"],
            *["--method", "random", "--k", "40", "--out", "{d}/sel.json"],
        ],
        "larger than the pool",
    ),
    # ---- show
    ("show: missing result", _files, ["show", "{d}/none.json"], "none.json: file not found"),
    (
        "show: not a result",
        _write("r.json", json.dumps([1, 2])),
        ["show", "{d}/r.json"],
        "r.json: not an iclopt result",
    ),
    (
        "show: a result of a newer format",
        lambda d: _result(d, format_version=99),
        ["show", "{d}/result.json"],
        "format version 99",
    ),
    (
        "show: unknown study",
        lambda d: SharedStudy(f"sqlite:///{d}/study.db", "another").open({}),
        ["show", "--storage", "sqlite:///{d}/study.db", "--study", "nope"],
        "study 'nope' in sqlite:///",
    ),
    (
        "show: missing storage file",
        lambda d: None,
        ["show", "--storage", "sqlite:///{d}/none.db", "--study", "s"],
        "none.db does not exist",
    ),
    # ---- attribute
    # ---- report
    (
        "report: a result of a newer format",
        lambda d: _result(d, format_version=99),
        ["report", "{d}/result.json", "--out", "{d}/report.html"],
        "format version 99",
    ),
    (
        "report: a result of an unknown older format",
        lambda d: _result(d, format_version=0),
        ["report", "{d}/result.json", "--out", "{d}/report.html"],
        "format version 0 is not one iclopt writes",
    ),
    (
        "report: a comparison of another task",
        _comparison,
        ["report", "{d}/result.json", "--compare", "{d}/cmp", "--out", "{d}/report.html"],
        "a comparison on task 'last_item', not on the result's task 'sentiment'",
    ),
    (
        "report: a folder without a comparison",
        lambda d: (_result(d), (d / "empty").mkdir()),
        ["report", "{d}/result.json", "--compare", "{d}/empty", "--out", "{d}/report.html"],
        "no comparison.json in {d}/empty",
    ),
    (
        "report: unwritable --out",
        _result,
        ["report", "{d}/result.json", "--out", "/proc/iclopt-no-such/report.html"],
        "/proc/iclopt-no-such/report.html: cannot write",
    ),
    (
        "report: missing attribution file",
        _result,
        ["report", "{d}/result.json", "--attribution", "{d}/nope.json", "--out", "{d}/r.html"],
        "nope.json: file not found",
    ),
    (
        "report: an attribution of another prompt",
        _attribution,
        [
            *["report", "{d}/result.json", "--attribution", "{d}/attribution.json"],
            *["--out", "{d}/r.html"],
        ],
        "attributes the prompt [5], not the result's final prompt [0]",
    ),
    (
        "report: not an attribution",
        lambda d: (_result(d), (d / "a.json").write_text("[1]")),
        ["report", "{d}/result.json", "--attribution", "{d}/a.json", "--out", "{d}/r.html"],
        "a.json: not an iclopt attribution",
    ),
    (
        "optimize: --max-llm-calls below one evaluation",
        _files,
        [*OPT, "--max-llm-calls", "1"],
        "--max-llm-calls 1 is below the calls of one evaluation",
    ),
    (
        "optimize: a label scorer on a generation task",
        _files,
        [*OPT, "--scoring", "label-prob", "--labels", "none"],
        "has no label set: scorer 'label-prob' needs a classification task",
    ),
    (
        "optimize: an all-blank instructions file",
        _write("ins.txt", "\n   \n\t\n"),
        [*OPT, "--instructions-file", "{d}/ins.txt"],
        "ins.txt: no instruction in it",
    ),
    (
        "optimize: a racing method on a shared study",
        _files,
        [*OPT, "--method", "race", "--storage", "sqlite:///{d}/s.db", "--study", "x"],
        "--method race scores partial evaluations",
    ),
    (
        "optimize: an option the method does not have",
        _files,
        [*OPT, "--method", "race", "--option", "nope=1"],
        "RacingOptimizer has no option 'nope'; valid: chunk, explore",
    ),
    (
        "optimize: a racing schedule that cannot fit the budget",
        _files,
        [*OPT, "--method", "race", "--option", "explore=0.8", "--option", "final=0.5"],
        "explore + final of RacingOptimizer must be at most 1",
    ),
    (
        "optimize: --report without --out",
        _files,
        [*OPT[:-2], "--report"],
        "--report writes the page next to the result: give --out",
    ),
    (
        "attribute: a result from another task",
        lambda d: (_files(d), _result(d))[0],
        ["attribute", "{d}/result.json", "--task", "last_item", "--out", "{d}/attr"],
        "was made on task 'sentiment', not on 'last_item'",
    ),
    (
        "attribute: a result from another model",
        lambda d: _result(d, model="another-model:123"),
        ["attribute", "{d}/result.json", "--out", "{d}/attr"],
        "was made with model 'another-model:123'",
    ),
    (
        "attribute: unknown method",
        lambda d: _result(d),
        ["attribute", "{d}/result.json", "--method", "nope", "--out", "{d}/attr"],
        "unknown attribution method 'nope'",
    ),
]


def _listing(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*")}


@pytest.fixture(scope="module")
def converted_model() -> None:
    """The embedded model's one-time conversion done before the cases that load it.

    On a fresh cache the first command that builds the model converts it and transformers
    prints a progress bar on stderr; which case comes first depends on the test order (and
    on the xdist worker), and the one-line check is about the error, not the first run.
    """
    from iclopt.llms import smollm2

    smollm2()


@pytest.mark.parametrize(("name", "make", "args", "needle"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_exit_2_and_leaves_nothing(
    tmp_path, converted_model, name, make, args, needle
):
    d = tmp_path / "work"
    d.mkdir()
    make(d)
    before = _listing(d)
    result = runner.invoke(app, [a.format(d=d) for a in args])
    assert result.exit_code == 2, (name, result.output)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, (name, result.stderr)
    assert "Traceback" not in result.output
    assert needle.format(d=d) in lines[0], (name, lines[0])
    assert _listing(d) == before, (name, _listing(d) - before)
    assert os.path.exists(d)


def test_the_matrix_covers_every_command():
    assert len(CASES) >= 25
    commands = {c[2][0] for c in CASES}
    assert {"optimize", "compare", "select", "show", "attribute", "report"} <= commands
