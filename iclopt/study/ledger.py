"""The trial ledger: where a search reserves its evaluations, records them and reads them back.

The search loop (:func:`iclopt.search.run_search`) never asks whether it runs alone: it
reserves each evaluation in a ledger, evaluates it, completes or fails it, and reads back
what the ledger holds, as Optuna's optimize loop works on any storage because its
default storage lives in memory. :class:`InMemoryLedger` is one process's ledger;
:class:`~iclopt.study.shared.SharedStudy` is the ledger of many workers in a database.
Both decide admissions by the same rule (:func:`admitted`).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from iclopt.errors import IcloptError
from iclopt.prompts import Prompt

if TYPE_CHECKING:
    from iclopt.trace import TraceEntry

__all__ = ["InMemoryLedger", "Reservation", "StudyTrial", "TrialLedger", "admitted"]

#: What identifies an evaluation: the prompt, its pool queries and its validation subset.
Key = tuple[Prompt, tuple[int, ...] | None, tuple[int, ...] | None]


@dataclass(frozen=True)
class StudyTrial:
    """One trial of a ledger, as the search loop reads it.

    Attributes:
        number: The order of creation.
        trial_id: The ledger's id of the trial.
        state: ``"running"``, ``"complete"``, ``"failed"`` or ``"pruned"`` (rejected).
        prompt: The prompt evaluated.
        queries: ``None`` for the validation set, or the pool ids scored instead.
        value: The score, when complete.
        attrs: Every user attribute (info, cost, worker, demonstration texts).
        val: The validation indices of a partial evaluation (``None``: all of them).
    """

    number: int
    trial_id: int
    state: str
    prompt: Prompt
    queries: tuple[int, ...] | None
    value: float | None
    attrs: dict[str, Any]
    val: tuple[int, ...] | None = None

    @property
    def key(self) -> Key:
        """What identifies an evaluation (as :attr:`iclopt.bandits.Trial.key`)."""
        return (self.prompt, self.queries, self.val)

    @property
    def live(self) -> bool:
        """Running or complete: it holds a budget slot."""
        return self.state in ("running", "complete")


def admitted(trials: Sequence[StudyTrial], budget: int | None) -> list[StudyTrial]:
    """The live trials that hold a budget slot, by the rule every worker applies.

    In creation order, a live trial is admitted unless an earlier admitted trial has the
    same key or ``budget`` trials were admitted before it.

    Example:
        >>> t = lambda n, demos, state="complete": StudyTrial(
        ...     n, n, state, Prompt(None, demos), None, 0.5, {})
        >>> [x.number for x in admitted([t(0, (1,)), t(1, (1,)), t(2, (2,)), t(3, (3,))], 2)]
        [0, 2]
    """
    keys: set[Any] = set()
    out: list[StudyTrial] = []
    for t in sorted(trials, key=lambda t: t.number):
        if not t.live or t.key in keys or (budget is not None and len(out) >= budget):
            continue
        keys.add(t.key)
        out.append(t)
    return out


@dataclass(frozen=True)
class Reservation:
    """What :meth:`TrialLedger.reserve` decided.

    Attributes:
        status: ``"admitted"`` (evaluate it, then :meth:`TrialLedger.complete`),
            ``"done"`` (already evaluated: ``value`` is its score), ``"pending"`` (another
            worker is evaluating it) or ``"full"`` (the budget is taken).
        trial_id: The trial to complete, when admitted.
        value: The known score, when done.
    """

    status: Literal["admitted", "done", "pending", "full"]
    trial_id: int | None = None
    value: float | None = None


class TrialLedger(ABC):
    """Where the evaluations of one search are reserved, recorded and read back.

    ``reserve`` claims an evaluation within the budget (or says why not), the caller
    evaluates it inside ``heartbeat`` and then calls ``complete`` or ``fail``; ``trials``
    reads every trial back in creation order, ``trace`` the completed ones as the search's
    trace.
    """

    #: Whether other processes write into the ledger too (a shared study).
    shared: ClassVar[bool] = False

    @abstractmethod
    def trials(self) -> list[StudyTrial]:
        """Every trial, in creation order."""

    @abstractmethod
    def reserve(
        self,
        prompt: Prompt,
        queries: tuple[int, ...] | None,
        *,
        budget: int | None,
        attrs: dict[str, Any],
        known: Sequence[StudyTrial] | None = None,
        val: tuple[int, ...] | None = None,
    ) -> Reservation:
        """Claim the evaluation of ``(prompt, queries, val)`` within ``budget`` trials.

        Args:
            prompt: The prompt to evaluate.
            queries: ``None`` for the validation set, or the pool ids to score on.
            budget: The total of evaluations (``None``: no cap here).
            attrs: Extra attributes of the trial (``pool_size``, diagnostics,
                demonstration texts).
            known: The trials as just read, if at hand (saves a read).
            val: The validation indices of a partial evaluation.
        """

    @abstractmethod
    def complete(self, trial_id: int, entry: TraceEntry) -> None:
        """Record the evaluation of an admitted trial (its score, cost and queries)."""

    @abstractmethod
    def fail(self, trial_id: int, reason: str) -> None:
        """Give an admitted trial's slot back (its evaluation failed or was not done)."""

    @abstractmethod
    def trace(self) -> list[TraceEntry]:
        """The completed trials as the search's trace, in the order they were created."""

    def heartbeat(self, trial_id: int) -> AbstractContextManager[None]:
        """A block during which the trial counts as alive (nothing to do in one process)."""
        return nullcontext()

    @staticmethod
    def running(trials: Sequence[StudyTrial]) -> bool:
        """Whether any of ``trials`` is still being evaluated."""
        return any(t.state == "running" for t in trials)

    def wait_idle(self, *, poll: float = 0.5) -> None:
        """Wait until no trial is running (crashed ones are failed on the way)."""
        while self.running(self.trials()):
            time.sleep(poll)


