"""Model specs to LLM backends: named models, and backends keyed by the spec's prefix.

A model spec is what ``--model`` and :func:`get_llm` take: a registered name
(``"smollm2"``, in :data:`LLMS`), ``"<prefix>:<argument>"`` for a registered backend
(``"openai:NAME"``, ``"hf:HUB_ID"``, in :data:`BACKENDS`), or else a path (a model folder
or a ``.gguf`` file, the ``"path"`` backend). Adding a backend is one
:func:`register_backend` call; nothing else branches on the kind of model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iclopt.errors import InputDataError, UnknownNameError
from iclopt.llms.base import LLM
from iclopt.llms.embedded import smollm2
from iclopt.llms.hf import HFModel
from iclopt.llms.openai_compat import OpenAIModel
from iclopt.registry import Registry

__all__ = [
    "BACKENDS",
    "LLMS",
    "Backend",
    "backend_options",
    "get_llm",
    "register_backend",
    "split_spec",
]

#: Named models: ``get_llm("smollm2")`` calls ``LLMS.get("smollm2")(**kwargs)``.
LLMS: Registry[Callable[..., LLM]] = Registry("model")
LLMS.register("smollm2")(smollm2)


@dataclass(frozen=True)
class Backend:
    """How the specs of one prefix become an :class:`LLM`.

    Attributes:
        build: ``build(argument, **kwargs)``; the argument is the spec after the prefix.
        usage: How such a spec is written (``"openai:NAME"``), for messages and help.
        options: The connection options it takes (``base_url``, ``timeout``, ...): the
            command line passes these to the backends that declare them, and refuses
            a ``--base-url`` given to any other.
    """

    build: Callable[..., LLM]
    usage: str
    options: tuple[str, ...] = ()


#: Backends by prefix; ``"path"`` also takes every spec no name or prefix claims.
BACKENDS: Registry[Backend] = Registry("model backend")


def register_backend(
    prefix: str, *, usage: str, options: tuple[str, ...] = ()
) -> Callable[[Callable[..., LLM]], Callable[..., LLM]]:
    """Decorator registering ``build`` as the backend of specs ``"<prefix>:..."``.

    The builder gets the text after ``"<prefix>:"`` and the keyword arguments of
    :func:`get_llm`.

    Example:
        >>> BACKENDS.get("openai").usage
        'openai:NAME'
    """

    def deco(build: Callable[..., LLM]) -> Callable[..., LLM]:
        BACKENDS.register(prefix)(Backend(build, usage, tuple(options)))
        return build

    return deco


def split_spec(model: str) -> tuple[str, str]:
    """``(backend prefix, argument)`` of a model spec that is not a registered name.

    Example:
        >>> split_spec("openai:Qwen/Qwen2.5-7B-Instruct")
        ('openai', 'Qwen/Qwen2.5-7B-Instruct')
        >>> split_spec("models/my-model")
        ('path', 'models/my-model')
    """
    head, sep, rest = model.partition(":")
    if sep and head in BACKENDS:
        return head, rest
    return "path", model


def backend_options(model: str) -> tuple[str, ...]:
    """The connection options the backend of ``model`` takes (none for a named model)."""
    if model in LLMS:
        return ()
    return BACKENDS.get(split_spec(model)[0]).options


def get_llm(model: str | LLM, **kwargs: Any) -> LLM:
    """Resolve a model: an :class:`LLM`, a registered name, a local directory or a hub id.

    Args:
        model: ``"smollm2"`` (the embedded default), a directory holding a
            ``transformers`` model, a ``.gguf`` file, ``"hf:<hub id>"``,
            ``"openai:<model name>"`` (a model behind an OpenAI-compatible API; pass
            ``base_url``), or an LLM instance (returned as is).
        **kwargs: Passed to the factory (e.g. ``batch_size``, ``prefix_cache``; for
            ``openai:``, the :class:`OpenAIModel` options ``base_url``, ``api_key_env``,
            ``concurrency``, ``timeout``, ``max_retries``).

    Raises:
        UnknownNameError: An unknown name; the message lists the registered ones.
        InputDataError: A ``.gguf`` path that is not a file.

    Example:
        >>> try:
        ...     get_llm("nope")
        ... except UnknownNameError as exc:
        ...     print(exc)  # doctest: +ELLIPSIS
        unknown model 'nope'; valid: smollm2, hf:HUB_ID, openai:NAME, or a model folder ...
    """
    if isinstance(model, LLM):
        return model
    if model in LLMS:
        return LLMS.get(model)(**kwargs)
    prefix, argument = split_spec(model)
    return BACKENDS.get(prefix).build(argument, **kwargs)


@register_backend("hf", usage="hf:HUB_ID")
def _hub_model(argument: str, **kwargs: Any) -> LLM:
    return HFModel(argument, **kwargs)


@register_backend(
    "openai",
    usage="openai:NAME",
    options=("base_url", "api_key_env", "concurrency", "timeout", "max_retries"),
)
def _served_model(argument: str, **kwargs: Any) -> LLM:
    return OpenAIModel(argument, **kwargs)


@register_backend("path", usage="a model folder or .gguf file")
def _local_model(argument: str, **kwargs: Any) -> LLM:
    path = Path(argument)
    if path.is_dir():
        return HFModel(str(path), **kwargs)
    if path.suffix == ".gguf" and path.is_file():
        return HFModel(str(path.parent), gguf_file=path.name, **kwargs)
    if path.suffix == ".gguf":
        raise InputDataError(f"{argument}: GGUF file not found")
    usages = [BACKENDS.get(p).usage for p in BACKENDS.names() if p != "path"]
    valid = ", ".join([*LLMS.names(), *usages])
    raise UnknownNameError(
        f"unknown model {argument!r}; valid: {valid}, or {BACKENDS.get('path').usage}"
    )
