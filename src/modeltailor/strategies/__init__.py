"""How much of the pretrained model to retrain: one module per strategy, one shared contract."""

from modeltailor.strategies import (  # noqa: F401  (each module registers one strategy)
    baseline,
    few_shot,
    fine_tune,
    full,
    linear_probe,
    lora,
    scratch,
)
from modeltailor.strategies.base import Strategy, get_strategy, list_strategies

__all__ = ["Strategy", "get_strategy", "list_strategies"]
