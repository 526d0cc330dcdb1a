"""The attribution contract: which demonstrations of a prompt help, hurt, or look mislabeled.

Every method answers the same question through the same call,
``Attributor.attribute(task, prompt, queries) -> Attribution`` (as every Captum method
exposes ``.attribute()``), is registered by name in :data:`ATTRIBUTORS` and builds itself
from the shared settings with :meth:`Attributor.from_context`.

Sign convention, for every method: ``scores[j]`` is the contribution of the ``j``-th
demonstration of the prompt (in prompt order) to the prompt's quality on the queries;
**higher means more helpful**, negative means the prompt does better without it.
``suspect[j]``, where a method has one, is a "likely mislabeled" score; higher means more
suspect.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from iclopt.artifacts import reading
from iclopt.attribution.context import AttributionContext
from iclopt.components import Component, register_component
from iclopt.data import Example, Task
from iclopt.errors import InputDataError
from iclopt.evaluation import Budget, Cost, Evaluator, ResultCache, Scoring
from iclopt.llms.base import LLM
from iclopt.params import Options, parameter_names
from iclopt.prompts import Prompt, Template
from iclopt.registry import Registry
from iclopt.reports.attribution import plot_attribution, write_attribution

__all__ = [
    "ATTRIBUTORS",
    "Attribution",
    "Attributor",
    "EvaluatorAttributor",
    "register_attributor",
]

#: Attribution methods by name (``detail``, ``loo``, ``shapley``).
ATTRIBUTORS: Registry[type[Attributor]] = Registry("attribution method")
AttributorT = TypeVar("AttributorT", bound="Attributor")


def register_attributor(name: str) -> Callable[[type[AttributorT]], type[AttributorT]]:
    """Class decorator registering an attributor under ``name``; duplicates raise.

    It also sets the class's ``name`` and its ``description`` (the line ``iclopt methods``
    prints): the first line of its docstring, without the final period (see
    :func:`~iclopt.components.register_component`).
    """
    return register_component(ATTRIBUTORS, name)


def score_labels(method: str) -> dict[str, str]:
    """How the scores of ``method`` read in a report: its class's labels.

    The class's ``score_scale`` and ``score_measure``; the base class's for a name no
    attributor is registered under (an attribution built by hand).
    """
    cls = ATTRIBUTORS.get(method) if method in ATTRIBUTORS else Attributor
    return {"scale": cls.score_scale, "measure": cls.score_measure}


def _robust_outliers(values: np.ndarray, z: float) -> list[int]:
    """Indices whose value lies more than ``z`` robust standard deviations above the median."""
    med = float(np.median(values))
    mad = 1.4826 * float(np.median(np.abs(values - med)))
    if mad <= 0:
        mad = float(np.std(values))
    if mad <= 0:
        return []
    return [int(i) for i in np.flatnonzero(values > med + z * mad)]


@dataclass
class Attribution:
    """What an attribution method found about the demonstrations of one prompt.

    Index ``j`` of every array is the ``j``-th demonstration in prompt order.

    Attributes:
        method: Registered name of the method.
        task: Task name.
        model: Identity of the LLM.
        prompt: The attributed prompt (ids into ``task.pool``).
        demos: Its demonstrations, in order.
        scores: ``n`` contributions; higher = more helpful (see the module docstring).
        suspect: ``n`` "likely mislabeled" scores (higher = more suspect), or ``None``.
        per_query: ``n x q`` per-query contributions, or ``None``.
        errors: ``n`` standard errors of ``scores`` (sampling methods), or ``None``.
        query_ids: Ids of the ``q`` queries the scores are about.
        cost: What computing it cost.
        config: The method's settings (layer, lambda, utility, samples, ...).
        extra: Method-specific values worth keeping (e.g. ``v(all)`` and ``v(empty)``).
    """

    method: str
    task: str
    model: str
    prompt: Prompt
    demos: list[Example]
    scores: np.ndarray
    suspect: np.ndarray | None = None
    per_query: np.ndarray | None = None
    errors: np.ndarray | None = None
    query_ids: list[str] = field(default_factory=list)
    cost: Cost = field(default_factory=Cost)
    config: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ rankings
    def suspicion(self) -> np.ndarray:
        """One "how likely is this demonstration harmful or mislabeled" value per demo.

        ``suspect`` where the method has one; otherwise ``-scores`` (the most negative
        contribution is the most suspect).
        """
        return self.suspect if self.suspect is not None else -self.scores

    def ranking(self) -> list[int]:
        """Demo positions from the most suspect to the least (ties: prompt order)."""
        s = self.suspicion()
        return [int(i) for i in np.argsort(-s, kind="stable")]

    @property
    def flagged(self) -> list[int]:
        """Positions flagged as harmful or likely mislabeled, most suspect first.

        With a ``suspect`` score (``detail``): robust outliers, more than 2 robust
        standard deviations (1.4826 MAD) above the median. Otherwise: a negative
        contribution, beyond two standard errors where the method reports them.
        """
        if self.suspect is not None:
            out = _robust_outliers(self.suspect, 2.0)
        elif self.errors is not None:
            out = [int(i) for i in np.flatnonzero(self.scores + 2 * self.errors < 0)]
        else:
            out = [int(i) for i in np.flatnonzero(self.scores < 0)]
        order = {p: r for r, p in enumerate(self.ranking())}
        return sorted(out, key=order.__getitem__)

    def most_harmful(self) -> int:
        """Position of the most suspect demonstration."""
        return self.ranking()[0]

    # ------------------------------------------------------------------ output
    def as_dict(self) -> dict[str, Any]:
        """JSON form (what ``attribution.json`` holds)."""

        def arr(a: np.ndarray | None) -> Any:
            return None if a is None else np.asarray(a, dtype=float).round(10).tolist()

        flagged = set(self.flagged)
        return {
            "method": self.method,
            "task": self.task,
            "model": self.model,
            "prompt": self.prompt.as_dict(),
            "demos": [
                {
                    "position": j,
                    "pool_id": pid,
                    "id": ex.id,
                    "input": ex.input,
                    "output": ex.output if isinstance(ex.output, str) else list(ex.output),
                    "score": float(self.scores[j]),
                    "suspect": None if self.suspect is None else float(self.suspect[j]),
                    "error": None if self.errors is None else float(self.errors[j]),
                    "flagged": j in flagged,
                }
                for j, (pid, ex) in enumerate(zip(self.prompt.demos, self.demos))
            ],
            "scores": arr(self.scores),
            "suspect": arr(self.suspect),
            "errors": arr(self.errors),
            "per_query": arr(self.per_query),
            "query_ids": list(self.query_ids),
            "flagged": self.flagged,
            "ranking": self.ranking(),
            "cost": self.cost.as_dict(),
            "config": self.config,
            "extra": self.extra,
            "labels": score_labels(self.method),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Attribution:
        """Rebuild an attribution from :meth:`as_dict` (e.g. a saved ``attribution.json``).

        Raises:
            KeyError, TypeError, ValueError: ``d`` is not such a dictionary.
        """

        def arr(key: str) -> np.ndarray | None:
            value = d.get(key)
            return None if value is None else np.asarray(value, dtype=float)

        demos = d["demos"]
        known = {f for f in Cost.__dataclass_fields__}
        scores = arr("scores")
        if scores is None or len(scores) != len(demos):
            raise ValueError("'scores' must hold one value per demonstration")
        return cls(
            method=str(d["method"]),
            task=str(d.get("task", "")),
            model=str(d.get("model", "")),
            prompt=Prompt.from_dict(d["prompt"]),
            demos=[Example.from_dict(x) for x in demos],
            scores=scores,
            suspect=arr("suspect"),
            per_query=arr("per_query"),
            errors=arr("errors"),
            query_ids=[str(q) for q in d.get("query_ids", [])],
            cost=Cost(**{k: v for k, v in dict(d.get("cost", {})).items() if k in known}),
            config=dict(d.get("config", {})),
            extra=dict(d.get("extra", {})),
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Attribution:
        """Read an ``attribution.json`` written by :meth:`save` (no model needed).

        Raises:
            InputDataError: The file is missing or not an attribution.
        """
        with reading(path, "attribution", "attribution.json"):
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        raise AssertionError("unreachable")  # pragma: no cover  (mypy: reading re-raises)

    def plot(self, ax: Any = None) -> Any:
        """Horizontal bar chart: one bar per demonstration, flagged ones in red.

        Args:
            ax: A matplotlib axes to draw on; a new figure when ``None``.

        Returns:
            The matplotlib figure.
        """
        return plot_attribution(self.as_dict(), ax=ax)

    def save(self, out_dir: str | Any) -> dict[str, Any]:
        """Write ``attribution.json``, ``.md`` and ``.html`` into ``out_dir`` (atomically)."""
        return write_attribution(self.as_dict(), out_dir)


class Attributor(Component, ABC):
    """Explains a prompt: one contribution score per demonstration.

    A :class:`~iclopt.components.Component`: ``__init__`` only stores keyword arguments
    (the LLM and the method's settings) and :meth:`config` reads them from the signature.
    A subclass declares the constraints of its own parameters in
    ``_parameter_constraints`` (merged with its bases'; see :mod:`iclopt.params`) and
    implements :meth:`_attribute`; :meth:`attribute`, the one entry point, checks the
    parameters and the prompt first. :meth:`from_context` builds a method from the
    settings every method shares.
    """

    #: Whether the method needs a white-box backend (hidden states).
    needs_hidden_states: ClassVar[bool] = False
    #: How a report reads ``scores``: ``"change"`` (of the prompt's utility: points of
    #: the task's score, or percent of the gold label's probability) or ``"share"`` (a
    #: unitless influence, shown as each demonstration's share of the total).
    score_scale: ClassVar[str] = "change"
    #: What one score is, as the report's sentence says it (lower case).
    score_measure: ClassVar[str] = "its contribution to the prompt's score"
    #: The LLM whose prompt is explained (every method's constructor takes it).
    llm: LLM

    @classmethod
    def from_context(
        cls: type[AttributorT], context: AttributionContext, **options: Any
    ) -> AttributorT:
        """Build the method from the shared settings and its own options.

        The default passes every setting of ``context`` that ``__init__`` names (``llm``,
        ``template``, ``scoring``, ``max_new_tokens``, ``cache``, ``budget``, ``seed``;
        the cache is opened only for a method that takes one), then ``options`` on top. A
        subclass that derives its arguments differently overrides it.

        Args:
            context: The model and the evaluation settings.
            **options: The method's own constructor arguments (``layer``, ``utility``,
                ``max_permutations``, ...).

        Raises:
            InputDataError: An option ``__init__`` does not take (the message lists those
                it takes).
        """
        names = parameter_names(cls)
        bad = sorted(set(options) - set(names))
        if bad:
            raise InputDataError(
                f"method {cls.name!r} does not take {', '.join(bad)}; it takes "
                f"{', '.join(sorted(set(names) - {'llm'}))}"
            )
        shared = set(AttributionContext.names())
        kwargs = {n: context.setting(n) for n in names if n in shared and n not in options}
        kwargs.update(options)
        return cls(**kwargs)

    def attribute(
        self, task: Task, prompt: Prompt, queries: Sequence[Example | str] | None = None
    ) -> Attribution:
        """Attribute the quality of ``prompt`` on ``queries`` to its demonstrations.

        Checks the declared parameters and the prompt, then runs :meth:`_attribute`.

        Args:
            task: The task; ``prompt.demos`` index ``task.pool``.
            prompt: The prompt to explain; needs at least one demonstration.
            queries: Labelled queries the contributions are measured on; default
                ``task.val``. A method that can (DETAIL) also takes plain strings,
                unlabelled queries.

        Returns:
            The :class:`Attribution`.

        Raises:
            InputDataError: No demonstrations, bad ids, or bad settings.
        """
        self._check_parameters()
        self._check_prompt(task, prompt)
        return self._attribute(task, prompt, queries)

    @abstractmethod
    def _attribute(
        self, task: Task, prompt: Prompt, queries: Sequence[Example | str] | None
    ) -> Attribution:
        """The method itself, called by :meth:`attribute` once the inputs are checked."""

    def _config_value(self, name: str, value: Any) -> Any:
        """Objects by name: the model by identity, the cache by path, the rest as dicts."""
        if isinstance(value, LLM):
            return value.identity
        if isinstance(value, (Template, Budget)):
            return value.as_dict()
        if isinstance(value, ResultCache):
            return str(value.path)
        return super()._config_value(name, value)

    @staticmethod
    def _check_prompt(task: Task, prompt: Prompt) -> None:
        prompt.validate(len(task.pool))
        if not prompt.demos:
            raise InputDataError("the prompt has no demonstrations to attribute")

    def _result(
        self, task: Task, prompt: Prompt, queries: Sequence[Example | str], **fields: Any
    ) -> Attribution:
        """This method's :class:`Attribution` of ``prompt``; ``fields`` are the rest of it."""
        return Attribution(
            method=self.name,
            task=task.name,
            model=self.llm.identity,
            prompt=prompt,
            demos=[task.pool[i] for i in prompt.demos],
            query_ids=[q.id if isinstance(q, Example) else f"q{k}" for k, q in enumerate(queries)],
            **fields,
        )


class EvaluatorAttributor(Attributor):
    """Base of the black-box methods, which score prompts through the :class:`Evaluator`.

    Args:
        llm: The LLM (any backend).
        template: Prompt template; completion style by default.
        scoring: ``"auto"``, ``"generate"`` or ``"labels"`` (see :class:`Evaluator`).
        utility: What a prompt is worth on a query: ``"metric"`` (the task metric),
            ``"logprob"`` (log-probability of the gold label, normalized over the label
            set: a smooth, less noisy value; label scoring only), or ``"auto"``
            (``"logprob"`` under label scoring, else ``"metric"``).
        max_new_tokens: Generation cap (``None``: the evaluator's default).
        cache: Result cache, or ``None``.
        budget: Charged for every evaluation, or ``None`` for no cap.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "utility": [Options("auto", "metric", "logprob")],
    }

    def __init__(
        self,
        *,
        llm: LLM,
        template: Template | None = None,
        scoring: Scoring = "auto",
        utility: str = "auto",
        max_new_tokens: int | None = None,
        cache: ResultCache | None = None,
        budget: Budget | None = None,
    ) -> None:
        self.llm = llm
        self.template = template
        self.scoring = scoring
        self.utility = utility
        self.max_new_tokens = max_new_tokens
        self.cache = cache
        self.budget = budget

    def _evaluator(self, task: Task) -> Evaluator:
        kwargs: dict[str, Any] = {}
        if self.max_new_tokens is not None:
            kwargs["max_new_tokens"] = self.max_new_tokens
        return Evaluator(
            task,
            self.llm,
            template=self.template,
            scoring=self.scoring,
            cache=self.cache,
            budget=self.budget,
            **kwargs,
        )

    def _labelled(self, task: Task, queries: Sequence[Example | str] | None) -> list[Example]:
        """The queries (default ``task.val``), which must be labelled.

        Raises:
            InputDataError: A query is a plain string (its label is needed).
        """
        qs = list(task.val if queries is None else queries)
        if any(not isinstance(q, Example) for q in qs):
            raise InputDataError(
                f"{type(self).__name__} needs labelled queries (Examples), not plain strings"
            )
        return [q for q in qs if isinstance(q, Example)]

    def _prepare(
        self, task: Task, queries: Sequence[Example | str] | None, *, what: str
    ) -> tuple[list[Example], Evaluator, str]:
        """The labelled queries, the evaluator and the utility kind of one attribution.

        Raises:
            InputDataError: No labelled query (``what`` names the method in the message),
                or a utility the scoring cannot give.
        """
        qs = self._labelled(task, queries)
        if not qs:
            raise InputDataError(f"{what} need at least one labelled query")
        evaluator = self._evaluator(task)
        return qs, evaluator, self._utility_kind(evaluator)

    def _utility_kind(self, evaluator: Evaluator) -> str:
        if self.utility == "logprob" and evaluator.scoring != "labels":
            raise InputDataError("utility 'logprob' needs label scoring (a classification task)")
        if self.utility == "auto":
            return "logprob" if evaluator.scoring == "labels" else "metric"
        return self.utility

    @staticmethod
    def _per_query_values(
        rows: list[dict[str, Any]], queries: Sequence[Example], kind: str
    ) -> np.ndarray:
        """Per-query utility of one evaluation."""
        if kind == "metric":
            return np.array([float(r["score"]) for r in rows])
        from iclopt.scoring import gold_label_logprob

        out = []
        for r, q in zip(rows, queries):
            try:
                out.append(gold_label_logprob(r["label_logprobs"], q.answers))
            except InputDataError:
                raise InputDataError(
                    f"query {q.id!r}: its answer {q.target!r} is not in the label set"
                ) from None
        return np.array(out)
