"""A deterministic fake LLM whose answers depend on the demonstrations it is shown."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from iclopt.embedders.base import Embedder
from iclopt.errors import InputDataError, LLMError
from iclopt.llms.base import LLM

__all__ = ["FakeEmbedder", "FakeLLM"]

_BLOCK = re.compile(r"Input: (.*?)\nOutput: ?(.*?)(?:\n\n|$)", re.S)


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
