"""Name -> factory registries used by the CLI, ``compare`` and the public API."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from iclopt.errors import UnknownNameError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from names to factories of one kind of object.

    Args:
        kind: What the registry holds, used in error messages ("optimizer", "model").

    Example:
        >>> reg: Registry[type] = Registry("thing")
        >>> @reg.register("a")
        ... class A: ...
        >>> reg.get("a").__name__
        'A'
        >>> reg.unregister("a").__name__, reg.names()
        ('A', [])
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; duplicate names raise."""

        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"a {self.kind} named {name!r} is already registered")
            self._items[name] = obj
            return obj

        return deco

    def unregister(self, name: str) -> T:
        """Remove the entry named ``name`` and return it (a plug-in's tests clean up so).

        Raises:
            UnknownNameError: ``name`` is not registered.
        """
        entry = self.get(name)
        del self._items[name]
        return entry

    def get(self, name: str) -> T:
        """Return the entry named ``name``.

        Raises:
            UnknownNameError: ``name`` is not registered; the message lists valid names.
        """
        try:
            return self._items[name]
        except KeyError:
            valid = ", ".join(sorted(self._items)) or "(none)"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; valid: {valid}") from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
