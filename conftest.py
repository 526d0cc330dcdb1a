"""Root pytest configuration: the environment every test and doctest runs in.

``pytest`` collects the package's docstring examples as doctests (``--doctest-modules``
in ``pyproject.toml``).
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ICLOPT_CACHE_DIR", str(ROOT / ".iclopt-cache"))
