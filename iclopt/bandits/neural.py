"""iclopt's neural bandit: a Thompson-sampled ensemble over order-explicit slot features.

With OT-filtered and local-move candidates and a noise-aware final choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from iclopt.bandits.base import Trial, register_optimizer
from iclopt.bandits.model_based import ModelBasedOptimizer, SlotPCA, torch_seed
from iclopt.embedders.base import Embedder
from iclopt.params import Interval
from iclopt.prompts import Prompt

__all__ = ["NeuralBandit"]


def _ensemble_cls() -> Any:
    import torch
    from torch import nn

    class Ensemble(nn.Module):
        """``e`` independent MLPs (two ReLU hidden layers) evaluated as batched matmuls.

        Input ``n x d`` (shared by all members) or ``e x n x d``; output ``e x n``.
        Weights start as :class:`torch.nn.Linear`'s (uniform in +-1/sqrt(fan_in)).
        """

        def __init__(self, e: int, d: int, h: int) -> None:
            super().__init__()

            def uni(*shape: int, fan_in: int) -> nn.Parameter:
                bound = 1.0 / fan_in**0.5
                return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))

            self.w1, self.b1 = uni(e, d, h, fan_in=d), uni(e, 1, h, fan_in=d)
            self.w2, self.b2 = uni(e, h, h, fan_in=h), uni(e, 1, h, fan_in=h)
            self.w3, self.b3 = uni(e, h, 1, fan_in=h), uni(e, 1, 1, fan_in=h)

        def forward(self, x: Any) -> Any:
            if x.dim() == 2:
                x = x.unsqueeze(0).expand(self.w1.shape[0], -1, -1)
            x = torch.relu(torch.baddbmm(self.b1, x, self.w1))
            x = torch.relu(torch.baddbmm(self.b2, x, self.w2))
            return torch.baddbmm(self.b3, x, self.w3).squeeze(-1)

    return Ensemble


def _Ensemble(e: int, d: int, h: int) -> Any:
    return _ensemble_cls()(e, d, h)


@register_optimizer("neural")
class NeuralBandit(ModelBasedOptimizer):
    """ensemble Thompson sampling on slot features, local moves, re-scoring.

    A neural bandit built to beat EASE at the same budget.

    It keeps EASE's frame (Wu et al., NeurIPS 2024: a neural surrogate over embeddings of
    ORDERED exemplar sequences, OT-filtered candidates) and changes what the design guide
    lists as its weak points:

    * **Order-explicit features**: :class:`~iclopt.embedders.SlotFeatures`' layout (mean
      over slots, then one embedding per position, plus the instruction) compressed by
      :class:`~iclopt.bandits.model_based.SlotPCA`, so two orders of one set are two
      points and no demonstration is lost to the encoder's token cap; pool items are
      embedded once, so features of thousands of candidates cost a gather.
    * **Deep ensemble + Thompson sampling** (Lakshminarayanan et al., 2017; bootstrapped
      Thompson sampling, Osband et al., 2016): ``n_members`` small MLPs trained at once
      as batched matrix products, each on a bootstrap resample of the observations; each
      round one member, drawn at random, picks the argmax. The spread of the members is
      recorded as the uncertainty.
    * **Candidates**: random tuples, the OT-closest of a larger random draw (EASE's filter)
      and local moves (replace one, swap two, change the instruction) around the best
      prompts so far.
    * **Noise-aware final choice**: a 20-query validation score is noisy, and a search
      that climbs it keeps the luckiest of many near-identical neighbours (the winner's
      curse). The last ``rescore`` fraction of the budget goes to successive halving
      (Karnin et al., ICML 2013) over ``n_rescore`` *diverse* finalists: the evaluated
      prompts ranked by the ensemble's mean prediction (which pools each prompt's score
      with its neighbours'), each finalist differing from every other one in at least two
      demonstrations or in the instruction. Every round scores the survivors on one more
      chunk of extra labelled queries (pool examples that are in none of the finalists;
      the same chunk for every survivor, so the comparison is paired) and keeps the
      better half. :meth:`recommend` returns the survivor with the best mean over its
      validation AND extra queries. Every such evaluation is charged to the budget and
      appears in the trace with source ``rescore``.

    Args:
        k: Demonstrations per prompt.
        seed: Seed of the design, candidates, bootstrap and weights.
        instructions: Candidate instructions (searched jointly).
        n_init: Initial design size; ``None`` scales 40/165 to the budget.
        embedder: Sentence encoder (object or name); ``None`` for MiniLM.
        n_components: Principal components per slot (see
            :class:`~iclopt.bandits.model_based.SlotPCA`).
        n_members: Ensemble size.
        hidden: Width of the two hidden layers.
        steps: Adam steps per refit.
        weight_decay: Adam weight decay (per observation count, as EASE's ``lam / n``).
        n_random: Random candidates per round.
        n_ot_draw: Random tuples scored by OT per round.
        n_ot_keep: OT-closest tuples kept as candidates.
        n_incumbents: Best prompts whose neighbours are candidates.
        n_local: Local-move candidates per round (split over the incumbents).
        rescore: Fraction of the budget spent re-scoring at the end (0 disables it).
        n_rescore: Finalists entering the successive-halving re-scoring.

    Example:
        >>> from iclopt.datasets import get_task
        >>> from iclopt.testing import FakeEmbedder
        >>> opt = NeuralBandit(k=3, seed=0, embedder=FakeEmbedder(), n_init=2, steps=20)
        >>> opt.setup(get_task("sentiment"), budget=6)
        >>> for _ in range(6):
        ...     t = opt.ask(); opt.tell(t, float(t.prompt.demos[0] % 7))
        >>> t.info["source"]
        'rescore'
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **{
            p: [Interval(int, 1, None)]
            for p in ("n_components", "n_members", "hidden", "steps", "n_rescore")
        },
        **{
            p: [Interval(int, 0, None)]
            for p in ("n_random", "n_ot_draw", "n_ot_keep", "n_incumbents", "n_local")
        },
        "rescore": [Interval(float, 0, 1, closed="left")],
    }

    def __init__(
        self,
        *,
        k: int = 5,
        seed: int | None = None,
        instructions: Sequence[str | None] = (None,),
        n_init: int | None = None,
        embedder: Embedder | str | None = None,
        n_components: int = 16,
        n_members: int = 5,
        hidden: int = 64,
        steps: int = 300,
        weight_decay: float = 0.1,
        n_random: int = 1000,
        n_ot_draw: int = 2000,
        n_ot_keep: int = 100,
        n_incumbents: int = 3,
        n_local: int = 300,
        rescore: float = 0.15,
        n_rescore: int = 6,
    ) -> None:
        super().__init__(
            k=k, seed=seed, instructions=instructions, n_init=n_init, embedder=embedder
        )
        self.n_components = n_components
        self.n_members = n_members
        self.hidden = hidden
        self.steps = steps
        self.weight_decay = weight_decay
        self.n_random = n_random
        self.n_ot_draw = n_ot_draw
        self.n_ot_keep = n_ot_keep
        self.n_incumbents = n_incumbents
        self.n_local = n_local
        self.rescore = rescore
        self.n_rescore = n_rescore

    def setup(
        self, task: Any, *, budget: int | None = None, query_budget: int | None = None
    ) -> None:
        """Validate, embed the pool once, and plan the re-scoring phase."""
        super().setup(task, budget=budget, query_budget=query_budget)
        self.features_ = SlotPCA(self.embedder_, int(self.n_components), self.instructions)
        self.features_.fit(task)
        self.X_: list[np.ndarray] = []
        self.fitted_on_ = -1
        # re-scoring plan: the last evaluations of a known evaluation budget
        n_res = 0
        if budget is not None and self.rescore > 0:
            n_res = round(budget * float(self.rescore))
            n_res = min(n_res, max(0, budget - self.n_init_ - 1))
        self.n_rescore_evals_ = n_res
        self.rescored_: dict[Prompt, list[tuple[float, int]]] = {}
        self.rescore_plan_: list[tuple[Prompt, tuple[int, ...]]] | None = None
        self.rescore_chunks_: list[tuple[int, ...]] = []
        self.rescore_round_ = 0
        self.evaluations_ = 0

    def observe(self, prompt: Prompt, reward: float) -> None:
        """Record a validation score and the prompt's slot features."""
        super().observe(prompt, reward)
        self.X_.append(self.features_([prompt])[0])

    def tell(
        self,
        trial: Trial,
        reward: float,
        *,
        per_query: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        """Validation scores train the ensemble; re-scores feed the final choice."""
        self.evaluations_ += 1
        self._note_signal(trial, per_query)
        if trial.queries is None:
            self.observe(trial.prompt, reward)
        else:
            self.rescored_.setdefault(trial.prompt, []).append((float(reward), len(trial.queries)))

    # ------------------------------------------------------------------ final choice
    def _combined(self, prompt: Prompt) -> tuple[float, int]:
        n_val = len(self.task_.val)
        total = self.scores_[prompt] * n_val
        n = n_val
        for score, m in self.rescored_.get(prompt, []):
            total += score * m
            n += m
        return total / n, n

    def recommend(self) -> tuple[Prompt, dict[str, Any]]:
        """The re-scoring survivor with the best mean over all its queries.

        Survivors are the prompts scored on the most extra queries (those that stayed in
        every halving round). Without re-scoring: the best validation score.
        """
        if not self.rescored_:
            return super().recommend()
        order = {p: i for i, (p, _) in enumerate(self.history_)}
        most = max(self._combined(p)[1] for p in self.rescored_)
        cands = sorted(
            self.rescored_,
            key=lambda p: (self._combined(p)[1] < most, -self._combined(p)[0], order[p]),
        )
        best = cands[0]
        mean, n = self._combined(best)
        return best, {
            "rule": "successive halving: best mean over validation + re-scoring queries",
            "val_score": self.scores_[best],
            "combined_score": mean,
            "queries": n,
            "rescored": [
                {
                    **p.as_dict(),
                    "val_score": self.scores_[p],
                    "combined_score": self._combined(p)[0],
                    "queries": self._combined(p)[1],
                }
                for p in cands
            ],
        }

    def _finalists(self, m: int) -> list[Prompt]:
        """Up to ``m`` diverse evaluated prompts, best ensemble mean first.

        Each one differs from every earlier one in at least two demonstrations (as sets)
        or in the instruction, so re-scoring compares alternatives, not one prompt's
        neighbours.
        """
        prompts = [p for p, _ in self.history_]
        self._fit()
        mean = self._predict(self.features_(prompts)).mean(axis=0)
        order = sorted(range(len(prompts)), key=lambda i: (-mean[i], -self.history_[i][1], i))
        chosen: list[Prompt] = []
        for i in order:
            p = prompts[i]
            if all(
                p.instruction != q.instruction or len(set(p.demos) ^ set(q.demos)) >= 4
                for q in chosen
            ):
                chosen.append(p)
            if len(chosen) == m:
                break
        return chosen

    def _plan_rescoring(self) -> list[tuple[Prompt, tuple[int, ...]]]:
        """The first halving round: every finalist on the first chunk of extra queries."""
        m = min(int(self.n_rescore), self.n_rescore_evals_)
        tops = self._finalists(m)
        used = {d for p in tops for d in p.demos}
        free = np.array([i for i in range(len(self.task_.pool)) if i not in used], dtype=np.int64)
        free = free[self.rng_.permutation(len(free))]
        rounds = max(1, int(np.ceil(np.log2(max(2, len(tops))))))
        size = max(1, min(len(self.task_.val), len(free) // rounds))
        self.rescore_chunks_ = [
            tuple(int(x) for x in free[j * size : (j + 1) * size]) for j in range(rounds)
        ]
        self.rescore_chunks_ = [c for c in self.rescore_chunks_ if c]
        self.rescore_round_ = 0
        if not self.rescore_chunks_ or not tops:
            return []
        return [(p, self.rescore_chunks_[0]) for p in tops]

    def _next_round(self, left: int) -> list[tuple[Prompt, tuple[int, ...]]]:
        """The better half of the last round's prompts on the next chunk (at most ``left``)."""
        last = [p for p in self.rescored_ if len(self.rescored_[p]) == self.rescore_round_ + 1]
        self.rescore_round_ += 1
        keep = min(left, (len(last) + 1) // 2)
        if keep < 2:
            return []
        chunk = self.rescore_chunks_[self.rescore_round_ % len(self.rescore_chunks_)]
        order = {p: i for i, (p, _) in enumerate(self.history_)}
        last.sort(key=lambda p: (-self._combined(p)[0], order[p]))
        return [(p, chunk) for p in last[:keep]]

    # ------------------------------------------------------------------ ensemble
    def _fit(self) -> None:
        import torch

        if self.fitted_on_ == len(self.X_):
            return
        X = torch.as_tensor(np.stack(self.X_), dtype=torch.float32)
        y = torch.tensor([r for _, r in self.history_], dtype=torch.float32)
        self.y_mean_ = float(y.mean())
        self.y_std_ = float(y.std()) if len(y) > 1 and float(y.std()) > 1e-6 else 1.0
        ys = (y - self.y_mean_) / self.y_std_
        n, d = X.shape
        e = int(self.n_members)
        with torch_seed(self.torch_seed_ + len(self.X_)):
            net = _Ensemble(e, d, int(self.hidden))
            boot = torch.randint(0, n, (e, n))  # one bootstrap resample per member
        opt = torch.optim.Adam(
            net.parameters(), lr=3e-3, weight_decay=float(self.weight_decay) / n, fused=True
        )
        Xb, yb = X[boot], ys[boot]  # e x n x d, e x n
        for _ in range(int(self.steps)):
            opt.zero_grad()
            loss = ((net(Xb) - yb) ** 2).mean(dim=1).sum()
            loss.backward()
            opt.step()
        self.net_ = net
        self.fitted_on_ = len(self.X_)

    def _predict(self, feats: np.ndarray) -> np.ndarray:
        """Per-member predictions (original reward scale), ``members x m``."""
        import torch

        with torch.no_grad():
            out = self.net_(torch.as_tensor(feats, dtype=torch.float32))
        return out.numpy() * self.y_std_ + self.y_mean_

    def _ask_model(self) -> Trial:
        remaining = None if self.budget_ is None else self.budget_ - self.evaluations_
        if (
            remaining is not None
            and self.n_rescore_evals_ > 0
            and remaining <= self.n_rescore_evals_
        ):
            if self.rescore_plan_ is None:
                self.rescore_plan_ = self._plan_rescoring()
            elif not self.rescore_plan_:
                self.rescore_plan_ = self._next_round(remaining)
            if self.rescore_plan_:
                prompt, queries = self.rescore_plan_.pop(0)
                return Trial(
                    prompt,
                    queries=queries,
                    info={
                        "source": "rescore",
                        "val_score": self.scores_[prompt],
                        "round": self.rescore_round_,
                    },
                )
        self._fit()
        cands = self._candidates(
            n_random=int(self.n_random),
            n_ot_draw=int(self.n_ot_draw),
            n_ot_keep=int(self.n_ot_keep),
            n_incumbents=int(self.n_incumbents),
            n_local=int(self.n_local),
        )
        preds = self._predict(self.features_(cands.prompts))
        member = int(self.rng_.integers(preds.shape[0]))
        sample = preds[member]
        arm = int(np.argmax(sample))
        return Trial(
            cands.prompts[arm],
            info={
                "source": cands.sources[arm],
                "mean": float(preds[:, arm].mean()),
                "std": float(preds[:, arm].std()),
                "acquisition": float(sample[arm]),
                "member": member,
                "candidates": len(cands),
            },
        )
