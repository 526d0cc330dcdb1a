"""LLM backends and the registries that build them from a model spec.

The contracts: :class:`LLM` (generation and scoring) and :class:`WhiteBoxLLM` (hidden
states too, for DETAIL). Backends: :class:`HFModel` (``transformers``), the embedded
:func:`smollm2`, :class:`OpenAIModel` (an OpenAI-compatible server). :func:`get_llm`
resolves a spec through :data:`LLMS` (names) and :data:`BACKENDS` (prefixes).
"""

from __future__ import annotations

from iclopt.llms.backends import (
    BACKENDS,
    LLMS,
    Backend,
    backend_options,
    get_llm,
    register_backend,
    split_spec,
)
from iclopt.llms.base import LLM, WhiteBoxLLM, cut_at_stop
from iclopt.llms.embedded import smollm2
from iclopt.llms.hf import HFModel
from iclopt.llms.openai_compat import OpenAIModel

__all__ = [
    "BACKENDS",
    "LLM",
    "LLMS",
    "Backend",
    "HFModel",
    "OpenAIModel",
    "WhiteBoxLLM",
    "backend_options",
    "cut_at_stop",
    "get_llm",
    "register_backend",
    "smollm2",
    "split_spec",
]
