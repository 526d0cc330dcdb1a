"""Where iclopt keeps its files on disk."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "default_cache_path"]


def cache_dir() -> Path:
    """Root of iclopt's on-disk caches: ``$ICLOPT_CACHE_DIR`` or ``~/.cache/iclopt``.

    Example:
        >>> (cache_dir() / "results.sqlite").name
        'results.sqlite'
    """
    env = os.environ.get("ICLOPT_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "iclopt"


def default_cache_path() -> Path:
    """The shared result cache: ``<cache dir>/results.sqlite``."""
    return cache_dir() / "results.sqlite"
