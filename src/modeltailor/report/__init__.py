"""The run report: report.html (self-contained) and report/*.png, built from a run's files."""

from modeltailor.report.build import REPORT_FILE, write_report
from modeltailor.report.predictions import read_predictions, write_predictions

__all__ = ["REPORT_FILE", "read_predictions", "write_predictions", "write_report"]
