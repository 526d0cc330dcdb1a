"""Test helpers: fakes that stand in for real models, and the conformance suites."""

from __future__ import annotations

from iclopt.testing.fakes import FakeEmbedder, FakeLLM
from iclopt.testing.llms import check_llm
from iclopt.testing.optimizers import check_optimizer
from iclopt.testing.scorers import check_scorer

__all__ = ["FakeEmbedder", "FakeLLM", "check_llm", "check_optimizer", "check_scorer"]
