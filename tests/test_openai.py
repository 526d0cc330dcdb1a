"""The openai backend against a real server (`transformers serve` on SmolLM2), with faults."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from servers import (
    DROP,
    ERROR_500,
    FORWARD,
    RATE_LIMIT,
    SLOW,
    FaultProxy,
    LogprobServer,
    TransformersServer,
    free_port,
)
from typer.testing import CliRunner

from iclopt.cli import app
from iclopt.errors import InputDataError, LLMError
from iclopt.llms import OpenAIModel, get_llm
from iclopt.llms.openai_compat import _continuation_logprob
from iclopt.testing import check_llm

runner = CliRunner()

POSITIVE = [
    "A delight from start to finish.",
    "Warm service and great coffee.",
    "I loved every minute of it.",
    "Superb acting and a clever plot.",
    "Fresh, tasty and cheap.",
]
NEGATIVE = [
    "Cold food and a rude waiter.",
    "A dull, endless film.",
    "It broke after one day.",
    "Overpriced and tasteless.",
    "The worst hotel I have stayed in.",
]


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """`iclopt models export smollm2 DIR`: the folder the server loads (removed afterwards)."""
    target = tmp_path_factory.mktemp("export") / "smollm2-hf"
    result = runner.invoke(app, ["models", "export", "smollm2", str(target)])
    assert result.exit_code == 0, result.output
    yield target
    shutil.rmtree(target, ignore_errors=True)


@pytest.fixture(scope="session")
def server(exported, tmp_path_factory):
    """The real `transformers serve`, started once, stopped after the session."""
    srv = TransformersServer(exported, tmp_path_factory.mktemp("serve") / "serve.log")
    srv.start()
    yield srv
    proc = srv.proc
    srv.stop()
    assert proc is not None and proc.poll() is not None  # nothing left running


@pytest.fixture()
def proxy_factory(server):
    made: list[FaultProxy] = []

    def make(**kwargs):
        p = FaultProxy(server.base_url.removesuffix("/v1"), **kwargs)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


@pytest.fixture()
def data(tmp_path):
    """A tiny sentiment task: pool 8, val 4, test 2."""
    pool = [{"input": t, "output": "positive"} for t in POSITIVE[:4]]
    pool += [{"input": t, "output": "negative"} for t in NEGATIVE[:4]]
    pool = [pool[i] for i in (0, 4, 1, 5, 2, 6, 3, 7)]
    val = [
        {"input": POSITIVE[4], "output": "positive"},
        {"input": NEGATIVE[4], "output": "negative"},
    ]
    val += [
        {"input": "Nice view, friendly staff.", "output": "positive"},
        {"input": "Loud, dirty and slow.", "output": "negative"},
    ]
    test = [
        {"input": "Best pizza in town.", "output": "positive"},
        {"input": "Never again.", "output": "negative"},
    ]
    paths = []
    for name, rows in (("pool", pool), ("val", val), ("test", test)):
        p = tmp_path / f"{name}.json"
        p.write_text(json.dumps(rows))
        paths.append(str(p))
    return paths


def _optimize(data, out: Path, cache: Path, *extra: str, quiet: bool = True):
    pool, val, test = data
    args = ["optimize", "--pool", pool, "--val", val, "--test", test, "--k", "2"]
    args += ["--budget", "3", "--seed", "0", "--max-new-tokens", "3"]
    args += ["--quiet"] if quiet else []
    args += ["--cache", str(cache), "--out", str(out), *extra]
    return runner.invoke(app, args)


def _served(server, base_url=None, *extra: str) -> list[str]:
    return [
        "--model",
        f"openai:{server.model}",
        "--base-url",
        base_url or server.base_url,
        *extra,
    ]


def _one_line_error(result, needle):
    """Exit code 2 and one error line, the last (after the run's description, if any)."""
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in result.output
    assert [ln for ln in lines if ln.startswith("error")] == lines[-1:], result.stderr
    assert lines[-1].startswith("error: ") and needle in lines[-1], lines[-1]


# ---------------------------------------------------------------------- export
def test_export_is_a_plain_hf_folder(exported, tmp_path):
    config = json.loads((exported / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert "quantization_config" not in config
    assert (exported / "model.safetensors").is_file() and (exported / "tokenizer.json").is_file()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("keep me")
    _one_line_error(
        runner.invoke(app, ["models", "export", "smollm2", str(busy)]), "not an empty folder"
    )
    assert (busy / "x").read_text() == "keep me" and len(list(busy.iterdir())) == 1


# ---------------------------------------------------------------------- backend
def test_generate_matches_the_local_model_and_counts_usage(server, smol):
    llm = get_llm("openai:" + server.model, base_url=server.base_url, concurrency=4)
    prompts = [
        f"Review: {t}\nSentiment (positive or negative):" for t in POSITIVE[:3] + NEGATIVE[:3]
    ]
    got = llm.generate(prompts, max_new_tokens=4, stop=["\n"])
    assert got == smol.generate(prompts, max_new_tokens=4, stop=["\n"])
    counters = llm.counters()
    assert counters["requests"] == 6 and counters["retries"] == 0
    assert counters["prompt_tokens"] == sum(smol.count_tokens(prompts))  # the server's usage
    assert llm.identity == f"openai:{server.model}@{server.base_url}"
    # transformers serve ignores `echo`/`logprobs`: detected, and score() refuses
    assert llm.scores_logprobs() is False
    with pytest.raises(LLMError, match="no log-probabilities"):
        llm.score(prompts[:1], [" positive"])
    # chat prompts go to /v1/chat/completions
    chat = llm.apply_chat_template([{"role": "user", "content": "Say hello."}])
    assert llm.generate([chat], max_new_tokens=6)[0].strip()


def test_the_served_backend_passes_check_llm(server):
    """Over `transformers serve`: no log-probabilities, so score() must refuse."""
    llm = get_llm("openai:" + server.model, base_url=server.base_url, concurrency=4)
    check_llm(llm, sampling=False)  # a server need not honour per-request seeds


def test_the_openai_backend_passes_check_llm_with_logprobs(smol):
    srv = LogprobServer(smol)
    try:
        check_llm(OpenAIModel("smollm2", base_url=srv.base_url, concurrency=2), sampling=False)
    finally:
        srv.close()


def test_continuation_logprob_sums_the_tokens_after_the_prompt():
    # "Output:" | " pos" | "itive" | "\n" (one generated token after the echo)
    offsets, lps = [0, 7, 11, 16], [None, -1.0, -0.5, -3.0]
    assert _continuation_logprob(offsets, lps, 7, 16) == -1.5
    with pytest.raises(LLMError):
        _continuation_logprob([0, 7], [None, -1.0], 20, 25)


def test_bad_options_are_one_line_errors(data, tmp_path, server):
    out, cache = tmp_path / "r.json", tmp_path / "c.sqlite"
    for extra, needle in (
        (["--model", "smollm2", "--base-url", server.base_url], "--base-url applies to"),
        (_served(server, None, "--api-key-env", "sk-not-a-name"), "NAME of an environment"),
        (_served(server, "ftp://127.0.0.1:1/v1"), "--base-url must be an http(s) URL"),
        (_served(server, None, "--scoring", "labels"), "returns no log-probabilities"),
        (
            _served(server, f"http://127.0.0.1:{free_port()}/v1", "--max-retries", "1"),
            "no connection after 1 retries (is the server up?)",
        ),
    ):
        _one_line_error(_optimize(data, out, cache, *extra), needle)
    assert not out.exists()
    with pytest.raises(InputDataError):
        OpenAIModel("m", base_url=server.base_url, concurrency=0).client()


# ---------------------------------------------------------------------- end to end
@pytest.mark.parametrize("template", ["completion", "chat"])
def test_optimize_over_the_server_finds_the_local_models_best_prompt(
    data, tmp_path, server, template, caplog
):
    """Greedy both sides; chat prompts go to /v1/chat/completions, rendered by the server."""
    opts = ("--scoring", "generate", "--template", template)
    local = _optimize(data, tmp_path / "local.json", tmp_path / "l.sqlite", *opts)
    assert local.exit_code == 0, local.output
    served = _optimize(
        data, tmp_path / "served.json", tmp_path / "s.sqlite", *opts, *_served(server)
    )
    assert served.exit_code == 0, served.output
    a = json.loads((tmp_path / "local.json").read_text())
    b = json.loads((tmp_path / "served.json").read_text())
    assert b["model"] == f"openai:{server.model}@{server.base_url}"
    assert [t["score"] for t in b["trace"]] == [t["score"] for t in a["trace"]]
    assert b["prompt"] == a["prompt"]
    assert (b["val_score"], b["test_score"]) == (a["val_score"], a["test_score"])
    assert b["config"]["scoring"] == "generate" and b["cost"]["retries"] == 0
    assert b["cost"]["prompt_tokens"] == a["cost"]["prompt_tokens"]  # the server's usage
    if template == "chat":
        return
    # auto scoring: the server has no logprobs, so greedy generation, and the artifact says so
    auto = _optimize(
        data, tmp_path / "auto.json", tmp_path / "s.sqlite", *_served(server), quiet=False
    )  # --quiet would hide the warning: it tells about the run, but is not an error
    assert auto.exit_code == 0, auto.output
    assert "returns no log-probabilities" in caplog.text  # the warning
    c = json.loads((tmp_path / "auto.json").read_text())
    assert c["config"]["scoring"] == "generate" and c["config"]["labels"]
    assert c["prompt"] == b["prompt"] and c["cost"]["llm_calls"] == 0  # all from the cache


# ---------------------------------------------------------------------- faults
SCHEDULE = (FORWARD, ERROR_500, FORWARD, RATE_LIMIT, FORWARD, FORWARD, DROP, FORWARD)
SCHEDULE += (FORWARD, FORWARD, SLOW, FORWARD)


def test_faults_are_retried_and_change_nothing(data, tmp_path, server, proxy_factory):
    opts = ("--scoring", "generate", "--timeout", "3", "--max-retries", "4", "--concurrency", "2")
    clean = _optimize(data, tmp_path / "clean.json", tmp_path / "a.sqlite", *opts, *_served(server))
    assert clean.exit_code == 0, clean.output
    proxy = proxy_factory(schedule=SCHEDULE, retry_after=1.0, slow_seconds=3.5)
    faulty = _optimize(
        data,
        tmp_path / "faulty.json",
        tmp_path / "b.sqlite",
        *opts,
        *_served(server, proxy.base_url),
    )
    assert faulty.exit_code == 0, faulty.output
    a = json.loads((tmp_path / "clean.json").read_text())
    b = json.loads((tmp_path / "faulty.json").read_text())
    injected = sum(proxy.count(x) for x in (ERROR_500, RATE_LIMIT, SLOW, DROP))
    assert min(proxy.count(x) for x in (ERROR_500, RATE_LIMIT, SLOW, DROP)) >= 1
    retried = sum(s.retry > 0 for s in proxy.seen)  # retries the server side saw
    assert b["cost"]["retries"] + b["test_cost"]["retries"] == retried >= injected
    assert [t["score"] for t in b["trace"]] == [t["score"] for t in a["trace"]]
    assert (b["prompt"], b["val_score"], b["test_score"]) == (
        a["prompt"],
        a["val_score"],
        a["test_score"],
    )
    assert b["cost"]["llm_calls"] == a["cost"]["llm_calls"]  # retries are not extra calls
    # every 429 was retried no sooner than its Retry-After
    for i, s in enumerate(proxy.seen):
        if s.action == RATE_LIMIT:
            again = next(x for x in proxy.seen[i + 1 :] if x.body_digest == s.body_digest)
            assert again.retry >= 1 and again.t - s.t >= 1.0


def test_a_server_that_stays_down_stops_the_run_and_keeps_what_was_paid(
    data, tmp_path, server, proxy_factory
):
    proxy = proxy_factory(down_after=6)  # evaluation 1 (4 queries) answered, then 503s
    cache, out = tmp_path / "c.sqlite", tmp_path / "r.json"
    # best-of-n: whole evaluations of 4 queries, so the cache's rows count evaluations
    opts = ("--scoring", "generate", "--max-retries", "1", "--concurrency", "1")
    opts += ("--method", "best-of-n")
    down = _optimize(data, out, cache, *opts, *_served(server, proxy.base_url))
    _one_line_error(down, "failed with HTTP 503 after 1 retries")
    assert not out.exists()
    assert proxy.count("503") >= 2  # tried, retried, gave up
    with sqlite3.connect(cache) as db:
        (rows,) = db.execute("select count(*) from kv").fetchone()
    assert rows == 4  # the first evaluation's four answers; nothing from failed calls
    proxy.down_after = None  # the server is back, at the same URL (part of the identity)
    again = _optimize(data, out, cache, *opts, *_served(server, proxy.base_url))
    assert again.exit_code == 0, again.output
    trace = json.loads(out.read_text())["trace"]
    assert trace[0]["cache_hits"] == 4 and trace[0]["llm_calls"] == 0


# ---------------------------------------------------------------------- secrets
def test_the_api_key_leaks_nowhere(data, tmp_path, server, proxy_factory):
    key = "sk-iclopt-test-" + os.urandom(12).hex()
    proxy = proxy_factory(schedule=(FORWARD, ERROR_500, FORWARD))
    leaky = proxy_factory(echo_auth_status=400)  # a server that echoes the key in errors
    env = {**os.environ, "ICLOPT_TEST_KEY": key, "OPENAI_LOG": "debug", "NO_COLOR": "1"}
    env["ICLOPT_CACHE_DIR"] = str(tmp_path / "cache-dir")
    pool, val, test = data
    base = [sys.executable, "-m", "iclopt.cli", "optimize", "--pool", pool, "--val", val]
    base += ["--test", test, "--k", "2", "--budget", "2", "--max-new-tokens", "3"]
    base += ["--model", f"openai:{server.model}", "--api-key-env", "ICLOPT_TEST_KEY"]
    base += ["--cache", str(tmp_path / "c.sqlite"), "--max-retries", "2"]
    ok = subprocess.run(
        [*base, "--base-url", proxy.base_url, "--out", str(tmp_path / "r.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        [*base, "--base-url", leaky.base_url, "--seed", "1", "--out", str(tmp_path / "x.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "***" in bad.stderr  # the echoed key was masked in the one-line error
    assert proxy.auth == {f"Bearer {key}"} and leaky.auth == {f"Bearer {key}"}  # it was sent
    texts = [ok.stdout, ok.stderr, bad.stdout, bad.stderr]
    assert "DEBUG" in ok.stderr  # the client's debug log was on, and is checked too
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "r.json" for p in files) and any(p.suffix == ".sqlite" for p in files)
    for p in files:
        assert key.encode() not in p.read_bytes(), p
    for text in texts:
        assert key not in text


# ---------------------------------------------------------------------- logprobs
def test_label_scoring_uses_logprobs_when_the_server_returns_them(smol):
    from iclopt.datasets import get_task
    from iclopt.evaluation import Evaluator
    from iclopt.prompts import Prompt

    srv = LogprobServer(smol)
    try:
        llm = OpenAIModel("smollm2", base_url=srv.base_url, concurrency=2)
        assert llm.scores_logprobs() is True
        prompts = ["Review: Great fun.\nSentiment:", "Review: Dull.\nSentiment:"] * 2
        conts = [" positive\n\n", " positive\n\n", " negative\n\n", " negative\n\n"]
        assert llm.score(prompts, conts) == pytest.approx(smol.score(prompts, conts), abs=1e-3)
        task = get_task("sentiment")
        task.val = task.val[:6]
        served = Evaluator(task, llm)  # auto: label likelihood, from the server's logprobs
        assert served.scoring == "labels"
        a = Evaluator(task, smol).evaluate(Prompt(None, (0, 1, 2)))
        b = served.evaluate(Prompt(None, (0, 1, 2)))
        assert [r["prediction"] for r in b.per_example] == [r["prediction"] for r in a.per_example]
        for ra, rb in zip(a.per_example, b.per_example):
            assert rb["label_logprobs"] == pytest.approx(ra["label_logprobs"], abs=1e-3)
    finally:
        srv.close()
