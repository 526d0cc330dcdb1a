"""Similarity-based retrieval: KATE per query, and a task-level variant by OT distance."""

from __future__ import annotations

import numpy as np

from iclopt.data import Task
from iclopt.errors import MissingDependencyError
from iclopt.prompts import Prompt
from iclopt.selectors.base import FitContext, Selector, register_selector

__all__ = ["SimilaritySelector", "ValSimilaritySelector"]


@register_selector("similarity")
class SimilaritySelector(Selector):
    """KATE (Liu et al., 2022): the k pool items nearest to the query by cosine.

    Order: ascending similarity, so the MOST similar demonstration comes LAST, right
    before the query (KATE's "reversed" order, which the paper found at least as good as
    the default). Ties are broken by pool index.

    Args:
        seed: Unused (the method is deterministic); kept for a uniform interface.

    Example:
        >>> sel = SimilaritySelector().fit(task, FitContext(embedder=emb))  # doctest: +SKIP
        >>> sel.select(task, 5, query="An instant classic.")  # doctest: +SKIP
    """

    per_query = True

    def fit(self, task: Task, context: FitContext | None = None) -> SimilaritySelector:
        """Embed the pool inputs."""
        super().fit(task, context)
        self.embedder_ = self.context_.need_embedder(self.name)
        self.pool_emb_ = self.embedder_([ex.input for ex in task.pool])
        return self

    def ranking(self, query: str) -> np.ndarray:
        """Pool ids from most to least similar to ``query``."""
        q = self.embedder_([query])[0]
        sims = self.pool_emb_ @ q
        return np.lexsort((np.arange(len(sims)), -sims))

    def select(self, task: Task, k: int, *, query: str | None = None) -> Prompt:
        """The k nearest pool items, most similar last."""
        self._check(task, k, query)
        assert query is not None  # checked above
        top = self.ranking(query)[:k]
        return Prompt(None, tuple(int(i) for i in top[::-1]))


def ot_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Exact optimal-transport cost between uniform point clouds, cost ``1 - cosine``."""
    try:
        import ot
    except ImportError:
        raise MissingDependencyError("OT distances need POT: pip install 'iclopt[embed]'") from None
    cost = np.clip(1.0 - a @ b.T, 0.0, 2.0).astype(np.float64)
    wa = np.full(len(a), 1.0 / len(a))
    wb = np.full(len(b), 1.0 / len(b))
    return float(ot.emd2(wa, wb, cost))


@register_selector("similarity-val")
class ValSimilaritySelector(Selector):
    """One demonstration set for all queries: the pool items nearest the validation set.

    Greedy: starting empty, add the pool item that most lowers the optimal-transport
    distance (cost ``1 - cosine``, POT's exact solver) between the chosen set's inputs
    and the validation inputs, as EASE's pre-filter measures a set. Candidates are the
    ``candidates`` items nearest to the validation centroid. Order: the item added first
    (the best single match) goes LAST, next to the query, as in KATE.

    Args:
        seed: Unused (deterministic).
        candidates: Size of the shortlist searched greedily.
    """

    def __init__(self, *, seed: int | None = None, candidates: int = 30) -> None:
        super().__init__(seed=seed)
        self.candidates = candidates

    def fit(self, task: Task, context: FitContext | None = None) -> ValSimilaritySelector:
        """Embed pool and validation inputs."""
        super().fit(task, context)
        emb = self.context_.need_embedder(self.name)
        self.pool_emb_ = emb([ex.input for ex in task.pool])
        self.val_emb_ = emb([ex.input for ex in task.val])
        return self

    def select(self, task: Task, k: int, *, query: str | None = None) -> Prompt:
        """Greedy OT-nearest set, best match last."""
        self._check(task, k, query)
        centroid = self.val_emb_.mean(axis=0)
        order = np.lexsort((np.arange(len(task.pool)), -(self.pool_emb_ @ centroid)))
        shortlist = [int(i) for i in order[: max(self.candidates, k)]]
        chosen: list[int] = []
        for _ in range(k):
            best = min(
                (i for i in shortlist if i not in chosen),
                key=lambda i: (ot_distance(self.pool_emb_[[*chosen, i]], self.val_emb_), i),
            )
            chosen.append(best)
        return Prompt(None, tuple(chosen[::-1]))
