"""The embedder contract and a persistent cache of text embeddings."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from iclopt.errors import InputDataError

__all__ = ["Embedder", "EmbeddingCache"]


class EmbeddingCache:
    """Text -> float32 vector store in SQLite, keyed by model identity and text hash.

    Args:
        path: SQLite file; parent folders are created.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vec BLOB)")
            except (OSError, sqlite3.Error) as exc:
                raise InputDataError(
                    f"{self.path}: cannot open the embedding cache ({exc})"
                ) from None
            self._conn = conn
        return self._conn

    @staticmethod
    def key(model: str, text: str) -> str:
        """Hash of the model identity and the text."""
        return hashlib.sha256(f"{model}\x00{text}".encode()).hexdigest()

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """Vectors of the keys present."""
        found: dict[str, np.ndarray] = {}
        with self._lock:
            conn = self._connect()
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                for k, blob in conn.execute(
                    f"SELECT key, vec FROM vectors WHERE key IN ({marks})", chunk
                ):
                    found[k] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put_many(self, items: dict[str, np.ndarray]) -> None:
        """Store vectors."""
        with self._lock:
            conn = self._connect()
            with conn:
                conn.executemany(
                    "INSERT OR REPLACE INTO vectors (key, vec) VALUES (?, ?)",
                    [(k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in items.items()],
                )


class Embedder(ABC):
    """Maps texts to unit-norm vectors, ``n x d``.

    Subclasses implement :meth:`_embed` and :attr:`identity`; :meth:`__call__` adds the
    optional disk cache and normalization.
    """

    cache: EmbeddingCache | None = None

    @property
    @abstractmethod
    def identity(self) -> str:
        """Names the model exactly; part of cache keys."""

    @abstractmethod
    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        """Raw embeddings of ``texts``, ``n x d``."""

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm embeddings of ``texts`` (``n x d``, float32), cached by text hash."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        keys = [EmbeddingCache.key(self.identity, t) for t in texts]
        found = self.cache.get_many(keys) if self.cache is not None else {}
        todo = list(dict.fromkeys(t for t, k in zip(texts, keys) if k not in found))
        if todo:
            vecs = np.asarray(self._embed(todo), dtype=np.float32)
            norms = np.linalg.norm(vecs, axis=1, keepdims=True)
            vecs = vecs / np.maximum(norms, 1e-12)
            new = {EmbeddingCache.key(self.identity, t): v for t, v in zip(todo, vecs)}
            found.update(new)
            if self.cache is not None:
                self.cache.put_many(new)
        return np.stack([found[k] for k in keys])
