"""What the model-based optimizers share: initial design, embeddings, candidates, torch seeds.

:class:`ModelBasedOptimizer` runs the shared initial design (best-of-n's first draws for
the seed, see :func:`~iclopt.bandits.candidates.initial_design`), then asks its subclass
for one model-guided :class:`~iclopt.bandits.base.Trial` per step. It never proposes a
prompt twice and raises :class:`~iclopt.bandits.base.SearchSpaceExhausted` when nothing
new is left.
"""

from __future__ import annotations

import contextlib
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np

from iclopt.bandits.base import Optimizer, SearchSpaceExhausted, Trial, check_fits
from iclopt.bandits.candidates import (
    CandidateSet,
    demo_texts,
    initial_design,
    local_moves,
    ot_distances,
    random_tuples,
    tuples_to_prompts,
)
from iclopt.data import Task
from iclopt.embedders.base import Embedder
from iclopt.errors import MissingDependencyError
from iclopt.params import Interval
from iclopt.prompts import Prompt

__all__ = [
    "ModelBasedOptimizer",
    "SlotPCA",
    "default_n_init",
    "one_thread",
    "resolve_embedder",
    "torch_seed",
]


def default_n_init(budget: int | None) -> int:
    """Initial design size: EASE's 40 of 165 evaluations, scaled to ``budget`` (at least 2).

    Example:
        >>> default_n_init(165), default_n_init(60), default_n_init(None)
        (40, 15, 10)
    """
    if budget is None:
        return 10
    return max(2, min(budget, int(budget * 40 / 165 + 0.5)))


def resolve_embedder(embedder: Embedder | str | None) -> Embedder:
    """An embedder object: as given, the default (offline MiniLM), or a sentence-transformers name.

    Raises:
        MissingDependencyError: sentence-transformers or the default model is missing.
    """
    if isinstance(embedder, Embedder):
        return embedder
    from iclopt.embedders import default_embedder
    from iclopt.embedders.sentence_transformers import default_model_path

    if embedder is None:
        default_model_path()  # fails now, with how to install it, if the package is missing
        emb = default_embedder()
    else:
        from iclopt.embedders.sentence_transformers import SentenceTransformerEmbedder

        emb = SentenceTransformerEmbedder(embedder, cache=default_embedder().cache)
    emb.load()
    return emb


def embedder_config(embedder: Embedder | str | None) -> str | None:
    """The JSON form of an embedder argument (its name; an object by its identity)."""
    if embedder is None or isinstance(embedder, str):
        return embedder
    model = getattr(embedder, "model", "no-model")
    if model is None:
        return None  # the default sentence-transformers embedder
    return model if isinstance(model, str) else embedder.identity


@contextlib.contextmanager
def torch_seed(seed: int) -> Iterator[None]:
    """Seed torch's CPU RNG inside the block only; the global RNG state is restored after."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one intra-op thread inside the block (restored after).

    The surrogates are tiny (tens of observations, ~100 units): extra threads only add
    synchronization, and on a busy machine OpenMP's spinning threads made a round 10x
    slower in measurements.
    """
    import torch

    before = torch.get_num_threads()
    if before > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if before > 1:
            torch.set_num_threads(before)


