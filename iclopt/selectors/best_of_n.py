"""Best-of-N random search as a selector, at the same budget as the optimizers."""

from __future__ import annotations

from iclopt.bandits.random_search import RandomSearch
from iclopt.data import Task
from iclopt.errors import InputDataError
from iclopt.evaluation import Budget, Evaluator
from iclopt.prompts import Prompt
from iclopt.search import run_search
from iclopt.selectors.base import FitContext, Selector, register_selector

__all__ = ["BestOfNSelector"]


@register_selector("best-of-n")
class BestOfNSelector(Selector):
    """Evaluate random ordered k-sets on the validation set (the budget); keep the best.

    Uses :class:`~iclopt.bandits.RandomSearch` and the shared search loop, so it spends
    exactly what ``iclopt optimize --method best-of-n`` spends at the same budget.

    Args:
        seed: Seed of the search.
        budget: Validation evaluations; ``None`` takes the comparison's budget.
    """

    def __init__(self, *, seed: int | None = None, budget: int | None = None) -> None:
        super().__init__(seed=seed)
        self.budget = budget

    def fit(self, task: Task, context: FitContext | None = None) -> BestOfNSelector:
        """Remember the LLM; the search runs in :meth:`select` (it depends on k)."""
        super().fit(task, context)
        self.llm_ = self.context_.need_llm(self.name)
        n = self.budget if self.budget is not None else self.context_.budget
        if n is None or n < 1:
            raise InputDataError("best-of-n needs a budget of at least 1 evaluation")
        self.n_ = int(n)
        self.best_: dict[int, tuple[Prompt, float]] = {}
        return self

    def select(self, task: Task, k: int, *, query: str | None = None) -> Prompt:
        """The best of ``budget`` random prompts on the validation set (once per k)."""
        self._check(task, k, query)
        if k not in self.best_:
            budget = Budget(max_evaluations=self.n_)
            ev = Evaluator(task, self.llm_, budget=budget, **self.context_.evaluator_kwargs)
            opt = RandomSearch(k=k, seed=self.seed)
            trace = run_search(opt, ev, budget)
            self.context_.spent.charge(budget.spent)
            prompt = opt.recommend()[0]  # ties to the higher continuous signal
            self.best_[k] = (prompt, next(e.score for e in trace if e.prompt == prompt))
        return self.best_[k][0]
