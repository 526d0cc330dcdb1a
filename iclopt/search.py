"""The one loop that drives every ask/tell optimizer under a budget."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from iclopt.bandits.base import Optimizer, SearchSpaceExhausted, Trial
from iclopt.errors import BudgetExhausted, InputDataError
from iclopt.evaluation import Budget, Evaluation, Evaluator
from iclopt.prompts import Prompt

__all__ = ["TraceEntry", "run_search"]

logger = logging.getLogger(__name__)

#: Consecutive proposals of already evaluated trials after which the loop gives up.
MAX_REPEATS = 50


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


@dataclass
class TraceEntry:
    """One step of a search: the prompt evaluated, its score, its cost and why it was chosen.

    Attributes:
        step: Index in the trace.
        prompt: The prompt evaluated.
        score: Its mean metric on the queries (the validation set unless ``queries``).
        llm_calls: LLM calls this evaluation cost (cache misses).
        prompt_tokens: Prompt tokens of those calls.
        cache_hits: Answers taken from the cache.
        seconds: Wall time of the evaluation.
        queries: ``None`` for the validation set; pool ids for a re-scoring evaluation.
        info: The optimizer's diagnostics (``source``, ``mean``, ``std``, ``acquisition``).
        optimizer_seconds: Time the optimizer took to propose this prompt.
    """

    step: int
    prompt: Prompt
    score: float
    llm_calls: int
    prompt_tokens: int
    cache_hits: int
    seconds: float
    queries: tuple[int, ...] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    optimizer_seconds: float = 0.0

    @property
    def on_val(self) -> bool:
        """Whether the score is a validation score (not a re-scoring on pool queries)."""
        return self.queries is None

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "step": self.step,
            **self.prompt.as_dict(),
            "score": self.score,
            "queries": "val" if self.queries is None else list(self.queries),
            "source": self.info.get("source"),
            "info": _json_safe(self.info),
            "llm_calls": self.llm_calls,
            "prompt_tokens": self.prompt_tokens,
            "cache_hits": self.cache_hits,
            "seconds": round(self.seconds, 3),
            "optimizer_seconds": round(self.optimizer_seconds, 4),
        }


def run_search(
    optimizer: Optimizer,
    evaluator: Evaluator,
    budget: Budget,
    *,
    on_step: Callable[[TraceEntry, Evaluation], None] | None = None,
) -> list[TraceEntry]:
    """Ask, evaluate and tell until the budget is spent or nothing new is left.

    Each trial is scored on the validation set, or, for a re-scoring trial, on the pool
    examples it names. The loop stops when the budget cannot pay for another evaluation,
    when the optimizer raises :class:`~iclopt.bandits.SearchSpaceExhausted`, or when it
    keeps proposing trials that were already evaluated (those are never evaluated twice:
    their known score is told back instead).

    Args:
        optimizer: An optimizer; :meth:`~Optimizer.setup` is called here with the
            evaluation cap as its budget hint.
        evaluator: Scores prompts; its budget should be ``budget``.
        budget: Stops the loop before any cap is exceeded.
        on_step: Called after every evaluation (progress bars, checkpoints).

    Returns:
        The trace, one entry per evaluation.
    """
    if (
        budget.max_evaluations is None
        and budget.max_llm_calls is None
        and (budget.max_prompt_tokens is None)
    ):
        raise InputDataError("a search needs a budget: set max_evaluations, calls or tokens")
    optimizer.setup(evaluator.task, budget=budget.max_evaluations)
    trace: list[TraceEntry] = []
    done: dict[tuple[Prompt, tuple[int, ...] | None], float] = {}
    repeats = 0
    while not budget.exhausted:
        start = time.perf_counter()
        try:
            trial: Trial = optimizer.ask()
        except SearchSpaceExhausted as exc:
            logger.info("search stopped: %s", exc)
            break
        asked = time.perf_counter() - start
        if trial.key in done:
            repeats += 1
            optimizer.tell(trial, done[trial.key])
            if repeats >= MAX_REPEATS:
                logger.warning(
                    "search stopped: %s proposed %d already evaluated prompts in a row",
                    type(optimizer).__name__,
                    repeats,
                )
                break
            continue
        repeats = 0
        queries = None if trial.queries is None else [evaluator.task.pool[i] for i in trial.queries]
        start = time.perf_counter()
        try:
            ev = evaluator.evaluate(trial.prompt, queries)
        except BudgetExhausted as exc:
            logger.info("search stopped: %s", exc)
            break
        done[trial.key] = ev.score
        optimizer.tell(trial, ev.score)
        entry = TraceEntry(
            step=len(trace),
            prompt=trial.prompt,
            score=ev.score,
            llm_calls=ev.cost.llm_calls,
            prompt_tokens=ev.cost.prompt_tokens,
            cache_hits=ev.cost.cache_hits,
            seconds=time.perf_counter() - start,
            queries=trial.queries,
            info=dict(trial.info),
            optimizer_seconds=asked,
        )
        trace.append(entry)
        if on_step is not None:
            on_step(entry, ev)
    return trace
