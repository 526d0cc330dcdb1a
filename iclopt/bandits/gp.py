"""Gaussian-process Bayesian optimization over ordered slot features, built on BoTorch."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from iclopt.bandits.base import Trial, register_optimizer
from iclopt.bandits.model_based import ModelBasedOptimizer, SlotPCA, torch_seed
from iclopt.embedders.base import Embedder
from iclopt.errors import MissingDependencyError
from iclopt.params import Interval
from iclopt.prompts import Prompt

__all__ = ["GPBandit"]


def _import_botorch() -> Any:
    try:
        import botorch
    except ImportError:
        raise MissingDependencyError(
            "the gp method needs BoTorch: pip install 'iclopt[opt]'"
        ) from None
    return botorch


@register_optimizer("gp")
class GPBandit(ModelBasedOptimizer):
    """BoTorch SingleTaskGP + LogEI on PCA slot features.

    GP Bayesian optimization of the ordered exemplar sequence, on BoTorch.
    Snoek et al., NeurIPS 2012; BoTorch: Balandat et al., NeurIPS 2020.

    Features: :class:`~iclopt.bandits.model_based.SlotPCA` (the pool's slot embeddings
    reduced to ``n_components`` principal components, laid out as
    ``[mean over slots, slot 1, ..., slot k]`` plus the instruction when several are
    searched), ``(k + 1) * n_components`` dimensions, scaled to the unit cube with fixed
    bounds from the pool. A GP over the full 2,688-dimensional
    slot features would need thousands of ARD lengthscales from a few dozen points.

    Model: BoTorch's ``SingleTaskGP`` (its default RBF kernel with ARD and
    dimension-scaled lengthscale prior, learned homoskedastic noise, standardized
    outcomes), fitted with ``fit_gpytorch_mll``. Acquisition: ``LogExpectedImprovement``
    with the noisy plug-in incumbent (the best posterior mean at an observed prompt),
    maximized over the shared candidate set (random, OT-filtered and local moves) with
    ``optimize_acqf_discrete``.

    Args:
        k: Demonstrations per prompt.
        seed: Seed of the design, candidates and the GP fit.
        instructions: Candidate instructions (searched jointly).
        n_init: Initial design size; ``None`` scales 40/165 to the budget.
        embedder: Sentence encoder (object or name); ``None`` for MiniLM.
        n_components: Principal components per slot.
        n_random: Random candidates per round.
        n_ot_draw: Random tuples scored by OT per round.
        n_ot_keep: OT-closest tuples kept as candidates.
        n_incumbents: Best prompts whose neighbours are candidates.
        n_local: Local-move candidates per round.
        fit_maxiter: L-BFGS-B iterations of each hyperparameter fit, with at most 2
            attempts (BoTorch's defaults, ~200 iterations and up to 5 restarts, took up
            to 17 s a round on a busy 2-core CPU). A failed fit keeps the prior's
            hyperparameters for that round (``fitted: false`` in the trace).

    Example:
        >>> from iclopt.datasets import get_task
        >>> from iclopt.testing import FakeEmbedder
        >>> opt = GPBandit(k=3, seed=0, embedder=FakeEmbedder(), n_init=3)
        >>> opt.setup(get_task("sentiment"), budget=5)
        >>> for _ in range(4):
        ...     t = opt.ask(); opt.tell(t, float(t.prompt.demos[0] % 5))
        >>> sorted(t.info)[:3]
        ['acquisition', 'candidates', 'fitted']
    """

    requires = (("torch", "torch"), ("botorch", "'iclopt[opt]'"))

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "n_components": [Interval(int, 1, None)]
    }

    def __init__(
        self,
        *,
        k: int = 5,
        seed: int | None = None,
        instructions: Sequence[str | None] = (None,),
        n_init: int | None = None,
        embedder: Embedder | str | None = None,
        n_components: int = 8,
        n_random: int = 1000,
        n_ot_draw: int = 2000,
        n_ot_keep: int = 100,
        n_incumbents: int = 3,
        n_local: int = 300,
        fit_maxiter: int = 50,
    ) -> None:
        super().__init__(
            k=k, seed=seed, instructions=instructions, n_init=n_init, embedder=embedder
        )
        self.n_components = n_components
        self.n_random = n_random
        self.n_ot_draw = n_ot_draw
        self.n_ot_keep = n_ot_keep
        self.n_incumbents = n_incumbents
        self.n_local = n_local
        self.fit_maxiter = fit_maxiter

    def setup(
        self, task: Any, *, budget: int | None = None, query_budget: int | None = None
    ) -> None:
        """Validate, embed the pool and fit the PCA of the slot features."""
        _import_botorch()
        super().setup(task, budget=budget, query_budget=query_budget)
        self.slots_ = SlotPCA(self.embedder_, int(self.n_components), self.instructions).fit(task)
        z = self.slots_.pool_z_
        lo, hi = z.min(axis=0), z.max(axis=0)
        parts_lo, parts_hi = [lo] * (int(self.k) + 1), [hi] * (int(self.k) + 1)
        if self.slots_.instr_z_:
            iz = np.stack(list(self.slots_.instr_z_.values()))
            parts_lo.append(np.minimum(iz.min(axis=0), 0.0))
            parts_hi.append(np.maximum(iz.max(axis=0), 0.0))
        self.lo_, self.hi_ = np.concatenate(parts_lo), np.concatenate(parts_hi)
        self.hi_ = np.where(self.hi_ - self.lo_ < 1e-9, self.lo_ + 1.0, self.hi_)

    def features(self, prompts: Sequence[Prompt]) -> np.ndarray:
        """Unit-cube features, ``m x (k + 1) p`` (``+ p`` with several instructions)."""
        x = self.slots_(prompts).astype(np.float64)
        return np.clip((x - self.lo_) / (self.hi_ - self.lo_), 0.0, 1.0)

    def _ask_model(self) -> Trial:
        import torch
        from botorch.acquisition import LogExpectedImprovement
        from botorch.exceptions import ModelFittingError
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from botorch.optim import optimize_acqf_discrete
        from gpytorch.mlls import ExactMarginalLogLikelihood

        cands = self._candidates(
            n_random=int(self.n_random),
            n_ot_draw=int(self.n_ot_draw),
            n_ot_keep=int(self.n_ot_keep),
            n_incumbents=int(self.n_incumbents),
            n_local=int(self.n_local),
        )
        prompts = [p for p, _ in self.history_]
        y = np.array([r for _, r in self.history_], dtype=np.float64)
        if np.ptp(y) == 0:  # nothing to learn from yet: a random candidate
            arm = int(self.rng_.integers(len(cands)))
            return Trial(
                cands.prompts[arm], info={"source": cands.sources[arm], "note": "flat rewards"}
            )
        train_x = torch.as_tensor(self.features(prompts))
        train_y = torch.as_tensor(y).unsqueeze(-1)
        choices = torch.as_tensor(self.features(cands.prompts))
        with torch_seed(self.torch_seed_ + len(prompts)), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = SingleTaskGP(train_x, train_y)
            try:
                fit_gpytorch_mll(
                    ExactMarginalLogLikelihood(model.likelihood, model),
                    optimizer_kwargs={"options": {"maxiter": int(self.fit_maxiter)}},
                    max_attempts=2,
                )
                fitted = True
            except ModelFittingError:  # keep the prior's hyperparameters this round
                model.eval()
                fitted = False
            with torch.no_grad():
                best_f = model.posterior(train_x).mean.max()
            acq = LogExpectedImprovement(model, best_f=best_f)
            x_best, acq_value = optimize_acqf_discrete(acq, q=1, choices=choices)
            with torch.no_grad():
                post = model.posterior(x_best)
        match = torch.nonzero(torch.all(choices == x_best[0], dim=1)).view(-1)
        arm = int(match[0])
        return Trial(
            cands.prompts[arm],
            info={
                "source": cands.sources[arm],
                "mean": float(post.mean.view(-1)[0]),
                "std": float(post.variance.clamp_min(0).sqrt().view(-1)[0]),
                "acquisition": float(acq_value.view(-1)[0]),
                "candidates": len(cands),
                "fitted": fitted,
            },
        )
