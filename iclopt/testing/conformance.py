"""The selector checks under their first import path (now in :mod:`iclopt.testing.selectors`)."""

from __future__ import annotations

from iclopt.testing.selectors import check_selector

__all__ = ["check_selector"]
