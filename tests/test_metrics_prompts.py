from __future__ import annotations

import pytest

from iclopt.data import Example
from iclopt.errors import InputDataError, UnknownNameError
from iclopt.metrics import (
    contains,
    exact_match,
    get_metric,
    ii_normalize,
    set_match,
    token_f1,
)
from iclopt.prompts import Prompt, Template


def test_ii_normalize_follows_protocol():
    assert ii_normalize(" The Answer-Is.  ignored\nsecond line") == "the answer is"
    assert ii_normalize("5 - perfectly") == "5 perfectly"
    assert ii_normalize("Sentence 1: cats and dogs") == "cats dogs"


def test_metrics():
    assert exact_match(" Positive.", ["positive"]) == 1.0
    assert exact_match("positive!", ["negative"]) == 0.0
    assert exact_match("dig", ["big", "dig"]) == 1.0
    assert contains("I think happy", ["happy"]) == 1.0
    assert contains("unhappy", ["happy"]) == 0.0
    assert token_f1("the red car", ["red car"]) == pytest.approx(0.8)
    assert set_match("spider, chicken", ["chicken, spider"]) == 1.0
    assert set_match("spider", ["chicken, spider"]) == 0.0
    assert get_metric(lambda p, a: 0.5)("x", ["y"]) == 0.5
    with pytest.raises(UnknownNameError, match="valid: contains"):
        get_metric("bleu")


def test_template_completion_and_chat():
    demos = [Example("a", "1"), Example("b", ("2", "two"))]
    text = Template().render_text("Do it.", demos, "c")
    assert text == "Do it.\n\nInput: a\nOutput: 1\n\nInput: b\nOutput: 2\n\nInput: c\nOutput:"
    msgs = Template(style="chat").render_messages("Do it.", demos, "c")
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert msgs[-1]["content"] == "c" and msgs[4]["content"] == "2"
    with pytest.raises(InputDataError, match="'style' parameter of Template"):
        Template(style="poem")  # type: ignore[arg-type]


def test_prompt_is_small_and_validated():
    p = Prompt("x", [3, 1])  # type: ignore[arg-type]
    assert p.demos == (3, 1) and hash(p) == hash(Prompt("x", (3, 1)))
    assert Prompt.from_dict(p.as_dict()) == p
    assert Prompt(None, (1, 3)) != Prompt(None, (3, 1))  # order matters
    with pytest.raises(InputDataError, match="unique"):
        Prompt(None, (1, 1)).validate(5)
    with pytest.raises(InputDataError, match="outside the pool"):
        Prompt(None, (1, 9)).validate(5)
