"""The strategy contract: which layer groups train at which epoch, at which learning rate.

The freeze state is a pure function of the epoch (`trainable_groups`), so a resumed run
restores it exactly, and all optimizer parameter groups exist from the first step (lessons
from the anchors' issue trackers, DESIGN.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from modeltailor.errors import ModelTailorError


@dataclass(frozen=True)
class Strategy:
    """Defaults and schedule of one way to tailor a model."""

    name: str
    description: str
    pretrained: bool = True
    #: Frozen backbone: embeddings are computed once and cached, a head is fitted on them.
    uses_feature_cache: bool = False
    epochs: int = 15
    lr: float = 1e-3
    weight_decay: float = 0.01
    patience: int = 4
    #: Epochs that train only the head before body groups are unfrozen.
    head_epochs: int = 0
    #: Body groups unfrozen after the head epochs (-1: all of them).
    unfrozen_groups: int = -1
    #: LR of the top body group relative to the head, and the factor per group further down.
    body_lr_scale: float = 1.0
    layer_decay: float = 1.0
    #: How the head starts: "random", or "probe" = a logistic regression fitted on the frozen
    #: embeddings first (LP-FT, Kumar et al. 2022): the body then adapts to a head that is
    #: already right instead of being distorted by the gradients of a random one.
    head_init: str = "random"
    #: Fitted in closed form by the backbone itself (TF-IDF + logistic regression), no loop.
    classical: bool = False
    #: Body tuned on same/different-class pairs, then a fitted head (few-shot text).
    contrastive: bool = False
    #: What early stopping and the best checkpoint follow: "val_loss" (lowest) or "val_acc"
    #: (highest; for label sets where validation accuracy saturates while the unsmoothed loss
    #: grows with confidence).
    monitor: str = "val_loss"
    #: Adapters injected into the body (LoRA settings for peft), None for none.
    adapters: dict | None = field(default=None, compare=False, hash=False)

    def trainable_groups(self, n_groups: int, epoch: int) -> int:
        """How many top body groups train during `epoch` (0 = head only)."""
        if epoch < self.head_epochs:
            return 0
        return n_groups if self.unfrozen_groups < 0 else min(self.unfrozen_groups, n_groups)

    def group_lr(self, depth_from_top: int) -> float:
        """Discriminative learning rate of a body group (`depth_from_top` 0 = the top group)."""
        return self.lr * self.body_lr_scale * (self.layer_decay**depth_from_top)

    def lr_factor(self, step: int, total_steps: int, start_step: int, warmup_steps: int) -> float:
        """Linear warm-up from `start_step` (when the group is unfrozen), then cosine to 0."""
        if step < start_step:
            return 0.0
        step -= start_step
        span = max(1, total_steps - start_step)
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = min(1.0, (step - warmup_steps) / max(1, span - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))


_STRATEGIES: dict[str, Strategy] = {}


def register_strategy(strategy: Strategy) -> Strategy:
    _STRATEGIES[strategy.name] = strategy
    return strategy


def get_strategy(name: str) -> Strategy:
    key = name.replace("_", "-").lower()
    if key not in _STRATEGIES:
        raise ModelTailorError(f"unknown strategy '{name}': choose one of {', '.join(_STRATEGIES)}")
    return _STRATEGIES[key]


def list_strategies() -> list[Strategy]:
    return list(_STRATEGIES.values())
