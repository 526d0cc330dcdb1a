"""``python -m iclopt``: the command line."""

from __future__ import annotations

from iclopt.cli import main

main()
