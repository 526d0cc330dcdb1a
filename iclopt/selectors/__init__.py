"""Demonstration selectors (the classic baselines), registered by name."""

from __future__ import annotations

from iclopt.selectors.base import SELECTORS, FitContext, Selector, register_selector
from iclopt.selectors.best_of_n import BestOfNSelector
from iclopt.selectors.dpp import DPPSelector
from iclopt.selectors.entropy import EntropySelector
from iclopt.selectors.mdl import MDLSelector
from iclopt.selectors.random import RandomSelector
from iclopt.selectors.similarity import SimilaritySelector, ValSimilaritySelector
from iclopt.selectors.uncertainty import UncertaintySelector
from iclopt.selectors.votek import VoteKSelector

__all__ = [
    "SELECTORS",
    "BestOfNSelector",
    "DPPSelector",
    "EntropySelector",
    "FitContext",
    "MDLSelector",
    "RandomSelector",
    "Selector",
    "SimilaritySelector",
    "UncertaintySelector",
    "ValSimilaritySelector",
    "VoteKSelector",
    "register_selector",
]