class SlotPCA:
    """Compressed order-explicit features of prompts, one gather per batch.

    Layout ``[mean over slots, slot 1, ..., slot k(, instruction)]``, every slot the pool
    item's :class:`~iclopt.embedders.SlotFeatures` embedding
    ("input -> output") projected on the pool's top ``n_components`` principal components.

    Same layout as :class:`~iclopt.embedders.SlotFeatures` (two orders of one set differ,
    nothing is truncated) at ``(k + 1) * p`` dimensions instead of ``(k + 2) * d``, so a
    surrogate fitted on a few dozen points has fewer inputs to learn, and features of
    thousands of candidates are one gather. Coordinates are divided by the pool's
    standard deviation along each component (whitened).

    Args:
        embedder: Sentence encoder.
        n_components: Principal components per slot.
        instructions: Candidate instructions; with more than one, their projections are
            appended.
    """

    def __init__(
        self, embedder: Embedder, n_components: int, instructions: Sequence[str | None]
    ) -> None:
        self.embedder = embedder
        self.n_components = n_components
        self.instructions = instructions

    def fit(self, task: Task) -> SlotPCA:
        """Embed the pool (and instructions) once and fit the PCA."""
        from iclopt.embedders.sequence import SlotFeatures

        slots = SlotFeatures(self.embedder).fit(task)
        pool = slots.pool_emb_.astype(np.float64)
        center = pool.mean(axis=0)
        _, sing, vt = np.linalg.svd(pool - center, full_matrices=False)
        p = max(1, min(int(self.n_components), vt.shape[0]))
        scale = np.maximum(sing[:p] / np.sqrt(max(1, len(pool) - 1)), 1e-8)
        self.basis_ = vt[:p].T / scale  # d x p, whitening included
        self.center_ = center
        self.pool_z_ = (pool - center) @ self.basis_  # n x p
        self.instr_z_: dict[str | None, np.ndarray] = {}
        if len(self.instructions) > 1:
            for ins in self.instructions:
                e = slots._instruction(ins).astype(np.float64)
                self.instr_z_[ins] = (e - center) @ self.basis_ if ins is not None else np.zeros(p)
        return self

    def __call__(self, prompts: Sequence[Prompt]) -> np.ndarray:
        """Features, ``m x (k + 1) p`` (``+ p`` with several instructions), float32."""
        ids = np.array([p.demos for p in prompts], dtype=np.int64)
        z = self.pool_z_[ids]  # m x k x p
        parts = [z.mean(axis=1), z.reshape(len(prompts), -1)]
        if self.instr_z_:
            parts.append(np.stack([self.instr_z_[p.instruction] for p in prompts]))
        return np.concatenate(parts, axis=1).astype(np.float32)


