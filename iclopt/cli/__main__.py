"""``python -m iclopt.cli``."""

from iclopt.cli import main

main()
