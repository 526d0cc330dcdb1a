"""Checks every registered attributor must pass (run by the test suite for each one).

The model is a fake (:class:`~iclopt.testing.FakeLLM`, or
:class:`~iclopt.testing.FakeWhiteBoxLLM` for a method that needs hidden states), so the
suite runs in seconds on any machine.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from typing import Any

import numpy as np

from iclopt.attribution.base import ATTRIBUTORS, Attribution, Attributor
from iclopt.attribution.context import AttributionContext
from iclopt.data import Task
from iclopt.errors import InputDataError
from iclopt.evaluation import Cost
from iclopt.llms.base import LLM
from iclopt.prompts import Prompt
from iclopt.testing.components import (
    bad_values,
    check_config,
    check_registration,
    expect_parameter_error,
)
from iclopt.testing.fakes import FakeLLM, FakeWhiteBoxLLM

__all__ = ["check_attributor"]


def _raises(what: str, call: Any) -> None:
    try:
        call()
    except InputDataError:
        return
    except Exception as exc:
        raise AssertionError(f"{what} raised {type(exc).__name__}, not InputDataError") from exc
    raise AssertionError(f"{what} did not raise InputDataError")


def _calls(llm: Any) -> int | None:
    calls = getattr(llm, "calls", None)
    return calls if isinstance(calls, int) else None


def _check_shapes(name: str, attr: Attribution, task: Task, prompt: Prompt, n_queries: int) -> None:
    n = len(prompt.demos)
    assert isinstance(attr, Attribution), f"{name}: returned {type(attr).__name__}"
    assert attr.prompt == prompt, f"{name}: attributed {attr.prompt}, asked for {prompt}"
    assert attr.demos == [task.pool[i] for i in prompt.demos], f"{name}: demos out of order"
    assert attr.task == task.name, f"{name}: task {attr.task!r}"
    assert np.shape(attr.scores) == (n,), f"{name}: {np.shape(attr.scores)} scores for {n} demos"
    assert np.all(np.isfinite(attr.scores)), f"{name}: non-finite scores {attr.scores}"
    if attr.suspect is not None:
        assert np.shape(attr.suspect) == (n,), f"{name}: suspect shape {np.shape(attr.suspect)}"
        assert np.all(np.isfinite(attr.suspect)), f"{name}: non-finite suspect scores"
    if attr.errors is not None:
        assert np.shape(attr.errors) == (n,), f"{name}: errors shape {np.shape(attr.errors)}"
        assert np.all(np.asarray(attr.errors) >= 0), f"{name}: negative standard errors"
    assert len(attr.query_ids) == n_queries, (
        f"{name}: {len(attr.query_ids)} query ids for {n_queries} queries"
    )
    if attr.per_query is not None:
        assert np.shape(attr.per_query) == (n, n_queries), (
            f"{name}: per_query shape {np.shape(attr.per_query)}, expected {(n, n_queries)}"
        )
    assert isinstance(attr.cost, Cost), f"{name}: cost is a {type(attr.cost).__name__}"
    assert sorted(attr.ranking()) == list(range(n)), f"{name}: ranking {attr.ranking()}"
    assert set(attr.flagged) <= set(range(n)), f"{name}: flagged {attr.flagged}"


def check_attributor(
    attributor: type[Attributor] | Attributor,
    task: Task | None = None,
    *,
    llm: LLM | None = None,
    prompt: Prompt | None = None,
    **options: Any,
) -> None:
    """Assert the attributor contract.

    Checks: the class is registered under its ``name`` and described by its docstring's
    first line; :meth:`~Attributor.from_context` builds it (and refuses an option
    ``__init__`` does not take); ``config()`` is JSON and holds the ``__init__``
    arguments; the attribution names the method, the task, the model and the prompt, has
    one finite score per demonstration (and, where present, ``suspect``, ``errors`` and
    ``per_query`` of the right shapes), one query id per query (``task.val`` or the
    queries given), a ranking of every position, and survives its JSON form; the same
    settings give the same scores; the pool is not modified; a prompt without
    demonstrations, or with an id outside the pool, raises :class:`InputDataError`; every
    declared parameter, given a value its constraints refuse, makes
    :meth:`~Attributor.attribute` raise :class:`InputDataError` naming it before any LLM
    call.

    Args:
        attributor: An attributor class (built with :meth:`~Attributor.from_context` from
            ``llm``) or instance (used as is; copies get the invalid values).
        task: A classification task; default the first 6 validation queries of the
            built-in ``sentiment`` task.
        llm: The model for a class; default a :class:`~iclopt.testing.FakeWhiteBoxLLM`
            for a method that needs hidden states, else a :class:`~iclopt.testing.FakeLLM`.
        prompt: The prompt attributed (at least 2 demonstrations); default pool ids
            ``(0, 3, 5)``.
        **options: Constructor options for a class (small settings for speed).

    Raises:
        AssertionError: A check failed (the message says which).

    Example:
        >>> from iclopt.attribution import LeaveOneOut
        >>> check_attributor(LeaveOneOut)
    """
    if task is None:
        from iclopt.datasets import get_task

        full = get_task("sentiment")
        task = replace(full, val=full.val[:6])
    prompt = prompt or Prompt(None, (0, 3, 5))
    assert len(prompt.demos) >= 2, "check_attributor needs a prompt of at least 2 demonstrations"
    if isinstance(attributor, Attributor):
        cls = type(attributor)
        assert not options, "options go with a class, not an instance"

        def make() -> Attributor:
            return copy.copy(attributor)

        model = getattr(attributor, "llm", None)
    else:
        cls = attributor
        model = llm or (FakeWhiteBoxLLM() if cls.needs_hidden_states else FakeLLM())
        context = AttributionContext(llm=model, cache=False, seed=0)

        def make() -> Attributor:
            return cls.from_context(context, **options)

        _raises(
            f"{cls.__name__}.from_context with an option it does not take",
            lambda: cls.from_context(context, no_such_option=1),
        )
    name = cls.__name__
    check_registration(cls, ATTRIBUTORS)
    check_config(make())

    before = copy.deepcopy(task.pool)
    a = make().attribute(task, prompt)
    _check_shapes(name, a, task, prompt, len(task.val))
    assert a.method == cls.name, f"{name}: the attribution names method {a.method!r}"
    if isinstance(model, LLM):
        assert a.model == model.identity, f"{name}: the attribution names model {a.model!r}"
    assert a.query_ids == [q.id for q in task.val], f"{name}: query ids {a.query_ids}"
    data = a.as_dict()
    assert json.loads(json.dumps(data)) == data, f"{name}: as_dict() is not JSON"
    again = Attribution.from_dict(data)
    np.testing.assert_allclose(again.scores, a.scores, err_msg=f"{name}: JSON round trip")
    assert task.pool == before, f"{name}: modified the pool"

    b = make().attribute(task, prompt)
    np.testing.assert_array_equal(b.scores, a.scores, err_msg=f"{name}: same settings, new scores")
    some = task.val[:2]
    c = make().attribute(task, prompt, some)
    _check_shapes(name, c, task, prompt, len(some))
    assert c.query_ids == [q.id for q in some], f"{name}: query ids {c.query_ids} for 2 queries"

    _raises(f"{name}: a prompt without demonstrations", lambda: make().attribute(task, Prompt()))
    outside = Prompt(None, (0, len(task.pool)))
    _raises(
        f"{name}: a prompt with an id outside the pool", lambda: make().attribute(task, outside)
    )

    for param, value in bad_values(cls):
        broken = make()
        setattr(broken, param, value)
        calls = _calls(model)
        expect_parameter_error(
            f"{name}.attribute", param, lambda a: a.attribute(task, prompt), broken
        )
        assert _calls(model) == calls, f"{name}: called the LLM before checking {param!r}"
