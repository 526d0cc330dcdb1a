"""Checks every registered optimizer must pass (run by the test suite for each one).

The rewards are synthetic (a fixed function of the prompt), so no LLM is needed; model-
based optimizers get whatever embedder the caller passes (a
:class:`~iclopt.testing.FakeEmbedder` in the test suite).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from iclopt.bandits.base import OPTIMIZERS, Optimizer, SearchSpaceExhausted, Trial
from iclopt.data import Task
from iclopt.errors import InputDataError
from iclopt.prompts import Prompt
from iclopt.testing.components import (
    bad_values,
    check_config,
    check_registration,
    expect_parameter_error,
)

__all__ = ["check_optimizer", "drive", "synthetic_reward"]


def synthetic_reward(prompt: Prompt, pool_size: int) -> float:
    """A deterministic reward that depends on the ids, their positions and the instruction."""
    k = max(1, len(prompt.demos))
    weights = [(d * 37 + pos * 11) % pool_size / pool_size for pos, d in enumerate(prompt.demos)]
    score = sum(w * (k - pos) for pos, w in enumerate(weights)) / (k * (k + 1) / 2)
    return round(score + (0.05 if prompt.instruction else 0.0), 6)


def drive(
    opt: Optimizer,
    task: Task,
    budget: int,
    reward: Callable[[Trial], float] | None = None,
) -> list[Trial]:
    """Set up ``opt`` and run ``budget`` ask/tell steps with ``reward`` (default synthetic).

    Each tell carries per-query records (the reward plus a small deterministic per-query
    offset, as ``score`` and ``signal``) in the trial's query order. Stops early when the
    optimizer reports the space exhausted.
    """
    opt.setup(task, budget=budget)
    trials: list[Trial] = []
    for _ in range(budget):
        try:
            t = opt.ask()
        except SearchSpaceExhausted:
            break
        r = reward(t) if reward is not None else synthetic_reward(t.prompt, len(task.pool))
        ids = [f"v{j}" for j in (range(len(task.val)) if t.full else t.val or ())]
        ids += [f"p{i}" for i in t.queries or ()]
        rows = [{"id": q, "score": r, "signal": r + ((hash(q) % 7) - 3) / 100.0} for q in ids]
        opt.tell(t, r, per_query=rows)
        trials.append(t)
    return trials


def _key(trials: list[Trial]) -> list[Any]:
    return [t.key for t in trials]


def check_optimizer(
    cls: type[Optimizer],
    task: Task,
    *,
    k: int = 3,
    budget: int = 10,
    instructions: tuple[str | None, ...] = ("Answer the question.", None),
    objects: dict[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    """Assert the optimizer contract on ``task`` with synthetic rewards.

    Checks: the class is registered under its ``name`` and described by its docstring's
    first line; every prompt has k distinct in-pool ids and an instruction from the
    candidates; nothing is proposed twice (re-scoring trials use pool queries outside the
    prompt, each (prompt, queries) once; a racing optimizer's partial trials name valid,
    distinct validation and pool queries and never score a prompt on a query twice); the
    same seed and the same observations give the same trials, a different seed different
    ones; the config is JSON and
    :meth:`~Optimizer.from_config` rebuilds an optimizer that replays the same trials; the
    recommendation is an evaluated prompt; the pool is untouched; k outside [1, pool]
    raises :class:`InputDataError`; a budget smaller than an explicit initial design raises
    :class:`InputDataError`; every declared parameter, given a value its constraints
    refuse, makes :meth:`~Optimizer.setup` raise :class:`InputDataError` naming it.

    Args:
        cls: The optimizer class.
        task: A task (its pool is the search space).
        k: Demonstrations per prompt.
        budget: Steps to run.
        instructions: Candidate instructions.
        objects: Non-JSON constructor arguments (an embedder) for model-based methods.
        **kwargs: Further constructor arguments (small settings for speed).

    Raises:
        AssertionError: A check failed (the message says which).
    """
    name = cls.__name__
    objects = objects or {}
    check_registration(cls, OPTIMIZERS)
    before = copy.deepcopy(task.pool)

    def make(seed: int | None, **extra: Any) -> Optimizer:
        return cls(k=k, seed=seed, instructions=instructions, **objects, **kwargs, **extra)

    a = drive(make(0), task, budget)
    assert len(a) == budget, f"{name}: stopped after {len(a)} of {budget} steps"
    races = cls.partial_evaluations
    val = [t for t in a if t.full]
    for t in a:
        p = t.prompt
        assert len(p.demos) == k, f"{name}: {len(p.demos)} demos, asked for {k}"
        assert len(set(p.demos)) == k, f"{name}: repeated ids {p.demos}"
        assert all(0 <= i < len(task.pool) for i in p.demos), f"{name}: ids out of range"
        assert p.instruction in instructions, f"{name}: unknown instruction {p.instruction!r}"
        assert "source" in t.info, f"{name}: trial without a source in its diagnostics"
        if t.queries is not None:
            if not races:
                assert t.prompt in {v.prompt for v in val}, f"{name}: re-scored an unseen prompt"
            assert not set(t.queries) & set(p.demos), f"{name}: re-scoring query in the prompt"
            assert all(0 <= i < len(task.pool) for i in t.queries), f"{name}: query ids"
            assert len(set(t.queries)) == len(t.queries), f"{name}: a query twice in a trial"
        if t.val is not None:
            assert races, f"{name}: a partial validation trial without partial_evaluations"
            assert all(0 <= j < len(task.val) for j in t.val), f"{name}: validation ids"
            assert len(set(t.val)) == len(t.val), f"{name}: a query twice in a trial"
        if not t.full:
            assert t.queries or t.val, f"{name}: a trial with no queries"
    if races:  # no (prompt, query) pair is paid for twice
        pairs = [
            (t.prompt, q)
            for t in a
            for q in [("v", j) for j in (range(len(task.val)) if t.full else t.val or ())]
            + [("p", i) for i in t.queries or ()]
        ]
        assert len(set(pairs)) == len(pairs), f"{name}: scored a prompt on a query twice"
    assert len({v.prompt for v in val}) == len(val), f"{name}: proposed a prompt twice"
    assert len(set(_key(a))) == len(a), f"{name}: repeated a (prompt, queries) trial"
    assert task.pool == before, f"{name}: modified the pool"

    b = drive(make(0), task, budget)
    assert _key(a) == _key(b), f"{name}: same seed and observations, different trials"
    c = drive(make(1), task, budget)
    assert _key(a) != _key(c), f"{name}: seeds 0 and 1 gave the same trials"

    opt = make(0)
    cfg = check_config(opt)
    rebuilt = cls.from_config(cfg, **objects)
    assert rebuilt.config() == cfg, f"{name}: config does not round-trip"
    assert _key(drive(rebuilt, task, budget)) == _key(a), f"{name}: rebuilt optimizer differs"

    used = make(0)
    drive(used, task, budget)
    best, why = used.recommend()
    evaluated = {t.prompt for t in a} if races else {v.prompt for v in val}
    assert best in evaluated, f"{name}: recommended an unevaluated prompt"
    assert isinstance(why, dict) and json.loads(json.dumps(why)) == why, f"{name}: reason"

    for bad in (0, len(task.pool) + 1):
        try:
            cls(k=bad, seed=0, **objects, **kwargs).setup(task, budget=budget)
        except InputDataError:
            pass
        else:
            raise AssertionError(f"{name}: k={bad} did not raise InputDataError")
    if "n_init" in cfg:
        try:
            big = {**kwargs, "n_init": budget + 1}
            cls(k=k, seed=0, **objects, **big).setup(task, budget=budget)
        except InputDataError:
            pass
        else:
            raise AssertionError(f"{name}: a budget below n_init did not raise InputDataError")
    for param, value in bad_values(cls):
        settings = {"k": k, "seed": 0, "instructions": instructions, **objects, **kwargs}
        expect_parameter_error(
            f"{name}.setup",
            param,
            lambda kw: cls(**kw).setup(task, budget=budget),
            {**settings, param: value},
        )
