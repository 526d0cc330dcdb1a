"""The one loop that drives every ask/tell optimizer under a budget, over a trial ledger.

The loop is the same whether the search runs alone (an
:class:`~iclopt.study.InMemoryLedger`) or as one worker of many (a
:class:`~iclopt.study.SharedStudy`): it reserves every evaluation in the ledger, evaluates
it, completes or fails it, and tells the optimizer every trial it has not been told yet.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from iclopt.artifacts import json_safe
from iclopt.bandits.base import Optimizer, SearchSpaceExhausted, Trial
from iclopt.errors import BudgetExhausted, InputDataError
from iclopt.evaluation import Budget, Evaluation, Evaluator
from iclopt.study.ledger import InMemoryLedger, StudyTrial, TrialLedger, admitted
from iclopt.trace import TraceEntry

__all__ = ["TraceEntry", "run_search"]

logger = logging.getLogger(__name__)

#: Consecutive proposals of already evaluated trials after which the loop gives up.
MAX_REPEATS = 50
#: Seconds between looks at a shared study while waiting for other workers' trials.
_POLL = 0.5


def run_search(
    optimizer: Optimizer,
    evaluator: Evaluator,
    budget: Budget,
    *,
    on_step: Callable[[TraceEntry, Evaluation], None] | None = None,
    ledger: TrialLedger | None = None,
) -> list[TraceEntry]:
    """Ask, evaluate and tell until the budget is spent or nothing new is left.

    Each trial is scored on the validation set, or, for a re-scoring trial, on the pool
    examples it names. The loop stops when the budget cannot pay for another evaluation,
    when the optimizer raises :class:`~iclopt.bandits.SearchSpaceExhausted`, or when it
    keeps proposing trials that were already evaluated (those are never evaluated twice:
    their known score is told back instead).

    With a shared study as the ``ledger`` (:class:`~iclopt.study.SharedStudy`), this loop
    is one worker of many: before each proposal the optimizer is told every trial the
    other workers completed; each evaluation is reserved in the study first, so no prompt
    is evaluated twice and ``budget.max_evaluations`` caps the study's total; a prompt
    another worker is evaluating is skipped (its score is told once it arrives). At the
    end the worker waits for the running trials (taking over the slot of any that fails,
    e.g. of a crashed worker) and returns the study's whole trace.

    Args:
        optimizer: An optimizer; :meth:`~Optimizer.setup` is called here with the
            evaluation cap as its budget hint.
        evaluator: Scores prompts; its budget should be ``budget``.
        budget: Stops the loop before any cap is exceeded (with a shared study, the
            evaluation cap is the study's total; LLM-call and token caps stay per worker).
        on_step: Called after every evaluation of this worker (progress, checkpoints).
        ledger: Where the trials are reserved and recorded; ``None`` for a new
            :class:`~iclopt.study.InMemoryLedger` (a search of this process alone).

    Returns:
        The trace, one entry per evaluation (with a shared study: every worker's, in
        order).
    """
    if (
        budget.max_evaluations is None
        and budget.max_llm_calls is None
        and (budget.max_prompt_tokens is None)
    ):
        raise InputDataError("a search needs a budget: set max_evaluations, calls or tokens")
    ledger = InMemoryLedger() if ledger is None else ledger
    if ledger.shared and optimizer.partial_evaluations:
        raise InputDataError(
            f"{type(optimizer).__name__} scores partial evaluations, which a shared study "
            "cannot hold yet"
        )
    optimizer.setup(
        evaluator.task, budget=budget.max_evaluations, query_budget=query_budget(evaluator, budget)
    )
    steps = 0
    done: dict[Any, float] = {}
    told: set[int] = set()  # trials whose score the optimizer knows
    repeats = 0
    waits = 0
    cap = budget.max_evaluations
    # trials skipped because another worker was evaluating them: taken over if that fails
    pending: dict[Any, Trial] = {}
    while not budget.exhausted:
        known = ledger.trials()
        if _observe(optimizer, known, told, done, cap):
            if not ledger.running(known):
                break  # the budget is spent
            # the budget is taken, but a running trial may still fail (a crashed
            # worker) and free its slot: wait and look again
            time.sleep(_POLL)
            continue
        held = {t.key for t in known if t.live}
        for key in [k for k in pending if k in done]:
            del pending[key]
        retry = next((k for k in pending if k not in held), None)
        start = time.perf_counter()
        if retry is not None:  # its trial failed (a crashed worker): evaluate it here
            trial: Trial = pending.pop(retry)
        else:
            try:
                trial = optimizer.ask()
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
        reservation = ledger.reserve(
            trial.prompt,
            trial.queries,
            val=trial.val,
            budget=cap,
            attrs={
                "pool_size": len(evaluator.task.pool),
                "demo_examples": [
                    _example_dict(evaluator.task.pool[i]) for i in trial.prompt.demos
                ],
                "info": json_safe(dict(trial.info)),
                "optimizer_seconds": round(asked, 4),
            },
            known=known,
        )
        if reservation.status == "full":
            continue  # the next round waits for the running trials
        if reservation.status == "done" and reservation.value is not None:
            done[trial.key] = reservation.value
            optimizer.tell(trial, reservation.value)
            continue
        if reservation.status == "pending":  # another worker is on it: ask again
            if trial.key in pending:  # the optimizer insists on it: let that finish
                waits += 1
                time.sleep(min(0.02 * waits, 1.0))
            pending[trial.key] = trial
            continue
        waits = 0
        trial_id = reservation.trial_id
        assert trial_id is not None
        queries = trial_queries(evaluator.task, trial)
        start = time.perf_counter()
        try:
            with ledger.heartbeat(trial_id):
                ev = evaluator.evaluate(trial.prompt, queries)
        except BudgetExhausted as exc:
            ledger.fail(trial_id, str(exc))
            logger.info("search stopped: %s", exc)
            break
        except BaseException as exc:
            ledger.fail(trial_id, f"{type(exc).__name__}: {exc}")
            raise
        entry = TraceEntry(
            step=steps,
            prompt=trial.prompt,
            score=ev.score,
            cost=replace(ev.cost, seconds=time.perf_counter() - start),
            queries=trial.queries,
            info=dict(trial.info),
            optimizer_seconds=asked,
            val=trial.val,
            n_queries=len(ev.per_example),
            signal=ev.signal,
        )
        done[trial.key] = ev.score
        ledger.complete(trial_id, entry)
        told.add(trial_id)
        optimizer.tell(trial, ev.score, per_query=ev.per_example)
        steps += 1
        if on_step is not None:
            on_step(entry, ev)
    ledger.wait_idle(poll=_POLL)  # stopped early: let the other workers' trials finish
    _observe(optimizer, ledger.trials(), told, done, cap)
    return ledger.trace()


def query_budget(evaluator: Evaluator, budget: Budget) -> int | None:
    """Query scorings ``budget`` allows (``None`` with no call or evaluation cap).

    The call cap over the calls one query costs, or the evaluation cap times the
    validation set, whichever is smaller.
    """
    caps = []
    if budget.max_llm_calls is not None:
        caps.append(budget.max_llm_calls // max(1, evaluator.calls_per_query()))
    if budget.max_evaluations is not None:
        caps.append(budget.max_evaluations * len(evaluator.task.val))
    return min(caps) if caps else None


def trial_queries(task: Any, trial: Trial) -> list[Any] | None:
    """The examples a trial is scored on (``None``: the validation set)."""
    if trial.full:
        return None
    out = [task.val[j] for j in trial.val or ()]
    out += [task.pool[i] for i in trial.queries or ()]
    return out


def _example_dict(ex: Any) -> dict[str, Any]:
    out = ex.output if isinstance(ex.output, str) else list(ex.output)
    return {"id": ex.id, "input": ex.input, "output": out}


def _observe(
    optimizer: Optimizer,
    trials: Sequence[StudyTrial],
    told: set[int],
    done: dict[Any, float],
    cap: int | None,
) -> bool:
    """Tell the optimizer the trials completed since last time; whether the budget is taken."""
    for t in trials:
        if t.state == "complete" and t.value is not None and t.trial_id not in told:
            told.add(t.trial_id)
            done.setdefault(t.key, t.value)
            # the mean signal stands for the per-query records (it breaks score ties)
            signal = (t.attrs.get("cost") or {}).get("signal")
            optimizer.tell(
                Trial(t.prompt, t.queries, dict(t.attrs.get("info") or {}), val=t.val),
                t.value,
                per_query=None if signal is None else [{"signal": signal}],
            )
    return cap is not None and len(admitted(trials, cap)) >= cap
