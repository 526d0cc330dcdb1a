"""The embedder contract and a persistent cache of text embeddings."""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from iclopt.store import SQLiteStore

__all__ = ["Embedder", "EmbeddingCache"]


class EmbeddingCache(SQLiteStore[np.ndarray]):
    """Text -> float32 vector store in SQLite, keyed by model identity and text hash.

    Args:
        path: SQLite file; parent folders are created.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(
            path,
            what="embedding cache",
            encode=lambda v: np.asarray(v, dtype=np.float32).tobytes(),
            decode=lambda blob: np.frombuffer(blob, dtype=np.float32),
        )

    @staticmethod
    def key(model: str, text: str) -> str:
        """Hash of the model identity and the text."""
        return hashlib.sha256(f"{model}\x00{text}".encode()).hexdigest()


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
