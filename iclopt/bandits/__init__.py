"""Ask/tell prompt optimizers, registered by name."""

from __future__ import annotations

from iclopt.bandits.base import OPTIMIZERS, Optimizer, register_optimizer
from iclopt.bandits.random_search import RandomSearch

__all__ = ["OPTIMIZERS", "Optimizer", "RandomSearch", "register_optimizer"]
