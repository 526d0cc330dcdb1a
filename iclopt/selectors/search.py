"""Any registered optimizer as a selector, so ``compare`` shows searches beside heuristics."""

from __future__ import annotations

from iclopt.bandits import OPTIMIZERS
from iclopt.data import Task
from iclopt.errors import InputDataError
from iclopt.evaluation import Budget, Evaluator
from iclopt.prompts import Prompt
from iclopt.search import run_search
from iclopt.selectors.base import FitContext, Selector

__all__ = ["SearchSelector"]


class SearchSelector(Selector):
    """Run the optimizer ``method`` under the comparison's budget; select its recommendation.

    Not registered itself: :func:`iclopt.compare` wraps every name of
    :data:`iclopt.bandits.OPTIMIZERS` that is not also a selector's name, so a new
    optimizer shows up in comparisons without being listed anywhere. Every search gets the
    LLM calls of ``budget`` full validation evaluations (cache hits counted), so methods
    compare at equal calls; model-based ones use the comparison's embedder.

    Args:
        method: An optimizer name.
        seed: Seed of the search.
        budget: Validation evaluations' worth of calls; ``None`` takes the comparison's.
    """

    def __init__(self, *, method: str, seed: int | None = None, budget: int | None = None) -> None:
        super().__init__(seed=seed)
        self.method = method
        self.budget = budget

    def fit(self, task: Task, context: FitContext | None = None) -> SearchSelector:
        """Check the method and the budget; the search runs in :meth:`select` (per k)."""
        super().fit(task, context)
        self.cls_ = OPTIMIZERS.get(self.method)
        self.llm_ = self.context_.need_llm(self.method)
        n = self.budget if self.budget is not None else self.context_.budget
        if n is None or n < 1:
            raise InputDataError(f"{self.method} needs a budget of at least 1 evaluation")
        self.n_ = int(n)
        self.best_: dict[int, Prompt] = {}
        return self

    def select(self, task: Task, k: int, *, query: str | None = None) -> Prompt:
        """The optimizer's recommendation after its search (once per k)."""
        from iclopt.bandits.model_based import ModelBasedOptimizer

        self._check(task, k, query)
        if k not in self.best_:
            kwargs: dict = {"k": k, "seed": self.seed}
            if issubclass(self.cls_, ModelBasedOptimizer):
                kwargs["embedder"] = self.context_.need_embedder(self.method)
            opt = self.cls_(**kwargs)
            probe = Evaluator(task, self.llm_, **self.context_.evaluator_kwargs)
            calls = self.n_ * len(task.val) * probe.calls_per_query()
            races = self.cls_.partial_evaluations
            budget = Budget(max_evaluations=None if races else self.n_, max_llm_calls=calls)
            ev = Evaluator(task, self.llm_, budget=budget, **self.context_.evaluator_kwargs)
            run_search(opt, ev, budget)
            self.context_.spent.charge(budget.spent)
            self.best_[k] = opt.recommend()[0]
        return self.best_[k]
