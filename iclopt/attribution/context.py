"""What an attribution method is built from: the model and the evaluation settings.

:meth:`Attributor.from_context <iclopt.attribution.Attributor.from_context>` builds a
method from an :class:`AttributionContext` and the method's own options (as BoTorch's
input constructors build an acquisition function from a model and its training data), so
:func:`~iclopt.attribution.make_attributor` and ``iclopt attribute`` never branch on a
method's name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

from iclopt.evaluation import Budget, ResultCache, Scoring, open_result_cache
from iclopt.llms.base import LLM
from iclopt.prompts import Template

__all__ = ["AttributionContext"]


@dataclass(frozen=True)
class AttributionContext:
    """The settings shared by every attribution method; each takes those it names.

    A field is passed to a method whose ``__init__`` has an argument of the same name.

    Attributes:
        llm: The model.
        template: Prompt template; ``None`` for the method's default (completion style).
        scoring: How black-box methods score answers (see :class:`~iclopt.Evaluator`).
        max_new_tokens: Generation cap of black-box methods (``None``: the evaluator's).
        cache: The result cache, as the library's ``cache`` argument (a
            :class:`~iclopt.ResultCache`, a path, ``True`` for the shared one, ``False``
            or ``None`` for none); opened only for a method that takes a cache.
        budget: Charged for every evaluation, or ``None`` for no cap.
        seed: Seed of the method's randomness (projections, permutations).
    """

    llm: LLM
    template: Template | None = None
    scoring: Scoring = "auto"
    max_new_tokens: int | None = None
    cache: str | os.PathLike[str] | ResultCache | bool | None = None
    budget: Budget | None = None
    seed: int | None = 0

    @classmethod
    def names(cls) -> list[str]:
        """The settings a context holds (the constructor arguments it can fill)."""
        return [f.name for f in fields(cls)]

    def setting(self, name: str) -> Any:
        """The value of setting ``name`` as a constructor argument (the cache opened).

        Raises:
            KeyError: The context has no such setting.
        """
        if name not in self.names():
            raise KeyError(name)
        if name == "cache":
            return open_result_cache(self.cache)
        return getattr(self, name)
