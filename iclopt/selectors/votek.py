"""Vote-k: graph-based selective annotation (Su et al., 2022), as a task-level selector."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from iclopt.data import Task
from iclopt.params import Interval
from iclopt.prompts import Prompt
from iclopt.selectors.base import FitContext, Selector, register_selector

__all__ = ["VoteKSelector", "knn_graph", "votek_order"]


def knn_graph(emb: np.ndarray, k_graph: int, *, chunk: int = 1024) -> np.ndarray:
    """The ``k_graph`` nearest neighbours of every row by cosine, excluding itself.

    Args:
        emb: Unit-norm embeddings, ``n x d``.
        k_graph: Neighbours per item (capped at ``n - 1``).
        chunk: Rows of the similarity matrix computed at a time (memory cap).

    Returns:
        Neighbour ids, ``n x min(k_graph, n - 1)``, nearest first; ties go to the
        lower pool index.
    """
    n = len(emb)
    kg = min(k_graph, n - 1)
    out = np.empty((n, kg), dtype=np.int64)
    if kg == 0:
        return out
    emb = np.asarray(emb, dtype=np.float64)
    for start in range(0, n, chunk):
        sims = emb[start : start + chunk] @ emb.T
        rows = np.arange(len(sims))
        sims[rows, start + rows] = -np.inf  # an item is not its own neighbour
        out[start : start + chunk] = np.argsort(-sims, axis=1, kind="stable")[:, :kg]
    return out


def votek_order(neighbours: np.ndarray, k: int, rho: float) -> list[int]:
    """Greedy Vote-k selection on a kNN graph (Su et al., 2022, Algorithm 1).

    Item ``v`` votes for ``u`` when ``u`` is among ``v``'s neighbours. With ``L`` the
    items chosen so far, an unchosen ``u`` scores
    ``sum(rho ** -s(v) for v with u in N(v), v not in L)``, where
    ``s(v) = |N(v) ∩ L|``: a voter whose neighbourhood is already covered counts less,
    which spreads the selection over the dense regions of the pool.

    Args:
        neighbours: ``n x k_graph`` neighbour ids (see :func:`knn_graph`).
        k: Items to choose.
        rho: Discount base (> 1 discounts, 1 is plain in-degree).

    Returns:
        ``k`` pool ids in the order chosen; ties go to the lower pool index.
    """
    n, kg = neighbours.shape
    flat = neighbours.ravel()
    covered = np.zeros(n, dtype=np.int64)  # s(v)
    chosen = np.zeros(n, dtype=bool)
    order: list[int] = []
    for _ in range(k):
        weight = np.where(chosen, 0.0, rho ** (-covered.astype(np.float64)))
        score = np.bincount(flat, weights=np.repeat(weight, kg), minlength=n)
        score[chosen] = -np.inf
        u = int(np.argmax(score))  # first maximum: the lowest pool index
        order.append(u)
        chosen[u] = True
        voters = np.nonzero((neighbours == u).any(axis=1))[0]
        covered[voters] += 1
    return order


@register_selector("votek")
class VoteKSelector(Selector):
    """Vote-k: representative and diverse pool items, one set for the whole task.

    Su et al. (2022), "Selective Annotation Makes Language Models Better Few-Shot
    Learners" (ICLR 2023). Builds a directed kNN graph over the pool inputs (cosine of
    the embeddings, each item pointing to its ``k_graph`` nearest neighbours), then
    greedily picks the item with the highest discounted vote score (see
    :func:`votek_order`), with ``rho = 10`` as in the paper. Only the paper's
    unsupervised first stage is implemented; its second, LLM-confidence stage
    (stratified sampling of the pool by the model's confidence) is not.

    Order: selection order reversed, so the item picked FIRST (the most representative)
    comes LAST, right before the query, as in KATE's order. The method is deterministic
    given the embeddings; ties are broken by pool index.

    Args:
        seed: Unused (deterministic); kept for a uniform interface.
        k_graph: Neighbours per item in the graph (10 in the paper).
        rho: Discount base of the votes (10 in the paper); must be >= 1.

    Example:
        >>> from iclopt.datasets import get_task
        >>> from iclopt.testing import FakeEmbedder
        >>> task = get_task("sentiment")
        >>> sel = VoteKSelector().fit(task, FitContext(embedder=FakeEmbedder()))
        >>> len(sel.select(task, 4).demos)
        4
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "k_graph": [Interval(int, 1, None)],
        "rho": [Interval(float, 1, None)],
    }

    def __init__(self, *, seed: int | None = None, k_graph: int = 10, rho: float = 10.0) -> None:
        super().__init__(seed=seed)
        self.k_graph = k_graph
        self.rho = rho

    def fit(self, task: Task, context: FitContext | None = None) -> VoteKSelector:
        """Embed the pool inputs and build the kNN graph.

        Raises:
            InputDataError: ``k_graph`` or ``rho`` is invalid, or there is no embedder.
        """
        super().fit(task, context)
        emb = self.context_.need_embedder(self.name)
        self.pool_emb_ = emb([ex.input for ex in task.pool])
        self.neighbours_ = knn_graph(self.pool_emb_, int(self.k_graph))
        return self

    def select(self, task: Task, k: int, *, query: str | None = None) -> Prompt:
        """The k Vote-k picks, first pick last; ``query`` is ignored."""
        self._check(task, k, query)
        order = votek_order(self.neighbours_, int(k), float(self.rho))
        return Prompt(None, tuple(order[::-1]))
