"""LLM backends and the registry that builds them by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from iclopt.errors import InputDataError
from iclopt.llms.base import LLM
from iclopt.llms.hf import HFModel, smollm2
from iclopt.llms.openai_compat import OpenAIModel
from iclopt.registry import Registry

__all__ = ["LLM", "LLMS", "HFModel", "OpenAIModel", "get_llm", "smollm2"]

#: Named LLM factories. ``get_llm`` also accepts a local model directory or a hub id.
LLMS: Registry[Any] = Registry("model")
LLMS.register("smollm2")(smollm2)


def get_llm(model: str | LLM, **kwargs: Any) -> LLM:
    """Resolve a model: an :class:`LLM`, a registered name, a local directory or a hub id.

    Args:
        model: ``"smollm2"`` (the embedded default), a directory holding a
            ``transformers`` model, ``"hf:<hub id>"``, ``"openai:<model name>"`` (a model
            behind an OpenAI-compatible API; pass ``base_url``), or an LLM instance.
        **kwargs: Passed to the factory (e.g. ``batch_size``, ``prefix_cache``; for
            ``openai:``, the :class:`OpenAIModel` options ``base_url``, ``api_key_env``,
            ``concurrency``, ``timeout``, ``max_retries``).

    Raises:
        UnknownNameError: An unknown name; the message lists the registered ones.
    """
    if isinstance(model, LLM):
        return model
    if model in LLMS:
        return LLMS.get(model)(**kwargs)
    if model.startswith("openai:"):
        return OpenAIModel(model[len("openai:") :], **kwargs)
    if model.startswith("hf:"):
        return HFModel(model[3:], **kwargs)
    path = Path(model)
    if path.is_dir():
        return HFModel(str(path), **kwargs)
    if path.suffix == ".gguf" and path.is_file():
        return HFModel(str(path.parent), gguf_file=path.name, **kwargs)
    if path.suffix == ".gguf":
        raise InputDataError(f"{model}: GGUF file not found")
    return LLMS.get(model)  # raises UnknownNameError listing the valid names
