"""Checks every registered selector must pass (run by the test suite for each one)."""

from __future__ import annotations

import copy
from typing import Any

from iclopt.data import Task
from iclopt.errors import InputDataError
from iclopt.selectors.base import FitContext, Selector

__all__ = ["check_selector"]


def _select(sel: Selector, task: Task, k: int) -> Any:
    query = task.val[0].input if sel.per_query else None
    return sel.select(task, k, query=query)


def check_selector(cls: type[Selector], task: Task, context: FitContext, *, k: int = 3) -> None:
    """Assert the selector contract on ``task``.

    Checks: k unique, in-range ids; the pool is not modified; the same seed gives the
    same prompt; k outside [1, pool size] raises :class:`InputDataError`; a per-query
    selector asked for one fixed prompt raises :class:`InputDataError`.

    Raises:
        AssertionError: A check failed (the message says which).
    """
    before = copy.deepcopy(task.pool)
    a = _select(cls(seed=0).fit(task, context), task, k)
    assert len(a.demos) == k, f"{cls.__name__}: {len(a.demos)} demos, asked for {k}"
    assert len(set(a.demos)) == k, f"{cls.__name__}: repeated ids {a.demos}"
    assert all(0 <= i < len(task.pool) for i in a.demos), f"{cls.__name__}: ids out of range"
    assert task.pool == before, f"{cls.__name__}: modified the pool"
    b = _select(cls(seed=0).fit(task, context), task, k)
    assert a == b, f"{cls.__name__}: same seed, different prompts {a} vs {b}"
    fitted = cls(seed=0).fit(task, context)
    for bad in (0, len(task.pool) + 1):
        try:
            _select(fitted, task, bad)
        except InputDataError:
            pass
        else:
            raise AssertionError(f"{cls.__name__}: k={bad} did not raise InputDataError")
    if cls.per_query:
        try:
            fitted.select(task, k)
        except InputDataError:
            pass
        else:
            raise AssertionError(f"{cls.__name__}: per-query selector gave a fixed prompt")
