"""Demonstration attribution: which demonstrations of a prompt help, hurt, or look mislabeled.

Methods (registered in :data:`ATTRIBUTORS`): ``detail`` (Zhou et al., NeurIPS 2024; white-box,
one forward pass), ``loo`` (leave-one-out; any backend) and ``shapley`` (Monte Carlo
permutation Shapley, Ghorbani and Zou 2019; any backend).
"""

from __future__ import annotations

from iclopt.attribution.api import attribute, make_attributor
from iclopt.attribution.base import (
    ATTRIBUTORS,
    Attribution,
    Attributor,
    EvaluatorAttributor,
    register_attributor,
)
from iclopt.attribution.context import AttributionContext
from iclopt.attribution.detail import Detail, ridge_influence
from iclopt.attribution.loo import LeaveOneOut
from iclopt.attribution.shapley import Shapley
from iclopt.attribution.uses import REORDER_RULES, curate, most_harmful, reorder, suspects

__all__ = [
    "ATTRIBUTORS",
    "REORDER_RULES",
    "Attribution",
    "AttributionContext",
    "Attributor",
    "Detail",
    "EvaluatorAttributor",
    "LeaveOneOut",
    "Shapley",
    "attribute",
    "curate",
    "make_attributor",
    "most_harmful",
    "register_attributor",
    "reorder",
    "ridge_influence",
    "suspects",
]
