"""Best-of-N random search: the baseline every optimizer must beat at equal budget."""

from __future__ import annotations

import itertools

from iclopt.bandits.base import Optimizer, SearchSpaceExhausted, register_optimizer
from iclopt.prompts import Prompt

__all__ = ["RandomSearch"]

#: Below this many prompts, the unseen ones are enumerated when random draws keep repeating.
_ENUMERATE_BELOW = 200_000


@register_optimizer("best-of-n")
class RandomSearch(Optimizer):
    """random ordered k-tuples, keep the best validation score (baseline).

    Each suggestion draws k distinct pool ids in random order and one instruction
    uniformly; prompts already suggested are redrawn, so a budget of N evaluations sees N
    distinct prompts whenever the space allows. When every prompt has been suggested,
    :meth:`suggest` raises :class:`~iclopt.bandits.SearchSpaceExhausted` and the search
    loop stops.

    Its first draws are the shared initial design of the model-based optimizers
    (:func:`iclopt.bandits.candidates.initial_design`), so best-of-n and those methods
    start from the same prompts for a given seed.

    Args:
        k: Demonstrations per prompt.
        seed: RNG seed; ``None`` for fresh entropy.
        instructions: Candidate instructions.

    Example:
        >>> from iclopt.datasets import get_task
        >>> opt = RandomSearch(k=3, seed=0)
        >>> opt.setup(get_task("sentiment"))
        >>> len(opt.suggest().demos)
        3
    """

    def suggest(self) -> Prompt:
        """A random prompt not suggested before.

        Raises:
            SearchSpaceExhausted: Every prompt has been suggested.
        """
        self._check_setup()
        if self._exhausted():
            raise SearchSpaceExhausted(
                f"all {self.space_size_} prompts of the search space were suggested"
            )
        n = len(self.task_.pool)
        for _ in range(100):
            prompt = self._draw()
            if prompt not in self.seen_:
                self.seen_.add(prompt)
                return prompt
        if self.space_size_ <= _ENUMERATE_BELOW:  # a small space, mostly seen: enumerate
            unseen = [
                Prompt(instruction=ins, demos=d)
                for d in itertools.permutations(range(n), int(self.k))
                for ins in self.instructions
                if Prompt(instruction=ins, demos=d) not in self.seen_
            ]
            prompt = unseen[int(self.rng_.integers(len(unseen)))]
            self.seen_.add(prompt)
            return prompt
        while True:  # a huge space: a new prompt turns up quickly
            prompt = self._draw()
            if prompt not in self.seen_:
                self.seen_.add(prompt)
                return prompt

    def _draw(self) -> Prompt:
        """A uniform random prompt (seen or not): k distinct demonstrations, an instruction."""
        n = len(self.task_.pool)
        demos = tuple(int(i) for i in self.rng_.choice(n, size=self.k, replace=False))
        instruction = self.instructions[int(self.rng_.integers(len(self.instructions)))]
        return Prompt(instruction=instruction, demos=demos)
