"""How much of the pretrained model to retrain: one module per strategy, one shared contract."""

from modeltailor.strategies import fine_tune, full, linear_probe, scratch  # noqa: F401
from modeltailor.strategies.base import Strategy, get_strategy, list_strategies

__all__ = ["Strategy", "get_strategy", "list_strategies"]
