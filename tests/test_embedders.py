from __future__ import annotations

import numpy as np
import pytest

from iclopt.datasets import get_task
from iclopt.embedders import (
    EmbeddingCache,
    PromptTextFeatures,
    SentenceTransformerEmbedder,
    SlotFeatures,
)
from iclopt.errors import InputDataError
from iclopt.prompts import Prompt
from iclopt.testing import FakeEmbedder


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    path = tmp_path_factory.mktemp("emb") / "e.sqlite"
    return SentenceTransformerEmbedder(cache=EmbeddingCache(path)).load()


def test_real_minilm_normalized_and_meaningful(minilm):
    v = minilm(["a happy dog", "a joyful puppy", "quarterly tax filing"])
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


def test_embedding_cache_hits(minilm, monkeypatch):
    texts = ["cache me once", "and me too"]
    first = minilm(texts)
    calls = []
    monkeypatch.setattr(minilm, "_embed", lambda t: calls.append(t) or np.zeros((len(t), 384)))
    again = minilm(texts)
    assert calls == [] and np.array_equal(first, again)
    fresh = SentenceTransformerEmbedder(cache=EmbeddingCache(minilm.cache.path))
    assert np.array_equal(fresh(texts), first)  # read back from disk, model never loaded
    assert fresh._st is None


def test_sequence_features_see_order(minilm):
    task = get_task("sentiment")
    a, b = Prompt(None, (0, 1, 2)), Prompt(None, (2, 1, 0))
    slots = SlotFeatures(minilm).fit(task)
    fa, fb = slots([a, b])
    assert fa.shape == (5 * 384,) and not np.allclose(fa, fb)
    np.testing.assert_allclose(fa[:384], fb[:384], atol=1e-6)  # the order-free mean part
    text = PromptTextFeatures(minilm).fit(task)
    ta, tb = text([a, b])
    assert ta.shape == (384,) and not np.allclose(ta, tb)
    assert text.text(a).startswith("Input: " + task.pool[0].input)


def test_slot_features_need_equal_lengths():
    task = get_task("sentiment")
    slots = SlotFeatures(FakeEmbedder()).fit(task)
    with pytest.raises(InputDataError, match="one length"):
        slots([Prompt(None, (0, 1)), Prompt(None, (0,))])
