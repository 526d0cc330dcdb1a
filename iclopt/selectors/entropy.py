"""Ordering by entropy on a probe set (Lu et al., 2022, "Fantastically Ordered Prompts")."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from typing import Any, ClassVar, Literal

import numpy as np

from iclopt.data import Example, Task
from iclopt.errors import InputDataError
from iclopt.evaluation import Evaluator
from iclopt.metrics import normalize
from iclopt.params import Options
from iclopt.prompts import Prompt
from iclopt.selectors.base import FitContext, Selector, register_selector

__all__ = ["EntropySelector", "global_entropy", "local_entropy"]


def global_entropy(predictions: list[str]) -> float:
    """GlobalE: entropy (nats) of the distribution of predicted answers over the probe set."""
    counts = Counter(normalize(p) for p in predictions)
    n = len(predictions)
    return -sum(c / n * math.log(c / n) for c in counts.values())


def local_entropy(label_logprobs: list[dict[str, float]]) -> float:
    """LocalE: mean entropy of each probe input's label distribution."""
    out = []
    for lp in label_logprobs:
        v = np.array(list(lp.values()))
        p = np.exp(v - v.max())
        p /= p.sum()
        out.append(float(-(p * np.log(np.clip(p, 1e-300, None))).sum()))
    return float(np.mean(out))


@register_selector("entropy")
class EntropySelector(Selector):
    """Pick the demonstration ORDER whose probe-set predictions are most balanced.

    Lu et al. (2022): a fixed set of demonstrations (k random pool items, seeded) is
    tried in ``max_permutations`` orders (all k! when fewer); each order answers an
    unlabeled probe set, and the order with the highest GlobalE (entropy of the
    predicted-label histogram) or LocalE (mean entropy of each prediction's label
    distribution; classification only) wins. Ties go to the earlier permutation.

    Probe set: ``"val"`` uses the validation INPUTS (their labels are never read);
    ``"generate"`` has the LLM write ``probe_size`` new inputs by sampling from the
    demonstrations, as in the paper.

    Args:
        seed: Seed of the set, the permutations and probe generation.
        criterion: ``"global"`` (GlobalE) or ``"local"`` (LocalE).
        probe: ``"val"`` or ``"generate"``.
        probe_size: Probe inputs used.
        max_permutations: Orders tried.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "criterion": [Options("global", "local")],
        "probe": [Options("val", "generate")],
    }

    def __init__(
        self,
        *,
        seed: int | None = None,
        criterion: Literal["global", "local"] = "global",
        probe: Literal["val", "generate"] = "val",
        probe_size: int = 20,
        max_permutations: int = 24,
    ) -> None:
        super().__init__(seed=seed)
        self.criterion = criterion
        self.probe = probe
        self.probe_size = probe_size
        self.max_permutations = max_permutations

    def fit(self, task: Task, context: FitContext | None = None) -> EntropySelector:
        """Remember the LLM; the search runs in :meth:`select` (it depends on k)."""
        super().fit(task, context)
        if self.criterion == "local" and not task.labels:
            raise InputDataError("LocalE needs a classification task with a label set")
        self.llm_ = self.context_.need_llm(self.name)
        self.results_: dict[int, tuple[Prompt, list[tuple[tuple[int, ...], float]]]] = {}
        return self

    def _probe_inputs(self, ev: Evaluator, demos: tuple[int, ...]) -> list[str]:
        if self.probe == "val":
            inputs = [ex.input for ex in self.task_.val[: self.probe_size]]
        else:
            # the LLM continues "Input:" after the demonstrations: new, unlabeled inputs
            tmpl = ev.template
            head = tmpl.demo_separator.join(
                f"{tmpl.input_prefix}{self.task_.pool[i].input}{tmpl.example_separator}"
                f"{tmpl.output_prefix}{self.task_.pool[i].target}"
                for i in demos
            )
            text = head + tmpl.demo_separator + tmpl.input_prefix.rstrip()
            seed = None if self.seed is None else int(self.seed)
            # through the evaluator: cached per sample and charged to the budget
            raw, _ = ev.sample_texts(
                [text], n=self.probe_size, temperature=1.0, seed=seed, max_new_tokens=32
            )
            inputs = list(dict.fromkeys(r for r in raw[0] if r))
        if not inputs:
            raise InputDataError(
                "entropy needs probe inputs: the validation set is empty or the LLM generated none"
            )
        return inputs

    def select(self, task: Task, k: int, *, query: str | None = None) -> Prompt:
        """The best order of a seeded random k-set (computed once per k)."""
        self._check(task, k, query)
        if k in self.results_:
            return self.results_[k][0]
        rng = np.random.default_rng(self.seed)
        demos = tuple(int(i) for i in rng.choice(len(task.pool), size=k, replace=False))
        if self.probe_size < 1:
            raise InputDataError("entropy needs probe inputs: probe_size must be >= 1")
        kw = dict(self.context_.evaluator_kwargs)
        if self.criterion == "global" and not task.labels:
            kw["scoring"] = "generate"
        elif self.criterion == "local":
            kw["scoring"] = "labels"  # LocalE reads label distributions, whatever the mode
        ev = Evaluator(task, self.llm_, budget=self.context_.spent, **kw)
        probes = [
            Example(x, "", id=f"probe{i}") for i, x in enumerate(self._probe_inputs(ev, demos))
        ]
        if math.factorial(k) <= self.max_permutations:
            perms = list(itertools.permutations(demos))
        else:
            perms, seen = [demos], {demos}
            while len(perms) < self.max_permutations:
                p = tuple(int(i) for i in rng.permutation(demos))
                if p not in seen:
                    seen.add(p)
                    perms.append(p)
        scored: list[tuple[tuple[int, ...], float]] = []
        for perm in perms:
            res = ev.evaluate(Prompt(None, perm), probes)
            if self.criterion == "global":
                value = global_entropy([r["prediction"] for r in res.per_example])
            else:
                value = local_entropy([r["label_logprobs"] for r in res.per_example])
            scored.append((perm, value))
        best = max(range(len(scored)), key=lambda i: (scored[i][1], -i))
        prompt = Prompt(None, scored[best][0])
        self.results_[k] = (prompt, scored)
        return prompt
