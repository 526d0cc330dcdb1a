"""What a command tells its user while it works, and what it keeps from them.

* Long steps show a spinner or a progress bar on stderr; the library narrates its own
  long phases (embedding, scoring the test set, ...) as ``logging`` records marked
  ``extra={"phase": True}`` at INFO, which :class:`PhaseDisplay` shows as the current
  step.
* ``--quiet`` leaves errors and the final artifact path (on stdout) only.
* Python warnings raised inside other libraries (a ``FutureWarning`` about a deprecated
  argument, ...) tell the user nothing about their run and are dropped, unless the user
  asked for warnings with ``-W`` or ``PYTHONWARNINGS``; iclopt's own messages about the
  run are log records and stay.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console

__all__ = [
    "Feedback",
    "PhaseDisplay",
    "errors",
    "quiet_logging",
    "silence_library_warnings",
]

#: Errors always reach the user, even under --quiet (the chatter console may be muted).
errors = Console(stderr=True)

_LIBRARY_LOGGERS = (
    "transformers",
    "sentence_transformers",
    "torch",
    "datasets",
    "huggingface_hub",
    "accelerate",
    "optuna",
    "botorch",
    "gpytorch",
    "httpx",
)


def silence_library_warnings() -> None:
    """Drop Python warnings from other libraries; keep iclopt's; respect ``-W``.

    Changes the process's warning filters (call it inside :func:`warnings.catch_warnings`
    to undo it afterwards).
    """
    if sys.warnoptions:  # the user chose what to see
        return
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", module=r"iclopt(\.|$)")
    for name in _LIBRARY_LOGGERS:
        if name == "httpx" and os.environ.get("OPENAI_LOG"):
            continue  # the user asked for the openai client's (and httpx's) log
        logging.getLogger(name).setLevel(logging.ERROR)


class _BelowError(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


@contextmanager
def quiet_logging(quiet: bool) -> Iterator[None]:
    """Under ``quiet``, iclopt's warnings (log records below ERROR) are not shown."""
    if not quiet:
        yield
        return
    logger = logging.getLogger("iclopt")
    filt = _BelowError()
    logger.addFilter(filt)
    for handler in logging.getLogger().handlers:
        handler.addFilter(filt)
    try:
        yield
    finally:
        logger.removeFilter(filt)
        for handler in logging.getLogger().handlers:
            handler.removeFilter(filt)


class PhaseDisplay(logging.Handler):
    """Shows the library's phase records as the description of a rich progress task.

    Args:
        update: Called with the phase's text (e.g. ``lambda t: progress.update(bar,
            description=t)``).
    """

    def __init__(self, update: Any) -> None:
        super().__init__(level=logging.INFO)
        self._update = update

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "phase", False):
            self._update(record.getMessage())

    @contextmanager
    def installed(self) -> Iterator[PhaseDisplay]:
        """Attach to the ``iclopt`` logger (letting its INFO records through) while inside."""
        logger = logging.getLogger("iclopt")
        before = logger.level
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
        logger.addHandler(self)
        try:
            yield self
        finally:
            logger.removeHandler(self)
            logger.setLevel(before)


class Feedback:
    """Messages of one command, muted by ``--quiet`` except errors and the final path.

    Args:
        quiet: The command's ``--quiet``.
        console: Where progress and summaries go (stderr).
        stdout: Where the final artifact path goes under ``--quiet``.
    """

    def __init__(
        self, quiet: bool, console: Console | None = None, stdout: Console | None = None
    ) -> None:
        from iclopt.cli._common import err, out

        self.quiet = quiet
        self.console = console or err
        self.stdout = stdout or out

    def info(self, text: str) -> None:
        """One line of information (not under --quiet)."""
        if not self.quiet:
            self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    @contextmanager
    def step(self, description: str) -> Iterator[None]:
        """A spinner with ``description`` while the block runs (not under --quiet)."""
        if self.quiet:
            yield
            return
        with self.console.status(description + " ..."):
            yield

    def artifacts(
        self, paths: Mapping[str, Path], headline: str | None = None, final: str | None = None
    ) -> None:
        """The end-of-run summary: a headline and each artifact by kind.

        Under --quiet only the final artifact's path is printed (on stdout): ``final``'s,
        else the last one's (the one a person opens: the report if there is one).
        """
        if not paths:
            return
        if self.quiet:
            path = paths[final] if final is not None else list(paths.values())[-1]
            self.stdout.print(str(path), highlight=False, markup=False, soft_wrap=True)
            return
        if headline:
            self.console.print(headline, highlight=False, markup=False, soft_wrap=True)
        width = max(len(k) for k in paths)
        for kind, path in paths.items():
            self.console.print(
                f"  {kind:<{width}}  {path}", highlight=False, markup=False, soft_wrap=True
            )
