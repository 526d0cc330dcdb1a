"""Library entry points: thin orchestration over the evaluator, optimizers and search."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from iclopt.bandits import OPTIMIZERS, Optimizer
from iclopt.data import Task
from iclopt.errors import InputDataError
from iclopt.evaluation import Budget, Cost, Evaluation, Evaluator, ResultCache, Scoring
from iclopt.llms import LLM, get_llm
from iclopt.llms.hf import cache_dir
from iclopt.prompts import Template
from iclopt.results import OptimizationResult
from iclopt.search import TraceEntry, run_search

__all__ = ["default_cache_path", "optimize"]

logger = logging.getLogger(__name__)


def default_cache_path() -> Path:
    """The shared result cache: ``<cache dir>/results.sqlite``."""
    return cache_dir() / "results.sqlite"


def _check_int(name: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise InputDataError(f"{name} must be an int >= {low}, got {value!r}")


def optimize(
    task: Task,
    *,
    llm: str | LLM = "smollm2",
    k: int = 5,
    budget: int = 60,
    method: str | Optimizer = "best-of-n",
    seed: int | None = 0,
    instructions: Sequence[str | None] | None = None,
    template: Template | None = None,
    scoring: Scoring = "auto",
    max_new_tokens: int = 16,
    max_llm_calls: int | None = None,
    max_prompt_tokens: int | None = None,
    cache: str | os.PathLike[str] | ResultCache | bool = True,
    evaluate_test: bool = True,
    on_step: Callable[[TraceEntry, Evaluation], None] | None = None,
) -> OptimizationResult:
    """Find the instruction and ordered demonstrations that make ``llm`` do ``task`` best.

    Args:
        task: The task; prompts are scored on ``task.val``, the winner on ``task.test``.
        llm: An :class:`~iclopt.llms.LLM` or a model name (``"smollm2"``, a directory).
        k: Demonstrations per prompt.
        budget: Validation evaluations the search may spend (each scores one prompt on
            all of ``task.val``).
        method: Optimizer name (see ``iclopt.bandits.OPTIMIZERS``) or instance.
        seed: Seed of the optimizer; ``None`` for fresh entropy.
        instructions: Candidate instructions searched jointly; default: none.
        template: Prompt template; completion style by default.
        scoring: ``"auto"``, ``"generate"`` or ``"labels"`` (see :class:`Evaluator`).
        max_new_tokens: Generation cap.
        max_llm_calls: Optional hard cap on LLM calls.
        max_prompt_tokens: Optional hard cap on prompt tokens.
        cache: ``True`` for the shared on-disk cache, a path, a :class:`ResultCache`,
            or ``False`` for none.
        evaluate_test: Score the best prompt on ``task.test``.
        on_step: Callback after each evaluation (progress reporting).

    Returns:
        The best prompt, its validation and test scores, cost, trace and config.

    Example:
        >>> from iclopt.datasets import get_task
        >>> res = optimize(get_task("sentiment"), k=5, budget=10, seed=0)  # doctest: +SKIP
        >>> print(res.render("A delight from start to finish."))  # doctest: +SKIP
    """
    _check_int("k", k, 1)
    _check_int("budget", budget, 1)
    if k > len(task.pool):
        raise InputDataError(
            f"k={k} is larger than the pool of task {task.name!r} ({len(task.pool)})"
        )
    if isinstance(method, str):
        optimizer = OPTIMIZERS.get(method)(
            k=k, seed=seed, instructions=list(instructions) if instructions else [None]
        )
    else:
        optimizer = method
    model = get_llm(llm)
    if isinstance(cache, ResultCache):
        store: ResultCache | None = cache
    elif cache is True:
        store = ResultCache(default_cache_path())
    elif cache is False or cache is None:
        store = None
    else:
        store = ResultCache(cache)
    search_budget = Budget(
        max_evaluations=budget, max_llm_calls=max_llm_calls, max_prompt_tokens=max_prompt_tokens
    )
    evaluator = Evaluator(
        task,
        model,
        template=template,
        scoring=scoring,
        max_new_tokens=max_new_tokens,
        cache=store,
        budget=search_budget,
    )
    start = time.perf_counter()
    trace = run_search(optimizer, evaluator, search_budget, on_step=on_step)
    search_budget.spent.seconds = time.perf_counter() - start
    if not trace:
        raise InputDataError("the budget did not allow a single evaluation")
    best = max(trace, key=lambda e: e.score)  # first of the ties: the earliest found
    test_score: float | None = None
    test_cost = Cost()
    if evaluate_test and task.test:
        test_eval = Evaluator(
            task,
            model,
            template=template,
            scoring=scoring,
            max_new_tokens=max_new_tokens,
            cache=store,
        )
        ev = test_eval.evaluate(best.prompt, task.test)
        test_score, test_cost = ev.score, ev.cost
    config = {
        "method": method if isinstance(method, str) else type(method).__name__,
        "optimizer": optimizer.config(),
        "k": k,
        "budget": search_budget.as_dict(),
        "seed": seed,
        "scoring": evaluator.scoring,
        "metric": task.metric
        if isinstance(task.metric, str)
        else getattr(task.metric, "__name__", "callable"),
        "labels": list(task.labels) if task.labels else None,
        "max_new_tokens": max_new_tokens,
        "stop": list(evaluator.stop),
        "template": evaluator.template.as_dict(),
        "sizes": {"pool": len(task.pool), "val": len(task.val), "test": len(task.test)},
        "cache": str(store.path) if store is not None else None,
    }
    return OptimizationResult(
        best=best.prompt,
        demos=[task.pool[i] for i in best.prompt.demos],
        val_score=best.score,
        test_score=test_score,
        template=evaluator.template,
        trace=[e.as_dict() for e in trace],
        cost=search_budget.spent.as_dict(),
        test_cost=test_cost.as_dict(),
        config=config,
        model=model.identity,
        task=task.name,
    )
