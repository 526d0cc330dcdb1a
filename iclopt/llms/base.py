"""The LLM contract every backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from iclopt.prompts import Message

__all__ = ["LLM", "cut_at_stop"]


class LLM(ABC):
    """A language model iclopt can prompt.

    Backends implement :meth:`generate` and :meth:`score`; white-box backends set
    ``supports_hidden_states`` and implement :meth:`hidden_states` (attribution needs
    them). All methods take a batch: the backend decides how to group and reuse work.

    Failed calls raise :class:`~iclopt.errors.LLMError`; they never return a dummy answer.
    """

    #: Whether :meth:`hidden_states` is available.
    supports_hidden_states: bool = False

    @property
    @abstractmethod
    def identity(self) -> str:
        """A string naming the exact model (weights and tokenizer); part of cache keys."""

    @abstractmethod
    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 16,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
        seed: int | Sequence[int] | None = None,
    ) -> list[str]:
        """Continuation of each prompt, cut before the first stop string.

        Args:
            prompts: ``n`` prompt texts.
            max_new_tokens: Cap on generated tokens per prompt.
            stop: Strings that end generation; the returned text excludes them.
            temperature: 0 for greedy decoding; above 0, sampling at that temperature.
            seed: Seed of the sampling RNG (``None``: fresh entropy); unused when greedy.
                A sequence gives each prompt its own seed: then a prompt's sample must not
                depend on the other prompts of the call (batching, grouping).

        Returns:
            ``n`` generated texts.
        """

    @abstractmethod
    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[float]:
        """Total log-probability of each continuation given its prompt.

        Args:
            prompts: ``n`` prompt texts.
            continuations: ``n`` continuations (e.g. ``" positive"``), scored as tokenized
                on their own and appended to the prompt's tokens.

        Returns:
            ``n`` log-probabilities (natural log, summed over continuation tokens).
        """

    def prepare(self) -> LLM:
        """Get ready for work now (load weights, open a client), so errors come first.

        Commands call it once before any work; otherwise backends do it on first use.
        Default: nothing to do.

        Returns:
            ``self``.
        """
        return self

    def scores_logprobs(self, style: str = "completion") -> bool:
        """Whether :meth:`score` works for prompts of this template style.

        API backends whose server returns no log-probabilities answer ``False``; the
        evaluator then classifies by greedy generation and the metric.
        """
        return True

    def counters(self) -> dict[str, int]:
        """Cumulative request statistics since creation (API backends), e.g. ``retries``.

        A ``prompt_tokens`` entry (the server's ``usage``) replaces the
        :meth:`count_tokens` estimate when the evaluator charges a call.
        """
        return {}

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Token count of each text (used for budgets). Default: whitespace words."""
        return [len(t.split()) for t in texts]

    def apply_chat_template(self, messages: Sequence[Message]) -> str:
        """Render chat messages to the model's prompt text, ready for the reply."""
        raise NotImplementedError(f"{type(self).__name__} has no chat template")

    def hidden_states(
        self,
        prompts: Sequence[str],
        *,
        layers: Sequence[int],
        positions: Sequence[Sequence[int]] | None = None,
    ) -> list[np.ndarray]:
        """Hidden states of each prompt, ``len(layers) x len(positions[i]) x d``.

        Args:
            prompts: ``n`` prompt texts.
            layers: Layer indices (0 = embeddings, as in ``output_hidden_states``).
            positions: Token indices per prompt (negative counts from the end);
                ``None`` means the last token.
        """
        raise NotImplementedError(f"{type(self).__name__} does not expose hidden states")


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to (excluding) the earliest occurrence of any stop string.

    Example:
        >>> cut_at_stop(" positive. Input: x", [".", "Input:"])
        ' positive'
    """
    cut = len(text)
    for s in stop:
        k = text.find(s)
        if k != -1:
            cut = min(cut, k)
    return text[:cut]
