"""Rendering results: tables (Markdown, CSV, JSON) and matplotlib figures."""

from __future__ import annotations

from iclopt.reports.comparison import write_comparison

__all__ = ["write_comparison"]
