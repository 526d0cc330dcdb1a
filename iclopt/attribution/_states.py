"""Hidden states at the tokens DETAIL needs.

Those are the tokens that predict each demonstration's answer, and the last token of each
query prompt.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from iclopt.errors import InputDataError
from iclopt.llms.base import LLM

__all__ = ["DemoTokens", "locate_demo_tokens", "num_layers", "prompt_states"]


def num_layers(llm: LLM) -> int | None:
    """Number of transformer layers of a white-box backend, if it can tell."""
    n = getattr(llm, "num_layers", None)
    if isinstance(n, int):
        return n
    model = getattr(llm, "hf_model", None)
    config = getattr(model, "config", None) if model is not None else None
    n = getattr(config, "num_hidden_layers", None)
    return int(n) if isinstance(n, int) else None


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


def locate_demo_tokens(llm: Any, text: str, prefixes: Sequence[str]) -> DemoTokens:
    """Find, from the tokenizer's offsets, the token predicting each demonstration's answer.

    ``prefixes[j]`` is the prompt rendered up to (and including) demonstration ``j``'s
    output prefix, exactly as a query would end (``"...Input: x\\nOutput:"``); the full
    ``text`` must start with it. The chosen token is the one covering the last character
    of that prefix, so the rule is the same for demonstrations and queries (a query's
    representation is its prompt's last token). Positions never come from counting
    characters: they come from ``llm.token_offsets(text)``.

    Raises:
        InputDataError: The backend has no ``token_offsets``, or a prefix is not where
            it should be in ``text`` (a template that renders demonstrations
            differently from queries).
    """
    if not hasattr(llm, "token_offsets"):
        raise InputDataError(
            f"{type(llm).__name__} has no token_offsets(); DETAIL needs it to find the "
            "demonstrations' tokens"
        )
    offsets = [tuple(o) for o in llm.token_offsets(text)]
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


def _shared_prefix_len(seqs: Sequence[Sequence[int]]) -> int:
    first = seqs[0]
    p = min(len(s) for s in seqs) - 1  # keep at least the last token of every row
    for s in seqs[1:]:
        i = 0
        while i < p and s[i] == first[i]:
            i += 1
        p = i
    return max(p, 0)


def prompt_states(
    llm: LLM, texts: Sequence[str], positions: Sequence[int], layer: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Hidden states at ``layer``: at ``positions`` of ``texts[0]``, and at every text's last token.

    On a ``transformers`` backend (:class:`~iclopt.llms.HFModel`), the token prefix all
    texts share (the instruction and the demonstrations) is computed once; the
    demonstration states come from that pass, and every text's own tokens continue from a
    copy of its key/value cache, right-padded (pads come after every real token, so no
    real token sees them). Other white-box backends go through
    :meth:`LLM.hidden_states`. Both paths give the same states up to rounding (tested).

    Args:
        llm: A white-box backend.
        texts: Prompt texts (one per query), all starting with the same demonstrations.
        positions: Token indices in ``texts[0]`` (the demonstrations' answer-predicting tokens).
        layer: Layer index (0 = embeddings).

    Returns:
        ``len(positions) x d`` states, ``len(texts) x d`` last-token states (float64), and
        the number of tokens fed to the model.
    """
    model = getattr(llm, "hf_model", None)
    encode = getattr(llm, "encode", None)
    if model is not None and encode is not None:
        seqs = encode(list(texts))
        p = _shared_prefix_len(seqs) if len(seqs) > 1 else len(seqs[0]) - 1
        if positions and max(positions) < p:
            return _prefix_kv_states(llm, model, seqs, p, list(positions), layer)
    first = llm.hidden_states([texts[0]], layers=[layer], positions=[[*positions, -1]])[0][0]
    rest = llm.hidden_states(list(texts[1:]), layers=[layer]) if len(texts) > 1 else []
    last = np.stack([first[-1], *[s[0, 0] for s in rest]])
    fed = sum(llm.count_tokens(list(texts)))
    return first[:-1].astype(np.float64), last.astype(np.float64), fed


def _prefix_kv_states(
    llm: Any,
    model: Any,
    seqs: list[list[int]],
    p: int,
    positions: list[int],
    layer: int,
    batch_size: int = 8,
) -> tuple[np.ndarray, np.ndarray, int]:
    import torch

    pad = int(llm.tokenizer.pad_token_id)
    out: list[np.ndarray] = [np.empty(0)] * len(seqs)
    with torch.inference_mode():
        res = model(
            input_ids=torch.tensor([seqs[0][:p]]),
            use_cache=True,
            output_hidden_states=True,
            logits_to_keep=1,
        )
        cache = res.past_key_values
        demo = res.hidden_states[layer][0, positions].double().numpy()
        fed = p
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))  # little padding
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            rows = [seqs[i][p:] for i in batch]
            b, s = len(rows), max(len(r) for r in rows)
            ids = torch.full((b, s), pad, dtype=torch.long)
            mask = torch.zeros((b, s), dtype=torch.long)
            for j, r in enumerate(rows):
                ids[j, : len(r)] = torch.tensor(r, dtype=torch.long)
                mask[j, : len(r)] = 1
            kv = copy.deepcopy(cache)
            kv.batch_repeat_interleave(b)
            res = model(
                input_ids=ids,
                attention_mask=torch.cat([torch.ones((b, p), dtype=torch.long), mask], dim=1),
                position_ids=(p + torch.arange(s))[None, :].expand(b, s),
                past_key_values=kv,
                use_cache=True,
                output_hidden_states=True,
                logits_to_keep=1,
            )
            fed += b * s
            hs = res.hidden_states[layer]
            for j, i in enumerate(batch):
                out[i] = hs[j, len(rows[j]) - 1].double().numpy()
    return demo, np.stack(out), fed
