"""A few cheap descriptors of a prompt that a surrogate can learn from a few dozen prompts.

An additive model of demonstrations has about 600 parameters (an effect per pool item and
per item and slot) and a search sees a few dozen prompts, so each item is judged by two or
three of them. These descriptors are shared by every prompt instead, so each prompt scored
teaches something about all the others:

- **coverage**: how close the demonstrations come to the validation queries (the mean
  over queries of the highest cosine similarity to a demonstration), the idea behind
  retrieving similar demonstrations (KATE, Liu et al., DeeLIO 2022);
- **diversity**: one minus the mean cosine similarity between the demonstrations (Su et
  al., ICLR 2023, select diverse and representative demonstrations);
- **lengths**: the mean log length of the demonstrations' inputs and outputs;
- **where in the pool**: the mean of the demonstrations' top principal components of
  embedding, so that a region of the pool that helps is found from few prompts;
- **labels** (classification): the share of each label, and the label in the last slot
  (small models copy the last demonstration's label: the recency bias of Zhao et al.,
  ICML 2021, "Calibrate before use").

Offline, on the search benchmark's best-of-n runs (60 random prompts per run), a ridge fit
on these features predicts a random prompt's validation score across seeds with a
correlation of 0.2-0.7 by task (``experiments/results/search``).

Each feature is standardized by its mean and spread over random prompts of the pool.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from iclopt.data import Task
from iclopt.embedders.base import Embedder

__all__ = ["PromptFeatures"]


class PromptFeatures:
    """Standardized descriptors of a prompt's demonstrations (see the module docstring).

    Args:
        task: The task (pool, validation queries, labels).
        k: Demonstrations per prompt (for the standardization's random prompts).
        embedder: Sentence encoder for coverage, diversity and the principal components;
            ``None`` leaves those out (lengths and labels only).
        n_components: Principal components of the pool's embeddings kept.
        seed: Seed of the random prompts that set the standardization.

    Example:
        >>> from iclopt.datasets import get_task
        >>> f = PromptFeatures(get_task("sentiment"), k=3, embedder=None, seed=0)
        >>> f.names[:4]
        ['input length', 'output length', 'share negative', 'share positive']
        >>> f((0, 1, 2)).shape
        (6,)
    """

    def __init__(
        self,
        task: Task,
        *,
        k: int,
        embedder: Embedder | None,
        n_components: int = 6,
        seed: int | None = None,
    ) -> None:
        pool = task.pool
        self.names: list[str] = []
        self.sim_: np.ndarray | None = None
        if embedder is not None and len(pool) > 1:
            emb = _unit(embedder([f"{ex.input} {ex.output}".strip() for ex in pool]))
            queries = _unit(embedder([q.input for q in task.val])) if task.val else emb[:0]
            self.sim_ = queries @ emb.T  # queries x pool
            self.gram_ = emb @ emb.T
            centred = emb - emb.mean(axis=0)
            n = int(min(n_components, len(pool) - 1, emb.shape[1]))
            self.pcs_ = centred @ np.linalg.svd(centred, full_matrices=False)[2][:n].T
            self.names += ["coverage", "diversity"] + [f"component {i + 1}" for i in range(n)]
        self.in_len_ = np.log1p([len(ex.input) for ex in pool])
        self.out_len_ = np.log1p([len(ex.output) for ex in pool])
        self.names += ["input length", "output length"]
        self.labels_: np.ndarray | None = None
        if task.labels:
            index = {label: i for i, label in enumerate(task.labels)}
            self.labels_ = np.array([index.get(ex.target, -1) for ex in pool])
            self.n_labels_ = len(task.labels)
            self.names += [f"share {label}" for label in task.labels]
            self.names += [f"last {label}" for label in task.labels]
        rng = np.random.default_rng(seed)
        kk = min(int(k), len(pool))
        raw = np.array(
            [self._raw(rng.choice(len(pool), size=kk, replace=False)) for _ in range(500)]
        )
        self.mean_ = raw.mean(axis=0)
        self.scale_ = np.where(raw.std(axis=0) > 1e-9, raw.std(axis=0), 1.0)

    @property
    def dim(self) -> int:
        """Number of features."""
        return len(self.names)

    def __call__(self, demos: Sequence[int]) -> np.ndarray:
        """The standardized features of a prompt with these demonstrations (in order)."""
        return (self._raw(np.asarray(demos, dtype=np.int64)) - self.mean_) / self.scale_

    def _raw(self, demos: np.ndarray) -> np.ndarray:
        out: list[float] = []
        if self.sim_ is not None:
            cover = float(self.sim_[:, demos].max(axis=1).mean()) if len(self.sim_) else 0.0
            g = self.gram_[np.ix_(demos, demos)]
            n = len(demos)
            div = 1.0 - float((g.sum() - np.trace(g)) / max(1, n * (n - 1)))
            out += [cover, div, *self.pcs_[demos].mean(axis=0)]
        out += [float(self.in_len_[demos].mean()), float(self.out_len_[demos].mean())]
        if self.labels_ is not None:
            labs = self.labels_[demos]
            share = np.bincount(labs[labs >= 0], minlength=self.n_labels_) / len(demos)
            last = np.zeros(self.n_labels_)
            if labs[-1] >= 0:
                last[labs[-1]] = 1.0
            out += [*share, *last]
        return np.asarray(out, dtype=np.float64)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
