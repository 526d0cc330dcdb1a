from __future__ import annotations

import json

import pytest

import iclopt
from iclopt.bandits import OPTIMIZERS, RandomSearch
from iclopt.datasets import get_task
from iclopt.errors import InputDataError, UnknownNameError
from iclopt.results import OptimizationResult
from iclopt.testing import FakeLLM


def test_random_search_is_seeded_and_valid():
    task = get_task("sentiment")
    a, b, c = RandomSearch(k=4, seed=0), RandomSearch(k=4, seed=0), RandomSearch(k=4, seed=1)
    for opt in (a, b, c):
        opt.setup(task)
    pa = [a.suggest() for _ in range(5)]
    assert pa == [b.suggest() for _ in range(5)]
    assert pa != [c.suggest() for _ in range(5)]
    assert all(len(set(p.demos)) == 4 and max(p.demos) < len(task.pool) for p in pa)
    assert len(set(pa)) == 5
    seed_zero = RandomSearch(k=4, seed=0)  # seed=0 is a seed, not "no seed"
    seed_zero.setup(task)
    assert seed_zero.suggest() == pa[0]


def test_bad_k_raises_input_error():
    task = get_task("sentiment")
    for k in (0, 101):
        opt = RandomSearch(k=k)
        with pytest.raises(InputDataError, match="k"):
            opt.setup(task)
    with pytest.raises(UnknownNameError, match="valid: best-of-n"):
        OPTIMIZERS.get("nope")


def test_optimize_with_fake_llm_respects_budget(tmp_path):
    task = get_task("last_item")
    fake = FakeLLM()
    res = iclopt.optimize(task, llm=fake, k=3, budget=7, seed=3, cache=False, method="best-of-n")
    assert len(res.trace) == 7 and res.cost["evaluations"] == 7
    assert res.val_score == max(t["score"] for t in res.trace)
    assert res.test_score is not None and res.test_cost["evaluations"] == 1
    assert res.config["seed"] == 3 and res.config["k"] == 3
    path = tmp_path / "r.json"
    res.save(path)
    back = OptimizationResult.load(path)
    assert back.best == res.best and back.render("x, y") == res.render("x, y")
    d = json.loads(path.read_text())
    for key in ("prompt", "val_score", "test_score", "cost", "trace", "config", "model"):
        assert key in d
    assert [x["pool_id"] for x in d["prompt"]["demos"]] == list(res.best.demos)
    assert set(d["cost"]) >= {"evaluations", "llm_calls", "prompt_tokens", "seconds"}


def test_optimize_llm_call_cap_stops_search():
    task = get_task("last_item")
    res = iclopt.optimize(
        task, llm=FakeLLM(), k=2, budget=50, max_llm_calls=45, cache=False, method="best-of-n"
    )
    assert res.cost["llm_calls"] <= 45 and len(res.trace) == 2  # 20 queries per evaluation


def test_the_default_spends_the_calls_of_its_budget_in_partial_evaluations():
    task = get_task("last_item")
    res = iclopt.optimize(task, llm=FakeLLM(), k=3, budget=7, seed=3, cache=False)
    assert res.config["method"] == "race"
    calls = sum(t["calls"] for t in res.trace)
    assert 0.9 * 7 * 20 <= calls <= 7 * 20 == res.config["budget"]["max_llm_calls"]
    assert all(t["n_queries"] == len(t["val"] or []) + len(t["queries"]) for t in res.trace)
    assert {t["source"] for t in res.trace} >= {"explore", "halving"}
    capped = iclopt.optimize(task, llm=FakeLLM(), k=2, budget=50, max_llm_calls=45, cache=False)
    assert sum(t["calls"] for t in capped.trace) <= 45
    with pytest.raises(InputDataError, match="below the 20 calls of one evaluation"):
        iclopt.optimize(task, llm=FakeLLM(), k=2, max_llm_calls=19, cache=False)


def test_optimize_bad_arguments():
    task = get_task("sentiment")
    with pytest.raises(InputDataError, match="budget"):
        iclopt.optimize(task, llm=FakeLLM(), budget=0)
    with pytest.raises(InputDataError, match="larger than the pool"):
        iclopt.optimize(task, llm=FakeLLM(), k=500)
    with pytest.raises(UnknownNameError, match="valid: smollm2"):
        iclopt.optimize(task, llm="no-such-model")


def test_load_rejects_non_results(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("{}")
    with pytest.raises(InputDataError, match="not an iclopt result"):
        OptimizationResult.load(p)


def test_a_rerun_of_the_default_on_its_cache_pays_nothing_and_equals_the_first(tmp_path):
    from iclopt.evaluation import ResultCache

    task = get_task("last_item")
    cache = ResultCache(tmp_path / "c.sqlite")
    first = iclopt.optimize(task, llm=FakeLLM(), k=3, budget=5, seed=1, cache=cache)
    again = iclopt.optimize(task, llm=FakeLLM(), k=3, budget=5, seed=1, cache=cache)
    assert first.cost["llm_calls"] > 0 and again.cost["llm_calls"] == 0
    assert again.cost["cache_hits"] == first.cost["llm_calls"]  # the same calls, all cached
    keep = ("demos", "instruction", "score", "signal", "val", "queries", "calls", "source")
    assert again.best == first.best
    assert [{k: e[k] for k in keep} for e in again.trace] == [
        {k: e[k] for k in keep} for e in first.trace
    ]


def test_method_options_reach_the_method_and_bad_ones_are_one_line_errors():
    task = get_task("last_item")
    res = iclopt.optimize(
        task, llm=FakeLLM(), k=3, budget=5, cache=False, method_options={"chunk": 4}
    )
    assert res.config["optimizer"]["chunk"] == 4
    assert {t["n_queries"] for t in res.trace if t["source"] == "explore"} == {4}
    with pytest.raises(InputDataError, match="has no option 'chunck'; valid: chunk"):
        iclopt.optimize(task, llm=FakeLLM(), method_options={"chunck": 4}, cache=False)
    with pytest.raises(InputDataError, match="'final' parameter of RacingOptimizer"):
        iclopt.optimize(task, llm=FakeLLM(), method_options={"final": 2.0}, cache=False)
