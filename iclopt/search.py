"""The one loop that drives every ask/tell optimizer under a budget."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from iclopt.bandits.base import Optimizer
from iclopt.errors import BudgetExhausted, InputDataError
from iclopt.evaluation import Budget, Evaluation, Evaluator
from iclopt.prompts import Prompt

__all__ = ["TraceEntry", "run_search"]

logger = logging.getLogger(__name__)


@dataclass
class TraceEntry:
    """One step of a search: the prompt evaluated, its validation score and its cost."""

    step: int
    prompt: Prompt
    score: float
    llm_calls: int
    prompt_tokens: int
    cache_hits: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "step": self.step,
            **self.prompt.as_dict(),
            "score": self.score,
            "llm_calls": self.llm_calls,
            "prompt_tokens": self.prompt_tokens,
            "cache_hits": self.cache_hits,
            "seconds": round(self.seconds, 3),
        }


def run_search(
    optimizer: Optimizer,
    evaluator: Evaluator,
    budget: Budget,
    *,
    on_step: Callable[[TraceEntry, Evaluation], None] | None = None,
) -> list[TraceEntry]:
    """Suggest, evaluate on the validation set and observe until the budget is spent.

    Args:
        optimizer: An optimizer; :meth:`~Optimizer.setup` is called here.
        evaluator: Scores prompts; its budget should be ``budget``.
        budget: Stops the loop before any cap is exceeded.
        on_step: Called after every evaluation (progress bars, checkpoints).

    Returns:
        The trace, one entry per evaluated prompt.
    """
    if (
        budget.max_evaluations is None
        and budget.max_llm_calls is None
        and (budget.max_prompt_tokens is None)
    ):
        raise InputDataError("a search needs a budget: set max_evaluations, calls or tokens")
    optimizer.setup(evaluator.task)
    trace: list[TraceEntry] = []
    while not budget.exhausted:
        prompt = optimizer.suggest()
        start = time.perf_counter()
        try:
            ev = evaluator.evaluate(prompt)
        except BudgetExhausted as exc:
            logger.info("search stopped: %s", exc)
            break
        optimizer.observe(prompt, ev.score)
        entry = TraceEntry(
            step=len(trace),
            prompt=prompt,
            score=ev.score,
            llm_calls=ev.cost.llm_calls,
            prompt_tokens=ev.cost.prompt_tokens,
            cache_hits=ev.cost.cache_hits,
            seconds=time.perf_counter() - start,
        )
        trace.append(entry)
        if on_step is not None:
            on_step(entry, ev)
    return trace
