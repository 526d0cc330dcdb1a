from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT.parent / "shared" / "benchmarks" / "instruction_induction"

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one pytest worker per core (pytest-xdist): one torch thread each, in
    # the workers and in the processes they start, or the two workers thrash the two cores
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def smol():
    """The real embedded model, loaded once per test session (per worker under xdist)."""
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
