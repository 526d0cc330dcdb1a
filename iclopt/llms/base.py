"""The LLM contract every backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from iclopt.prompts import Message

__all__ = ["LLM", "WhiteBoxLLM", "cut_at_stop"]


class LLM(ABC):
    """A language model iclopt can prompt.

    Backends implement :meth:`generate` and :meth:`score`; white-box backends derive
    from :class:`WhiteBoxLLM` (hidden states, for attribution), which sets
    ``supports_hidden_states``. All methods take a batch: the backend decides how to
    group and reuse work.

    Failed calls raise :class:`~iclopt.errors.LLMError`; they never return a dummy answer.
    """

    #: Whether the backend is a :class:`WhiteBoxLLM` (hidden states available).
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


class WhiteBoxLLM(LLM):
    """An LLM whose internals can be read: hidden states, token offsets and depth.

    Attribution by internal representations (DETAIL) needs them. Subclasses implement
    :attr:`num_layers`, :meth:`token_offsets` and :meth:`hidden_states`; a backend that
    can share work between prompts (a prefix key/value cache) overrides
    :meth:`prompt_states`, which otherwise makes two :meth:`hidden_states` calls.
    """

    supports_hidden_states = True

    @property
    @abstractmethod
    def num_layers(self) -> int:
        """Number of transformer layers (hidden-state layers are ``0..num_layers``)."""

    @abstractmethod
    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span ``(start, end)`` of each token of ``text``, in token order."""

    @abstractmethod
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

        Raises:
            InputDataError: A layer or a position out of range.
        """

    def prompt_states(
        self, texts: Sequence[str], positions: Sequence[int], layer: int
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """States at ``layer``: at ``positions`` of ``texts[0]``, and at every text's last token.

        Args:
            texts: Prompt texts (one per query), all starting with the same demonstrations.
            positions: Token indices in ``texts[0]`` (e.g. the tokens that predict the
                demonstrations' answers).
            layer: Layer index (0 = embeddings).

        Returns:
            ``len(positions) x d`` states, ``len(texts) x d`` last-token states (float64),
            and the number of tokens fed to the model.
        """
        first = self.hidden_states([texts[0]], layers=[layer], positions=[[*positions, -1]])[0][0]
        rest = self.hidden_states(list(texts[1:]), layers=[layer]) if len(texts) > 1 else []
        last = np.stack([first[-1], *[s[0, 0] for s in rest]])
        fed = sum(self.count_tokens(list(texts)))
        return first[:-1].astype(np.float64), last.astype(np.float64), fed


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
