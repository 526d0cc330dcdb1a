"""The ask/tell optimizer contract and its registry.

Optimizers only propose prompts (:meth:`Optimizer.suggest`) and learn from rewards
(:meth:`Optimizer.observe`); the loop that drives them, the budget, progress and the
result live in :mod:`iclopt.search`, once for all of them (as in optuna's
``Study.ask`` / ``Study.tell``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from iclopt.data import Task
from iclopt.errors import InputDataError
from iclopt.prompts import Prompt
from iclopt.registry import Registry

__all__ = ["OPTIMIZERS", "Optimizer", "register_optimizer"]

OPTIMIZERS: Registry[type[Optimizer]] = Registry("optimizer")


def register_optimizer(name: str) -> Any:
    """Class decorator registering an optimizer under ``name``."""
    return OPTIMIZERS.register(name)


class Optimizer(ABC):
    """Searches (instruction, ordered demonstrations) prompts by ask/tell.

    ``__init__`` only stores its keyword arguments; :meth:`setup` validates them against
    the task and creates fitted state (attributes ending in ``_``).

    Args:
        k: Number of demonstrations per prompt.
        seed: Seed of the optimizer's own RNG; ``None`` draws fresh entropy.
        instructions: Candidate instructions searched jointly with the demonstrations;
            ``None`` in the list means "no instruction".
    """

    def __init__(
        self,
        *,
        k: int = 5,
        seed: int | None = None,
        instructions: Sequence[str | None] = (None,),
    ) -> None:
        self.k = k
        self.seed = seed
        self.instructions = instructions

    def setup(self, task: Task) -> None:
        """Validate parameters against ``task`` and reset the search state."""
        name = type(self).__name__
        n = len(task.pool)
        if not isinstance(self.k, (int, np.integer)) or isinstance(self.k, bool) or self.k < 1:
            raise InputDataError(
                f"The 'k' parameter of {name} must be an int in [1, inf). Got {self.k!r} instead."
            )
        if self.k > n:
            raise InputDataError(f"k={self.k} is larger than the pool of task {task.name!r} ({n})")
        if not self.instructions:
            raise InputDataError(f"The 'instructions' parameter of {name} must not be empty.")
        self.task_ = task
        self.rng_ = np.random.default_rng(self.seed)
        self.history_: list[tuple[Prompt, float]] = []
        self.seen_: set[Prompt] = set()

    @abstractmethod
    def suggest(self) -> Prompt:
        """Propose the next prompt to evaluate."""

    def observe(self, prompt: Prompt, reward: float) -> None:
        """Learn from the reward (validation score) of a suggested prompt."""
        self.history_.append((prompt, float(reward)))
        self.seen_.add(prompt)

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON form), recorded in results."""
        return {"k": int(self.k), "seed": self.seed, "instructions": list(self.instructions)}
