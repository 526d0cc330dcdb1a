from __future__ import annotations

import numpy as np
import pytest

from iclopt.data import Example, Task
from iclopt.datasets import get_task
from iclopt.errors import InputDataError
from iclopt.selectors import SELECTORS, FitContext
from iclopt.selectors.entropy import EntropySelector, global_entropy, local_entropy
from iclopt.selectors.uncertainty import UncertaintySelector, answer_entropy, disagreement
from iclopt.testing import FakeEmbedder, FakeLLM
from iclopt.testing.conformance import check_selector


def _ctx(**kw):
    return FitContext(llm=FakeLLM(), embedder=FakeEmbedder(), budget=3, **kw)


def _classification_task():
    t = get_task("sentiment")
    return Task(
        "small", t.pool[:30], t.val[:8], t.test[:8], metric="label_accuracy", labels=t.labels
    )


@pytest.mark.parametrize("name", SELECTORS.names())
def test_conformance(name):
    check_selector(SELECTORS.get(name), _classification_task(), _ctx())


def test_uncertainty_measures():
    assert disagreement(["a", "A.", "b"]) == pytest.approx(2 / 3)
    assert answer_entropy(["x", "x"]) == 0.0
    assert answer_entropy(["x", "y"]) == pytest.approx(np.log(2))


def test_uncertainty_picks_the_disagreed_upon_items():
    # FakeLLM samples at random only for odd-length inputs: those are the uncertain ones
    pool = [
        Example(" ".join(["w"] * n) + f" item{i}", f"out{i % 3}", id=str(i))
        for i, n in enumerate([1, 2, 2, 4, 3, 2, 4, 2, 6, 2])
    ]
    task = Task("t", pool, pool[:2])
    sel = UncertaintySelector(seed=0, samples=6, context_k=4).fit(task, _ctx())
    chosen = set(sel.select(task, 2).demos)
    odd = {i for i, ex in enumerate(pool) if len(ex.input.split()) % 2 == 1}
    unc = dict(zip(sel.candidates_.tolist(), sel.uncertainty_.tolist()))
    assert all(unc[i] >= max(unc[j] for j in range(len(pool)) if j not in chosen) for i in chosen)
    assert chosen <= odd


def test_entropy_helpers_and_errors():
    assert global_entropy(["a", "a", "b", "b"]) == pytest.approx(np.log(2))
    assert local_entropy([{"a": 0.0, "b": 0.0}]) == pytest.approx(np.log(2))
    task = get_task("last_item")  # no labels
    with pytest.raises(InputDataError, match="LocalE needs a classification task"):
        EntropySelector(criterion="local").fit(task, _ctx())
    sel = EntropySelector(probe_size=0).fit(_classification_task(), _ctx())
    with pytest.raises(InputDataError, match="entropy needs probe inputs"):
        sel.select(_classification_task(), 3)


def test_entropy_chooses_the_highest_entropy_order():
    task = _classification_task()
    sel = EntropySelector(seed=1, max_permutations=6).fit(task, _ctx())
    prompt = sel.select(task, 3)
    _, scored = sel.results_[3]
    assert len(scored) == 6 and len({p for p, _ in scored}) == 6
    assert {frozenset(p) for p, _ in scored} == {frozenset(prompt.demos)}  # one set, 6 orders
    assert dict(scored)[prompt.demos] == max(v for _, v in scored)


def test_selectors_needing_models_say_so():
    task = _classification_task()
    with pytest.raises(InputDataError, match="needs an embedder"):
        SELECTORS.get("similarity")().fit(task, FitContext(llm=FakeLLM()))
    with pytest.raises(InputDataError, match="needs an LLM"):
        SELECTORS.get("uncertainty")().fit(task, FitContext(embedder=FakeEmbedder()))


def test_entropy_with_generated_probe_inputs():
    task = _classification_task()
    ctx = _ctx()
    sel = EntropySelector(seed=0, probe="generate", probe_size=5, max_permutations=2)
    prompt = sel.fit(task, ctx).select(task, 3)
    assert len(prompt.demos) == 3
    assert ctx.spent.spent.llm_calls >= 5  # the probe inputs were generated (and charged)
