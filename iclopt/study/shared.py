"""One search shared by many workers through an Optuna storage (SQLite, PostgreSQL, MySQL).

Every evaluation is an Optuna trial of one study: the demonstrations are its parameters
(``demo_0``, ``demo_1``, ... over the pool ids), the validation score its value, the
instruction, the query set, the optimizer's diagnostics, the worker and the demonstration
texts its user attribute ``iclopt``, and the cost its user attribute ``cost``.
Workers started with the same command anywhere share the study; none of them coordinates
the others. Optuna creates trials in a transaction that locks the study row, so trial
numbers follow the order in which trials were committed; iclopt builds its guarantees on
that order:

* **Reservation.** A worker that wants to evaluate a prompt first creates a RUNNING
  trial for it, then reads the study back. Its trial is admitted only if no earlier live
  trial (running or complete) has the same prompt and query set, and fewer than
  ``budget`` earlier live trials were admitted; otherwise it is marked PRUNED and never
  evaluated. Every worker applies the same rule to the same ordered list, so the study
  never holds more admitted evaluations than the budget, nor the same prompt twice.
* **Pending prompts are excluded**, not lied about: a prompt that is being evaluated by
  another worker is not evaluated again, and the optimizer is told its real score once
  that trial completes (a constant liar would have to take back the lie, which the
  ask/tell contract has no way to say).
* **Crashed workers.** A running trial carries a heartbeat (a timestamp in its system
  attributes, refreshed every ``heartbeat_interval`` seconds while it is evaluated; the
  first one is written with the trial, in the same transaction). A trial whose heartbeat
  is older than ``grace_period`` is failed by whichever worker notices, which frees its
  budget slot and its prompt. Worker clocks must agree to well within the grace period.
  A trial of a process of the same machine that no longer exists is failed at once, so
  a worker killed and started again on one machine does not wait for the grace period.

Example:
    >>> study = SharedStudy("sqlite:///runs/search.db", "sentiment-k5")  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from iclopt.artifacts import json_safe
from iclopt.data import Task
from iclopt.errors import IcloptError, InputDataError
from iclopt.prompts import Prompt
from iclopt.study.ledger import Reservation, StudyTrial, TrialLedger, admitted
from iclopt.study.storage import describe_storage, open_storage, retry

if TYPE_CHECKING:
    from iclopt.trace import TraceEntry

__all__ = ["SharedStudy", "read_study", "search_fingerprint"]

logger = logging.getLogger(__name__)

#: Seconds between heartbeats of a running trial.
HEARTBEAT_INTERVAL = 10.0
#: Seconds without a heartbeat after which a running trial counts as crashed.
GRACE_PERIOD = 60.0
#: Study user attribute holding what the search is (task, model, k, method, ...).
CONFIG_ATTR = "iclopt_config"
_HEARTBEAT_ATTR = "iclopt:heartbeat"
#: Trial user attribute with the prompt, its query set, diagnostics and worker.
_TRIAL_ATTR = "iclopt"


def _from_frozen(t: Any) -> StudyTrial | None:
    attrs = {k: v for k, v in t.user_attrs.items() if k != _TRIAL_ATTR}
    attrs.update(t.user_attrs.get(_TRIAL_ATTR) or {})
    if "demos" not in attrs:  # not written by iclopt
        return None
    queries = attrs.get("queries")
    return StudyTrial(
        number=int(t.number),
        trial_id=int(t._trial_id),
        state={"RUNNING": "running", "COMPLETE": "complete", "PRUNED": "pruned"}.get(
            t.state.name, "failed"
        ),
        prompt=Prompt(attrs.get("instruction"), tuple(int(d) for d in attrs["demos"])),
        queries=None if queries is None else tuple(int(q) for q in queries),
        value=None if t.value is None else float(t.value),
        attrs=attrs,
    )


def _dead_local_worker(worker: str) -> bool:
    """Whether ``worker`` ("host:pid") is a process of this machine that no longer exists."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    try:  # a killed process whose parent died too may linger as a zombie
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


