"""DPP retrieval: relevant and diverse demonstrations by greedy MAP of a conditional DPP."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from iclopt.data import Task
from iclopt.params import Interval
from iclopt.prompts import Prompt
from iclopt.selectors.base import FitContext, Selector, register_selector

__all__ = ["DPPSelector", "greedy_map_dpp"]


def greedy_map_dpp(kernel: np.ndarray, k: int) -> list[int]:
    """Greedy MAP inference of a DPP by incremental Cholesky (Chen et al., 2018).

    Each step adds the item with the largest marginal gain ``det(L_{Y+j}) / det(L_Y)``,
    which is the squared residual ``d_j^2`` of item ``j`` after projecting out the chosen
    items; the Cholesky rows are extended by one per step, so a step costs ``O(n k)``.

    Args:
        kernel: Symmetric positive (semi-)definite kernel ``L``, ``n x n``.
        k: Items to choose (at most ``n``).

    Returns:
        ``k`` indices in the order chosen; ties go to the lower index.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    n = len(kernel)
    rows = np.zeros((k, n))  # rows[t] = t-th row of the incremental Cholesky factor
    gain = np.diag(kernel).copy()  # d_j^2
    chosen: list[int] = []
    for t in range(k):
        masked = gain.copy()
        masked[chosen] = -np.inf
        j = int(np.argmax(masked))
        chosen.append(j)
        if t == k - 1:
            break
        dj = np.sqrt(max(gain[j], 1e-300))
        e = (kernel[j] - rows[:t, j] @ rows[:t]) / dj
        rows[t] = e
        gain = gain - e**2
    return chosen


@register_selector("dpp")
class DPPSelector(Selector):
    """Per-query demonstrations that are relevant to the query AND diverse (DPP MAP).

    Ye et al. (2023), "Compositional Exemplars for In-context Learning" (CEIL, ICML),
    model a demonstration set with a determinantal point process conditioned on the
    query, with kernel ``L = diag(r) S diag(r)``; this selector uses the unsupervised
    form of that kernel (no trained retriever). ``S`` is the cosine similarity among
    the pool inputs: the Gram matrix of unit-norm embeddings, hence positive
    semidefinite, plus ``jitter * I`` so that it is positive definite and ``k`` items can
    always be chosen (an exact duplicate of a chosen item only gains ``~jitter``). The
    relevance is ``r_i = exp(theta * cos(query, item_i))``, so
    ``log det L_Y = 2 theta sum_i cos_i + log det S_Y``: ``theta`` trades relevance
    (large) against diversity (``0``: relevance ignored). As in CEIL the DPP runs on a
    shortlist, the ``candidates`` pool items nearest to the query, and the MAP set is
    found by the fast greedy algorithm of Chen et al. (2018), see :func:`greedy_map_dpp`.

    Order: ascending relevance, so the MOST relevant demonstration comes LAST, right
    before the query (as KATE). Deterministic given the embeddings; ties go to the lower
    pool index.

    Args:
        seed: Unused (deterministic); kept for a uniform interface.
        theta: Relevance weight (``>= 0``).
        candidates: Shortlist size (at least ``k`` is used).
        jitter: Added to the diagonal of ``S``.

    Example:
        >>> from iclopt.datasets import get_task
        >>> from iclopt.testing import FakeEmbedder
        >>> task = get_task("sentiment")
        >>> sel = DPPSelector().fit(task, FitContext(embedder=FakeEmbedder()))
        >>> len(sel.select(task, 4, query="A lovely, moving film.").demos)
        4
    """

    per_query = True
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "theta": [Interval(float, 0, None)],
        "candidates": [Interval(int, 1, None)],
        "jitter": [Interval(float, 0, None)],
    }

    def __init__(
        self,
        *,
        seed: int | None = None,
        theta: float = 2.0,
        candidates: int = 100,
        jitter: float = 1e-6,
    ) -> None:
        super().__init__(seed=seed)
        self.theta = theta
        self.candidates = candidates
        self.jitter = jitter

    def fit(self, task: Task, context: FitContext | None = None) -> DPPSelector:
        """Embed the pool inputs.

        Raises:
            InputDataError: A parameter is invalid, or there is no embedder.
        """
        super().fit(task, context)
        self.embedder_ = self.context_.need_embedder(self.name)
        emb = np.asarray(self.embedder_([ex.input for ex in task.pool]), dtype=np.float64)
        self.pool_emb_ = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        return self

    def kernel(self, query: str, k: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The conditional DPP kernel for ``query`` over its shortlist.

        Args:
            query: The query text.
            k: Demonstrations wanted; the shortlist has ``max(candidates, k)`` items.

        Returns:
            Shortlisted pool ids (ascending, ``m``), their relevances ``r`` (``m``) and
            the kernel ``L = diag(r) (S + jitter I) diag(r)`` (``m x m``).
        """
        q = np.asarray(self.embedder_([query])[0], dtype=np.float64)
        q = q / max(float(np.linalg.norm(q)), 1e-12)
        cos = self.pool_emb_ @ q
        ranked = np.lexsort((np.arange(len(cos)), -cos))
        ids = np.sort(ranked[: max(int(self.candidates), int(k))])
        rel = np.exp(self.theta * cos[ids])
        e = self.pool_emb_[ids]
        sim = e @ e.T + self.jitter * np.eye(len(ids))
        return ids, rel, rel[:, None] * sim * rel[None, :]

    def select(self, task: Task, k: int, *, query: str | None = None) -> Prompt:
        """The greedy MAP set of the query's DPP, most relevant last."""
        self._check(task, k, query)
        assert query is not None  # checked above
        ids, rel, kernel = self.kernel(query, int(k))
        picked = greedy_map_dpp(kernel, int(k))
        picked.sort(key=lambda i: (rel[i], -ids[i]))  # ascending relevance; ties: low id last
        return Prompt(None, tuple(int(ids[i]) for i in picked))
