"""Root pytest configuration: the environment every test and doctest runs in.

``pytest`` collects the package's docstring examples as doctests (``--doctest-modules``
in ``pyproject.toml``); ``collect_ignore`` lists the modules whose examples are out of
date and wait for a fix.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ICLOPT_CACHE_DIR", str(ROOT / ".iclopt-cache"))

# examples that fail on main and live in files being changed elsewhere: fix, then remove
collect_ignore = ["iclopt/bandits/additive.py"]
