"""The LLM contract: check_llm on each backend, and on backends that break it."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from iclopt.errors import InputDataError, UnknownNameError
from iclopt.llms import BACKENDS, LLMS, HFModel, OpenAIModel, backend_options, get_llm
from iclopt.testing import FakeLLM, FakeWhiteBoxLLM, check_llm


@pytest.mark.parametrize("fake", [FakeLLM, FakeWhiteBoxLLM])
def test_the_fakes_pass_check_llm(fake):
    check_llm(fake())


@pytest.mark.slow
def test_smollm2_passes_check_llm(smol):
    check_llm(smol)


class MiscountingLLM(FakeLLM):
    """Reports one request per call, not one per prompt answered."""

    def counters(self) -> dict[str, int]:
        return {"requests": self.calls}


class StopIgnoringLLM(FakeLLM):
    def generate(self, prompts: Sequence[str], **kwargs) -> list[str]:  # type: ignore[override]
        return [t + "\nInput:" for t in super().generate(prompts, **kwargs)]


class UncheckedLLM(FakeLLM):
    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[float]:
        return [0.0 for _ in prompts]  # no length check, scores made up


@pytest.mark.parametrize(
    ("backend", "needle"),
    [
        (MiscountingLLM(), "says 1 requests for 4 prompts"),
        (StopIgnoringLLM(), "hold a stop string"),
        (UncheckedLLM(), "score with unequal lengths did not raise InputDataError"),
    ],
)
def test_check_llm_fails_on_a_broken_backend(backend, needle):
    with pytest.raises(AssertionError, match=needle):
        check_llm(backend)


def test_model_specs_resolve_through_the_registries(tmp_path):
    assert "smollm2" in LLMS and {"hf", "openai", "path"} <= set(BACKENDS)
    assert isinstance(get_llm("openai:m", base_url="http://127.0.0.1:1/v1"), OpenAIModel)
    hub = get_llm("hf:org/model")
    assert isinstance(hub, HFModel) and hub.model == "org/model"
    folder = get_llm(str(tmp_path))
    assert isinstance(folder, HFModel) and folder.model == str(tmp_path)
    (tmp_path / "m.gguf").write_bytes(b"")
    gguf = get_llm(str(tmp_path / "m.gguf"))
    assert isinstance(gguf, HFModel) and gguf.gguf_file == "m.gguf"
    with pytest.raises(InputDataError, match="GGUF file not found"):
        get_llm(str(tmp_path / "missing.gguf"))
    with pytest.raises(UnknownNameError, match=r"unknown model 'nope'; valid: smollm2, hf:"):
        get_llm("nope")
    fake = FakeLLM()
    assert get_llm(fake) is fake
    assert "base_url" in backend_options("openai:m") and backend_options("smollm2") == ()
