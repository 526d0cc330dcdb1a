"""Deterministic fakes: LLMs whose answers depend on the demonstrations, and an embedder."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from iclopt.embedders.base import Embedder
from iclopt.errors import InputDataError, LLMError
from iclopt.llms.base import LLM, WhiteBoxLLM

__all__ = ["FakeEmbedder", "FakeLLM", "FakeWhiteBoxLLM"]

_BLOCK = re.compile(r"Input: (.*?)\nOutput: ?(.*?)(?:\n\n|$)", re.S)
#: A fake token: a word or a punctuation mark, with the whitespace before it (as BPE's " yes").
_TOKEN = re.compile(r"\s*(?:\w+|[^\w\s])")


def _overlap(a: str, b: str) -> int:
    return len(set(a.lower().split()) & set(b.lower().split()))


class FakeLLM(LLM):
    """Answers a completion-style prompt with the output of the most similar demonstration.

    Similarity is word overlap between inputs (ties: the later demonstration), so the
    choice and order of demonstrations change the answers, as with a real model.

    Args:
        fail_on: If this substring occurs in a prompt, the call raises
            :class:`~iclopt.errors.LLMError` (to test failure handling).
    """

    def __init__(self, *, fail_on: str | None = None) -> None:
        self.fail_on = fail_on
        self.calls = 0
        self.prompts_seen = 0

    @property
    def identity(self) -> str:
        """Fixed identity."""
        return "fake-llm-v1"

    def _answer(self, prompt: str) -> str:
        if self.fail_on is not None and self.fail_on in prompt:
            raise LLMError(f"fake failure on {self.fail_on!r}")
        *demos, last = prompt.split("\n\n")
        query = last.removeprefix("Input: ").split("\nOutput:")[0]
        best, best_score = "", -1
        for block in demos:
            m = _BLOCK.match(block + "\n\n")
            if m is None:
                continue
            score = _overlap(m.group(1), query)
            if score >= best_score:
                best, best_score = m.group(2).strip(), score
        return best

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 16,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
        seed: int | Sequence[int] | None = None,
    ) -> list[str]:
        """The most similar demonstration's output, with a leading space.

        With ``temperature > 0``, a query whose text has an odd number of words gets a
        random demonstration output instead (seeded), so "uncertain" inputs exist.
        """
        if max_new_tokens < 1:
            raise InputDataError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if temperature < 0:
            raise InputDataError(f"temperature must be >= 0, got {temperature}")
        per_row = seed is not None and not isinstance(seed, int)
        if per_row and len(list(seed)) != len(prompts):  # type: ignore[arg-type]
            raise InputDataError(f"need one seed per prompt for {len(prompts)} prompts")
        self.calls += 1
        self.prompts_seen += len(prompts)
        rngs = (
            [np.random.default_rng(s) for s in seed]  # type: ignore[union-attr]
            if per_row
            else [np.random.default_rng(seed)] * len(prompts)  # type: ignore[arg-type]
        )
        out = []
        for p, rng in zip(prompts, rngs, strict=True):
            answer = self._answer(p)
            query = p.split("\n\n")[-1].removeprefix("Input: ").split("\nOutput:")[0]
            if temperature > 0 and len(query.split()) % 2 == 1:
                outs = [m.group(2).strip() for m in _BLOCK.finditer(p)] or [answer]
                answer = outs[int(rng.integers(len(outs)))]
            out.append(" " + answer)
        return out

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[float]:
        """0.0 for the continuation :meth:`generate` would give, -5.0 otherwise."""
        if len(prompts) != len(continuations):
            raise InputDataError(
                f"score needs as many continuations as prompts, got "
                f"{len(continuations)} and {len(prompts)}"
            )
        self.calls += 1
        self.prompts_seen += len(prompts)
        return [
            0.0 if c.strip() == self._answer(p) else -5.0
            for p, c in zip(prompts, continuations, strict=True)
        ]


class FakeWhiteBoxLLM(FakeLLM, WhiteBoxLLM):
    """:class:`FakeLLM`'s answers, with the hidden states of a tiny deterministic causal model.

    Tokens are words and punctuation marks, each with the whitespace before it. Layer 0
    holds a hashed embedding of each token; each layer above adds to a token's state the
    mean of the states up to it and squashes the sum (``tanh``), so a token's states
    depend on its prefix only, as in a causal transformer, and never on the batch.

    Args:
        dim: Hidden size.
        layers: Number of layers above the embeddings.
        fail_on: As for :class:`FakeLLM`.

    Example:
        >>> llm = FakeWhiteBoxLLM()
        >>> llm.hidden_states(["Input: a\\nOutput:"], layers=[0, 2])[0].shape
        (2, 1, 16)
    """

    def __init__(self, *, dim: int = 16, layers: int = 2, fail_on: str | None = None) -> None:
        super().__init__(fail_on=fail_on)
        self.dim = dim
        self.layers = layers

    @property
    def identity(self) -> str:
        """Fixed identity, with the sizes."""
        return f"fake-white-box-llm-v1-{self.dim}x{self.layers}"

    @property
    def num_layers(self) -> int:
        """Layers above the embeddings."""
        return self.layers

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span of each fake token (leading whitespace included)."""
        return [(m.start(), m.end()) for m in _TOKEN.finditer(text)]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Fake tokens per text."""
        return [len(self.token_offsets(t)) for t in texts]

    def _states(self, text: str) -> np.ndarray:
        """``(layers + 1) x tokens x dim`` states of ``text``."""
        words = [text[s:e].strip().lower() for s, e in self.token_offsets(text)]
        emb = np.zeros((len(words), self.dim))
        for i, w in enumerate(words):
            key = int.from_bytes(hashlib.md5(w.encode()).digest()[:8], "little")
            emb[i] = np.random.default_rng(key).standard_normal(self.dim)
        states = [emb]
        seen = np.arange(1, len(words) + 1)[:, None]
        for _ in range(self.layers):
            h = states[-1]
            states.append(np.tanh(h + np.cumsum(h, axis=0) / np.maximum(seen, 1)))
        return np.stack(states)

    def hidden_states(
        self,
        prompts: Sequence[str],
        *,
        layers: Sequence[int],
        positions: Sequence[Sequence[int]] | None = None,
    ) -> list[np.ndarray]:
        """States at ``layers`` and ``positions`` (default: the last token) of each prompt."""
        bad = [layer for layer in layers if not 0 <= layer <= self.layers]
        if bad:
            raise InputDataError(f"layers {bad} are outside [0, {self.layers}]")
        out = []
        for i, prompt in enumerate(prompts):
            states = self._states(prompt)
            n = states.shape[1]
            pos = list(positions[i]) if positions is not None else [-1]
            if any(not -n <= q < n for q in pos):
                raise InputDataError(f"prompt {i}: positions {pos} outside its {n} tokens")
            out.append(states[list(layers)][:, pos, :])
        return out


class FakeEmbedder(Embedder):
    """Deterministic bag-of-words hashing embedder (unit-norm), for tests without a model.

    Args:
        dim: Vector size.
    """

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim
        self.cache = None

    @property
    def identity(self) -> str:
        """Fixed identity."""
        return f"fake-embedder-{self.dim}"

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"\w+", t.lower()):
                h = int(hashlib.md5(w.encode()).hexdigest(), 16)
                out[i, h % self.dim] += 1.0 if (h >> 64) % 2 else -1.0
            out[i, 0] += 1e-3  # no zero vectors
        return out
