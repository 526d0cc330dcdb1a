"""Checks every registered scorer must pass (run by the test suite for each one)."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from iclopt.data import Task
from iclopt.errors import InputDataError
from iclopt.llms.base import LLM
from iclopt.prompts import Prompt

__all__ = ["check_scorer"]


def check_scorer(name: str, task: Task, llm: LLM, *, k: int = 3) -> None:
    """Assert the scorer contract of ``name`` on ``task`` with ``llm``.

    Checks: every record has ``id``, ``prediction``, a metric ``score`` in [0, 1] and a
    ``signal`` inside the scorer's stated range; the evaluation's score is the mean metric;
    the calls charged are the queries times :meth:`~iclopt.scoring.Scorer.calls_per_query`;
    a second evaluation answers everything from the cache with the same records (cache
    identity); a partial evaluation extended to more queries pays only for the new ones
    and gives the same records for the old ones; a task the scorer does not fit (a label
    scorer on a task without labels) raises :class:`InputDataError`.

    Args:
        name: A registered scorer name.
        task: A task the scorer fits, with at least 4 validation queries.
        llm: The model.
        k: Demonstrations per prompt.

    Raises:
        AssertionError: A check failed (the message says which).
    """
    from dataclasses import replace

    from iclopt.evaluation import Evaluator, ResultCache
    from iclopt.scoring import SCORERS

    cls = SCORERS.get(name)
    low, high = cls.signal_range
    assert low < high, f"{name}: empty signal range"
    queries = list(task.val)
    assert len(queries) >= 4, "check_scorer needs at least 4 validation queries"
    prompt = Prompt(None, tuple(range(k)))
    with tempfile.TemporaryDirectory() as tmp:
        cache = ResultCache(Path(tmp) / "cache.sqlite")
        ev = Evaluator(task, llm, scoring=name, cache=cache)
        assert ev.scorer.name == name, f"{name}: the evaluator built {ev.scorer.name!r}"
        cpq = ev.calls_per_query()
        half = queries[: len(queries) // 2]
        first = ev.evaluate(prompt, half)
        assert first.cost.calls == len(half) * cpq, (
            f"{name}: {first.cost.calls} calls for {len(half)} queries x {cpq}"
        )
        assert first.cost.queries == len(half), f"{name}: {first.cost.queries} queries counted"
        for row, q in zip(first.per_example, half):
            assert row["id"] == q.id, f"{name}: records out of query order"
            assert {"prediction", "score", "signal"} <= set(row), f"{name}: record keys {row}"
            assert 0.0 <= row["score"] <= 1.0, f"{name}: metric {row['score']} outside [0, 1]"
            sig = row["signal"]
            assert sig is not None and not math.isnan(sig), f"{name}: no signal for {q.id}"
            assert low <= sig <= high, f"{name}: signal {sig} outside [{low}, {high}]"
        mean = sum(r["score"] for r in first.per_example) / len(half)
        assert abs(first.score - mean) < 1e-12, f"{name}: score is not the mean metric"
        again = ev.evaluate(prompt, half)
        assert again.cost.llm_calls == 0, (
            f"{name}: a cached evaluation made {again.cost.llm_calls} calls"
        )
        assert again.cost.cache_hits == len(half) * cpq, (
            f"{name}: cache hits {again.cost.cache_hits}"
        )
        assert again.per_example == first.per_example, f"{name}: cached records differ"
        full = ev.evaluate(prompt, queries)
        new = len(queries) - len(half)
        assert full.cost.llm_calls == new * cpq, (
            f"{name}: extending {len(half)} to {len(queries)} queries made "
            f"{full.cost.llm_calls} calls, expected {new * cpq}"
        )
        assert full.per_example[: len(half)] == first.per_example, (
            f"{name}: extension changed old records"
        )
    if cls.needs_labels:
        try:
            Evaluator(replace(task, labels=None), llm, scoring=name)
        except InputDataError:
            pass
        else:
            raise AssertionError(f"{name}: a task without labels did not raise InputDataError")
