"""The result of an optimization: best prompt, scores, cost, trace; saved as JSON."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iclopt.artifacts import reading, write_json_atomic
from iclopt.data import Example
from iclopt.errors import InputDataError
from iclopt.prompts import Message, Prompt, Template

__all__ = ["OptimizationResult", "write_json_atomic"]

FORMAT_VERSION = 1


@dataclass
class OptimizationResult:
    """What :func:`iclopt.optimize` returns, and what ``iclopt optimize --out`` writes.

    Attributes:
        best: The best prompt found (ids into the task's pool).
        demos: The best prompt's demonstrations, in order (kept so that the result
            renders prompts without the task).
        val_score: Validation score of ``best``.
        test_score: Test score of ``best`` (``None`` without a test set).
        template: The template the prompts were rendered with.
        trace: Every evaluated prompt with its score and cost.
        cost: Cost of the search (validation evaluations).
        test_cost: Cost of scoring the best prompt outside the search: on the test set, and
            on the validation queries a racing search left unscored (for its `val_score`).
        config: Every setting of the run, seed included.
        model: Identity of the LLM.
        task: Task name.
    """

    best: Prompt
    demos: list[Example]
    val_score: float
    test_score: float | None
    template: Template = field(default_factory=Template)
    trace: list[dict[str, Any]] = field(default_factory=list)
    cost: dict[str, Any] = field(default_factory=dict)
    test_cost: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    model: str = ""
    task: str = ""

    def render(self, query: str) -> str | list[Message]:
        """The final prompt for ``query``: text, or chat messages for a chat template."""
        return self.template.render(self.best.instruction, self.demos, query)

    def as_dict(self) -> dict[str, Any]:
        """JSON form (the artifact)."""
        return {
            "format_version": FORMAT_VERSION,
            "task": self.task,
            "model": self.model,
            "prompt": {
                "instruction": self.best.instruction,
                "demos": [
                    {
                        "pool_id": pid,
                        "id": ex.id,
                        "input": ex.input,
                        "output": ex.output if isinstance(ex.output, str) else list(ex.output),
                    }
                    for pid, ex in zip(self.best.demos, self.demos)
                ],
            },
            "val_score": self.val_score,
            "test_score": self.test_score,
            "cost": self.cost,
            "test_cost": self.test_cost,
            "template": self.template.as_dict(),
            "config": self.config,
            "trace": self.trace,
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the JSON artifact atomically."""
        write_json_atomic(path, self.as_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> OptimizationResult:
        """Read an artifact written by :meth:`save`.

        Raises:
            InputDataError: The file is missing or not such an artifact.
        """
        with reading(path, "result", "a result file"):
            d = json.loads(Path(path).read_text(encoding="utf-8"))
            version = d.get("format_version", 1)
            if not isinstance(version, int) or version > FORMAT_VERSION:
                raise InputDataError(
                    f"{path}: written by a newer iclopt (format version {version}; this one "
                    f"reads up to {FORMAT_VERSION}); upgrade iclopt"
                )
            if version < 1:
                raise InputDataError(
                    f"{path}: format version {version} is not one iclopt writes (1 to "
                    f"{FORMAT_VERSION})"
                )
            demos = d["prompt"]["demos"]
            return cls(
                best=Prompt(d["prompt"]["instruction"], tuple(x["pool_id"] for x in demos)),
                demos=[Example.from_dict(x) for x in demos],
                val_score=float(d["val_score"]),
                test_score=None if d.get("test_score") is None else float(d["test_score"]),
                template=Template.from_dict(d.get("template", {})),
                trace=list(d.get("trace", [])),
                cost=dict(d.get("cost", {})),
                test_cost=dict(d.get("test_cost", {})),
                config=dict(d.get("config", {})),
                model=str(d.get("model", "")),
                task=str(d.get("task", "")),
            )
