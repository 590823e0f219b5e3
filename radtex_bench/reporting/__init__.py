"""Tables, plots and the markdown report, rebuilt from the run's CSVs alone."""

from .report import build_report

__all__ = ["build_report"]
