"""Ways of scoring a query, registered by name.

============= ============ ==================================================
name          answers by   signal (continuous, per query)
============= ============ ==================================================
generate      greedy text  the task metric
labels        label argmax the task metric
label-prob    label argmax the gold label's probability (normalized)
gold-logprob  greedy text  the gold answer's log-likelihood per token
prefix        greedy text  the metric, with partial credit for a correct start
============= ============ ==================================================

``"auto"`` (the default of the evaluator) is ``label-prob`` for a classification task
whose LLM returns log-probabilities and ``generate`` otherwise.
"""

from __future__ import annotations

from iclopt.scoring.base import SCORERS, Scorer, gold_label_logprob, register_scorer
from iclopt.scoring.generate import GenerateScorer
from iclopt.scoring.gold_logprob import GoldLogprobScorer
from iclopt.scoring.labels import LabelProbScorer, LabelScorer
from iclopt.scoring.prefix import PrefixScorer

__all__ = [
    "SCORERS",
    "GenerateScorer",
    "GoldLogprobScorer",
    "LabelProbScorer",
    "LabelScorer",
    "PrefixScorer",
    "Scorer",
    "gold_label_logprob",
    "register_scorer",
]
