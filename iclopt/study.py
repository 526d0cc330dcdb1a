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
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from iclopt.data import Task
from iclopt.errors import IcloptError, InputDataError, MissingDependencyError
from iclopt.prompts import Prompt

__all__ = [
    "Reservation",
    "SharedStudy",
    "StudyTrial",
    "admitted",
    "check_storage",
    "describe_storage",
    "read_study",
    "search_fingerprint",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds between heartbeats of a running trial.
HEARTBEAT_INTERVAL = 10.0
#: Seconds without a heartbeat after which a running trial counts as crashed.
GRACE_PERIOD = 60.0
#: Study user attribute holding what the search is (task, model, k, method, ...).
CONFIG_ATTR = "iclopt_config"
_HEARTBEAT_ATTR = "iclopt:heartbeat"
#: Trial user attribute with the prompt, its query set, diagnostics and worker.
_TRIAL_ATTR = "iclopt"
_SCHEMES = ("sqlite", "postgresql", "mysql")


def describe_storage(url: str) -> str:
    """The storage URL with any password hidden (for messages)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is shown as given (it has no password part)
        return url


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _check_url(url: str, *, create: bool = True) -> None:
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower() if ":" in url else ""
    if scheme not in _SCHEMES:
        raise InputDataError(
            f"--storage {url!r}: not a database URL; use sqlite:///PATH.db, "
            "postgresql://USER@HOST:PORT/DB or mysql://USER@HOST/DB"
        )
    if scheme == "sqlite":
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if not path or path == ":memory:":
            raise InputDataError(
                f"--storage {url!r}: a shared study needs a file, e.g. sqlite:///runs/study.db"
            )
        if not create and not Path(path).is_file():
            raise InputDataError(f"--storage {url!r}: {path} does not exist")
        folder = Path(path).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputDataError(
                f"--storage {url!r}: cannot create {folder} ({exc.strerror})"
            ) from None
        if not os.access(folder, os.W_OK):
            raise InputDataError(f"--storage {url!r}: the folder {folder} is not writable")
        if Path(path).is_dir():
            raise InputDataError(f"--storage {url!r}: {path} is a directory")
        # WAL is a property of the database file: set it once, before Optuna connects.
        import sqlite3

        for attempt in range(100):  # workers starting together: the switch needs the lock
            try:
                conn = sqlite3.connect(path, timeout=60)
                try:
                    conn.execute("PRAGMA journal_mode=WAL")
                finally:
                    conn.close()
                break
            except sqlite3.OperationalError as exc:
                if ("locked" not in str(exc) and "busy" not in str(exc)) or attempt == 99:
                    raise InputDataError(f"--storage {url!r}: cannot open ({exc})") from None
                time.sleep(0.1)
            except sqlite3.Error as exc:
                raise InputDataError(f"--storage {url!r}: not an SQLite database ({exc})") from None


def _open_storage(url: str, *, create: bool = True) -> Any:
    """An Optuna ``RDBStorage`` on ``url``; connection problems become one-line errors."""
    _check_url(url, create=create)
    try:
        import optuna
        import sqlalchemy.exc
    except ImportError:
        raise MissingDependencyError(
            "a shared study needs optuna: pip install 'iclopt[opt]'"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    scheme = url.split(":", 1)[0].lower()
    connect_args: dict[str, Any] = {}
    if scheme.startswith("sqlite"):
        connect_args = {"timeout": 60}  # the busy timeout: wait for the writer, never fail
    elif scheme.startswith("postgresql"):
        connect_args = {"connect_timeout": 10}
    elif scheme.startswith("mysql"):
        connect_args = {"connect_timeout": 10}
    try:
        for attempt in range(10):
            try:
                storage = optuna.storages.RDBStorage(
                    url, engine_kwargs={"connect_args": connect_args}
                )
                if scheme.startswith("sqlite"):
                    _sqlite_pragmas(storage.engine)
                return storage
            except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as e:
                # workers starting together race to create the tables: wait and look again
                racing = ("already exists", "duplicate", "unique", "locked", "deadlock")
                if attempt == 9 or not any(w in str(e).lower() for w in racing):
                    raise
                time.sleep(0.1 + 0.1 * attempt)
        raise AssertionError("unreachable")
    except ImportError:
        raise MissingDependencyError(
            f"--storage {describe_storage(url)}: the database driver is missing; "
            "for PostgreSQL: pip install 'iclopt[postgres]'"
        ) from None
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
        raise InputDataError(
            f"--storage {describe_storage(url)}: cannot open the study storage ({_short(exc)})"
        ) from None
    except ValueError as exc:
        raise InputDataError(f"--storage {describe_storage(url)}: {exc}") from None


def _sqlite_pragmas(engine: Any) -> None:
    """Every SQLite connection: WAL with synchronous=NORMAL.

    A commit survives a killed process (only a power cut may undo the last ones), without
    an fsync per commit.
    """
    import sqlalchemy

    def on_connect(conn: Any, _record: Any) -> None:
        conn.execute("PRAGMA synchronous=NORMAL")

    sqlalchemy.event.listen(engine, "connect", on_connect)
    engine.dispose()  # the connection made while creating the tables lacks it


def check_storage(url: str) -> None:
    """Connect to a study storage (creating its tables), so a bad URL fails early.

    Raises:
        InputDataError: Not a database URL, or the database cannot be reached.
        MissingDependencyError: optuna or the database driver is not installed.
    """
    storage = _open_storage(url)
    storage.remove_session()
    storage.engine.dispose()


def _retry(fn: Callable[[], T], *, what: str) -> T:
    """Run a storage write, retrying a few times when another writer holds the lock."""
    import optuna
    import sqlalchemy.exc

    for attempt in range(8):
        try:
            return fn()
        except (sqlalchemy.exc.OperationalError, optuna.exceptions.StorageInternalError) as exc:
            if attempt == 7 or "locked" not in str(exc).lower():
                raise IcloptError(f"study storage: {what} failed ({_short(exc)})") from None
            time.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class StudyTrial:
    """One trial of a shared study, as iclopt reads it.

    Attributes:
        number: Optuna's trial number (the order of creation).
        trial_id: Optuna's trial id.
        state: ``"running"``, ``"complete"``, ``"failed"`` or ``"pruned"`` (rejected).
        prompt: The prompt evaluated.
        queries: ``None`` for the validation set, or the pool ids scored instead.
        value: The score, when complete.
        attrs: Every user attribute (info, cost, worker, demonstration texts).
    """

    number: int
    trial_id: int
    state: str
    prompt: Prompt
    queries: tuple[int, ...] | None
    value: float | None
    attrs: dict[str, Any]

    @property
    def key(self) -> tuple[Prompt, tuple[int, ...] | None, None]:
        """What identifies an evaluation: the prompt and its query set."""
        return (self.prompt, self.queries, None)

    @property
    def live(self) -> bool:
        """Running or complete: it holds a budget slot."""
        return self.state in ("running", "complete")


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


def admitted(trials: Sequence[StudyTrial], budget: int | None) -> list[StudyTrial]:
    """The live trials that hold a budget slot, by the rule every worker applies.

    In creation order, a live trial is admitted unless an earlier admitted trial has the
    same key or ``budget`` trials were admitted before it.
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
    """What :meth:`SharedStudy.reserve` decided.

    Attributes:
        status: ``"admitted"`` (evaluate it, then :meth:`SharedStudy.complete`),
            ``"done"`` (already evaluated: ``value`` is its score), ``"pending"`` (another
            worker is evaluating it) or ``"full"`` (the budget is taken).
        trial_id: The trial to complete, when admitted.
        value: The known score, when done.
    """

    status: Literal["admitted", "done", "pending", "full"]
    trial_id: int | None = None
    value: float | None = None


class SharedStudy:
    """The Optuna study that one search's workers share.

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
        self._storage = _open_storage(self.storage_url, create=create)
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
            _retry(
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
                _retry(
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
    ) -> Reservation:
        """Claim the evaluation of ``(prompt, queries)`` within the study's budget.

        Args:
            prompt: The prompt to evaluate.
            queries: ``None`` for the validation set, or the pool ids to score on.
            budget: The study's total of evaluations (``None``: no cap here).
            attrs: Extra user attributes of the trial (diagnostics, demonstration texts).
            known: The study's trials as just read, if at hand (saves a read; the decision
                is always made on a read taken after the trial was created).
        """
        from optuna.distributions import IntDistribution
        from optuna.trial import FrozenTrial, TrialState

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
        trial_id = _retry(
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
            _retry(
                lambda: self._storage.set_trial_state_values(
                    trial_id, state, None if value is None else [value]
                ),
                what="finishing a trial",
            )
        except optuna.exceptions.UpdateFinishedTrialError:
            logger.warning("trial %d was failed by another worker while it ran", trial_id)

    def complete(self, trial_id: int, score: float, cost: dict[str, Any]) -> None:
        """Record the score and cost of an admitted trial (two writes)."""
        from optuna.trial import TrialState

        _retry(
            functools.partial(self._storage.set_trial_user_attr, trial_id, "cost", cost),
            what="recording a trial's cost",
        )
        self._finish(trial_id, TrialState.COMPLETE, float(score))

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

    def wait_idle(self, *, poll: float = 0.5, on_poll: Callable[[], None] | None = None) -> None:
        """Wait until no trial of the study is running (crashed ones are failed on the way)."""
        while any(t.state == "running" for t in self.trials()):
            if on_poll is not None:
                on_poll()
            time.sleep(poll)


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


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as ``None`` (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return json_safe(value.item())
    return value
