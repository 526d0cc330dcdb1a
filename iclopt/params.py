"""Declarative parameters: read from ``__init__`` signatures, checked against constraints.

As in scikit-learn's ``base.py`` and ``utils/_param_validation.py``: a component's
parameters are the keyword arguments of its ``__init__`` (stored unchanged under the same
names), and each class declares ``_parameter_constraints``, a dict from a parameter's name
to the list of constraints it may satisfy (any one suffices). One function checks them and
words every failure the same way.

A constraint is an :class:`Interval`, an :class:`Options` (one of some strings), ``None``
(the value ``None``), or a type (``bool``, ``str``, ...).

Example:
    >>> check_parameters("Toy", {"k": [Interval(int, 1, None), None]}, {"k": 0})
    Traceback (most recent call last):
    ...
    iclopt.errors.InputDataError: The 'k' parameter of Toy must be an int in [1, inf) or None. ...
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from iclopt.errors import InputDataError

__all__ = ["Interval", "Options", "check_parameters", "json_parameter", "parameter_names"]


class Interval:
    """Finite numbers of one kind between two bounds.

    NaN and the infinities are in no interval (a missing bound is open: ``[0, inf)``).

    Args:
        kind: ``int`` (integers, numpy's included) or ``float`` (any real number); bools
            are neither.
        left: Lower bound; ``None`` for none.
        right: Upper bound; ``None`` for none.
        closed: Which bounds belong to the interval: ``"both"``, ``"left"``, ``"right"``
            or ``"neither"``.

    Example:
        >>> str(Interval(float, 0, 1, closed="left")), 0.5 in Interval(float, 0, 1)
        ('a float in [0, 1)', True)
    """

    def __init__(
        self,
        kind: type,
        left: float | None,
        right: float | None,
        *,
        closed: str = "both",
    ) -> None:
        if kind not in (int, float):
            raise ValueError(f"Interval kind must be int or float, not {kind!r}")
        if closed not in ("both", "left", "right", "neither"):
            raise ValueError(f"closed must be 'both', 'left', 'right' or 'neither', not {closed!r}")
        self.kind = kind
        self.left = left
        self.right = right
        self.closed = closed

    def __contains__(self, value: object) -> bool:
        abstract = numbers.Integral if self.kind is int else numbers.Real
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, abstract):
            return False
        x = float(value)
        if not math.isfinite(x):
            return False
        if self.left is not None:
            if x < self.left or (x == self.left and self.closed in ("right", "neither")):
                return False
        if self.right is not None:
            if x > self.right or (x == self.right and self.closed in ("left", "neither")):
                return False
        return True

    def __str__(self) -> str:
        lb = "[" if self.closed in ("both", "left") and self.left is not None else "("
        rb = "]" if self.closed in ("both", "right") and self.right is not None else ")"
        left = "-inf" if self.left is None else str(self.left)
        right = "inf" if self.right is None else str(self.right)
        article = "an int" if self.kind is int else "a float"
        return f"{article} in {lb}{left}, {right}{rb}"

    def __repr__(self) -> str:
        return f"Interval({self.kind.__name__}, {self.left}, {self.right}, closed={self.closed!r})"


class Options:
    """One of a fixed set of strings (``"auto"``, ``"metric"``, ...).

    Args:
        *values: The strings allowed, in the order an error message lists them.

    Example:
        >>> str(Options("auto", "self", "test")), "self" in Options("auto", "self")
        ("'auto', 'self' or 'test'", True)
    """

    def __init__(self, *values: str) -> None:
        if not values or not all(isinstance(v, str) for v in values):
            raise ValueError(f"Options needs one or more strings, not {values!r}")
        self.values = values

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and value in self.values

    def __str__(self) -> str:
        words = [repr(v) for v in self.values]
        return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"

    def __repr__(self) -> str:
        return f"Options({', '.join(repr(v) for v in self.values)})"


def _satisfies(value: Any, constraint: Any) -> bool:
    if constraint is None:
        return value is None
    if isinstance(constraint, (Interval, Options)):
        return value in constraint
    if isinstance(constraint, type):
        if constraint is bool:
            return isinstance(value, (bool, np.bool_))
        return isinstance(value, constraint) and not isinstance(value, bool)
    raise TypeError(f"unknown parameter constraint {constraint!r}")


def _describe(constraint: Any) -> str:
    if constraint is None:
        return "None"
    if isinstance(constraint, (Interval, Options)):
        return str(constraint)
    name = constraint.__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def check_parameters(
    owner: str, constraints: Mapping[str, list[Any]], values: Mapping[str, Any]
) -> None:
    """Check ``values`` against ``constraints``, in the order the constraints are declared.

    Args:
        owner: The class named in the message.
        constraints: Parameter name -> the constraints it may satisfy (any one).
        values: Parameter name -> value; names without constraints are not checked.

    Raises:
        InputDataError: "The 'x' parameter of Owner must be ... Got ... instead."
    """
    for name, allowed in constraints.items():
        if name not in values:
            continue
        value = values[name]
        if any(_satisfies(value, c) for c in allowed):
            continue
        words = [_describe(c) for c in allowed]
        wanted = words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"
        raise InputDataError(
            f"The {name!r} parameter of {owner} must be {wanted}. Got {value!r} instead."
        )


def parameter_names(cls: type) -> list[str]:
    """The keyword arguments of ``cls.__init__``, in signature order.

    Example:
        >>> class Toy:
        ...     def __init__(self, *, k: int = 1, seed: int | None = None) -> None: ...
        >>> parameter_names(Toy)
        ['k', 'seed']
    """
    skip = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    params = inspect.signature(cls.__init__).parameters.values()  # type: ignore[misc]
    return [p.name for p in params if p.name != "self" and p.kind not in skip]


def json_parameter(value: Any) -> Any:
    """The JSON form of a parameter value: numpy scalars as Python ones, tuples as lists.

    Example:
        >>> json_parameter({"a": (np.int64(2), None)})
        {'a': [2, None]}
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [json_parameter(v) for v in value]
    if isinstance(value, Mapping):
        return {k: json_parameter(v) for k, v in value.items()}
    return value
