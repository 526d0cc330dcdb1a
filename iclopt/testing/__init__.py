"""Test helpers: fakes that stand in for real models, and the conformance suites."""

from __future__ import annotations

from iclopt.testing.attributors import check_attributor
from iclopt.testing.fakes import FakeEmbedder, FakeLLM, FakeWhiteBoxLLM
from iclopt.testing.llms import check_llm
from iclopt.testing.optimizers import check_optimizer
from iclopt.testing.scorers import check_scorer
from iclopt.testing.selectors import check_selector

__all__ = [
    "FakeEmbedder",
    "FakeLLM",
    "FakeWhiteBoxLLM",
    "check_attributor",
    "check_llm",
    "check_optimizer",
    "check_scorer",
    "check_selector",
]
