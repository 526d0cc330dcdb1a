"""Declarative components: optimizers, selectors and attributors, built the same way.

One pattern (scikit-learn's estimators) for every kind of method:

* ``__init__`` only stores its keyword arguments, under their own names, so
  :meth:`Component.config` reads them from the signature;
* a class declares the constraints of its own parameters in ``_parameter_constraints``
  (see :mod:`iclopt.params`), merged with its bases'; the kind's entry point
  (``Optimizer.setup``, ``Selector.fit``, ``Attributor.attribute``) checks them all once,
  with :meth:`Component._check_parameters`, in one message format;
* one decorator per kind (``register_optimizer``, ``register_selector``,
  ``register_attributor``, each a :func:`register_component`) registers the class and sets
  its ``name`` and its ``description``: the first line of its docstring, which
  ``iclopt methods`` prints.

So a new method is one class under one decorator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from iclopt.params import check_parameters, json_parameter, parameter_names
from iclopt.registry import Registry

__all__ = ["Component", "register_component"]

C = TypeVar("C", bound="Component")


class Component:
    """A registered class whose parameters are its ``__init__``'s keyword arguments.

    Subclasses store every keyword argument of ``__init__`` unchanged under its own name
    and declare what each may be in ``_parameter_constraints``.
    """

    #: Registered name (set by the kind's register decorator).
    name: ClassVar[str] = ""
    #: One line for ``iclopt methods``: the docstring's first line, set when registered.
    description: ClassVar[str] = ""
    #: Parameter name -> the constraints its value may satisfy (any one of them).
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {}

    @classmethod
    def parameter_constraints(cls) -> dict[str, list[Any]]:
        """Every declared constraint: the class's own and its bases' (a subclass wins)."""
        merged: dict[str, list[Any]] = {}
        for klass in reversed(cls.__mro__):
            merged.update(vars(klass).get("_parameter_constraints", {}))
        return merged

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON form), read from the signature."""
        return {
            name: self._config_value(name, getattr(self, name))
            for name in parameter_names(type(self))
        }

    def _config_value(self, name: str, value: Any) -> Any:
        """The JSON form of one constructor argument (a subclass names its objects)."""
        return json_parameter(value)

    def _check_parameters(self) -> None:
        """Check the declared constraints (one message format for every component)."""
        check_parameters(
            type(self).__name__,
            self.parameter_constraints(),
            {name: getattr(self, name) for name in parameter_names(type(self))},
        )


def register_component(registry: Registry[Any], name: str) -> Callable[[type[C]], type[C]]:
    """Class decorator registering a component in ``registry`` under ``name``.

    The decorated class keeps its own type (the registry holds the kind's base class).

    It sets the class's ``name`` and its ``description``: the first line of its
    docstring, without the final period.

    Raises:
        TypeError: The class has no docstring (its first line describes it).
        ValueError: ``name`` is taken.

    Example:
        >>> reg: Registry[type[Component]] = Registry("toy")
        >>> @register_component(reg, "echo")
        ... class Echo(Component):
        ...     '''Repeats what it is told.'''
        >>> Echo.name, Echo.description
        ('echo', 'Repeats what it is told')
    """
    register = registry.register(name)

    def deco(cls: type[C]) -> type[C]:
        summary = (cls.__doc__ or "").strip().splitlines()
        if not summary or not summary[0].strip():
            raise TypeError(
                f"{registry.kind} {name!r} needs a docstring: its first line describes it"
            )
        register(cls)
        cls.name = name
        cls.description = summary[0].strip().removesuffix(".")
        return cls

    return deco
