"""Exception hierarchy of iclopt.

Every error a user can cause derives from :class:`IcloptError`; errors about the data,
arguments or names a user passed also derive from :class:`ValueError` so that generic
callers can catch them as such. The CLI turns any :class:`IcloptError` into one line on
stderr and exit code 2.
"""

from __future__ import annotations

__all__ = [
    "BudgetExhausted",
    "IcloptError",
    "InputDataError",
    "LLMError",
    "MissingDependencyError",
    "UnknownNameError",
]


class IcloptError(Exception):
    """Base class of every error iclopt raises on purpose."""


class InputDataError(IcloptError, ValueError):
    """The data, a file or an argument given by the user is invalid."""


class UnknownNameError(InputDataError, KeyError):
    """A name looked up in a registry (model, method, metric, task) does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class MissingDependencyError(IcloptError, ImportError):
    """An optional package needed for the requested feature is not installed."""


class LLMError(IcloptError, RuntimeError):
    """An LLM call failed. Failed calls are never scored as 0; they raise this."""


class BudgetExhausted(IcloptError):
    """The next step would exceed the evaluation, LLM-call or token budget."""
