"""Random demonstrations: the floor every method is compared with."""

from __future__ import annotations

import numpy as np

from iclopt.data import Task
from iclopt.prompts import Prompt
from iclopt.selectors.base import FitContext, Selector, register_selector

__all__ = ["RandomSelector"]


@register_selector("random")
class RandomSelector(Selector):
    """k distinct pool items in random order, one set for the whole task.

    Args:
        seed: RNG seed; the same seed gives the same prompt.

    Example:
        >>> from iclopt.datasets import get_task
        >>> task = get_task("sentiment")
        >>> RandomSelector(seed=0).fit(task).select(task, 3).demos == \\
        ...     RandomSelector(seed=0).fit(task).select(task, 3).demos
        True
    """

    def fit(self, task: Task, context: FitContext | None = None) -> RandomSelector:
        """Fix the draw: with ``seed=None`` fresh entropy is drawn once here, not per call."""
        super().fit(task, context)
        self.draw_seed_ = (
            self.seed if self.seed is not None else int(np.random.SeedSequence().entropy % 2**63)  # type: ignore[operator]
        )
        return self

    def select(self, task: Task, k: int, *, query: str | None = None) -> Prompt:
        """A random ordered k-subset (fixed per fitted selector and k)."""
        self._check(task, k, query)
        rng = np.random.default_rng(self.draw_seed_)
        demos = rng.choice(len(task.pool), size=k, replace=False)
        return Prompt(None, tuple(int(i) for i in demos))
