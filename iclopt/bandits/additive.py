"""A Bayesian additive model of per-query outcomes: queries, demonstrations, slots, prompts.

The surrogate of :class:`~iclopt.bandits.race.RacingOptimizer`. One observation is one
query scored under one prompt (its continuous signal: the gold label's probability, or
the metric), modelled as

    y(p, q) = a_q + sum_{s} (b_{d_s} + c_{d_s, s}) + g_{instr(p)} + u_p + noise

with ``a_q`` the query's difficulty (a hard or mislabeled query is low for every prompt),
``b_d`` the effect of demonstration ``d`` anywhere in a prompt, ``c_{d,s}`` its extra
effect in slot ``s`` (order), ``g`` the instruction's effect and ``u_p`` what is particular
to the whole prompt (interactions), all with zero-mean Gaussian priors. This is an
item-response model of per (prompt, example) outcomes in the spirit of PromptEval (Polo
et al., 2024) and the per-demonstration "datamodels" of in-context learning (Chang & Jia,
ACL 2023): a demonstration is learned once from every prompt it appears in, so one bad
pool item is avoided in all prompts, and a prompt's estimate borrows strength from its
parts instead of resting on its own few noisy queries (which is what makes the highest
raw score the luckiest).

The posterior is exact (conjugate linear-Gaussian, weighted observations) and solved in
the parameter space; with 100 pool items and k = 5 that is under 1,000 unknowns.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from dataclasses import dataclass

import numpy as np

__all__ = ["AdditiveModel", "Posterior"]


@dataclass
class Posterior:
    """The fitted model: posterior mean and Cholesky factor of the precision.

    Attributes:
        mean: Posterior mean of all parameters, ``m``.
        chol: Lower Cholesky factor ``L`` of the posterior precision (``L L^T``), ``m x m``.
        noise: The noise standard deviation used.
        offset: Added to every prediction (the mean of the observations).
    """

    mean: np.ndarray
    chol: np.ndarray
    noise: float
    offset: float

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """One draw of all parameters from the posterior (Thompson sampling)."""
        import scipy.linalg

        z = rng.standard_normal(len(self.mean))
        return self.mean + scipy.linalg.solve_triangular(self.chol.T, z, lower=False)


class AdditiveModel:
    """Layout of the parameters and the conjugate fit.

    Args:
        n_queries: Size of the query universe (validation then pool queries).
        n_demos: Pool size.
        k: Slots per prompt.
        n_instructions: Candidate instructions.
        prior: Prior standard deviations, as fractions of the observations' standard
            deviation: ``query``, ``demo``, ``slot``, ``instruction``, ``prompt``.

    Example:
        >>> m = AdditiveModel(n_queries=4, n_demos=6, k=2, n_instructions=1)
        >>> for q in range(4):
        ...     m.add(prompt=0, demos=(0, 1), instruction=0, query=q, y=1.0)
        ...     m.add(prompt=1, demos=(2, 3), instruction=0, query=q, y=0.0)
        >>> post = m.fit()
        >>> good = m.prompt_value(post.mean, (0, 1), 0, prompt=0)
        >>> good > m.prompt_value(post.mean, (2, 3), 0, prompt=1)
        True
    """

    def __init__(
        self,
        *,
        n_queries: int,
        n_demos: int,
        k: int,
        n_instructions: int,
        prior: dict[str, float] | None = None,
    ) -> None:
        self.n_queries = n_queries
        self.n_demos = n_demos
        self.k = k
        self.n_instructions = n_instructions
        self.prior = {
            "query": 1.0,
            "demo": 0.15,
            "slot": 0.07,
            "instruction": 0.3,
            "prompt": 0.15,
            **(prior or {}),
        }
        self.q0 = 0
        self.d0 = n_queries
        self.s0 = self.d0 + n_demos
        self.i0 = self.s0 + n_demos * k
        self.p0 = self.i0 + n_instructions
        self.rows: list[tuple[int, tuple[int, ...], int, int, float, float]] = []
        self.n_prompts = 0

    def add(
        self,
        *,
        prompt: int,
        demos: Sequence[int],
        instruction: int,
        query: int,
        y: float,
        weight: float = 1.0,
    ) -> None:
        """Record one observation (``prompt`` is a dense index of the prompt)."""
        self.rows.append((prompt, tuple(int(d) for d in demos), instruction, query, y, weight))
        self.n_prompts = max(self.n_prompts, prompt + 1)

    def _columns(self, demos: Sequence[int], instruction: int, prompt: int | None) -> list[int]:
        cols = [self.d0 + d for d in demos]
        cols += [self.s0 + d * self.k + s for s, d in enumerate(demos)]
        cols.append(self.i0 + instruction)
        if prompt is not None:
            cols.append(self.p0 + prompt)
        return cols

    def fit(self, *, skip_queries: Set[int] = frozenset()) -> Posterior:
        """The posterior given every observation so far.

        Args:
            skip_queries: Query columns whose observations are left out (queries found
                mislabeled: their outcomes rank prompts the wrong way round).
        """
        m = self.p0 + self.n_prompts
        rows = [r for r in self.rows if r[3] not in skip_queries] if skip_queries else self.rows
        ys = np.array([r[4] for r in rows], dtype=np.float64)
        ws = np.array([r[5] for r in rows], dtype=np.float64)
        offset = float(np.average(ys, weights=ws)) if len(ys) else 0.0
        scale = float(np.sqrt(np.average((ys - offset) ** 2, weights=ws))) if len(ys) > 1 else 0.0
        scale = max(scale, 0.05)
        # The noise: what a query-only fit leaves unexplained is an upper bound on it;
        # the prompt's parts explain a little more, so take a fixed share of that.
        noise = 0.9 * scale
        prec = np.zeros(m)
        prec[self.q0 : self.d0] = 1.0 / (self.prior["query"] * scale) ** 2
        prec[self.d0 : self.s0] = 1.0 / (self.prior["demo"] * scale) ** 2
        prec[self.s0 : self.i0] = 1.0 / (self.prior["slot"] * scale) ** 2
        prec[self.i0 : self.p0] = 1.0 / (self.prior["instruction"] * scale) ** 2
        prec[self.p0 :] = 1.0 / (self.prior["prompt"] * scale) ** 2
        a = np.diag(prec)
        b = np.zeros(m)
        if rows:
            # every row has the same number of ones (query, k demos, k slots, instruction,
            # prompt): accumulate X^T W X and X^T W y from the index lists, O(n (2k+3)^2)
            cols = np.array(
                [[self.q0 + q, *self._columns(demos, ins, p)] for p, demos, ins, q, _, _ in rows],
                dtype=np.int64,
            )
            w = ws / noise**2
            np.add.at(a, (cols[:, :, None], cols[:, None, :]), w[:, None, None])
            np.add.at(b, cols, (w * (ys - offset))[:, None])
        import scipy.linalg

        chol = scipy.linalg.cholesky(a, lower=True)
        mean = scipy.linalg.cho_solve((chol, True), b)
        return Posterior(mean=mean, chol=chol, noise=noise, offset=offset)

    def prompt_value(
        self, theta: np.ndarray, demos: Sequence[int], instruction: int, *, prompt: int | None
    ) -> float:
        """The prompt's part of the outcome under parameters ``theta`` (queries averaged out)."""
        cols = self._columns(demos, instruction, prompt if prompt is not None else None)
        if prompt is not None and self.p0 + prompt >= len(theta):
            cols = cols[:-1]  # a prompt the fit has not seen yet: u_p = 0
        return float(theta[cols].sum())

    def prompt_std(
        self, post: Posterior, demos: Sequence[int], instruction: int, prompt: int | None
    ) -> float:
        """Posterior standard deviation of :meth:`prompt_value`."""
        import scipy.linalg

        v = np.zeros(len(post.mean))
        cols = self._columns(demos, instruction, prompt)
        v[[c for c in cols if c < len(v)]] = 1.0
        w = scipy.linalg.solve_triangular(post.chol, v, lower=True)
        return float(np.sqrt(w @ w))

    def slot_scores(self, theta: np.ndarray) -> np.ndarray:
        """``n_demos x k``: the value of demonstration ``d`` in slot ``s`` under ``theta``."""
        b = theta[self.d0 : self.s0]
        c = theta[self.s0 : self.i0].reshape(self.n_demos, self.k)
        return b[:, None] + c

    def demo_effects(self, theta: np.ndarray) -> np.ndarray:
        """Per demonstration, its effect averaged over slots, ``n_demos``."""
        return self.slot_scores(theta).mean(axis=1)

    def demo_std(self, post: Posterior) -> np.ndarray:
        """Posterior standard deviation of each demonstration's slot-averaged effect."""
        import scipy.linalg

        m = len(post.mean)
        v = np.zeros((m, self.n_demos))
        for d in range(self.n_demos):
            v[self.d0 + d, d] = 1.0
            v[self.s0 + d * self.k : self.s0 + (d + 1) * self.k, d] = 1.0 / self.k
        w = scipy.linalg.solve_triangular(post.chol, v, lower=True)
        return np.sqrt((w * w).sum(axis=0))

    def query_effects(self, theta: np.ndarray) -> np.ndarray:
        """Per query column, its ease (higher: every prompt scores higher on it)."""
        return theta[self.q0 : self.d0]

    def query_std(self, post: Posterior, queries: Sequence[int]) -> np.ndarray:
        """Posterior standard deviation of the ease of each of ``queries``."""
        import scipy.linalg

        v = np.zeros((len(post.mean), len(queries)))
        v[[self.q0 + q for q in queries], range(len(queries))] = 1.0
        w = scipy.linalg.solve_triangular(post.chol, v, lower=True)
        return np.sqrt((w * w).sum(axis=0))

    def instruction_effects(self, theta: np.ndarray) -> np.ndarray:
        """Per instruction, its effect under ``theta``."""
        return theta[self.i0 : self.p0]
