from __future__ import annotations

import pytest

from iclopt.data import Example, Task
from iclopt.errors import BudgetExhausted, InputDataError, LLMError
from iclopt.evaluation import Budget, Cost, Evaluator, ResultCache
from iclopt.prompts import Prompt
from iclopt.testing import FakeLLM


def _task(labels=None):
    pool = [Example(f"red apple {i}", "fruit", id=f"p{i}") for i in range(3)]
    pool += [Example(f"blue car {i}", "vehicle", id=f"q{i}") for i in range(3)]
    val = [Example("green apple", "fruit", "v0"), Example("fast car", "vehicle", "v1")]
    return Task("toy", pool, val, val, labels=labels)


def test_generation_scores_depend_on_demos(fake):
    ev = Evaluator(_task(), fake)
    assert ev.evaluate(Prompt(None, (0, 3))).score == 1.0
    assert ev.evaluate(Prompt(None, (0, 1))).score == 0.5  # no vehicle demo to copy


def test_label_scoring(fake):
    ev = Evaluator(_task(labels=("fruit", "vehicle")), fake)
    res = ev.evaluate(Prompt(None, (0, 3)))
    assert ev.scoring == "labels" and res.score == 1.0
    assert set(res.per_example[0]["label_logprobs"]) == {"fruit", "vehicle"}
    assert res.cost.llm_calls == 4  # 2 queries x 2 labels


def test_persistent_cache_hits_on_rerun(tmp_path, fake):
    path = tmp_path / "c.sqlite"
    first = Evaluator(_task(), fake, cache=ResultCache(path)).evaluate(Prompt(None, (0, 3)))
    assert first.cost.llm_calls == 2 and first.cost.cache_hits == 0
    again = FakeLLM()
    second = Evaluator(_task(), again, cache=ResultCache(path)).evaluate(Prompt(None, (0, 3)))
    assert second.cost.llm_calls == 0 and second.cost.cache_hits == 2 and again.calls == 0
    assert second.score == first.score
    # other decoding settings are other keys
    third = Evaluator(_task(), again, cache=ResultCache(path), max_new_tokens=7)
    assert third.evaluate(Prompt(None, (0, 3))).cost.llm_calls == 2


def test_budget_is_a_hard_stop(fake):
    budget = Budget(max_evaluations=2)
    ev = Evaluator(_task(), fake, budget=budget)
    ev.evaluate(Prompt(None, (0,)))
    ev.evaluate(Prompt(None, (1,)))
    with pytest.raises(BudgetExhausted):
        ev.evaluate(Prompt(None, (2,)))
    assert budget.spent.evaluations == 2 and budget.exhausted
    calls = Budget(max_evaluations=10, max_llm_calls=3)
    ev = Evaluator(_task(), fake, budget=calls)
    ev.evaluate(Prompt(None, (0,)))
    with pytest.raises(BudgetExhausted, match="LLM calls"):
        ev.evaluate(Prompt(None, (1,)))  # would need 2 more calls: 4 > 3
    assert calls.spent.llm_calls == 2  # nothing spent by the refused evaluation


def test_budget_validation():
    with pytest.raises(InputDataError, match="max_evaluations"):
        Budget(max_evaluations=0)
    b = Budget(max_prompt_tokens=10)
    b.charge(Cost(prompt_tokens=10))
    assert b.exhausted


def test_failed_llm_call_is_an_error_not_a_zero():
    ev = Evaluator(_task(), FakeLLM(fail_on="green"))
    with pytest.raises(LLMError):
        ev.evaluate(Prompt(None, (0, 3)))


def test_bad_scoring_and_prompt(fake):
    with pytest.raises(InputDataError, match="no label set"):
        Evaluator(_task(), fake, scoring="labels")
    with pytest.raises(InputDataError, match="outside the pool"):
        Evaluator(_task(), fake).evaluate(Prompt(None, (0, 99)))
