"""The trace of a search: one entry per evaluation, what it scored, cost and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from iclopt.artifacts import json_safe
from iclopt.evaluation import Cost
from iclopt.prompts import Prompt

__all__ = ["TraceEntry"]


@dataclass
class TraceEntry:
    """One step of a search: the prompt evaluated, its score, its cost and why it was chosen.

    Attributes:
        step: Index in the trace.
        prompt: The prompt evaluated.
        score: Its mean metric on the queries (the validation set unless ``queries``).
        cost: What the evaluation cost (``cost.calls`` counts cache hits as the calls
            they replace, as budgets do; ``cost.seconds`` is its wall time).
        queries: Pool ids scored as extra labelled queries (re-scoring, racing); ``None``
            for none.
        info: The optimizer's diagnostics (``source``, ``mean``, ``std``, ``acquisition``).
        optimizer_seconds: Time the optimizer took to propose this prompt.
        val: Validation indices of a partial evaluation; ``None`` for the whole set when
            ``queries`` is ``None`` (see :class:`~iclopt.bandits.Trial`).
        n_queries: How many queries the score rests on.
        signal: Mean continuous signal of the scorer over those queries.
    """

    step: int
    prompt: Prompt
    score: float
    cost: Cost = field(default_factory=Cost)
    queries: tuple[int, ...] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    optimizer_seconds: float = 0.0
    val: tuple[int, ...] | None = None
    n_queries: int | None = None
    signal: float | None = None

    @property
    def on_val(self) -> bool:
        """Whether the score is on the whole validation set (not partial, not pool queries)."""
        return self.queries is None and self.val is None

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "step": self.step,
            **self.prompt.as_dict(),
            "score": self.score,
            "queries": "val" if self.on_val else list(self.queries or ()),
            "val": None if self.val is None else list(self.val),
            "n_queries": self.n_queries,
            "signal": self.signal,
            "calls": self.cost.calls,
            "source": self.info.get("source"),
            "info": json_safe(self.info),
            "llm_calls": self.cost.llm_calls,
            "prompt_tokens": self.cost.prompt_tokens,
            "cache_hits": self.cost.cache_hits,
            "seconds": round(self.cost.seconds, 3),
            "optimizer_seconds": round(self.optimizer_seconds, 4),
        }

    def record(self) -> dict[str, Any]:
        """What a ledger stores of the evaluation once it is complete (JSON-safe)."""
        return json_safe(
            {**self.cost.as_dict(), "n_queries": self.n_queries, "signal": self.signal}
        )

    @classmethod
    def from_record(
        cls,
        *,
        step: int,
        prompt: Prompt,
        score: float,
        record: dict[str, Any],
        queries: tuple[int, ...] | None = None,
        info: dict[str, Any] | None = None,
        optimizer_seconds: float = 0.0,
    ) -> TraceEntry:
        """The entry back from :meth:`record` (records of older versions lack some costs)."""
        cost = Cost(**{k: v for k, v in record.items() if k in Cost.__dataclass_fields__})
        return cls(
            step=step,
            prompt=prompt,
            score=score,
            cost=cost,
            queries=queries,
            info=dict(info or {}),
            optimizer_seconds=optimizer_seconds,
            n_queries=record.get("n_queries"),
            signal=record.get("signal"),
        )
