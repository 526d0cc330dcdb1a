"""The paths that matter, on the real embedded SmolLM2-135M-Instruct."""

from __future__ import annotations

import numpy as np
import pytest

from iclopt.datasets import get_task
from iclopt.evaluation import Evaluator, ResultCache
from iclopt.llms.hf import _prefix_groups
from iclopt.prompts import Prompt, Template


@pytest.fixture(scope="module")
def prompts():
    task = get_task("sentiment")
    demos = [task.pool[i] for i in (0, 7, 3, 12, 5)]
    return [Template().render_text(None, demos, q.input) for q in task.val[:12]]


def test_generation_is_sane(smol):
    out = smol.generate(
        ["Input: cat\nOutput: cats\n\nInput: dog\nOutput: dogs\n\nInput: car\nOutput:"],
        max_new_tokens=6,
        stop=["\n"],
    )
    assert out[0].strip() == "cars"


def test_prefix_kv_generation_equals_plain(smol, prompts):
    mixed = [*prompts, "Input: 2 + 2\nOutput:", "Input: sky color\nOutput:"]
    seqs = smol.encode(mixed)
    groups = _prefix_groups(seqs, [len(s) - 1 for s in seqs], smol.min_prefix_tokens)
    # with the real tokenizer: the 12 demo prompts share a prefix; the two short prompts
    # share "Input:" only, too short to cache, so they run plain together
    assert sorted((p > 0, len(rows)) for p, rows in groups) == [(False, 2), (True, 12)]
    smol.prefix_cache = True
    fed_before, calls_before = smol.tokens_fed, smol.forward_calls
    with_kv = smol.generate(mixed, max_new_tokens=8, stop=["\n"])
    fed_kv, calls_kv = smol.tokens_fed - fed_before, smol.forward_calls - calls_before
    smol.prefix_cache = False
    fed_before, calls_before = smol.tokens_fed, smol.forward_calls
    plain = smol.generate(mixed, max_new_tokens=8, stop=["\n"])
    fed_plain, calls_plain = smol.tokens_fed - fed_before, smol.forward_calls - calls_before
    smol.prefix_cache = True
    assert with_kv == plain
    assert {w.strip() for w in with_kv[:12]} <= {"positive", "negative"}
    assert fed_kv < fed_plain / 2  # the shared prefix really is computed once
    # one prefix pass, then each group decodes as one batch: a pass per new token
    assert calls_kv <= 1 + 2 * 9 and calls_plain <= 2 * 9


def test_prefix_kv_label_scores_equal_plain(smol, prompts):
    conts = [" positive", " negative", " rather mixed feelings"]
    rows = [(p, c) for p in prompts for c in conts]
    smol.prefix_cache = True
    kv = smol.score([p for p, _ in rows], [c for _, c in rows])
    smol.prefix_cache = False
    plain = smol.score([p for p, _ in rows], [c for _, c in rows])
    smol.prefix_cache = True
    assert np.max(np.abs(np.array(kv) - np.array(plain))) < 1e-4
    assert all(lp < 0 for lp in kv)


def test_label_scoring_agrees_with_generation(smol):
    task = get_task("sentiment")
    prompt = Prompt(None, (0, 1, 2, 3, 4))
    lab = Evaluator(task, smol)
    gen = Evaluator(task, smol, scoring="generate", max_new_tokens=4)
    by_label = lab.evaluate(prompt).per_example
    by_text = gen.evaluate(prompt).per_example
    assert lab.scoring == "labels"
    for row in by_label:
        lp = row["label_logprobs"]
        assert set(lp) == {"negative", "positive"} and all(v < 0 for v in lp.values())
        assert row["prediction"] == max(lp, key=lp.get)
    # both labels are one token, so greedy text and the likeliest label must agree
    pairs = [
        (a["prediction"], b["prediction"])
        for a, b in zip(by_label, by_text)
        if b["prediction"] in ("positive", "negative")
    ]
    assert len(pairs) >= 15 and all(a == b for a, b in pairs)


def test_cache_hit_on_rerun_with_real_model(smol, tmp_path):
    task = get_task("last_item")
    path = tmp_path / "cache.sqlite"
    prompt = Prompt("Name the last item of the list.", (0, 1, 2))
    first = Evaluator(task, smol, cache=ResultCache(path)).evaluate(prompt)
    assert first.cost.llm_calls == len(task.val) and first.cost.prompt_tokens > 0
    fed = smol.tokens_fed
    second = Evaluator(task, smol, cache=ResultCache(path)).evaluate(prompt)
    assert second.cost.llm_calls == 0 and second.cost.cache_hits == len(task.val)
    assert smol.tokens_fed == fed  # the model did not run
    assert second.per_example == first.per_example
    assert first.score > 0  # a broken pipeline scores 0 on this easy task


def test_chat_template_renders(smol):
    task = get_task("sentiment")
    ev = Evaluator(task, smol, template=Template(style="chat"))
    text = ev.render(Prompt("Classify the sentiment.", (0, 1)), "Great.")
    assert text.count("<|im_start|>user") == 3 and text.rstrip().endswith("<|im_start|>assistant")
    assert ev.evaluate(Prompt("Classify the sentiment.", (0, 1))).score >= 0.5


def test_hidden_states(smol):
    texts = ["Input: a\nOutput: b", "Input: longer text here\nOutput:"]
    hs = smol.hidden_states(texts, layers=[0, 15, 30], positions=[[-1, 0], [-1]])
    assert hs[0].shape == (3, 2, 576) and hs[1].shape == (3, 1, 576)
    alone = smol.hidden_states(texts[1:], layers=[15])
    np.testing.assert_allclose(alone[0][0], hs[1][1], atol=1e-4)  # padding does not leak


def test_prefix_groups():
    seqs = [[1, 2, 3, 4, 9], [1, 2, 3, 4, 8], [7, 7, 7, 7, 7], [1, 2, 3, 5]]
    groups = _prefix_groups(seqs, [len(s) - 1 for s in seqs], min_prefix=3)
    assert sorted((p, sorted(r)) for p, r in groups) == [(0, [2]), (3, [0, 1, 3])]


def test_cache_passed_under_the_models_current_name(smol, prompts):
    """transformers 5.24 renamed ``past_key_values`` (removed in 5.40): no deprecated path."""
    import warnings

    smol.prefix_cache = True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = smol.generate(prompts[:3], max_new_tokens=3, stop=["\n"])
        smol.score(prompts[:3], [" positive"] * 3)
    assert {w.strip() for w in out} <= {"positive", "negative"}
    assert not [w for w in caught if "past_key_values" in str(w.message)]
