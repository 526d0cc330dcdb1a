"""Test helpers: fakes that stand in for real models where the model adds nothing."""

from __future__ import annotations

from iclopt.testing.fakes import FakeEmbedder, FakeLLM

__all__ = ["FakeEmbedder", "FakeLLM"]
