"""Ask/tell prompt optimizers, registered by name (``OPTIMIZERS``).

One file per method, each registered with :func:`register_optimizer`, which takes the
method's one-line description from its class docstring: ``iclopt methods`` lists them
all, and ``OPTIMIZERS.get(name).description`` is that line.
"""

from __future__ import annotations

from iclopt.bandits.base import (
    OPTIMIZERS,
    Optimizer,
    SearchSpaceExhausted,
    Trial,
    register_optimizer,
    space_size,
)
from iclopt.bandits.ease import EASE
from iclopt.bandits.gp import GPBandit
from iclopt.bandits.model_based import ModelBasedOptimizer
from iclopt.bandits.neural import NeuralBandit
from iclopt.bandits.race import RacingOptimizer
from iclopt.bandits.random_search import RandomSearch
from iclopt.bandits.tpe import TPEBandit

#: The method of ``iclopt.optimize`` and ``iclopt optimize`` when none is given: the
#: winner of the optimizer benchmark (docs/benchmarks.md, "Optimizers").
DEFAULT_METHOD = "race"
#: The default when the search is shared by several workers (a study): the default method
#: scores partial evaluations, which a shared study cannot hold yet.
DEFAULT_SHARED_METHOD = "best-of-n"

__all__ = [
    "DEFAULT_METHOD",
    "DEFAULT_SHARED_METHOD",
    "EASE",
    "OPTIMIZERS",
    "GPBandit",
    "ModelBasedOptimizer",
    "NeuralBandit",
    "Optimizer",
    "RacingOptimizer",
    "RandomSearch",
    "SearchSpaceExhausted",
    "TPEBandit",
    "Trial",
    "register_optimizer",
    "space_size",
]
