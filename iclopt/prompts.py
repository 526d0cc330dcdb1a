"""Prompts (an instruction plus ordered demonstration ids) and the templates rendering them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from iclopt.data import Example
from iclopt.errors import InputDataError

__all__ = ["Message", "Prompt", "Template"]

Message = dict[str, str]


@dataclass(frozen=True)
class Prompt:
    """What the optimizers search over: an instruction and ordered pool ids.

    Small, hashable and JSON-serializable; its text comes from a :class:`Template`.

    Args:
        instruction: Task instruction placed before the demonstrations, or ``None``.
        demos: Ordered ids into ``task.pool``; the first is shown first.

    Example:
        >>> Prompt("Classify the sentiment.", (3, 0, 7)).demos
        (3, 0, 7)
    """

    instruction: str | None = None
    demos: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "demos", tuple(int(d) for d in self.demos))

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"instruction": self.instruction, "demos": list(self.demos)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Prompt:
        """Inverse of :meth:`as_dict`."""
        return cls(instruction=d.get("instruction"), demos=tuple(d.get("demos", ())))

    def validate(self, pool_size: int) -> None:
        """Raise :class:`InputDataError` unless the ids are unique and index the pool."""
        if len(set(self.demos)) != len(self.demos):
            raise InputDataError(f"prompt demos must be unique, got {self.demos}")
        bad = [d for d in self.demos if not 0 <= d < pool_size]
        if bad:
            raise InputDataError(f"prompt demo ids {bad} are outside the pool [0, {pool_size})")


@dataclass(frozen=True)
class Template:
    """Turns demonstrations and a query into the text (or chat messages) the LLM sees.

    Completion style (default)::

        {instruction}

        Input: {demo input}
        Output: {demo output}

        Input: {query}
        Output:

    Chat style puts the instruction in a system message, each demonstration in a
    user/assistant pair and the query in a final user message; the LLM's chat template
    turns the messages into text.

    Args:
        style: ``"completion"`` or ``"chat"``.
        input_prefix: Text before each input.
        output_prefix: Text before each output. The query ends with it, trailing spaces
            removed (``"Output:"``): the space belongs to the answer's first token, so
            label scoring puts it back (:attr:`answer_separator`). A prefix ending in
            another character (``"Answer:\n"``) is kept whole and the answer follows it
            directly.
        example_separator: Between input and output of one example.
        demo_separator: Between consecutive examples.
    """

    style: Literal["completion", "chat"] = "completion"
    input_prefix: str = "Input: "
    output_prefix: str = "Output: "
    example_separator: str = "\n"
    demo_separator: str = "\n\n"
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.style not in ("completion", "chat"):
            raise InputDataError(
                f"The 'style' parameter of Template must be 'completion' or 'chat'. "
                f"Got {self.style!r} instead."
            )

    @property
    def query_suffix(self) -> str:
        """What a query's text ends with: the output prefix without trailing spaces."""
        return self.output_prefix.rstrip(" ")

    @property
    def answer_separator(self) -> str:
        """What comes between :attr:`query_suffix` and a demonstration's answer."""
        return self.output_prefix[len(self.query_suffix) :]

    @property
    def answer_end(self) -> str:
        """What follows a demonstration's answer in completion style: the demo separator.

        Label scoring scores ``answer_separator + label + answer_end``, so that a label
        that is a token prefix of another ("1" of "10") is not favoured for being short.
        """
        return self.demo_separator

    def _block(self, inp: str, out: str | None) -> str:
        head = f"{self.input_prefix}{inp}{self.example_separator}"
        if out is None:
            return head + self.query_suffix
        return f"{head}{self.output_prefix}{out}"

    def render_text(self, instruction: str | None, demos: Sequence[Example], query: str) -> str:
        """Completion-style text for one query."""
        parts = [instruction.strip()] if instruction else []
        parts += [self._block(d.input, d.target) for d in demos]
        parts.append(self._block(query, None))
        return self.demo_separator.join(parts)

    def render_messages(
        self, instruction: str | None, demos: Sequence[Example], query: str
    ) -> list[Message]:
        """Chat-style messages for one query."""
        msgs: list[Message] = []
        if instruction:
            msgs.append({"role": "system", "content": instruction.strip()})
        for d in demos:
            msgs.append({"role": "user", "content": d.input})
            msgs.append({"role": "assistant", "content": d.target})
        msgs.append({"role": "user", "content": query})
        return msgs

    def render(
        self, instruction: str | None, demos: Sequence[Example], query: str
    ) -> str | list[Message]:
        """Text (completion style) or messages (chat style) for one query."""
        if self.style == "chat":
            return self.render_messages(instruction, demos, query)
        return self.render_text(instruction, demos, query)

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "style": self.style,
            "input_prefix": self.input_prefix,
            "output_prefix": self.output_prefix,
            "example_separator": self.example_separator,
            "demo_separator": self.demo_separator,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Template:
        """Inverse of :meth:`as_dict`."""
        keys = ("style", "input_prefix", "output_prefix", "example_separator", "demo_separator")
        return cls(**{k: d[k] for k in keys if k in d})