class SharedStudy(TrialLedger):
    """The Optuna study that one search's workers share: their trial ledger.

    Args:
        storage: Database URL (``sqlite:///runs/study.db``, ``postgresql://...``).
        name: Study name; created on first use.
        heartbeat_interval: Seconds between heartbeats of a running trial.
        grace_period: Seconds without a heartbeat after which a running trial is failed.
    """

    def __init__(
        self,
        storage: str,
        name: str,
        *,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
        grace_period: float = GRACE_PERIOD,
    ) -> None:
        self.storage_url = storage
        self.name = name
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._storage: Any = None
        self._study: Any = None
        self._study_id: int | None = None
        self._checked_stale = float("-inf")

    #: Other workers write into the study too.
    shared: ClassVar[bool] = True

    # ------------------------------------------------------------------ opening
    def open(self, config: dict[str, Any], *, create: bool = True) -> SharedStudy:
        """Connect, create or load the study, and check that it is the same search.

        Args:
            config: What the search is (task fingerprint, model, k, method, ...); stored
                with the study by its first worker and compared by every later one.
            create: Create the study when it does not exist (otherwise an error).

        Raises:
            InputDataError: Unreachable storage, an unknown study, or a study of another
                search.
        """
        import optuna

        if not isinstance(self.name, str) or not self.name.strip():
            raise InputDataError("--study needs a non-empty name")
        self._storage = open_storage(self.storage_url, create=create)
        where = f"study {self.name!r} in {describe_storage(self.storage_url)}"
        try:
            if create:
                study = optuna.create_study(
                    storage=self._storage,
                    study_name=self.name,
                    direction="maximize",
                    load_if_exists=True,
                )
            else:
                study = optuna.load_study(study_name=self.name, storage=self._storage)
        except KeyError:
            raise InputDataError(f"{where}: no such study") from None
        except ValueError as exc:  # e.g. a study of another direction
            raise InputDataError(f"{where}: {exc}") from None
        self._study = study
        self._study_id = self._storage.get_study_id_from_name(self.name)
        if not config:
            return self
        stored = self._storage.get_study_user_attrs(self._study_id).get(CONFIG_ATTR)
        if stored is None:
            retry(
                lambda: self._storage.set_study_user_attr(self._study_id, CONFIG_ATTR, config),
                what="recording the search configuration",
            )
        else:
            diff = [k for k in sorted(set(stored) | set(config)) if stored.get(k) != config.get(k)]
            if diff:
                k = diff[0]
                raise InputDataError(
                    f"{where} belongs to another search: its {k} is "
                    f"{json.dumps(stored.get(k))[:80]}, this command's is "
                    f"{json.dumps(config.get(k))[:80]}; use another --study name"
                )
        return self

    @property
    def study_id(self) -> int:
        """Optuna's id of the study."""
        if self._study_id is None:
            raise IcloptError("the shared study is not open")
        return self._study_id

    def config(self) -> dict[str, Any]:
        """The search configuration stored with the study."""
        return dict(self._storage.get_study_user_attrs(self.study_id).get(CONFIG_ATTR) or {})

    # ------------------------------------------------------------------ reading
    def trials(self) -> list[StudyTrial]:
        """Every iclopt trial of the study in creation order (stale ones failed first).

        Reads go through Optuna's trial cache: finished trials are fetched once, later
        reads fetch only the running and the new ones.
        """
        if time.monotonic() - self._checked_stale >= min(self.heartbeat_interval, 5.0):
            self._checked_stale = time.monotonic()
            self.fail_stale()
        frozen = self._study.get_trials(deepcopy=False)
        out = [t for t in map(_from_frozen, frozen) if t is not None]
        return sorted(out, key=lambda t: t.number)

    def fail_stale(self) -> int:
        """Fail running trials whose heartbeat is older than the grace period."""
        import optuna
        from optuna.trial import TrialState

        now = time.time()
        n = 0
        for t in self._study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            beat = t.system_attrs.get(_HEARTBEAT_ATTR)
            worker = str((t.user_attrs.get(_TRIAL_ATTR) or {}).get("worker", ""))
            dead = _dead_local_worker(worker)
            if not dead and (beat is None or now - float(beat) <= self.grace_period):
                continue
            try:
                retry(
                    functools.partial(
                        self._storage.set_trial_state_values, t._trial_id, TrialState.FAIL
                    ),
                    what="failing a stale trial",
                )
                n += 1
                logger.warning(
                    "trial %d of worker %s %s: failed, its prompt is free again",
                    t.number,
                    worker,
                    "is no longer running" if dead else "sent no heartbeat in time",
                )
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # another worker failed (or its owner finished) it first
        return n

    # ------------------------------------------------------------------ writing
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
        """Claim the evaluation of ``(prompt, queries)`` within the study's budget.

        As :meth:`TrialLedger.reserve`; ``budget`` is the study's total, the decision is
        always made on a read taken after the trial was created (``known`` only saves the
        first read), and ``val`` must be ``None``: a study holds evaluations on the whole
        validation set or on pool queries only.

        Raises:
            InputDataError: A partial evaluation of the validation set.
        """
        from optuna.distributions import IntDistribution
        from optuna.trial import FrozenTrial, TrialState

        if val is not None:
            raise InputDataError("a shared study cannot hold partial evaluations yet")
        key = (prompt, queries, None)
        live = admitted(self.trials() if known is None else known, budget)
        for t in live:
            if t.key == key:
                return (
                    Reservation("done", value=t.value)
                    if t.state == "complete"
                    else Reservation("pending")
                )
        if budget is not None and len(live) >= budget:
            return Reservation("full")
        n_pool = int(attrs.pop("pool_size"))
        template = FrozenTrial(
            number=-1,
            state=TrialState.RUNNING,
            value=None,
            datetime_start=datetime.now(),
            datetime_complete=None,
            params={f"demo_{i}": int(d) for i, d in enumerate(prompt.demos)},
            distributions={
                f"demo_{i}": IntDistribution(0, max(n_pool - 1, 0))
                for i in range(len(prompt.demos))
            },
            user_attrs={  # one attribute: each is a row (and a query) of its own
                _TRIAL_ATTR: {
                    **attrs,
                    "instruction": prompt.instruction,
                    "demos": list(prompt.demos),
                    "queries": None if queries is None else list(queries),
                    "worker": self.worker,
                }
            },
            system_attrs={_HEARTBEAT_ATTR: time.time()},
            intermediate_values={},
            trial_id=-1,
        )
        trial_id = retry(
            lambda: self._storage.create_new_trial(self.study_id, template_trial=template),
            what="creating a trial",
        )
        # Every trial created before ours is committed now: apply the admission rule.
        trials = self.trials()
        mine = next(t for t in trials if t.trial_id == trial_id)
        ok = admitted([t for t in trials if t.number <= mine.number], budget)
        if ok and ok[-1].trial_id == trial_id:
            return Reservation("admitted", trial_id=trial_id)
        self._finish(trial_id, TrialState.PRUNED)
        earlier = next((t for t in ok if t.key == key), None)
        if earlier is None:
            return Reservation("full")
        if earlier.state == "complete":
            return Reservation("done", value=earlier.value)
        return Reservation("pending")

    def _finish(self, trial_id: int, state: Any, value: float | None = None) -> None:
        import optuna

        try:
            retry(
                lambda: self._storage.set_trial_state_values(
                    trial_id, state, None if value is None else [value]
                ),
                what="finishing a trial",
            )
        except optuna.exceptions.UpdateFinishedTrialError:
            logger.warning("trial %d was failed by another worker while it ran", trial_id)

    def complete(self, trial_id: int, entry: TraceEntry) -> None:
        """Record the score and cost of an admitted trial (two writes)."""
        from optuna.trial import TrialState

        retry(
            functools.partial(self._storage.set_trial_user_attr, trial_id, "cost", entry.record()),
            what="recording a trial's cost",
        )
        self._finish(trial_id, TrialState.COMPLETE, float(entry.score))

    def trace(self) -> list[TraceEntry]:
        """Every worker's completed trials as one trace, in the order they were created."""
        from iclopt.trace import TraceEntry

        out: list[TraceEntry] = []
        for t in self.trials():
            if t.state != "complete" or t.value is None:
                continue
            out.append(
                TraceEntry.from_record(
                    step=len(out),
                    prompt=t.prompt,
                    score=t.value,
                    record=dict(t.attrs.get("cost") or {}),
                    queries=t.queries,
                    info={**dict(t.attrs.get("info") or {}), "worker": t.attrs.get("worker")},
                    optimizer_seconds=float(t.attrs.get("optimizer_seconds", 0.0)),
                )
            )
        return out

    def fail(self, trial_id: int, reason: str) -> None:
        """Give an admitted trial's slot back (its evaluation failed or was not done)."""
        from optuna.trial import TrialState

        try:
            self._storage.set_trial_user_attr(trial_id, "failure", reason[:500])
        except Exception:  # the trial may already be finished; the state is what matters
            pass
        self._finish(trial_id, TrialState.FAIL)

    @contextmanager
    def heartbeat(self, trial_id: int) -> Iterator[None]:
        """Refresh the trial's heartbeat in a background thread while the block runs."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.heartbeat_interval):
                try:
                    self._storage.set_trial_system_attr(trial_id, _HEARTBEAT_ATTR, time.time())
                except Exception as exc:  # a missed beat is retried at the next interval
                    logger.debug("heartbeat of trial %d failed: %s", trial_id, exc)

        thread = threading.Thread(target=beat, name=f"iclopt-heartbeat-{trial_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


def search_fingerprint(task: Task, **settings: Any) -> dict[str, Any]:
    """What makes two workers' commands the same search: the task's data and ``settings``.

    The task enters as its name and a digest of its pool and validation examples, so a
    worker with other data files cannot join the study.
    """
    blob = json.dumps(
        [[ex.input, ex.output, ex.id] for ex in [*task.pool, *task.val]],
        ensure_ascii=False,
        default=list,
    )
    return {
        "task": task.name,
        "data": hashlib.sha256(blob.encode()).hexdigest()[:16],
        **json_safe(settings),
    }


def read_study(storage: str, name: str) -> tuple[dict[str, Any], list[StudyTrial]]:
    """The configuration and trials of an existing study (for ``iclopt show``).

    Raises:
        InputDataError: Unreachable storage or no such study.
    """
    study = SharedStudy(storage, name).open({}, create=False)
    return study.config(), study.trials()
