"""Checks every LLM backend must pass (the test suite runs them on each backend).

A new backend registered with :func:`~iclopt.llms.register_backend` is tested by one call,
``check_llm(MyBackend(...))``: the contract of :class:`~iclopt.llms.LLM` (batches in,
batches out, stop strings, greedy determinism, argument errors, log-probabilities,
honest request counters) and, for a :class:`~iclopt.llms.WhiteBoxLLM`, its hidden
states, token offsets and depth.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from iclopt.errors import InputDataError, LLMError
from iclopt.llms.base import LLM, WhiteBoxLLM

__all__ = ["PROMPTS", "check_llm"]

_DEMOS = (
    "Classify the sentiment.\n\n"
    "Input: A delight from start to finish.\nOutput: positive\n\n"
    "Input: Cold food and a rude waiter.\nOutput: negative\n\n"
    "Input: Warm service and great coffee.\nOutput: positive\n\n"
)

#: Few-shot prompts sharing their demonstrations (as the prompts of one evaluation do).
PROMPTS = tuple(
    _DEMOS + f"Input: {q}\nOutput:"
    for q in (
        "I loved every minute of it.",
        "It broke after one day.",
        "Superb acting and a clever plot.",
        "Overpriced and tasteless.",
    )
)


def _raises(what: str, exc: type[Exception], call: Callable[[], Any]) -> None:
    try:
        call()
    except exc:
        return
    raise AssertionError(f"{what} did not raise {exc.__name__}")


def _check_counters(name: str, before: dict[str, int], after: dict[str, int]) -> None:
    assert all(isinstance(k, str) and isinstance(v, int) for k, v in after.items()), (
        f"{name}: counters() must map names to ints, got {after}"
    )
    down = [k for k, v in before.items() if after.get(k, 0) < v]
    assert not down, f"{name}: counters {down} went down (they are cumulative)"


def _check_requests(
    name: str, before: dict[str, int], after: dict[str, int], n: int, what: str
) -> None:
    """Counters are cumulative ints and, where kept, count one request per prompt."""
    _check_counters(name, before, after)
    if "requests" in after:
        got = after["requests"] - before.get("requests", 0)
        assert got == n, f"{name}: counters() says {got} requests for {n} {what}"


def check_llm(
    llm: LLM,
    *,
    prompts: Sequence[str] = PROMPTS,
    sampling: bool = True,
    atol: float = 1e-3,
) -> None:
    """Assert the LLM contract on ``llm``.

    Checks: a stable, non-empty ``identity``; ``prepare()`` returns the backend; empty
    batches give empty answers; ``generate`` returns one text per prompt, none holding a
    stop string, the same texts when asked again greedily, and raises
    :class:`InputDataError` for ``max_new_tokens < 1``, ``temperature < 0`` or a seed
    list of the wrong length; with ``sampling``, a prompt's sample under its own seed
    does not depend on the other prompts of the call; ``score`` (where
    ``scores_logprobs()``) returns one finite log-probability <= 0 per pair, the same
    when asked again, and raises :class:`InputDataError` for unequal lengths (else it
    raises :class:`LLMError`); ``count_tokens`` gives one positive int per text;
    ``counters()`` are cumulative ints, and a ``requests`` counter grows by exactly the
    prompts answered. A :class:`WhiteBoxLLM` also: ``num_layers`` >= 1; token offsets
    in order inside the text; ``hidden_states`` of shape ``len(layers) x
    len(positions) x d``, finite, with one ``d``, the same for a prompt alone or in a
    batch (``atol``), and :class:`InputDataError` for a layer out of range;
    ``prompt_states`` equal to the plain hidden states (``atol``).

    Args:
        llm: The backend under test.
        prompts: At least 2 completion-style prompts sharing a prefix.
        sampling: Check per-prompt seeds (off for servers that ignore seeds).
        atol: Tolerance of the hidden-state comparisons (batching changes rounding).

    Raises:
        AssertionError: A check failed (the message says which).

    Example:
        >>> from iclopt.testing import FakeLLM
        >>> check_llm(FakeLLM())
    """
    name = type(llm).__name__
    prompts = list(prompts)
    assert len(prompts) >= 2, "check_llm needs at least 2 prompts"
    assert llm.prepare() is llm, f"{name}: prepare() must return the backend"
    ident = llm.identity
    assert isinstance(ident, str) and ident, f"{name}: empty identity"
    assert llm.identity == ident, f"{name}: identity changed between reads"

    # ---------------------------------------------------------------- generation
    assert llm.generate([], max_new_tokens=4) == [], f"{name}: generate([]) is not []"
    stop = ["\n"]
    before = llm.counters()
    first = llm.generate(prompts, max_new_tokens=4, stop=stop)
    _check_requests(name, before, llm.counters(), len(prompts), "prompts answered")
    assert isinstance(first, list) and len(first) == len(prompts), (
        f"{name}: {len(first)} answers for {len(prompts)} prompts"
    )
    assert all(isinstance(t, str) for t in first), f"{name}: answers must be str"
    assert not [t for t in first if any(s in t for s in stop)], (
        f"{name}: answers {first} hold a stop string {stop}"
    )
    again = llm.generate(prompts, max_new_tokens=4, stop=stop)
    assert again == first, f"{name}: greedy answers changed: {first} then {again}"
    _raises(
        f"{name}: generate(..., max_new_tokens=0)",
        InputDataError,
        lambda: llm.generate(prompts[:1], max_new_tokens=0),
    )
    _raises(
        f"{name}: generate(..., temperature=-1.0)",
        InputDataError,
        lambda: llm.generate(prompts[:1], temperature=-1.0),
    )
    _raises(
        f"{name}: generate with {len(prompts) + 1} seeds for {len(prompts)} prompts",
        InputDataError,
        lambda: llm.generate(
            prompts, max_new_tokens=4, temperature=1.0, seed=list(range(len(prompts) + 1))
        ),
    )
    if sampling:
        seeds = [11 + i for i in range(len(prompts))]
        together = llm.generate(prompts, max_new_tokens=4, temperature=1.0, seed=seeds)
        alone = llm.generate(prompts[1:2], max_new_tokens=4, temperature=1.0, seed=seeds[1:2])
        assert alone[0] == together[1], (
            f"{name}: a prompt's sample under its own seed depends on its batch "
            f"({alone[0]!r} alone, {together[1]!r} in the batch)"
        )

    # ---------------------------------------------------------------- scoring
    conts = [" positive", " negative"] * (len(prompts) // 2) + [" positive"] * (len(prompts) % 2)
    if llm.scores_logprobs():
        assert llm.score([], []) == [], f"{name}: score([], []) is not []"
        before = llm.counters()
        lps = llm.score(prompts, conts)
        _check_requests(name, before, llm.counters(), len(prompts), "pairs scored")
        assert len(lps) == len(prompts), f"{name}: {len(lps)} scores for {len(prompts)} pairs"
        assert all(isinstance(x, float) and math.isfinite(x) and x <= 1e-9 for x in lps), (
            f"{name}: scores {lps} are not finite log-probabilities <= 0"
        )
        again_lps = llm.score(prompts, conts)
        assert np.allclose(again_lps, lps, atol=1e-6), f"{name}: scores changed"
        _raises(
            f"{name}: score with unequal lengths",
            InputDataError,
            lambda: llm.score(prompts, conts[:1]),
        )
    else:
        _raises(
            f"{name}: score without log-probabilities",
            LLMError,
            lambda: llm.score(prompts[:1], conts[:1]),
        )

    # ---------------------------------------------------------------- tokens
    counts = llm.count_tokens(prompts)
    assert len(counts) == len(prompts), f"{name}: {len(counts)} token counts"
    assert all(isinstance(c, int) and c > 0 for c in counts), f"{name}: token counts {counts}"
    assert llm.count_tokens([]) == [], f"{name}: count_tokens([]) is not []"

    if isinstance(llm, WhiteBoxLLM):
        _check_white_box(llm, prompts, atol)
    else:
        assert not llm.supports_hidden_states, (
            f"{name}: supports_hidden_states without being a WhiteBoxLLM"
        )


def _check_white_box(llm: WhiteBoxLLM, prompts: list[str], atol: float) -> None:
    name = type(llm).__name__
    n_layers = llm.num_layers
    assert isinstance(n_layers, int) and n_layers >= 1, f"{name}: num_layers {n_layers!r}"
    assert llm.supports_hidden_states, f"{name}: a WhiteBoxLLM must support hidden states"
    text = prompts[0]
    offsets = llm.token_offsets(text)
    assert offsets, f"{name}: no token offsets for a non-empty text"
    starts = [s for s, _ in offsets]
    assert starts == sorted(starts), f"{name}: token offsets out of order"
    assert all(0 <= s <= e <= len(text) for s, e in offsets), f"{name}: offsets outside the text"
    assert max(e for _, e in offsets) == len(text.rstrip()), (
        f"{name}: the token offsets do not reach the end of the text"
    )

    layers = [0, n_layers // 2, n_layers]
    hs = llm.hidden_states(
        prompts, layers=layers, positions=[[1, -1]] + [[-1]] * (len(prompts) - 1)
    )
    assert len(hs) == len(prompts), f"{name}: {len(hs)} hidden-state arrays"
    assert hs[0].ndim == 3 and hs[0].shape[:2] == (3, 2), f"{name}: shape {hs[0].shape}"
    d = hs[0].shape[2]
    assert all(h.shape == (3, 1, d) for h in hs[1:]), f"{name}: shapes {[h.shape for h in hs]}"
    assert all(np.isfinite(h).all() for h in hs), f"{name}: non-finite hidden states"
    alone = llm.hidden_states(prompts[1:2], layers=layers)[0]
    np.testing.assert_allclose(
        alone, hs[1], rtol=1e-4, atol=atol, err_msg=f"{name}: states depend on the batch"
    )
    _raises(
        f"{name}: hidden_states at layer {n_layers + 1}",
        InputDataError,
        lambda: llm.hidden_states(prompts[:1], layers=[n_layers + 1]),
    )

    layer = n_layers // 2
    positions = [1, 2]
    demo, last, fed = llm.prompt_states(prompts, positions, layer)
    assert demo.shape == (len(positions), d), f"{name}: prompt_states shape {demo.shape}"
    assert last.shape == (len(prompts), d), f"{name}: prompt_states shape {last.shape}"
    assert isinstance(fed, int) and fed > 0, f"{name}: prompt_states fed {fed!r} tokens"
    plain = llm.hidden_states(
        prompts, layers=[layer], positions=[[*positions, -1]] + [[-1]] * (len(prompts) - 1)
    )
    np.testing.assert_allclose(
        demo, plain[0][0, :-1], rtol=1e-4, atol=atol, err_msg=f"{name}: prompt_states"
    )
    np.testing.assert_allclose(
        last,
        np.stack([plain[0][0, -1], *[p[0, 0] for p in plain[1:]]]),
        rtol=1e-4,
        atol=atol,
        err_msg=f"{name}: prompt_states at the last tokens",
    )
