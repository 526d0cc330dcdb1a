"""Features of ORDERED demonstration sequences: the input of every surrogate model.

Two views behind one interface (:class:`SequenceFeatures`):

* :class:`PromptTextFeatures` (EASE, Wu et al., NeurIPS 2024): the whole ordered prompt
  (instruction + demonstrations) rendered as text and embedded at once. Order enters only
  through the encoder, and demonstrations past the encoder's token cap are cut off.
* :class:`SlotFeatures`: one embedding per slot, concatenated in order, after the mean
  over slots (the order-free part) and the instruction's embedding. Two orders of the same
  set differ whenever their items differ, and no demonstration is lost to truncation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from iclopt.data import Task
from iclopt.embedders.base import Embedder
from iclopt.errors import InputDataError
from iclopt.prompts import Prompt, Template
from iclopt.registry import Registry

__all__ = ["SEQUENCE_FEATURES", "PromptTextFeatures", "SequenceFeatures", "SlotFeatures"]

SEQUENCE_FEATURES: Registry[type[SequenceFeatures]] = Registry("sequence feature")


class SequenceFeatures(ABC):
    """Maps prompts (instruction + ordered demo ids) of one task to vectors, ``n x D``.

    Args:
        embedder: Text embedder (unit-norm vectors).
    """

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def fit(self, task: Task) -> SequenceFeatures:
        """Embed what does not depend on the prompt (the pool)."""
        self.task_ = task
        self.pool_emb_ = self.embedder([ex.input for ex in task.pool])
        return self

    @abstractmethod
    def __call__(self, prompts: Sequence[Prompt]) -> np.ndarray:
        """Features of ``prompts``, ``n x D``."""

    def _check(self) -> Task:
        if not hasattr(self, "task_"):
            raise InputDataError(f"{type(self).__name__} must be fit(task) before use")
        return self.task_


@SEQUENCE_FEATURES.register("prompt_text")
class PromptTextFeatures(SequenceFeatures):
    """EASE's view: embed the rendered ordered prompt text (without the query).

    Args:
        embedder: Text embedder.
        template: How demonstrations are rendered.
    """

    def __init__(self, embedder: Embedder, template: Template | None = None) -> None:
        super().__init__(embedder)
        self.template = template or Template()

    def text(self, prompt: Prompt) -> str:
        """The text embedded for ``prompt``."""
        task = self._check()
        t = self.template
        parts = [prompt.instruction.strip()] if prompt.instruction else []
        parts += [
            f"{t.input_prefix}{task.pool[i].input}{t.example_separator}{t.output_prefix}"
            f"{task.pool[i].target}"
            for i in prompt.demos
        ]
        return t.demo_separator.join(parts)

    def __call__(self, prompts: Sequence[Prompt]) -> np.ndarray:
        """Embeddings of the prompt texts, ``n x d``."""
        return self.embedder([self.text(p) for p in prompts])


@SEQUENCE_FEATURES.register("slots")
class SlotFeatures(SequenceFeatures):
    """Order-explicit view: ``[mean of slots, instruction, slot 1, ..., slot k]``.

    Each slot is the embedding of the demonstration's input and output text. Dimension
    ``(k + 2) x d`` for prompts of k demonstrations (all prompts must have the same k).
    """

    def fit(self, task: Task) -> SlotFeatures:
        """Embed every pool example as "input -> output" once."""
        self.task_ = task
        self.pool_emb_ = self.embedder([f"{ex.input} -> {ex.target}" for ex in task.pool])
        self.instructions_: dict[str | None, np.ndarray] = {}
        return self

    def _instruction(self, instruction: str | None) -> np.ndarray:
        if instruction not in self.instructions_:
            d = self.pool_emb_.shape[1]
            self.instructions_[instruction] = (
                np.zeros(d, dtype=np.float32)
                if instruction is None
                else self.embedder([instruction])[0]
            )
        return self.instructions_[instruction]

    def __call__(self, prompts: Sequence[Prompt]) -> np.ndarray:
        """Slot features, ``n x (k + 2) d``."""
        self._check()
        if not prompts:
            return np.zeros((0, 0), dtype=np.float32)
        ks = {len(p.demos) for p in prompts}
        if len(ks) != 1:
            raise InputDataError(
                f"SlotFeatures needs prompts of one length, got lengths {sorted(ks)}"
            )
        rows = []
        for p in prompts:
            slots = self.pool_emb_[list(p.demos)]
            rows.append(
                np.concatenate([slots.mean(axis=0), self._instruction(p.instruction), *slots])
            )
        return np.stack(rows).astype(np.float32)
