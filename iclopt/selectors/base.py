"""The selector contract: choose k ordered demonstrations for a task or for one query."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import numpy as np

from iclopt.components import Component, register_component
from iclopt.data import Task
from iclopt.embedders.base import Embedder
from iclopt.errors import InputDataError
from iclopt.evaluation import Budget
from iclopt.llms.base import LLM
from iclopt.params import Interval, check_parameters
from iclopt.prompts import Prompt
from iclopt.registry import Registry

__all__ = ["SELECTORS", "FitContext", "Selector", "register_selector"]

SELECTORS: Registry[type[Selector]] = Registry("method")
SelectorT = TypeVar("SelectorT", bound="Selector")


def register_selector(name: str) -> Callable[[type[SelectorT]], type[SelectorT]]:
    """Class decorator registering a selector under ``name``.

    It also sets the class's ``name`` and its ``description`` (the line ``iclopt methods``
    prints): the first line of its docstring, without the final period (see
    :func:`~iclopt.components.register_component`).
    """
    return register_component(SELECTORS, name)


class FitContext:
    """What a selector may use while fitting: the LLM, an embedder, a budget, an evaluator.

    Args:
        llm: The LLM being prompted (for LLM-scored methods).
        embedder: Text embedder (for retrieval methods).
        budget: Validation evaluations allowed to search methods (best-of-n).
        evaluator_kwargs: Settings for evaluators the selector builds (template,
            scoring, max_new_tokens, cache), so that it scores prompts as ``compare`` does.
        spent: Budget that LLM-using selectors charge, for cost accounting.
    """

    def __init__(
        self,
        *,
        llm: LLM | None = None,
        embedder: Embedder | None = None,
        budget: int | None = None,
        evaluator_kwargs: dict[str, Any] | None = None,
        spent: Budget | None = None,
    ) -> None:
        self.llm = llm
        self.embedder = embedder
        self.budget = budget
        self.evaluator_kwargs = dict(evaluator_kwargs or {})
        self.spent = spent if spent is not None else Budget()

    def need_llm(self, who: str) -> LLM:
        """The LLM, or an error naming the selector that needs one."""
        if self.llm is None:
            raise InputDataError(f"method {who!r} needs an LLM")
        return self.llm

    def need_embedder(self, who: str) -> Embedder:
        """The embedder, or an error naming the selector that needs one."""
        if self.embedder is None:
            raise InputDataError(f"method {who!r} needs an embedder")
        return self.embedder


class Selector(Component, ABC):
    """Chooses k ordered demonstrations from ``task.pool``.

    Task-level selectors return one prompt for all queries and ignore ``query``; per-query
    selectors (``per_query = True``) need the query. A
    :class:`~iclopt.components.Component`: ``__init__`` only stores its keyword arguments
    (:meth:`config` reads them from the signature), a subclass declares the constraints of
    its own parameters in ``_parameter_constraints`` (merged with its bases'; see
    :mod:`iclopt.params`), and :meth:`fit` checks them all before any pool-dependent work;
    fitted state ends in ``_``.

    Args:
        seed: Seed of the selector's own RNG; ``None`` draws fresh entropy.
    """

    #: Whether :meth:`select` needs the query (one prompt per query).
    per_query: ClassVar[bool] = False

    def __init__(self, *, seed: int | None = None) -> None:
        self.seed = seed

    def fit(self, task: Task, context: FitContext | None = None) -> Selector:
        """Check the declared parameters, then prepare for ``task`` (embed the pool, ...).

        A subclass calls this first, then does its own pool-dependent work.

        Raises:
            InputDataError: A parameter breaks its declared constraints.
        """
        self._check_parameters()
        self.task_ = task
        self.rng_ = np.random.default_rng(self.seed)
        self.context_ = context or FitContext()
        return self

    @abstractmethod
    def select(self, task: Task, k: int, *, query: str | None = None) -> Prompt:
        """K ordered demonstration ids (and possibly an instruction).

        Raises:
            InputDataError: ``k`` is not an int in [1, pool size], or a per-query
                selector got no query.
        """

    # ------------------------------------------------------------------ helpers
    def _check(self, task: Task, k: int, query: str | None) -> None:
        name = type(self).__name__
        check_parameters(name, {"k": [Interval(int, 1, None)]}, {"k": k})
        if k > len(task.pool):
            raise InputDataError(
                f"k={k} is larger than the pool of task {task.name!r} ({len(task.pool)})"
            )
        if self.per_query and query is None:
            raise InputDataError(
                f"{name} picks demonstrations per query and cannot give one fixed prompt; "
                "pass a query"
            )
        fitted = getattr(self, "task_", None)
        if fitted is None:
            self.fit(task)
        elif fitted is not task and fitted != task:
            raise InputDataError(
                f"{name} was fit on task {fitted.name!r}; fit it again for task {task.name!r}"
            )
