"""Checks shared by the conformance suites of every kind of component.

:func:`~iclopt.testing.check_optimizer`, :func:`~iclopt.testing.check_selector` and
:func:`~iclopt.testing.check_attributor` all assert the declarative part of the contract
(:mod:`iclopt.components`) with these helpers: registered under its ``name``, described by
its docstring's first line, parameters read from the signature, constraints declared for
constructor arguments only and checked at the entry point.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from iclopt.components import Component
from iclopt.errors import InputDataError
from iclopt.params import Interval, Options, check_parameters, parameter_names
from iclopt.registry import Registry

__all__ = ["bad_values", "check_config", "check_registration", "expect_parameter_error"]


class _Invalid:
    """A value no declared constraint accepts (no number, string, bool or ``None``)."""

    def __repr__(self) -> str:
        return "<invalid>"


def check_registration(cls: type[Component], registry: Registry[Any]) -> None:
    """Assert that ``cls`` is registered under its ``name`` and described by its docstring.

    Also: its declared constraints name constructor arguments only and are of known kinds.

    Raises:
        AssertionError: A check failed (the message says which).
    """
    who = cls.__name__
    assert cls.name, f"{who}: no name (register it with its kind's decorator)"
    assert cls.name in registry and registry.get(cls.name) is cls, (
        f"{who}: not the {registry.kind} registered as {cls.name!r}"
    )
    first = (cls.__doc__ or "").strip().splitlines()[0].strip().removesuffix(".")
    assert cls.description and cls.description == first, (
        f"{who}: description {cls.description!r} is not its docstring's first line {first!r}"
    )
    names = parameter_names(cls)
    constraints = cls.parameter_constraints()
    unknown = sorted(set(constraints) - set(names))
    assert not unknown, f"{who}: constraints for {unknown}, which __init__ does not take"
    for param, allowed in constraints.items():
        assert isinstance(allowed, list) and allowed, f"{who}: {param!r} allows nothing"
        for c in allowed:
            assert c is None or isinstance(c, (Interval, Options, type)), (
                f"{who}: unknown constraint {c!r} for {param!r}"
            )


def check_config(component: Component) -> dict[str, Any]:
    """Assert that ``component.config()`` is JSON and holds exactly its constructor arguments.

    Returns:
        The config.

    Raises:
        AssertionError: A check failed (the message says which).
    """
    cls = type(component)
    who = cls.__name__
    cfg = component.config()
    assert json.loads(json.dumps(cfg)) == cfg, f"{who}: config is not JSON"
    assert list(cfg) == parameter_names(cls), (
        f"{who}: config keys {list(cfg)} are not the __init__ arguments {parameter_names(cls)}"
    )
    try:
        check_parameters(who, cls.parameter_constraints(), vars(component))
    except InputDataError as exc:
        raise AssertionError(f"{who}: its own parameters break its constraints: {exc}") from None
    return cfg


def bad_values(cls: type[Component]) -> list[tuple[str, Any]]:
    """One value per declared parameter that none of its constraints accepts.

    Parameters whose constraints accept any object (a type such as ``object``) are left out.
    """
    bad = _Invalid()
    return [
        (param, bad)
        for param, allowed in cls.parameter_constraints().items()
        if not any(isinstance(c, type) and isinstance(bad, c) for c in allowed)
    ]


def expect_parameter_error(what: str, param: str, call: Callable[..., Any], *args: Any) -> None:
    """Assert that ``call(*args)`` raises :class:`InputDataError` naming ``param``.

    Raises:
        AssertionError: Nothing was raised, or the message does not name ``param``.
    """
    try:
        call(*args)
    except InputDataError as exc:
        assert f"{param!r} parameter of" in str(exc), (
            f"{what}: the error does not name the parameter {param!r}: {exc}"
        )
    except Exception as exc:  # the value got past the check and broke something later
        raise AssertionError(
            f"{what}: an invalid {param!r} raised {type(exc).__name__} ({exc}), not "
            "InputDataError: the declared constraints are not checked first"
        ) from exc
    else:
        raise AssertionError(f"{what}: an invalid {param!r} did not raise InputDataError")
