"""Library entry points: thin orchestration over the evaluator, optimizers and search."""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from iclopt.bandits import DEFAULT_METHOD, DEFAULT_SHARED_METHOD, OPTIMIZERS, Optimizer
from iclopt.bandits.base import SHARED_ARGUMENTS, check_fits, own_options
from iclopt.data import Task
from iclopt.embedders.base import Embedder
from iclopt.errors import InputDataError, UnknownNameError
from iclopt.evaluation import (
    Budget,
    Cost,
    Evaluation,
    Evaluator,
    ResultCache,
    Scoring,
    open_result_cache,
)
from iclopt.llms import LLM, get_llm
from iclopt.paths import default_cache_path
from iclopt.prompts import Prompt, Template
from iclopt.results import OptimizationResult
from iclopt.search import TraceEntry, run_search
from iclopt.study import describe_storage

__all__ = [
    "ComparisonResult",
    "check_method_options",
    "compare",
    "default_cache_path",
    "estimate_search",
    "optimize",
    "select",
]

logger = logging.getLogger(__name__)


def _check_int(name: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise InputDataError(f"{name} must be an int >= {low}, got {value!r}")


def estimate_search(
    task: Task,
    llm: LLM,
    *,
    k: int = 5,
    budget: int = 60,
    method: str = DEFAULT_METHOD,
    scoring: Scoring = "auto",
    template: Template | None = None,
    max_llm_calls: int | None = None,
    seed: int | None = 0,
) -> dict[str, Any]:
    """What a search will cost before it starts: LLM calls and prompt tokens (an estimate).

    Calls: ``max_llm_calls`` when given, else ``budget`` evaluations of every validation
    query (a query costs one call per label under label scoring); cache hits count as
    calls. Tokens: calls times the mean length of a few random ``k``-shot prompts.

    Returns:
        ``calls``, ``prompt_tokens``, ``calls_per_query``, ``scorer``.
    """
    evaluator = Evaluator(task, llm, template=template, scoring=scoring)
    cpq = evaluator.calls_per_query()
    calls = budget * len(task.val) * cpq
    if max_llm_calls is not None:
        calls = min(calls, max_llm_calls) if not _races(method) else max_llm_calls
    rng = np.random.default_rng(seed)
    texts = []
    for i in range(min(8, len(task.val))):
        demos = tuple(
            int(d) for d in rng.choice(len(task.pool), size=min(k, len(task.pool)), replace=False)
        )
        texts.append(evaluator.render(Prompt(None, demos), task.val[i].input))
    per_call = float(np.mean(llm.count_tokens(texts))) if texts else 0.0
    return {
        "calls": int(calls),
        "prompt_tokens": int(calls * per_call),
        "calls_per_query": cpq,
        "scorer": evaluator.scorer.name,
    }


def check_method_options(
    cls: type[Optimizer], options: dict[str, Any], *, task: Task, k: int, budget: int
) -> None:
    """Refuse method options that ``cls`` does not take or whose values are bad (one line).

    Names are checked against the constructor's signature; values by a trial
    :meth:`~iclopt.bandits.Optimizer.setup` on ``task`` where that is cheap (not for the
    model-based methods, whose setup embeds the pool).
    """
    from iclopt.bandits.model_based import ModelBasedOptimizer

    valid = sorted(own_options(cls))
    for key in options:
        if key in SHARED_ARGUMENTS:
            raise InputDataError(f"option {key!r} has its own argument (--{key.replace('_', '-')})")
        if key not in valid:
            raise InputDataError(
                f"{cls.__name__} has no option {key!r}; valid: {', '.join(valid) or '(none)'}"
            )
    if not issubclass(cls, ModelBasedOptimizer):
        cls(k=k, seed=0, **options).setup(task, budget=budget)


def _races(method: str | Optimizer) -> bool:
    cls = OPTIMIZERS.get(method) if isinstance(method, str) else type(method)
    return cls.partial_evaluations


def optimize(
    task: Task,
    *,
    llm: str | LLM = "smollm2",
    k: int = 5,
    budget: int = 60,
    method: str | Optimizer | None = None,
    seed: int | None = 0,
    instructions: Sequence[str | None] | None = None,
    generate_instructions: int = 0,
    n_init: int | None = None,
    embedder: Embedder | str | None = None,
    template: Template | None = None,
    scoring: Scoring = "auto",
    max_new_tokens: int | None = None,
    max_llm_calls: int | None = None,
    max_prompt_tokens: int | None = None,
    cache: str | os.PathLike[str] | ResultCache | bool = True,
    evaluate_test: bool = True,
    on_step: Callable[[TraceEntry, Evaluation], None] | None = None,
    storage: str | None = None,
    study: str | None = None,
    method_options: dict[str, Any] | None = None,
) -> OptimizationResult:
    """Find the instruction and ordered demonstrations that make ``llm`` do ``task`` best.

    Args:
        task: The task; prompts are scored on ``task.val``, the winner on ``task.test``.
        llm: An :class:`~iclopt.llms.LLM` or a model name (``"smollm2"``, a directory).
        k: Demonstrations per prompt.
        budget: Evaluations the search may spend (each scores one prompt on all of
            ``task.val``; a re-scoring evaluation of ``neural`` scores it on as many
            extra pool queries). A racing method (``race``) spends the LLM calls of
            ``budget`` such evaluations on partial ones.
        method: Optimizer name (see ``iclopt.bandits.OPTIMIZERS``) or instance; ``None``
            for the default (``DEFAULT_METHOD``; with a shared ``storage``,
            ``DEFAULT_SHARED_METHOD``, since the default's partial evaluations cannot be
            shared yet).
        seed: Seed of the optimizer (and of instruction generation); ``None`` for fresh
            entropy.
        instructions: Candidate instructions searched jointly; default: none.
            De-duplicated (case and whitespace ignored).
        generate_instructions: Also propose this many instructions with the LLM
            (APE-style, :func:`iclopt.instructions.generate_instructions`); the calls are
            charged to the budget and cached. Without ``instructions``, "no
            instruction" stays a candidate.
        n_init: Initial design of model-based methods; ``None`` scales 40/165 of the
            budget (EASE's ratio).
        embedder: Sentence encoder of model-based methods (object or sentence-transformers
            name); ``None`` for the offline all-MiniLM-L6-v2.
        template: Prompt template; completion style by default.
        scoring: ``"auto"``, ``"generate"`` or ``"labels"`` (see :class:`Evaluator`).
        max_new_tokens: Generation cap; ``None`` derives it from the pool's longest answer.
        max_llm_calls: Optional hard cap on LLM calls, cache hits included (a query costs
            one call, or one per label under label scoring); at least one evaluation's.
        max_prompt_tokens: Optional hard cap on prompt tokens.
        cache: ``True`` for the shared on-disk cache, a path, a :class:`ResultCache`,
            or ``False`` for none.
        evaluate_test: Score the best prompt on ``task.test``.
        on_step: Callback after each evaluation (progress reporting).
        storage: An Optuna storage URL (``sqlite:///runs/study.db``,
            ``postgresql://user@host/db``) to share the search with other workers started
            the same way (see :mod:`iclopt.study`); ``budget`` is then the study's total
            and the result covers every worker's evaluations.
        study: The study name within ``storage`` (required with it).
        method_options: Further constructor arguments of the method (e.g. race's
            ``{"chunk": 16, "final": 0.4}``), checked against its signature.

    Returns:
        The best prompt (the optimizer's recommendation: the best validation score, or
        for ``neural`` the best combined score after re-scoring), its validation and test
        scores, cost, trace (with each step's diagnostics) and config.

    Raises:
        InputDataError: Bad arguments (k > pool, a budget smaller than the initial design,
            an empty instruction list, an unknown method, ...).
        MissingDependencyError: The method needs a package that is not installed.

    Example:
        >>> from iclopt.datasets import get_task
        >>> res = optimize(get_task("sentiment"), k=5, budget=10, seed=0)  # doctest: +SKIP
        >>> print(res.render("A delight from start to finish."))  # doctest: +SKIP
    """
    from iclopt.bandits.model_based import ModelBasedOptimizer
    from iclopt.instructions import dedupe_instructions
    from iclopt.instructions import generate_instructions as ape

    if method is None:
        method = DEFAULT_METHOD if storage is None else DEFAULT_SHARED_METHOD
    _check_int("k", k, 1)
    _check_int("budget", budget, 1)
    _check_int("generate_instructions", generate_instructions, 0)
    if n_init is not None:
        _check_int("n_init", n_init, 1)
    check_fits(task, k=k, budget=budget, n_init=n_init)
    user_instructions: list[str | None] = []
    if instructions is not None:
        if not list(instructions):
            raise InputDataError("the instruction list is empty")
        user_instructions = dedupe_instructions(instructions)
        if not user_instructions:
            raise InputDataError("the instruction list is empty after de-duplication")
    if isinstance(method, str):
        cls = OPTIMIZERS.get(method)
        model_based = issubclass(cls, ModelBasedOptimizer)
        if model_based:
            cls.check_dependencies(embedder)  # type: ignore[attr-defined]
    else:
        cls, model_based = type(method), isinstance(method, ModelBasedOptimizer)
    if (storage is None) != (study is None):
        raise InputDataError("a shared study needs both --storage URL and --study NAME")
    options = dict(method_options or {})
    if options:
        if not isinstance(method, str):
            raise InputDataError("method_options need a method name, not an optimizer object")
        check_method_options(cls, options, task=task, k=k, budget=budget)
    if max_llm_calls is not None:
        _check_int("max_llm_calls", max_llm_calls, 1)
    races = cls.partial_evaluations
    if races and storage is not None:
        raise InputDataError(
            f"method {method if isinstance(method, str) else cls.__name__!r} scores partial "
            "evaluations, which a shared study cannot hold yet; use another method with --storage"
        )
    model = get_llm(llm)
    store = open_result_cache(cache)
    # A racing method spends the calls of `budget` full validation evaluations in partial
    # ones (its call cap is set below, once the scorer is known).
    search_budget = Budget(
        max_evaluations=None if races else budget,
        max_llm_calls=max_llm_calls,
        max_prompt_tokens=max_prompt_tokens,
    )
    generated: list[str] = []
    generation_cost = Cost()
    if generate_instructions:
        generated, generation_cost = ape(
            task,
            model,
            generate_instructions,
            seed=seed,
            budget=search_budget,
            cache=store,
        )
    candidates = dedupe_instructions((user_instructions or [None]) + list(generated))
    if isinstance(method, str):
        kwargs: dict[str, Any] = {"k": k, "seed": seed, "instructions": candidates}
        if model_based:
            kwargs.update(n_init=n_init, embedder=embedder)
        optimizer = cls(**kwargs, **options)
    else:
        optimizer = method
    # the search's evaluator and the one that scores its choice afterwards
    scored_as: dict[str, Any] = {
        "template": template,
        "scoring": scoring,
        "max_new_tokens": max_new_tokens,
        "cache": store,
    }
    evaluator = Evaluator(task, model, budget=search_budget, **scored_as)
    one_evaluation = len(task.val) * evaluator.calls_per_query()
    if max_llm_calls is not None and max_llm_calls < one_evaluation:
        raise InputDataError(
            f"--max-llm-calls {max_llm_calls} is below the {one_evaluation} calls of one "
            f"evaluation ({len(task.val)} validation queries x "
            f"{evaluator.calls_per_query()} calls each)"
        )
    if races and max_llm_calls is None:
        search_budget.max_llm_calls = (
            budget * len(task.val) * evaluator.calls_per_query() + search_budget.spent.calls
        )
    # what makes two runs the same search: the study's fingerprint and the result's config
    search = {
        "method": method if isinstance(method, str) else type(method).__name__,
        "k": k,
        "seed": seed,
        "scoring": evaluator.scoring,
        "max_new_tokens": evaluator.max_new_tokens,
        "template": evaluator.template.as_dict(),
    }
    shared = None
    if storage is not None and study is not None:
        from iclopt.study import SharedStudy, search_fingerprint

        shared = SharedStudy(storage, study).open(
            search_fingerprint(task, model=model.identity, instructions=candidates, **search)
        )
    start = time.perf_counter()
    trace = run_search(optimizer, evaluator, search_budget, on_step=on_step, ledger=shared)
    search_budget.spent.seconds = time.perf_counter() - start
    if shared is not None:  # the cost of the whole study, every worker's
        search_budget.spent = Cost(
            evaluations=len(trace),
            llm_calls=sum(e.cost.llm_calls for e in trace),
            prompt_tokens=sum(e.cost.prompt_tokens for e in trace),
            cache_hits=sum(e.cost.cache_hits for e in trace),
            seconds=search_budget.spent.seconds,
        )
    if not trace:
        raise InputDataError("the budget did not allow a single evaluation")
    best_prompt, why = optimizer.recommend()
    full = [e for e in trace if e.on_val and e.prompt == best_prompt]
    val_score = full[0].score if full else float("nan")
    final_cost = Cost()  # scoring the chosen prompt outside the search
    final_eval = Evaluator(task, model, **scored_as)
    if not full:  # a racing method's choice: its whole validation score, mostly cached
        rescored = final_eval.evaluate(best_prompt)
        val_score, final_cost = rescored.score, rescored.cost
    test_score: float | None = None
    test_cost = final_cost
    if evaluate_test and task.test:
        # a phase record: the CLI shows it as the current step (iclopt/cli/_feedback.py)
        logger.info(
            "scoring the best prompt on %d test queries", len(task.test), extra={"phase": True}
        )
        ev = final_eval.evaluate(best_prompt, task.test)
        test_score = ev.score
        test_cost += ev.cost
    config = {
        **search,
        "optimizer": optimizer.config(),
        "budget": search_budget.as_dict(),
        "scorer": evaluator.scorer.as_dict(),
        "metric": task.metric
        if isinstance(task.metric, str)
        else getattr(task.metric, "__name__", "callable"),
        "labels": list(task.labels) if task.labels else None,
        "stop": list(evaluator.stop),
        "sizes": {"pool": len(task.pool), "val": len(task.val), "test": len(task.test)},
        "cache": str(store.path) if store is not None else None,
        "instructions": {
            "user": user_instructions,
            "generated": generated,
            "generation_cost": generation_cost.as_dict(),
            "searched": candidates,
        },
        "selection": why,
        "study": None
        if shared is None
        else {"storage": describe_storage(storage or ""), "name": study},
    }
    return OptimizationResult(
        best=best_prompt,
        demos=[task.pool[i] for i in best_prompt.demos],
        val_score=val_score,
        test_score=test_score,
        template=evaluator.template,
        trace=[e.as_dict() for e in trace],
        cost=search_budget.spent.as_dict(),
        test_cost=test_cost.as_dict(),
        config=config,
        model=model.identity,
        task=task.name,
    )


@dataclass
class ComparisonResult:
    """Outcome of :func:`compare`: one row per (method, seed) and a summary per method."""

    task: str
    model: str
    k: int
    seeds: list[int]
    runs: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> list[dict[str, Any]]:
        """Per method: mean and std (over seeds) of test and val scores; mean cost per run."""
        out = []
        for method in dict.fromkeys(r["method"] for r in self.runs):
            rows = [r for r in self.runs if r["method"] == method]

            def stat(
                key: str, rows: list[dict[str, Any]] = rows
            ) -> tuple[float | None, float | None]:
                vals = [r[key] for r in rows if r[key] is not None]
                if not vals:
                    return None, None
                return float(np.mean(vals)), float(np.std(vals))

            test_mean, test_std = stat("test_score")
            val_mean, val_std = stat("val_score")
            out.append(
                {
                    "method": method,
                    "test_mean": test_mean,
                    "test_std": test_std,
                    "val_mean": val_mean,
                    "val_std": val_std,
                    "llm_calls": float(np.mean([r["llm_calls"] for r in rows])),
                    "prompt_tokens": float(np.mean([r["prompt_tokens"] for r in rows])),
                    "seconds": float(np.mean([r["seconds"] for r in rows])),
                    "runs": len(rows),
                }
            )
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "task": self.task,
            "model": self.model,
            "k": self.k,
            "seeds": self.seeds,
            "summary": self.summary,
            "runs": self.runs,
            "config": self.config,
        }

    def save(self, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
        """Write Markdown, CSV, JSON and the PNG bar chart into ``out_dir``."""
        from iclopt.reports.comparison import write_comparison

        return write_comparison(self.as_dict(), out_dir)


def compare(
    task: Task,
    methods: Sequence[str],
    *,
    llm: str | LLM = "smollm2",
    embedder: Embedder | None = None,
    k: int = 5,
    seeds: int | Sequence[int] = 3,
    budget: int = 20,
    template: Template | None = None,
    scoring: Scoring = "auto",
    max_new_tokens: int | None = None,
    cache: str | os.PathLike[str] | ResultCache | bool = True,
    on_run: Callable[[dict[str, Any]], None] | None = None,
) -> ComparisonResult:
    """Run demonstration-selection methods over seeds on one task, LLM and k.

    Task-level methods give one prompt, scored on the validation and test sets.
    Per-query methods (similarity, dpp, mdl) build each query's own prompt, and the
    scores average over those prompts. Costs count every LLM call a method needs:
    while fitting (sampling, probing, searching) and while being scored, including the
    calls the result cache answered (``cache_hits`` says how many), so the numbers do
    not depend on what earlier runs left in the cache. Wall time does.

    Args:
        task: The task.
        methods: Names from ``iclopt.selectors.SELECTORS`` or ``iclopt.bandits.OPTIMIZERS``
            (a search spends the LLM calls of ``budget`` validation evaluations).
        llm: The LLM or its name.
        embedder: Text embedder for retrieval methods; default all-MiniLM-L6-v2 (offline).
        k: Demonstrations per prompt.
        seeds: Number of seeds (0, 1, ...) or the seeds themselves.
        budget: Validation evaluations (their LLM calls) for search methods.
        template: Prompt template.
        scoring: ``"auto"``, ``"generate"`` or ``"labels"``.
        max_new_tokens: Generation cap; ``None`` derives it from the pool's longest answer.
        cache: As in :func:`optimize`.
        on_run: Called with each finished (method, seed) row.

    Returns:
        Per-run rows and a per-method summary; ``.save(dir)`` writes table and plot.
    """
    from iclopt.selectors import SELECTORS, FitContext

    _check_int("k", k, 1)
    _check_int("budget", budget, 1)
    check_fits(task, k=k)
    if not methods:
        raise InputDataError("no methods to compare")
    from iclopt.selectors.search import SearchSelector

    def factory(name: str) -> Callable[..., Any]:
        if name in SELECTORS:
            return SELECTORS.get(name)
        if name in OPTIMIZERS:
            return functools.partial(SearchSelector, method=name)
        valid = ", ".join(sorted(set(SELECTORS.names()) | set(OPTIMIZERS.names())))
        raise UnknownNameError(f"unknown method {name!r}; valid: {valid}")

    classes = {m: factory(m) for m in methods}
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise InputDataError("need at least one seed")
    model = get_llm(llm)
    store = open_result_cache(cache)
    if embedder is None:  # loads its model only if a method embeds something
        from iclopt.embedders import default_embedder

        embedder = default_embedder()
    ev_kwargs: dict[str, Any] = {
        "template": template,
        "scoring": scoring,
        "max_new_tokens": max_new_tokens,
        "cache": store,
    }
    result = ComparisonResult(task=task.name, model=model.identity, k=k, seeds=seed_list)
    for method, cls in classes.items():
        for seed in seed_list:
            spent = Budget()
            ctx = FitContext(
                llm=model, embedder=embedder, budget=budget, evaluator_kwargs=ev_kwargs, spent=spent
            )
            start = time.perf_counter()
            sel = cls(seed=seed).fit(task, ctx)
            ev = Evaluator(task, model, budget=spent, **ev_kwargs)
            row: dict[str, Any] = {"method": method, "seed": seed}
            per_query = bool(getattr(cls, "per_query", False))
            if per_query:
                val = ev.evaluate_per_query(
                    [sel.select(task, k, query=q.input) for q in task.val], task.val
                )
                row["prompt"] = None
            else:
                prompt = sel.select(task, k)
                val = ev.evaluate(prompt, task.val)
                row["prompt"] = prompt.as_dict()
            test_score: float | None = None
            if task.test:
                if per_query:
                    test = ev.evaluate_per_query(
                        [sel.select(task, k, query=q.input) for q in task.test], task.test
                    )
                else:
                    test = ev.evaluate(prompt, task.test)
                test_score = test.score
            row.update(
                {
                    "val_score": val.score,
                    "test_score": test_score,
                    # what the method needs, whether or not the cache answered it
                    "llm_calls": spent.spent.llm_calls + spent.spent.cache_hits,
                    "prompt_tokens": spent.spent.prompt_tokens + spent.spent.cached_tokens,
                    "cache_hits": spent.spent.cache_hits,
                    "seconds": time.perf_counter() - start,
                }
            )
            result.runs.append(row)
            if on_run is not None:
                on_run(row)
    result.config = {
        "methods": list(methods),
        "k": k,
        "seeds": seed_list,
        "budget": budget,
        "scoring": ev.scoring,
        "max_new_tokens": ev.max_new_tokens,
        "embedder": embedder.identity if embedder is not None else None,
        "sizes": {"pool": len(task.pool), "val": len(task.val), "test": len(task.test)},
    }
    return result


def select(
    task: Task,
    method: str,
    *,
    k: int = 5,
    llm: str | LLM = "smollm2",
    embedder: Embedder | None = None,
    seed: int | None = 0,
    query: str | None = None,
    budget: int = 20,
    template: Template | None = None,
    scoring: Scoring = "auto",
    max_new_tokens: int | None = None,
    cache: str | os.PathLike[str] | ResultCache | bool = True,
) -> Prompt:
    """Choose k ordered demonstrations with one selection method.

    Args:
        task: The task.
        method: A name from ``iclopt.selectors.SELECTORS``.
        k: Demonstrations.
        llm: The LLM or its name (used by LLM-scored methods).
        embedder: Text embedder (retrieval methods); default all-MiniLM-L6-v2 (offline).
        seed: Seed of the method.
        query: The query, required by per-query methods (similarity, dpp, mdl).
        budget: Validation evaluations (their LLM calls) for search methods.
        template: Prompt template.
        scoring: ``"auto"``, ``"generate"`` or ``"labels"``.
        max_new_tokens: Generation cap; ``None`` derives it from the pool's longest answer.
        cache: As in :func:`optimize`.

    Returns:
        The prompt; ``Template().render(p.instruction, [task.pool[i] for i in p.demos], q)``
        gives its text.

    Raises:
        InputDataError: A per-query method without a query, or bad arguments.

    Example:
        >>> from iclopt.datasets import get_task
        >>> select(get_task("sentiment"), "random", k=3, seed=0).demos  # doctest: +SKIP
    """
    from iclopt.embedders import default_embedder
    from iclopt.selectors import SELECTORS, FitContext

    cls = SELECTORS.get(method)
    _check_int("k", k, 1)
    _check_int("budget", budget, 1)
    if cls.per_query and query is None:
        raise InputDataError(
            f"method {method!r} picks demonstrations per query and cannot give one fixed "
            "prompt; pass a query"
        )
    ev_kwargs: dict[str, Any] = {
        "template": template,
        "scoring": scoring,
        "max_new_tokens": max_new_tokens,
        "cache": open_result_cache(cache),
    }
    ctx = FitContext(
        llm=get_llm(llm),
        embedder=embedder or default_embedder(),
        budget=budget,
        evaluator_kwargs=ev_kwargs,
    )
    return cls(seed=seed).fit(task, ctx).select(task, k, query=query)
