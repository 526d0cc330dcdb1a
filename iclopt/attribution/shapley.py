"""Monte Carlo permutation Shapley values of demonstrations (any backend).

Data Shapley (Ghorbani and Zou, "Data Shapley: Equitable Valuation of Data for Machine
Learning", ICML 2019) applied to the demonstrations of one prompt: the value of a coalition
``S`` is the mean utility on the queries of the prompt made of the demonstrations in ``S``
(kept in the prompt's order; ``v(empty)`` is the zero-shot prompt). Shapley values are
estimated by permutation sampling (Castro, Gomez and Tejada, 2009): for each random order,
each demonstration's marginal contribution when it joins the ones before it. Every
permutation's marginals add up to ``v(all) - v(empty)`` exactly, so their means do too;
the standard error of each mean is reported, and sampling stops early when every error is
small. Truncation (Ghorbani and Zou's TMC-Shapley) is optional and off by default, since it
gives up that exact sum.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from iclopt.attribution.base import Attribution, EvaluatorAttributor, register_attributor
from iclopt.data import Example, Task
from iclopt.errors import BudgetExhausted
from iclopt.evaluation import Budget, Cost, ResultCache, Scoring
from iclopt.llms.base import LLM
from iclopt.params import Interval
from iclopt.prompts import Prompt, Template

__all__ = ["Shapley"]


@register_attributor("shapley")
class Shapley(EvaluatorAttributor):
    """Monte Carlo permutation Shapley values with standard errors and early stopping.

    Args:
        llm: The LLM (any backend).
        template: Prompt template.
        scoring: ``"auto"``, ``"generate"`` or ``"labels"``.
        utility: ``"auto"``, ``"metric"`` or ``"logprob"`` (see :class:`EvaluatorAttributor`).
        max_new_tokens: Generation cap (``None``: the evaluator's default).
        cache: Result cache, or ``None``.
        budget: Charged for every evaluation; when it runs out, the estimate uses the
            permutations completed so far (at least two are needed).
        max_permutations: The sample budget, in permutations (each costs at most ``k - 1``
            new evaluations; coalitions seen before are free).
        min_permutations: Permutations before early stopping may trigger (>= 2).
        tolerance: Stop when every standard error is at most ``tolerance * |v(all) -
            v(empty)|``; ``None`` never stops early.
        truncation: TMC-Shapley: within a permutation, once ``|v(all) - v(S)|`` is below
            ``truncation * |v(all) - v(empty)|``, the remaining marginals count as 0.
            ``None`` (default): no truncation.
        seed: Seed of the permutations; ``None`` draws fresh entropy.

    Example:
        >>> from iclopt.datasets import get_task
        >>> from iclopt.testing import FakeLLM
        >>> attr = Shapley(llm=FakeLLM(), max_permutations=4, seed=0).attribute(
        ...     get_task("sentiment"), Prompt(None, (0, 1, 2)))
        >>> attr.errors.shape
        (3,)
    """

    score_measure = "its average contribution over random orders (Shapley value)"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "max_permutations": [Interval(int, 2, None)],
        "min_permutations": [Interval(int, 2, None)],
        "tolerance": [Interval(float, 0, None, closed="neither"), None],
        "truncation": [Interval(float, 0, None, closed="neither"), None],
    }

    def __init__(
        self,
        *,
        llm: LLM,
        template: Template | None = None,
        scoring: Scoring = "auto",
        utility: str = "auto",
        max_new_tokens: int | None = None,
        cache: ResultCache | None = None,
        budget: Budget | None = None,
        max_permutations: int = 50,
        min_permutations: int = 5,
        tolerance: float | None = 0.05,
        truncation: float | None = None,
        seed: int | None = 0,
    ) -> None:
        super().__init__(
            llm=llm,
            template=template,
            scoring=scoring,
            utility=utility,
            max_new_tokens=max_new_tokens,
            cache=cache,
            budget=budget,
        )
        self.max_permutations = max_permutations
        self.min_permutations = min_permutations
        self.tolerance = tolerance
        self.truncation = truncation
        self.seed = seed

    def _attribute(
        self, task: Task, prompt: Prompt, queries: Sequence[Example | str] | None
    ) -> Attribution:
        """Attribute ``prompt``'s demonstrations (see :meth:`Attributor.attribute`).

        Raises:
            BudgetExhausted: The budget did not allow two complete permutations.
        """
        qs, evaluator, kind = self._prepare(task, queries, what="Shapley values")
        start = time.perf_counter()
        cost = Cost()
        n = len(prompt.demos)
        memo: dict[frozenset[int], np.ndarray] = {}

        def value(members: frozenset[int]) -> np.ndarray:
            if members not in memo:
                demos = tuple(d for j, d in enumerate(prompt.demos) if j in members)
                ev = evaluator.evaluate(Prompt(prompt.instruction, demos), qs)
                cost.__iadd__(ev.cost)
                memo[members] = self._per_query_values(ev.per_example, qs, kind)
            return memo[members]

        everyone = frozenset(range(n))
        v_all, v_empty = value(everyone), value(frozenset())
        span = abs(float(v_all.mean() - v_empty.mean()))
        rng = np.random.default_rng(self.seed)
        marginals: list[np.ndarray] = []  # per permutation: n
        per_query_sum = np.zeros((n, len(qs)))
        converged = False
        stopped_by_budget = False
        errors = np.full(n, np.inf)
        for _ in range(self.max_permutations):
            order = rng.permutation(n)
            marg = np.zeros(n)
            marg_q = np.zeros((n, len(qs)))
            prev, members = v_empty, frozenset[int]()
            try:
                for pos, j in enumerate(order):
                    if (
                        self.truncation is not None
                        and abs(float(v_all.mean() - prev.mean())) < self.truncation * span
                    ):
                        break  # TMC: the rest count as 0
                    members = members | {int(j)}
                    cur = v_all if pos == n - 1 else value(members)
                    marg_q[j] = cur - prev
                    marg[j] = float(cur.mean() - prev.mean())
                    prev = cur
            except BudgetExhausted:
                stopped_by_budget = True
                break
            marginals.append(marg)
            per_query_sum += marg_q
            t = len(marginals)
            if t >= 2:
                errors = np.std(np.stack(marginals), axis=0, ddof=1) / np.sqrt(t)
            if (
                self.tolerance is not None
                and t >= self.min_permutations
                and float(errors.max()) <= self.tolerance * max(span, 1e-12)
            ):
                converged = True
                break
        if len(marginals) < 2:
            raise BudgetExhausted(
                "the budget did not allow two complete permutations for Shapley values "
                f"({len(memo)} coalitions evaluated)"
            )
        t = len(marginals)
        cost.seconds = time.perf_counter() - start
        return self._result(
            task,
            prompt,
            qs,
            scores=np.mean(np.stack(marginals), axis=0),
            errors=errors,
            per_query=per_query_sum / t,
            cost=cost,
            config={
                "utility": kind,
                "scoring": evaluator.scoring,
                "max_permutations": self.max_permutations,
                "min_permutations": self.min_permutations,
                "tolerance": self.tolerance,
                "truncation": self.truncation,
                "seed": self.seed,
                "template": evaluator.template.as_dict(),
            },
            extra={
                "v_all": float(v_all.mean()),
                "v_empty": float(v_empty.mean()),
                "permutations": t,
                "coalitions_evaluated": len(memo),
                "converged": converged,
                "stopped_by_budget": stopped_by_budget,
            },
        )
