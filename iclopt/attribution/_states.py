"""Where the demonstrations sit in a rendered prompt, from the tokenizer's offsets.

Pure token-location logic: DETAIL needs the hidden states at the tokens that predict
each demonstration's answer; this module finds those tokens (the states themselves come
from :meth:`~iclopt.llms.WhiteBoxLLM.prompt_states`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from iclopt.errors import InputDataError

__all__ = ["DemoTokens", "locate_demo_tokens"]


@dataclass
class DemoTokens:
    """Where the demonstrations sit in a rendered prompt.

    Attributes:
        positions: Per demonstration, the index of the token that predicts its answer (the
            last token of its output prefix, e.g. ``":"`` of ``"Output:"``).
        answer_tokens: Per demonstration, the text of its answer's first token.
    """

    positions: list[int]
    answer_tokens: list[str]


def _covering_token(offsets: Sequence[tuple[int, int]], char: int) -> int | None:
    """Index of the last token whose character span covers ``char``."""
    found = None
    for t, (s, e) in enumerate(offsets):
        if s <= char < e:
            found = t
    return found


def locate_demo_tokens(
    offsets: Sequence[tuple[int, int]], text: str, prefixes: Sequence[str]
) -> DemoTokens:
    """Find, from the tokenizer's offsets, the token predicting each demonstration's answer.

    ``prefixes[j]`` is the prompt rendered up to (and including) demonstration ``j``'s
    output prefix, exactly as a query would end (``"...Input: x\\nOutput:"``); the full
    ``text`` must start with it. The chosen token is the one covering the last character
    of that prefix, so the rule is the same for demonstrations and queries (a query's
    representation is its prompt's last token). Positions never come from counting
    characters: they come from the tokenizer's ``offsets`` of ``text``
    (:meth:`~iclopt.llms.WhiteBoxLLM.token_offsets`).

    Args:
        offsets: Character span of each token of ``text``.
        text: The rendered prompt.
        prefixes: Per demonstration, the prompt rendered up to its output prefix.

    Raises:
        InputDataError: A prefix is not where it should be in ``text`` (a template that
            renders demonstrations differently from queries).

    Example:
        >>> text = "Input: a\\nOutput: yes\\n\\nInput: b\\nOutput:"
        >>> offsets = [(0, 6), (6, 8), (8, 9), (9, 16), (16, 20), (20, 22), (22, 28),
        ...            (28, 30), (30, 31), (31, 38)]
        >>> found = locate_demo_tokens(offsets, text, ["Input: a\\nOutput:"])
        >>> found.positions, found.answer_tokens
        ([3], [' yes'])
    """
    offsets = [(int(s), int(e)) for s, e in offsets]
    positions: list[int] = []
    answers: list[str] = []
    for j, prefix in enumerate(prefixes):
        if not prefix or not text.startswith(prefix):
            raise InputDataError(
                f"demonstration {j}: the prompt text does not continue its rendered prefix; "
                "this template renders demonstrations and queries differently"
            )
        t = _covering_token(offsets, len(prefix) - 1)
        if t is None:
            raise InputDataError(f"demonstration {j}: no token covers the end of its prefix")
        positions.append(t)
        nxt = next((u for u in range(t + 1, len(offsets)) if offsets[u][1] > offsets[u][0]), None)
        answers.append("" if nxt is None else text[offsets[nxt][0] : offsets[nxt][1]])
    if any(b <= a for a, b in itertools.pairwise(positions)):
        raise InputDataError("demonstration tokens are not in prompt order")
    return DemoTokens(positions, answers)
