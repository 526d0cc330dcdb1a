"""The ask/tell optimizer contract and its registry.

Optimizers only propose prompts (:meth:`Optimizer.suggest` / :meth:`Optimizer.ask`) and
learn from rewards (:meth:`Optimizer.observe` / :meth:`Optimizer.tell`); the loop that
drives them, the budget, progress and the result live in :mod:`iclopt.search`, once for
all of them (as in optuna's ``Study.ask`` / ``Study.tell``).

Two levels of the contract:

* ``suggest() -> Prompt`` and ``observe(prompt, reward)``: the minimum; every proposal is
  scored on the validation set.
* ``ask() -> Trial`` and ``tell(trial, reward)``: what :func:`~iclopt.search.run_search`
  calls. A :class:`Trial` carries the prompt, the reasons it was chosen (diagnostics for
  the trace) and, for re-scoring, the pool ids to use as extra labelled queries instead of
  the validation set. The defaults wrap ``suggest`` / ``observe``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np

from iclopt.components import Component, register_component
from iclopt.data import Task
from iclopt.errors import IcloptError, InputDataError
from iclopt.params import Interval
from iclopt.prompts import Prompt
from iclopt.registry import Registry

__all__ = [
    "OPTIMIZERS",
    "SHARED_ARGUMENTS",
    "Optimizer",
    "SearchSpaceExhausted",
    "Trial",
    "check_fits",
    "own_options",
    "register_optimizer",
    "space_size",
]

OPTIMIZERS: Registry[type[Optimizer]] = Registry("optimizer")
OptimizerT = TypeVar("OptimizerT", bound="Optimizer")


def register_optimizer(name: str) -> Callable[[type[OptimizerT]], type[OptimizerT]]:
    """Class decorator registering an optimizer under ``name``.

    It also sets the class's ``name`` and its :attr:`~Optimizer.description` (the line
    ``iclopt methods`` prints): the first line of its docstring, without the final period
    (see :func:`~iclopt.components.register_component`).
    """
    return register_component(OPTIMIZERS, name)


class SearchSpaceExhausted(IcloptError):
    """Every prompt of the search space has been proposed; nothing new is left."""


#: The arguments every optimizer gets from the search's own settings (not method options).
SHARED_ARGUMENTS = frozenset({"k", "seed", "instructions", "n_init", "embedder"})


def own_options(cls: type) -> list[str]:
    """The constructor options of optimizer class ``cls`` beyond :data:`SHARED_ARGUMENTS`.

    Example:
        >>> from iclopt.bandits import OPTIMIZERS
        >>> own_options(OPTIMIZERS.get("best-of-n"))
        []
    """
    import inspect

    params = inspect.signature(cls).parameters
    return [p for p in params if p not in SHARED_ARGUMENTS]


def check_fits(
    task: Task,
    *,
    k: int,
    budget: int | None = None,
    n_init: int | None = None,
    who: str | None = None,
) -> None:
    """Refuse a search that cannot fit ``task``: the one place these two rules live.

    Args:
        task: The task searched.
        k: Demonstrations per prompt; at most the pool's size.
        budget: Evaluations the search may spend; at least ``n_init``.
        n_init: The initial design's size, when there is one.
        who: The optimizer, for the message.

    Raises:
        InputDataError: ``k`` is larger than the pool, or ``budget`` smaller than
            ``n_init``.

    Example:
        >>> from iclopt.datasets import get_task
        >>> check_fits(get_task("sentiment"), k=500)
        Traceback (most recent call last):
        ...
        iclopt.errors.InputDataError: k=500 is larger than the pool of task 'sentiment' (100)
    """
    n = len(task.pool)
    if k > n:
        raise InputDataError(f"k={k} is larger than the pool of task {task.name!r} ({n})")
    if budget is not None and n_init is not None and budget < n_init:
        of = f" of {who}" if who else ""
        raise InputDataError(
            f"the budget of {budget} evaluations is smaller than the initial design{of} "
            f"({n_init} prompts); raise the budget or lower n_init"
        )


def space_size(pool_size: int, k: int, n_instructions: int = 1) -> int:
    """Number of distinct prompts: ordered k-tuples of distinct ids times instructions.

    Example:
        >>> space_size(4, 2, 3)
        36
    """
    if k > pool_size:
        return 0
    return math.perm(pool_size, k) * n_instructions


@dataclass(frozen=True)
class Trial:
    """One thing to evaluate: a prompt, on which queries, and why it was chosen.

    The query set is the validation set when both ``queries`` and ``val`` are ``None``;
    otherwise it is the validation examples ``val`` names followed by the pool examples
    ``queries`` names (a partial evaluation, which a racing method extends later on
    other queries; the cache makes a query already scored for a prompt free to read but
    not free to count).

    Attributes:
        prompt: The prompt to score.
        queries: Ids of POOL examples used as extra labelled queries (never ids of
            ``prompt.demos``); ``None`` for none.
        info: Diagnostics recorded in the trace: ``source`` (``initial``, ``random``,
            ``ot``, ``local``, ``rescore``, ``race``, ...) and, for model-based methods,
            the predicted ``mean``, its ``std`` and the ``acquisition`` value.
        val: Indices into the validation set for a partial evaluation; ``None`` for the
            whole set when ``queries`` is ``None``, for none otherwise.
    """

    prompt: Prompt
    queries: tuple[int, ...] | None = None
    info: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    val: tuple[int, ...] | None = None

    @property
    def key(self) -> tuple[Prompt, tuple[int, ...] | None, tuple[int, ...] | None]:
        """What identifies an evaluation: the prompt and its query set."""
        return (self.prompt, self.queries, self.val)

    @property
    def full(self) -> bool:
        """Whether the query set is the whole validation set."""
        return self.queries is None and self.val is None


class Optimizer(Component, ABC):
    """Searches (instruction, ordered demonstrations) prompts by ask/tell.

    A :class:`~iclopt.components.Component`: ``__init__`` only stores its keyword
    arguments, under their own names, and :meth:`config` reads them from the signature. A
    subclass declares the constraints of its own parameters in ``_parameter_constraints``
    (merged with its bases'; see :mod:`iclopt.params`); :meth:`setup` checks them all,
    then validates the parameters against the task and creates fitted state (attributes
    ending in ``_``).

    Args:
        k: Number of demonstrations per prompt.
        seed: Seed of the optimizer's own RNG; ``None`` draws fresh entropy.
        instructions: Candidate instructions searched jointly with the demonstrations;
            ``None`` in the list means "no instruction".
    """

    #: Whether trials score prompts on parts of the validation set (racing methods); a
    #: shared study cannot hold those yet.
    partial_evaluations: ClassVar[bool] = False
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {"k": [Interval(int, 1, None)]}

    def __init__(
        self,
        *,
        k: int = 5,
        seed: int | None = None,
        instructions: Sequence[str | None] = (None,),
    ) -> None:
        self.k = k
        self.seed = seed
        self.instructions = instructions

    def setup(
        self, task: Task, *, budget: int | None = None, query_budget: int | None = None
    ) -> None:
        """Validate parameters against ``task`` and reset the search state.

        Args:
            task: The task searched.
            budget: The number of evaluations the search may spend, when known (model-based
                optimizers size their initial design and re-scoring phase with it).
            query_budget: The number of query scorings the search may spend, when known
                (racing methods plan their schedule with it; default: ``budget`` full
                validation evaluations).
        """
        name = type(self).__name__
        n = len(task.pool)
        self._check_parameters()
        check_fits(task, k=int(self.k))
        if not self.instructions:
            raise InputDataError(f"The 'instructions' parameter of {name} must not be empty.")
        if len(set(self.instructions)) != len(self.instructions):
            raise InputDataError(f"The 'instructions' parameter of {name} has duplicates.")
        self.task_ = task
        self.budget_ = budget
        self.query_budget_ = (
            query_budget
            if query_budget is not None
            else (budget * len(task.val) if budget is not None else None)
        )
        self.rng_ = np.random.default_rng(self.seed)
        self.history_: list[tuple[Prompt, float]] = []
        self.seen_: set[Prompt] = set()
        self.space_size_ = space_size(n, int(self.k), len(self.instructions))

    @abstractmethod
    def suggest(self) -> Prompt:
        """Propose the next prompt to evaluate on the validation set.

        Raises:
            SearchSpaceExhausted: Every prompt has been proposed already.
        """

    def observe(self, prompt: Prompt, reward: float) -> None:
        """Learn from the reward (validation score) of a suggested prompt."""
        self.history_.append((prompt, float(reward)))
        self.seen_.add(prompt)

    def ask(self) -> Trial:
        """The next evaluation; the default scores :meth:`suggest`'s prompt on validation.

        Raises:
            SearchSpaceExhausted: Nothing new is left to evaluate.
        """
        return Trial(self.suggest(), info={"source": "random"})

    def tell(
        self,
        trial: Trial,
        reward: float,
        *,
        per_query: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        """Learn from the score of an asked trial (the default: :meth:`observe`).

        Args:
            trial: The trial asked.
            reward: Its score (the mean task metric over its queries).
            per_query: The evaluation's per-query records (``id``, ``score``, ``signal``),
                in the trial's query order, when the loop has them (a trial told from a
                shared study has only its reward).
        """
        if trial.full:
            self._note_signal(trial, per_query)
            self.observe(trial.prompt, reward)

    def _note_signal(self, trial: Trial, per_query: Sequence[dict[str, Any]] | None) -> None:
        """Remember a full evaluation's mean continuous signal (it breaks score ties)."""
        if not hasattr(self, "signals_"):
            self.signals_: dict[Prompt, float] = {}
        vals = [r["signal"] for r in per_query or () if r.get("signal") is not None]
        if trial.full and vals:
            self.signals_[trial.prompt] = float(np.mean(vals))

    def recommend(self) -> tuple[Prompt, dict[str, Any]]:
        """The final answer: the best prompt so far and why (default: best validation score).

        Ties (common: 0/1 scores on 20 queries move in steps of 0.05) go to the higher
        mean continuous signal of the scorer (the gold label's probability, say), and only
        then to the earliest evaluated prompt.

        Raises:
            InputDataError: Nothing has been observed yet.
        """
        if not getattr(self, "history_", None):
            raise InputDataError("the optimizer has observed nothing yet")
        signals = getattr(self, "signals_", {})

        def key(i: int) -> tuple[float, float, int]:
            prompt, score = self.history_[i]
            return (score, signals.get(prompt, float("-inf")), -i)

        best = max(range(len(self.history_)), key=key)
        prompt, score = self.history_[best]
        why: dict[str, Any] = {"rule": "best validation score", "val_score": score}
        if prompt in signals:
            why["rule"] = "best validation score, ties to the higher signal"
            why["val_signal"] = signals[prompt]
        return prompt, why

    @classmethod
    def from_config(cls, config: dict[str, Any], **objects: Any) -> Optimizer:
        """Rebuild an optimizer from :meth:`config` (recorded in results).

        ``type(opt).from_config(opt.config())`` builds an equivalent optimizer.

        ``objects`` supplies non-JSON arguments (an embedder object, say) that the config
        only names.
        """
        kwargs = dict(config)
        kwargs.update(objects)
        return cls(**kwargs)

    # ------------------------------------------------------------------ helpers
    def _check_setup(self) -> None:
        if not hasattr(self, "task_"):
            raise InputDataError(f"{type(self).__name__} must be setup(task) before use")

    def _exhausted(self) -> bool:
        return len(self.seen_) >= self.space_size_
