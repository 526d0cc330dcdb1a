from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT.parent / "shared" / "benchmarks" / "instruction_induction"


@pytest.fixture(scope="session")
def smol():
    """The real embedded model, loaded once per test session."""
    from iclopt.llms import smollm2

    return smollm2().load()


@pytest.fixture()
def fake():
    from iclopt.testing import FakeLLM

    return FakeLLM()


@pytest.fixture()
def bench():
    if not BENCH.is_dir():
        pytest.skip("../shared/benchmarks is not beside the checkout")
    return BENCH
