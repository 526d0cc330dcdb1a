"""Best-of-N random search: the baseline every optimizer must beat at equal budget."""

from __future__ import annotations

from iclopt.bandits.base import Optimizer, register_optimizer
from iclopt.prompts import Prompt

__all__ = ["RandomSearch"]


@register_optimizer("best-of-n")
class RandomSearch(Optimizer):
    """Evaluate random ordered k-tuples (and random instructions); keep the best.

    Each suggestion draws k distinct pool ids in random order and one instruction
    uniformly; prompts already suggested are redrawn (up to 100 times), so a budget of N
    evaluations sees N distinct prompts whenever the space allows.

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
        """A random prompt not suggested before (when one can be found)."""
        n = len(self.task_.pool)
        prompt = Prompt()
        for _ in range(100):
            demos = tuple(int(i) for i in self.rng_.choice(n, size=self.k, replace=False))
            instruction = self.instructions[int(self.rng_.integers(len(self.instructions)))]
            prompt = Prompt(instruction=instruction, demos=demos)
            if prompt not in self.seen_:
                break
        self.seen_.add(prompt)
        return prompt
