"""Test helpers: fakes that stand in for real models where the model adds nothing."""

from __future__ import annotations

from iclopt.testing.fakes import FakeEmbedder, FakeLLM
from iclopt.testing.optimizers import check_optimizer
from iclopt.testing.scorers import check_scorer

__all__ = ["FakeEmbedder", "FakeLLM", "check_optimizer", "check_scorer"]
