"""Uncertainty-based selection: Active-Prompt (Diao et al., 2023)."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, ClassVar, Literal

import numpy as np

from iclopt.data import Task
from iclopt.errors import InputDataError
from iclopt.evaluation import Evaluator
from iclopt.metrics import normalize
from iclopt.params import Options
from iclopt.prompts import Prompt
from iclopt.selectors.base import FitContext, Selector, register_selector

__all__ = ["UncertaintySelector", "answer_entropy", "disagreement"]

Measure = Literal["disagreement", "entropy", "label_entropy"]


def disagreement(answers: list[str]) -> float:
    """Distinct (normalized) answers divided by the number of answers, in (0, 1]."""
    return len({normalize(a) for a in answers}) / len(answers)


def answer_entropy(answers: list[str]) -> float:
    """Entropy (nats) of the empirical distribution of normalized answers."""
    counts = Counter(normalize(a) for a in answers)
    n = len(answers)
    return -sum(c / n * math.log(c / n) for c in counts.values())


@register_selector("uncertainty")
class UncertaintySelector(Selector):
    """The pool items the LLM is least sure about (Active-Prompt, Diao et al., 2023).

    Each pool input is answered ``samples`` times at ``temperature`` under a context of
    ``context_k`` random pool demonstrations (seeded; the item itself never in its own
    context), and ranked by ``measure``: ``"disagreement"`` (distinct answers /
    samples, the paper's default), ``"entropy"`` (entropy of the answers) or, for
    classification tasks, ``"label_entropy"`` (entropy of the label probabilities
    from one scoring pass, no sampling). The k most uncertain items are selected; ties
    are broken by the seeded RNG. Order: most uncertain LAST, next to the query.

    Args:
        seed: Seed of the context choice, the sampling and tie-breaking.
        measure: Uncertainty measure (see above).
        samples: Answers sampled per pool input.
        temperature: Sampling temperature (> 0).
        context_k: Demonstrations in the context used to answer pool inputs.
        max_candidates: Rank at most this many pool items (a seeded random subset).
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "measure": [Options("disagreement", "entropy", "label_entropy")],
    }

    def __init__(
        self,
        *,
        seed: int | None = None,
        measure: Measure = "disagreement",
        samples: int = 5,
        temperature: float = 0.7,
        context_k: int = 3,
        max_candidates: int | None = None,
    ) -> None:
        super().__init__(seed=seed)
        self.measure = measure
        self.samples = samples
        self.temperature = temperature
        self.context_k = context_k
        self.max_candidates = max_candidates

    def fit(self, task: Task, context: FitContext | None = None) -> UncertaintySelector:
        """Sample answers for the pool inputs and compute their uncertainty."""
        super().fit(task, context)
        if self.measure == "label_entropy" and not task.labels:
            raise InputDataError("measure 'label_entropy' needs a classification task (labels)")
        llm = self.context_.need_llm(self.name)
        n = len(task.pool)
        cand = np.arange(n)
        if self.max_candidates is not None and self.max_candidates < n:
            cand = np.sort(self.rng_.choice(n, size=self.max_candidates, replace=False))
        ctx_k = min(self.context_k, n - 1)
        base = [int(i) for i in self.rng_.choice(n, size=min(ctx_k + 1, n), replace=False)]
        kw = dict(self.context_.evaluator_kwargs)
        # sampled answers need generation; label entropy needs label scoring, whatever
        # the caller's scoring mode is
        kw["scoring"] = "labels" if self.measure == "label_entropy" else "generate"
        ev = Evaluator(task, llm, budget=self.context_.spent, **kw)
        scores = np.zeros(len(cand))
        # group pool items by their context (the base context minus the item itself)
        groups: dict[tuple[int, ...], list[int]] = {}
        self.contexts_: dict[int, tuple[int, ...]] = {}  # candidate -> its prompt's demos
        for j, i in enumerate(cand):
            ctx = tuple(d for d in base if d != int(i))[:ctx_k]
            groups.setdefault(ctx, []).append(j)
            self.contexts_[int(i)] = ctx
        for ctx, members in groups.items():
            prompt = Prompt(None, ctx)
            items = [task.pool[int(cand[j])] for j in members]
            if self.measure == "label_entropy":
                res = ev.evaluate(prompt, items)
                for j, row in zip(members, res.per_example):
                    lp = np.array(list(row["label_logprobs"].values()))
                    p = np.exp(lp - lp.max())
                    p /= p.sum()
                    scores[j] = float(-(p * np.log(np.clip(p, 1e-300, None))).sum())
            else:
                answers, _ = ev.sample(
                    prompt,
                    [it.input for it in items],
                    n=self.samples,
                    temperature=self.temperature,
                    seed=None if self.seed is None else int(self.seed),
                )
                fn = disagreement if self.measure == "disagreement" else answer_entropy
                for j, ans in zip(members, answers):
                    scores[j] = fn(ans)
        self.candidates_ = cand
        self.uncertainty_ = scores
        return self

    def ranking(self) -> np.ndarray:
        """Candidate pool ids from most to least uncertain (seeded tie-breaking)."""
        jitter = np.random.default_rng(self.seed).random(len(self.candidates_))
        order = np.lexsort((jitter, -self.uncertainty_))
        return self.candidates_[order]

    def select(self, task: Task, k: int, *, query: str | None = None) -> Prompt:
        """The k most uncertain pool items, most uncertain last."""
        self._check(task, k, query)
        if k > len(self.candidates_):
            raise InputDataError(
                f"k={k} is larger than the {len(self.candidates_)} candidates ranked"
            )
        top = self.ranking()[:k]
        return Prompt(None, tuple(int(i) for i in top[::-1]))
