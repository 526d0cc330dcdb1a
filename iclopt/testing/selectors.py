"""Checks every registered selector must pass (run by the test suite for each one)."""

from __future__ import annotations

import copy
from typing import Any

from iclopt.data import Task
from iclopt.errors import InputDataError
from iclopt.selectors.base import SELECTORS, FitContext, Selector
from iclopt.testing.components import (
    bad_values,
    check_config,
    check_registration,
    expect_parameter_error,
)
from iclopt.testing.fakes import FakeEmbedder, FakeLLM

__all__ = ["check_selector"]


def _select(sel: Selector, task: Task, k: int) -> Any:
    query = task.val[0].input if sel.per_query else None
    return sel.select(task, k, query=query)


def check_selector(
    cls: type[Selector], task: Task, context: FitContext | None = None, *, k: int = 3
) -> None:
    """Assert the selector contract on ``task``.

    Checks: the class is registered under its ``name`` and described by its docstring's
    first line; ``config()`` is JSON, holds the ``__init__`` arguments and rebuilds the
    selector; k unique, in-range ids; the pool is not modified; the same seed gives the
    same prompt; k outside [1, pool size] raises :class:`InputDataError`; a per-query
    selector asked for one fixed prompt raises :class:`InputDataError`; every declared
    parameter, given a value its constraints refuse, makes :meth:`~Selector.fit` raise
    :class:`InputDataError` naming it before any LLM call.

    Args:
        cls: The selector class.
        task: A classification task (some selectors need a label set).
        context: What fitting may use; default a :class:`~iclopt.testing.FakeLLM`, a
            :class:`~iclopt.testing.FakeEmbedder` and a budget of 3 evaluations.
        k: Demonstrations per prompt.

    Raises:
        AssertionError: A check failed (the message says which).
    """
    name = cls.__name__
    if context is None:
        context = FitContext(llm=FakeLLM(), embedder=FakeEmbedder(), budget=3)
    check_registration(cls, SELECTORS)
    cfg = check_config(cls(seed=0))
    assert check_config(cls(**cfg)) == cfg, f"{name}: config does not rebuild the selector"

    before = copy.deepcopy(task.pool)
    a = _select(cls(seed=0).fit(task, context), task, k)
    assert len(a.demos) == k, f"{name}: {len(a.demos)} demos, asked for {k}"
    assert len(set(a.demos)) == k, f"{name}: repeated ids {a.demos}"
    assert all(0 <= i < len(task.pool) for i in a.demos), f"{name}: ids out of range"
    assert task.pool == before, f"{name}: modified the pool"
    b = _select(cls(seed=0).fit(task, context), task, k)
    assert a == b, f"{name}: same seed, different prompts {a} vs {b}"
    fitted = cls(seed=0).fit(task, context)
    for bad in (0, len(task.pool) + 1):
        try:
            _select(fitted, task, bad)
        except InputDataError:
            pass
        else:
            raise AssertionError(f"{name}: k={bad} did not raise InputDataError")
    if cls.per_query:
        try:
            fitted.select(task, k)
        except InputDataError:
            pass
        else:
            raise AssertionError(f"{name}: per-query selector gave a fixed prompt")

    for param, value in bad_values(cls):
        spent = context.spent.spent.calls
        expect_parameter_error(
            f"{name}.fit", param, lambda kw: cls(**kw).fit(task, context), {**cfg, param: value}
        )
        assert context.spent.spent.calls == spent, f"{name}: spent calls before checking {param!r}"
