"""A small persistent key -> blob store in SQLite, shared by iclopt's caches."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

from iclopt.errors import InputDataError

__all__ = ["SQLiteStore"]

V = TypeVar("V")


class SQLiteStore(Generic[V]):
    """Key -> value store in one SQLite table, safe across processes and threads.

    The connection opens on first use (WAL journal, so readers never block a writer).

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
                conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB)")
            except (OSError, sqlite3.Error) as exc:
                raise InputDataError(f"{self.path}: cannot open the {self.what} ({exc})") from None
            self._conn = conn
        return self._conn

    def get_many(self, keys: Sequence[str]) -> dict[str, V]:
        """Values of the keys present."""
        found: dict[str, V] = {}
        with self._lock:
            conn = self._connect()
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(f"SELECT key, value FROM kv WHERE key IN ({marks})", chunk)
                found.update((k, self._decode(v)) for k, v in rows)
        return found

    def put_many(self, items: dict[str, V]) -> None:
        """Store values (overwriting)."""
        with self._lock:
            conn = self._connect()
            with conn:
                conn.executemany(
                    "INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)",
                    [(k, self._encode(v)) for k, v in items.items()],
                )

    def __len__(self) -> int:
        with self._lock:
            return int(self._connect().execute("SELECT COUNT(*) FROM kv").fetchone()[0])

    def close(self) -> None:
        """Close the connection (it reopens on next use)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
