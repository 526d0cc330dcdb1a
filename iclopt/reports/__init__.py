"""Rendering results: tables (Markdown, CSV, JSON), matplotlib figures and report pages."""

from __future__ import annotations

from iclopt.reports.comparison import write_comparison
from iclopt.reports.run import write_run_report
from iclopt.reports.run_data import load_comparison

__all__ = ["load_comparison", "write_comparison", "write_run_report"]