class InMemoryLedger(TrialLedger):
    """The ledger of a search run by one process alone (the default).

    Example:
        >>> ledger = InMemoryLedger()
        >>> r = ledger.reserve(Prompt(None, (1, 2)), None, budget=1, attrs={})
        >>> r.status, ledger.reserve(Prompt(None, (3, 4)), None, budget=1, attrs={}).status
        ('admitted', 'full')
    """

    def __init__(self) -> None:
        self._trials: list[StudyTrial] = []
        self._entries: dict[int, TraceEntry] = {}

    def trials(self) -> list[StudyTrial]:
        """Every trial, in creation order."""
        return list(self._trials)

    def reserve(
        self,
        prompt: Prompt,
        queries: tuple[int, ...] | None,
        *,
        budget: int | None,
        attrs: dict[str, Any],
        known: Sequence[StudyTrial] | None = None,
        val: tuple[int, ...] | None = None,
    ) -> Reservation:
        """Claim an evaluation (see :meth:`TrialLedger.reserve`)."""
        key = (prompt, queries, val)
        live = admitted(self._trials, budget)
        for t in live:
            if t.key == key:
                return (
                    Reservation("done", value=t.value)
                    if t.state == "complete"
                    else Reservation("pending")
                )
        if budget is not None and len(live) >= budget:
            return Reservation("full")
        n = len(self._trials)
        extra = {k: v for k, v in attrs.items() if k != "pool_size"}
        self._trials.append(StudyTrial(n, n, "running", prompt, queries, None, extra, val))
        return Reservation("admitted", trial_id=n)

    def _finish(self, trial_id: int, **changes: Any) -> None:
        t = self._trials[trial_id]
        if t.state != "running":
            raise IcloptError(f"trial {trial_id} is {t.state}, not running")
        self._trials[trial_id] = replace(t, **changes)

    def complete(self, trial_id: int, entry: TraceEntry) -> None:
        """Record an admitted trial's evaluation."""
        t = self._trials[trial_id]
        self._finish(
            trial_id, state="complete", value=entry.score, attrs={**t.attrs, "cost": entry.record()}
        )
        self._entries[trial_id] = entry

    def fail(self, trial_id: int, reason: str) -> None:
        """Give an admitted trial's slot back."""
        t = self._trials[trial_id]
        self._finish(trial_id, state="failed", attrs={**t.attrs, "failure": reason[:500]})

    def trace(self) -> list[TraceEntry]:
        """The entries of the completed trials, in the order they were created."""
        return [self._entries[t.trial_id] for t in self._trials if t.state == "complete"]
