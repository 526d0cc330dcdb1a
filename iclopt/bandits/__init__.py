"""Ask/tell prompt optimizers, registered by name.

========== ==========================================================================
name       what it is
========== ==========================================================================
best-of-n  random ordered k-tuples, keep the best validation score
ease       EASE (Wu et al., 2024): NeuralUCB on encoder embeddings of the whole prompt
neural     iclopt's bandit: Thompson-sampled ensemble on slot features, local moves,
           re-scoring of the top prompts on extra queries
gp         BoTorch SingleTaskGP + LogEI on PCA slot features
tpe        Optuna multivariate TPE over k categorical slots (MIPROv2's search)
========== ==========================================================================
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
from iclopt.bandits.random_search import RandomSearch
from iclopt.bandits.tpe import TPEBandit

#: One line per optimizer, for ``iclopt methods``.
DESCRIPTIONS = {
    "best-of-n": "random ordered k-tuples; keep the best validation score (baseline)",
    "ease": (
        "EASE (Wu et al. 2024): NeuralUCB on sentence embeddings of the whole ordered "
        "prompt, OT-filtered candidates"
    ),
    "neural": (
        "iclopt's bandit: Thompson-sampled MLP ensemble on order-explicit slot features, "
        "OT + local-move candidates, re-scores the top prompts on extra queries"
    ),
    "gp": "BoTorch SingleTaskGP + LogEI on PCA slot features over the shared candidates",
    "tpe": "Optuna multivariate TPE over k categorical slots + instruction (MIPROv2's search)",
}

__all__ = [
    "DESCRIPTIONS",
    "EASE",
    "OPTIMIZERS",
    "GPBandit",
    "ModelBasedOptimizer",
    "NeuralBandit",
    "Optimizer",
    "RandomSearch",
    "SearchSpaceExhausted",
    "TPEBandit",
    "Trial",
    "register_optimizer",
    "space_size",
]
