"""Text embedders and features of ordered demonstration sequences."""

from __future__ import annotations

from iclopt.embedders.base import Embedder, EmbeddingCache
from iclopt.embedders.sentence_transformers import (
    SentenceTransformerEmbedder,
    default_embedder,
    default_model_path,
)
from iclopt.embedders.sequence import (
    SEQUENCE_FEATURES,
    PromptTextFeatures,
    SequenceFeatures,
    SlotFeatures,
)

__all__ = [
    "SEQUENCE_FEATURES",
    "Embedder",
    "EmbeddingCache",
    "PromptTextFeatures",
    "SentenceTransformerEmbedder",
    "SequenceFeatures",
    "SlotFeatures",
    "default_embedder",
    "default_model_path",
]
