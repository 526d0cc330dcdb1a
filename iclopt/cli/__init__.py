"""The ``iclopt`` command line (typer), one module per command; objects come from the registries."""

from __future__ import annotations

import logging
import sys

from iclopt.cli import attribute, compare, models, optimize, select, show  # noqa: F401  (registers the commands)
from iclopt.cli._common import app, err

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
