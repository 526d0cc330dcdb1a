"""Many workers on one study: Optuna storages on SQLite and on a real PostgreSQL.

The accounting tests use the fake LLM (the model adds nothing to "no trial lost, none
duplicated, the total equals the budget"); the workers are real processes.
"""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

import pytest
from postgres import postgres_server, postgres_url  # noqa: F401  (fixtures)

import iclopt
from iclopt.bandits import OPTIMIZERS
from iclopt.datasets import get_task
from iclopt.errors import InputDataError
from iclopt.prompts import Prompt
from iclopt.study import SharedStudy, check_storage, read_study
from iclopt.testing import FakeEmbedder, FakeLLM
from iclopt.trace import TraceEntry

FAST = {
    "ease": {"steps": 30, "n_random": 200, "n_keep": 20, "n_init": 3},
    "neural": {"steps": 30, "n_random": 200, "n_ot_draw": 200, "n_ot_keep": 20, "n_init": 3},
    "gp": {"n_random": 200, "n_ot_draw": 200, "n_ot_keep": 20, "n_init": 3, "fit_maxiter": 20},
    "tpe": {"n_init": 3},
    "best-of-n": {},
}


#: Optimizers whose trials a shared study can hold (racing methods score partial ones).
SHAREABLE = [n for n in OPTIMIZERS.names() if not OPTIMIZERS.get(n).partial_evaluations]


def _method(name: str):
    kw = dict(FAST[name])
    if name not in ("best-of-n", "tpe"):
        kw["embedder"] = FakeEmbedder(dim=32)
    return OPTIMIZERS.get(name)(k=3, seed=0, **kw)


class SlowFakeLLM(FakeLLM):
    """The fake LLM at a few milliseconds per call, so that no worker finishes alone."""

    def score(self, prompts, continuations):
        time.sleep(0.02)
        return super().score(prompts, continuations)


def _run(storage: str, study: str, budget: int, method: str = "best-of-n", barrier=None):
    """One worker: the library call every worker makes, returning its view of the result."""
    if barrier is not None:  # start together, once every process has imported iclopt
        barrier.wait(timeout=300)
    res = iclopt.optimize(
        get_task("sentiment"),
        llm=SlowFakeLLM() if barrier is not None else FakeLLM(),
        k=3,
        budget=budget,
        method=_method(method),
        seed=0,
        cache=False,
        evaluate_test=False,
        storage=storage,
        study=study,
    )
    return res.as_dict()


def _check_study(storage: str, name: str, budget: int) -> list:
    _, trials = read_study(storage, name)
    complete = [t for t in trials if t.state == "complete"]
    assert len(complete) == budget, Counter(t.state for t in trials)
    assert not [t for t in trials if t.state == "running"]
    keys = Counter(t.key for t in complete)
    assert max(keys.values()) == 1, [k for k, n in keys.items() if n > 1]
    return complete


def _four_processes(storage: str, budget: int) -> None:
    check_storage(storage)  # the tables exist, as they do once a study runs
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ProcessPoolExecutor(4, mp_context=ctx) as pool:
        barrier = manager.Barrier(4)
        futures = [
            pool.submit(_run, storage, "four", budget, "best-of-n", barrier) for _ in range(4)
        ]
        results = [f.result(timeout=300) for f in futures]
    complete = _check_study(storage, "four", budget)
    workers = Counter(t.attrs["worker"] for t in complete)
    assert len(workers) >= 3, workers  # the work was shared
    # every worker returns the same result: the study's trace and its best prompt
    first = results[0]
    for r in results[1:]:
        assert r["trace"] == first["trace"] and r["prompt"] == first["prompt"]
    assert len(first["trace"]) == budget and first["cost"]["evaluations"] == budget
    assert first["val_score"] == max(e["score"] for e in first["trace"])


def test_four_worker_processes_on_sqlite(tmp_path):
    _four_processes(f"sqlite:///{tmp_path / 'study.db'}", budget=40)


def test_four_worker_processes_on_postgresql(postgres_url):  # noqa: F811
    _four_processes(postgres_url, budget=40)


