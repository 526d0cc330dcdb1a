"""Leave-one-out attribution through the evaluator (any backend).

The contribution of demonstration ``i`` is ``v(all) - v(all without i)``, where ``v`` is
the prompt's mean utility on the queries: the classic leave-one-out baseline that
in-context influence (Nguyen and Wong, "In-context Example Selection with Influences",
2023) and DETAIL (Zhou et al., NeurIPS 2024) are judged against. ``k + 1`` evaluations,
each answered from the result cache when it can be and charged to the budget.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from iclopt.attribution.base import Attribution, EvaluatorAttributor, register_attributor
from iclopt.data import Example, Task
from iclopt.evaluation import Cost
from iclopt.prompts import Prompt

__all__ = ["LeaveOneOut"]


@register_attributor("loo")
class LeaveOneOut(EvaluatorAttributor):
    """Leave-one-out: how much the prompt loses on the queries without each demonstration.

    ``scores[i] = v(all) - v(all \\ {i})`` (higher = more helpful); ``per_query`` holds
    the same difference per query. Keyword arguments: see :class:`EvaluatorAttributor`.

    Example:
        >>> from iclopt.datasets import get_task
        >>> from iclopt.testing import FakeLLM
        >>> task = get_task("sentiment")
        >>> attr = LeaveOneOut(llm=FakeLLM()).attribute(task, Prompt(None, (0, 1, 2)))
        >>> len(attr.scores)
        3
    """

    score_measure = "how much the prompt's score drops without it"

    def _attribute(
        self, task: Task, prompt: Prompt, queries: Sequence[Example | str] | None
    ) -> Attribution:
        """Attribute ``prompt``'s demonstrations (see :meth:`Attributor.attribute`)."""
        qs, evaluator, kind = self._prepare(task, queries, what="leave-one-out values")
        start = time.perf_counter()
        cost = Cost()
        full = evaluator.evaluate(prompt, qs)
        cost += full.cost
        v_all = self._per_query_values(full.per_example, qs, kind)
        n = len(prompt.demos)
        per_query = np.zeros((n, len(qs)))
        for i in range(n):
            rest = Prompt(prompt.instruction, prompt.demos[:i] + prompt.demos[i + 1 :])
            ev = evaluator.evaluate(rest, qs)
            cost += ev.cost
            per_query[i] = v_all - self._per_query_values(ev.per_example, qs, kind)
        cost.seconds = time.perf_counter() - start
        return self._result(
            task,
            prompt,
            qs,
            scores=per_query.mean(axis=1),
            per_query=per_query,
            cost=cost,
            config={
                "utility": kind,
                "scoring": evaluator.scoring,
                "template": evaluator.template.as_dict(),
            },
            extra={"v_all": float(v_all.mean())},
        )
