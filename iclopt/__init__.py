"""iclopt: optimize the instruction and ordered few-shot exemplars of a prompt.

Example:
    >>> import iclopt
    >>> task = iclopt.get_task("sentiment")
    >>> result = iclopt.optimize(task, llm="smollm2", k=5, budget=20, seed=0)  # doctest: +SKIP
    >>> print(result.render("Loved every minute."))  # doctest: +SKIP
"""

from __future__ import annotations

from iclopt.api import ComparisonResult, compare, optimize, select
from iclopt.attribution import ATTRIBUTORS, Attribution, Attributor, Detail, LeaveOneOut, Shapley
from iclopt.attribution.api import attribute
from iclopt.bandits import (
    EASE,
    OPTIMIZERS,
    GPBandit,
    NeuralBandit,
    Optimizer,
    RandomSearch,
    TPEBandit,
)
from iclopt.data import Example, Task, load_examples, load_task
from iclopt.datasets import TASKS, get_task
from iclopt.errors import (
    BudgetExhausted,
    IcloptError,
    InputDataError,
    LLMError,
    MissingDependencyError,
    UnknownNameError,
)
from iclopt.evaluation import Budget, Cost, Evaluation, Evaluator, ResultCache
from iclopt.llms import LLM, LLMS, HFModel, get_llm, smollm2
from iclopt.metrics import METRICS
from iclopt.prompts import Prompt, Template
from iclopt.results import OptimizationResult

__version__ = "0.1.0"

__all__ = [
    "ATTRIBUTORS",
    "EASE",
    "LLM",
    "LLMS",
    "METRICS",
    "OPTIMIZERS",
    "TASKS",
    "Attribution",
    "Attributor",
    "Budget",
    "BudgetExhausted",
    "ComparisonResult",
    "Cost",
    "Detail",
    "Evaluation",
    "Evaluator",
    "Example",
    "GPBandit",
    "HFModel",
    "IcloptError",
    "InputDataError",
    "LLMError",
    "LeaveOneOut",
    "MissingDependencyError",
    "NeuralBandit",
    "OptimizationResult",
    "Optimizer",
    "Prompt",
    "RandomSearch",
    "ResultCache",
    "Shapley",
    "TPEBandit",
    "Task",
    "Template",
    "UnknownNameError",
    "__version__",
    "attribute",
    "compare",
    "get_llm",
    "get_task",
    "load_examples",
    "load_task",
    "optimize",
    "select",
    "smollm2",
]
