"""The one loop that drives every ask/tell optimizer under a budget."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from iclopt.bandits.base import Optimizer, SearchSpaceExhausted, Trial
from iclopt.errors import BudgetExhausted, InputDataError
from iclopt.evaluation import Budget, Evaluation, Evaluator
from iclopt.prompts import Prompt

if TYPE_CHECKING:
    from iclopt.study import SharedStudy, StudyTrial

__all__ = ["TraceEntry", "run_search", "study_trace"]

logger = logging.getLogger(__name__)

#: Consecutive proposals of already evaluated trials after which the loop gives up.
MAX_REPEATS = 50
#: Seconds between looks at a shared study while waiting for other workers' trials.
_POLL = 0.5


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
        queries: Pool ids scored as extra labelled queries (re-scoring, racing); ``None``
            for none.
        info: The optimizer's diagnostics (``source``, ``mean``, ``std``, ``acquisition``).
        optimizer_seconds: Time the optimizer took to propose this prompt.
        val: Validation indices of a partial evaluation; ``None`` for the whole set when
            ``queries`` is ``None`` (see :class:`~iclopt.bandits.Trial`).
        n_queries: How many queries the score rests on.
        signal: Mean continuous signal of the scorer over those queries.
        calls: LLM calls the evaluation needed, cache hits included (what budgets count).
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
    val: tuple[int, ...] | None = None
    n_queries: int | None = None
    signal: float | None = None
    calls: int | None = None

    @property
    def on_val(self) -> bool:
        """Whether the score is on the whole validation set (not partial, not pool queries)."""
        return self.queries is None and self.val is None

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "step": self.step,
            **self.prompt.as_dict(),
            "score": self.score,
            "queries": "val" if self.on_val else list(self.queries or ()),
            "val": None if self.val is None else list(self.val),
            "n_queries": self.n_queries,
            "signal": self.signal,
            "calls": self.calls if self.calls is not None else self.llm_calls + self.cache_hits,
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
    study: SharedStudy | None = None,
) -> list[TraceEntry]:
    """Ask, evaluate and tell until the budget is spent or nothing new is left.

    Each trial is scored on the validation set, or, for a re-scoring trial, on the pool
    examples it names. The loop stops when the budget cannot pay for another evaluation,
    when the optimizer raises :class:`~iclopt.bandits.SearchSpaceExhausted`, or when it
    keeps proposing trials that were already evaluated (those are never evaluated twice:
    their known score is told back instead).

    With a shared ``study`` (:class:`~iclopt.study.SharedStudy`), this loop is one
    worker of many: before each proposal the optimizer is told every trial the other
    workers completed; each evaluation is reserved in the study first, so no prompt is
    evaluated twice and ``budget.max_evaluations`` caps the study's total; a prompt
    another worker is evaluating is skipped (its score is told once it arrives). At the
    end the worker waits for the running trials (taking over the slot of any that fails,
    e.g. of a crashed worker) and returns the study's whole trace.

    Args:
        optimizer: An optimizer; :meth:`~Optimizer.setup` is called here with the
            evaluation cap as its budget hint.
        evaluator: Scores prompts; its budget should be ``budget``.
        budget: Stops the loop before any cap is exceeded (with a study, the evaluation
            cap is the study's total; LLM-call and token caps stay per worker).
        on_step: Called after every evaluation of this worker (progress, checkpoints).
        study: An open shared study, or ``None`` for a search of this process alone.

    Returns:
        The trace, one entry per evaluation (with a study: every worker's, in order).
    """
    if (
        budget.max_evaluations is None
        and budget.max_llm_calls is None
        and (budget.max_prompt_tokens is None)
    ):
        raise InputDataError("a search needs a budget: set max_evaluations, calls or tokens")
    if study is not None and optimizer.partial_evaluations:
        raise InputDataError(
            f"{type(optimizer).__name__} scores partial evaluations, which a shared study "
            "cannot hold yet"
        )
    optimizer.setup(
        evaluator.task, budget=budget.max_evaluations, query_budget=query_budget(evaluator, budget)
    )
    trace: list[TraceEntry] = []
    done: dict[Any, float] = {}
    told: set[int] = set()  # study trials whose score the optimizer knows
    repeats = 0
    waits = 0
    cap = budget.max_evaluations
    # trials skipped because another worker was evaluating them: taken over if that fails
    pending: dict[Any, Trial] = {}
    while not budget.exhausted:
        known = None
        retry = None
        if study is not None:
            known = study.trials()
            if _observe_study(optimizer, known, told, done, cap):
                if not any(t.state == "running" for t in known):
                    break  # the study's budget is spent
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
        trial_id: int | None = None
        if study is not None:
            reservation = study.reserve(
                trial.prompt,
                trial.queries,
                budget=cap,
                attrs={
                    "pool_size": len(evaluator.task.pool),
                    "demo_examples": [
                        _example_dict(evaluator.task.pool[i]) for i in trial.prompt.demos
                    ],
                    "info": _json_safe(dict(trial.info)),
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
        queries = trial_queries(evaluator.task, trial)
        start = time.perf_counter()
        try:
            if study is not None and trial_id is not None:
                with study.heartbeat(trial_id):
                    ev = evaluator.evaluate(trial.prompt, queries)
            else:
                ev = evaluator.evaluate(trial.prompt, queries)
        except BudgetExhausted as exc:
            if study is not None and trial_id is not None:
                study.fail(trial_id, str(exc))
            logger.info("search stopped: %s", exc)
            break
        except BaseException as exc:
            if study is not None and trial_id is not None:
                study.fail(trial_id, f"{type(exc).__name__}: {exc}")
            raise
        seconds = time.perf_counter() - start
        done[trial.key] = ev.score
        if study is not None and trial_id is not None:
            study.complete(
                trial_id,
                ev.score,
                {
                    "llm_calls": ev.cost.llm_calls,
                    "prompt_tokens": ev.cost.prompt_tokens,
                    "cache_hits": ev.cost.cache_hits,
                    "seconds": round(seconds, 3),
                    "retries": ev.cost.retries,
                    "n_queries": len(ev.per_example),
                    "signal": ev.signal,
                },
            )
            told.add(trial_id)
        optimizer.tell(trial, ev.score, per_query=ev.per_example)
        entry = TraceEntry(
            step=len(trace),
            prompt=trial.prompt,
            score=ev.score,
            llm_calls=ev.cost.llm_calls,
            prompt_tokens=ev.cost.prompt_tokens,
            cache_hits=ev.cost.cache_hits,
            seconds=seconds,
            queries=trial.queries,
            info=dict(trial.info),
            optimizer_seconds=asked,
            val=trial.val,
            n_queries=len(ev.per_example),
            signal=ev.signal,
            calls=ev.cost.calls,
        )
        trace.append(entry)
        if on_step is not None:
            on_step(entry, ev)
    if study is None:
        return trace
    study.wait_idle(poll=_POLL)  # stopped early: let the other workers' trials finish
    trials = study.trials()
    _observe_study(optimizer, trials, told, done, cap)
    return study_trace(trials)


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


def _observe_study(
    optimizer: Optimizer,
    trials: Sequence[StudyTrial],
    told: set[int],
    done: dict[Any, float],
    cap: int | None,
) -> bool:
    """Tell the optimizer the trials completed since last time; whether the budget is taken."""
    from iclopt.study import admitted

    for t in trials:
        if t.state == "complete" and t.value is not None and t.trial_id not in told:
            told.add(t.trial_id)
            done.setdefault(t.key, t.value)
            # the mean signal stands for the per-query records (it breaks score ties)
            signal = (t.attrs.get("cost") or {}).get("signal")
            optimizer.tell(
                Trial(t.prompt, t.queries, dict(t.attrs.get("info") or {})),
                t.value,
                per_query=None if signal is None else [{"signal": signal}],
            )
    return cap is not None and len(admitted(trials, cap)) >= cap


def study_trace(trials: Sequence[StudyTrial]) -> list[TraceEntry]:
    """The completed trials of a shared study as a trace, in the order they were created."""
    out: list[TraceEntry] = []
    for t in trials:
        if t.state != "complete" or t.value is None:
            continue
        a = t.attrs
        cost = dict(a.get("cost") or {})
        out.append(
            TraceEntry(
                step=len(out),
                prompt=t.prompt,
                score=t.value,
                llm_calls=int(cost.get("llm_calls", 0)),
                prompt_tokens=int(cost.get("prompt_tokens", 0)),
                cache_hits=int(cost.get("cache_hits", 0)),
                seconds=float(cost.get("seconds", 0.0)),
                queries=t.queries,
                info={**dict(a.get("info") or {}), "worker": a.get("worker")},
                optimizer_seconds=float(a.get("optimizer_seconds", 0.0)),
                n_queries=cost.get("n_queries"),
                signal=cost.get("signal"),
            )
        )
    return out
