"""A small persistent key -> blob store in SQLite, shared by iclopt's caches."""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

from iclopt.errors import IcloptError, InputDataError

__all__ = ["SQLiteStore"]

V = TypeVar("V")
T = TypeVar("T")

#: Seconds SQLite waits for another process's write lock before reporting it busy.
BUSY_TIMEOUT = 60.0
#: Attempts of an operation that still found the database busy.
_ATTEMPTS = 6
#: Fault injection for the crash tests: when set to a path, the first result-cache write
#: transaction of a process creates that file and then stalls before committing (to be
#: killed there).
_PAUSE_ENV = "ICLOPT_TEST_PAUSE_IN_CACHE_WRITE"


def _busy(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


class SQLiteStore(Generic[V]):
    """Key -> value store in one SQLite table, safe across processes and threads.

    The connection opens on first use (WAL journal, so readers never block a writer).
    Each write is one transaction: a process killed in the middle of one leaves the
    store as it was before it. Writers of several processes wait for each other (busy
    timeout, then a few retries) instead of failing with "database is locked".

    Args:
        path: SQLite file; parent folders are created.
        what: What it stores, for error messages ("result cache").
        encode: Value -> what SQLite stores (str or bytes).
        decode: Inverse of ``encode``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        what: str,
        encode: Callable[[V], Any],
        decode: Callable[[Any], V],
    ) -> None:
        self.path = Path(path)
        self.what = what
        self._encode = encode
        self._decode = decode
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, check_same_thread=False)
                try:
                    self._retry(lambda: conn.execute("PRAGMA journal_mode=WAL"))
                    self._retry(
                        lambda: conn.execute(
                            "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB)"
                        )
                    )
                except BaseException:
                    conn.close()
                    raise
            except (OSError, sqlite3.Error) as exc:
                raise InputDataError(f"{self.path}: cannot open the {self.what} ({exc})") from None
            self._conn = conn
        return self._conn

    def _retry(self, fn: Callable[[], T]) -> T:
        for attempt in range(_ATTEMPTS):
            try:
                return fn()
            except sqlite3.Error as exc:
                if not _busy(exc) or attempt == _ATTEMPTS - 1:
                    if isinstance(exc, sqlite3.DatabaseError) and not _busy(exc):
                        raise IcloptError(f"{self.path}: the {self.what} failed ({exc})") from None
                    raise
                time.sleep(0.1 * 2**attempt)
        raise AssertionError("unreachable")

    def get_many(self, keys: Sequence[str]) -> dict[str, V]:
        """Values of the keys present."""
        found: dict[str, V] = {}
        with self._lock:
            conn = self._connect()
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT key, value FROM kv WHERE key IN ({marks})"
                rows = self._retry(functools.partial(_fetch, conn, sql, chunk))
                found.update((k, self._decode(v)) for k, v in rows)
        return found

    def put_many(self, items: dict[str, V]) -> None:
        """Store values (overwriting), all in one transaction."""
        rows = [(k, self._encode(v)) for k, v in items.items()]
        with self._lock:
            conn = self._connect()

            def write() -> None:
                with conn:  # commits, or rolls back on any error
                    conn.executemany("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", rows)
                    if self.what == "result cache":
                        _pause_for_crash_test()

            self._retry(write)

    def __len__(self) -> int:
        with self._lock:
            return int(self._connect().execute("SELECT COUNT(*) FROM kv").fetchone()[0])

    def close(self) -> None:
        """Close the connection (it reopens on next use)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _fetch(conn: sqlite3.Connection, sql: str, args: list[str]) -> list[Any]:
    return conn.execute(sql, args).fetchall()


def _pause_for_crash_test() -> None:
    marker = os.environ.pop(_PAUSE_ENV, None)
    if marker:
        Path(marker).write_text(str(os.getpid()))
        time.sleep(600)
