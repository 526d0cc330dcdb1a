"""The ``iclopt`` command line (typer), one module per command; objects come from the registries."""

from __future__ import annotations

import logging
import os
import sys

from iclopt.cli import (  # noqa: F401  (registers the commands)
    attribute,
    compare,
    models,
    optimize,
    report,
    select,
    show,
)
from iclopt.cli._common import app
from iclopt.cli._feedback import errors

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not os.environ.get("OPENAI_LOG"):  # else the user asked for the client's debug log
        for handler in logging.getLogger().handlers:  # INFO records feed the progress only
            handler.setLevel(logging.WARNING)
    try:
        app()
    except KeyboardInterrupt:
        errors.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
