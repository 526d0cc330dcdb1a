"""Opening a study storage (SQLite, PostgreSQL, MySQL) with one-line errors, and retried writes.

A bad URL, an unwritable folder, a missing driver or an unreachable server is refused
before any work starts (:func:`check_storage`); SQLite files are switched to WAL once, so
that many workers' readers never block the writer.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from iclopt.errors import IcloptError, InputDataError, MissingDependencyError

__all__ = ["check_storage", "describe_storage", "open_storage", "retry"]

T = TypeVar("T")

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


def open_storage(url: str, *, create: bool = True) -> Any:
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
    storage = open_storage(url)
    storage.remove_session()
    storage.engine.dispose()


def retry(fn: Callable[[], T], *, what: str) -> T:
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
