"""Evaluate: metrics a machine reads (metrics.json) and tables a person reads."""

from modeltailor.evaluation.metrics import classification_metrics

__all__ = ["classification_metrics"]