def test_a_racing_method_on_a_shared_study_is_refused_and_the_shared_default_is_not_racing(
    tmp_path,
):
    from iclopt.bandits import DEFAULT_SHARED_METHOD

    racing = [n for n in OPTIMIZERS.names() if n not in SHAREABLE]
    assert racing, "no racing method registered"
    assert DEFAULT_SHARED_METHOD in SHAREABLE
    for name in racing:
        with pytest.raises(InputDataError, match="shared study cannot hold"):
            iclopt.optimize(
                get_task("sentiment"),
                llm=FakeLLM(),
                method=name,
                budget=4,
                storage=f"sqlite:///{tmp_path / 'study.db'}",
                study="s",
                cache=False,
            )


@pytest.mark.parametrize("name", SHAREABLE)
def test_every_optimizer_with_two_workers(name, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    errors: list[BaseException] = []

    def work() -> None:
        try:
            _run(storage, name, 10, name)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    _check_study(storage, name, 10)


@pytest.mark.parametrize("name", SHAREABLE)
def test_one_worker_on_a_study_is_the_plain_search(name, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    plain = iclopt.optimize(
        get_task("sentiment"),
        llm=FakeLLM(),
        k=3,
        budget=8,
        method=_method(name),
        seed=0,
        cache=False,
        evaluate_test=False,
    ).as_dict()
    shared = _run(storage, "solo", 8, name)
    strip = ("seconds", "optimizer_seconds", "info")
    assert [{k: v for k, v in e.items() if k not in strip} for e in shared["trace"]] == [
        {k: v for k, v in e.items() if k not in strip} for e in plain["trace"]
    ]
    assert shared["prompt"] == plain["prompt"] and shared["val_score"] == plain["val_score"]


def test_a_crashed_workers_trial_is_failed_and_its_prompt_freed(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    _run(storage, "crash", 3)  # creates the study with its configuration
    config, _ = read_study(storage, "crash")
    crashed = SharedStudy(storage, "crash", grace_period=0.3).open(config)
    # a worker that reserved a prompt and died (no heartbeat, never completed)
    r = crashed.reserve(Prompt(None, (7, 8, 9)), None, budget=4, attrs={"pool_size": 50})
    assert r.status == "admitted"
    assert crashed.reserve(Prompt(None, (7, 8, 9)), None, budget=4, attrs={"pool_size": 50}) == (
        type(r)("pending")
    )
    time.sleep(0.5)
    survivor = SharedStudy(storage, "crash", grace_period=0.3).open(config)
    states = Counter(t.state for t in survivor.trials())
    assert states["failed"] == 1 and states["running"] == 0
    again = survivor.reserve(Prompt(None, (7, 8, 9)), None, budget=4, attrs={"pool_size": 50})
    assert again.status == "admitted"  # the slot and the prompt are free again
    survivor.complete(again.trial_id, TraceEntry(step=0, prompt=Prompt(None, (7, 8, 9)), score=0.5))
    assert survivor.reserve(Prompt(None, (1, 2, 3)), None, budget=4, attrs={"pool_size": 50}) == (
        type(r)("full")
    )


def test_a_study_of_another_search_is_refused(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    _run(storage, "s", 2)
    with pytest.raises(InputDataError, match="belongs to another search: its k is 3"):
        iclopt.optimize(
            get_task("sentiment"),
            llm=FakeLLM(),
            k=2,
            budget=2,
            cache=False,
            storage=storage,
            study="s",
        )
    with pytest.raises(InputDataError, match="needs both"):
        iclopt.optimize(get_task("sentiment"), llm=FakeLLM(), k=2, budget=2, storage=storage)
    assert json.dumps(read_study(storage, "s")[0])


def test_show_reports_the_incumbent_of_a_study(tmp_path):
    from typer.testing import CliRunner

    from iclopt.cli import app

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    res = _run(storage, "shown", 6)
    runner = CliRunner()
    got = runner.invoke(app, ["show", "--storage", storage, "--study", "shown"])
    assert got.exit_code == 0, got.output
    assert "6 evaluations done" in got.stdout and "running" in got.stdout
    assert f"val score {res['val_score']:.3f}" in got.stdout
    first = res["prompt"]["demos"][0]["input"]
    assert first[:30] in got.stdout.replace("\n", " ") or first.split()[0] in got.stdout
    query = runner.invoke(
        app, ["show", "--storage", storage, "--study", "shown", "--query", "Superb."]
    )
    assert query.exit_code == 0 and query.stdout.rstrip().endswith("Input: Superb.\nOutput:")
    assert first in query.stdout
    missing = runner.invoke(app, ["show", "--storage", storage, "--study", "nope"])
    assert missing.exit_code == 2 and "no such study" in missing.stderr