class ModelBasedOptimizer(Optimizer):
    """Initial design, then model-guided trials; subclasses implement :meth:`_ask_model`.

    Args:
        k: Demonstrations per prompt.
        seed: Seed of every random choice (initial design, candidates, network weights).
        instructions: Candidate instructions searched jointly.
        n_init: Size of the initial design; ``None`` scales EASE's 40 of 165 to the budget.
        embedder: Sentence encoder (an object, a sentence-transformers model name, or
            ``None`` for the offline all-MiniLM-L6-v2).
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "n_init": [Interval(int, 1, None), None]
    }
    #: Whether :meth:`setup` needs the embedder (for features or the OT filter).
    uses_embedder = True
    #: Optional packages the method needs: (import name, pip hint).
    requires: tuple[tuple[str, str], ...] = (("torch", "torch"),)

    @classmethod
    def check_dependencies(cls, embedder: Embedder | str | None = None) -> None:
        """Fail early, before any model is loaded, if a needed package is missing.

        Raises:
            MissingDependencyError: With the install hint.
        """
        import importlib.util

        needs = list(cls.requires)
        if cls.uses_embedder and not isinstance(embedder, Embedder):
            needs.append(("sentence_transformers", "'iclopt[embed]'"))
        for module, hint in needs:
            if importlib.util.find_spec(module) is None:
                raise MissingDependencyError(
                    f"method {getattr(cls, 'name', cls.__name__)!r} needs {module}: "
                    f"pip install {hint}"
                )
        if cls.uses_embedder and embedder is None:
            from iclopt.embedders.sentence_transformers import default_model_path

            default_model_path()

    def __init__(
        self,
        *,
        k: int = 5,
        seed: int | None = None,
        instructions: Sequence[str | None] = (None,),
        n_init: int | None = None,
        embedder: Embedder | str | None = None,
    ) -> None:
        super().__init__(k=k, seed=seed, instructions=instructions)
        self.n_init = n_init
        self.embedder = embedder

    def _config_value(self, name: str, value: Any) -> Any:
        """The embedder by name; the other arguments as the base class writes them."""
        return embedder_config(value) if name == "embedder" else super()._config_value(name, value)

    def setup(
        self, task: Task, *, budget: int | None = None, query_budget: int | None = None
    ) -> None:
        """Validate, build the initial design and (if needed) embed the pool and val set.

        Raises:
            InputDataError: Bad parameters, or a budget smaller than the initial design.
            MissingDependencyError: The encoder (or another optional package) is missing.
        """
        super().setup(task, budget=budget, query_budget=query_budget)
        name = type(self).__name__
        n_init = default_n_init(budget) if self.n_init is None else int(self.n_init)
        check_fits(task, k=int(self.k), budget=budget, n_init=n_init, who=name)
        self.n_init_ = n_init
        # the optimizer's own random stream, independent of the design's
        self.rng_ = np.random.default_rng(None if self.seed is None else [int(self.seed), 1])
        self.torch_seed_ = int(self.rng_.integers(2**31 - 1))
        self.design_ = initial_design(task, int(self.k), self.instructions, self.seed, n_init)
        self.asked_: set[Prompt] = set()
        self.scores_: dict[Prompt, float] = {}
        if self.uses_embedder:
            self.embedder_ = resolve_embedder(self.embedder)
            pool = self.embedder_(demo_texts(task.pool))
            val = self.embedder_(demo_texts(task.val))
            self.ot_cost_ = (1.0 - pool @ val.T).astype(np.float64)

    # ------------------------------------------------------------------ ask / tell
    def suggest(self) -> Prompt:
        """The next prompt (see :meth:`ask`)."""
        return self.ask().prompt

    def ask(self) -> Trial:
        """The next initial-design prompt, else the subclass's model-guided choice.

        Raises:
            SearchSpaceExhausted: Every prompt has been proposed.
        """
        self._check_setup()
        for p in self.design_:
            if p not in self.asked_:
                return self._asked(Trial(p, info={"source": "initial"}))
        if len(self.asked_) >= self.space_size_:
            raise SearchSpaceExhausted(
                f"all {self.space_size_} prompts of the search space were proposed"
            )
        with one_thread():
            trial = self._ask_model()
        if trial.queries is None and trial.prompt in self.asked_:  # a subclass bug
            raise RuntimeError(f"{type(self).__name__} proposed {trial.prompt} twice")
        return self._asked(trial)

    def _asked(self, trial: Trial) -> Trial:
        if trial.queries is None:
            self.asked_.add(trial.prompt)
        return trial

    def observe(self, prompt: Prompt, reward: float) -> None:
        """Record a validation score."""
        super().observe(prompt, reward)
        self.asked_.add(prompt)
        self.scores_[prompt] = float(reward)

    @abstractmethod
    def _ask_model(self) -> Trial:
        """A new trial chosen by the surrogate (the design is done; something is unseen)."""

    # ------------------------------------------------------------------ candidates
    def _candidates(
        self,
        *,
        n_random: int,
        n_ot_draw: int = 0,
        n_ot_keep: int = 0,
        n_incumbents: int = 0,
        n_local: int = 0,
    ) -> CandidateSet:
        """Unseen candidates from random, OT-filtered and local-move proposals.

        Random tuples, the OT-closest of a larger random draw, and local moves around the
        best ``n_incumbents`` prompts so far. Never empty while the space has an unseen
        prompt.
        """
        n = len(self.task_.pool)
        k = int(self.k)
        cands = CandidateSet()
        if n_ot_draw > 0 and n_ot_keep > 0:
            tuples = random_tuples(self.rng_, n, k, n_ot_draw)
            dist = ot_distances(self.ot_cost_, tuples)
            keep = np.argsort(dist, kind="stable")[:n_ot_keep]
            cands.add(
                tuples_to_prompts(tuples[keep], self.instructions, self.rng_),
                "ot",
                self.asked_,
                dist[keep],
            )
        if n_random > 0:
            tuples = random_tuples(self.rng_, n, k, n_random)
            cands.add(
                tuples_to_prompts(tuples, self.instructions, self.rng_), "random", self.asked_
            )
        if n_incumbents > 0 and n_local > 0 and self.history_:
            order = sorted(range(len(self.history_)), key=lambda i: (-self.history_[i][1], i))
            tops = list(dict.fromkeys(self.history_[i][0] for i in order))[:n_incumbents]
            per = max(1, n_local // len(tops))
            for p in tops:
                cands.add(
                    local_moves(p, n, self.instructions, self.rng_, per), "local", self.asked_
                )
        if not cands:
            cands.add([self._random_unseen()], "random", self.asked_)
        return cands

    def _random_unseen(self) -> Prompt:
        from iclopt.bandits.random_search import RandomSearch

        rs = RandomSearch(
            k=int(self.k),
            seed=int(self.rng_.integers(2**31 - 1)),
            instructions=self.instructions,
        )
        rs.setup(self.task_)
        rs.seen_ = set(self.asked_)
        return rs.suggest()
