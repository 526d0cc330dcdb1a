"""Rendering results: tables (Markdown, CSV, JSON), matplotlib figures and report pages."""

from __future__ import annotations

from iclopt.reports.comparison import write_comparison
from iclopt.reports.run import load_comparison, write_run_report

__all__ = ["load_comparison", "write_comparison", "write_run_report"]
