"""The strategy contract: a strategy owns its fit, and says which layer groups train at which
epoch, at which learning rate.

`Strategy.fit(model, train, val, context) -> FitResult` is the whole of how a strategy tailors
a model; the estimator resolves backbone and strategy and calls it. This class's own `fit` is
the trained-network path (fine-tune, full, scratch, lora: the Lightning loop, LP-FT when the
head starts as a probe); linear-probe, baseline and few-shot override it in their modules.

The freeze state is a pure function of the epoch (`trainable_groups`), so a resumed run
restores it exactly, and all optimizer parameter groups exist from the first step (lessons
from the anchors' issue trackers, DESIGN.md).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modeltailor.errors import DataError, ModelTailorError

if TYPE_CHECKING:
    from modeltailor.backbones.catalogue import BackboneSpec
    from modeltailor.backbones.model import TailoredModel
    from modeltailor.data.dataset import LabeledDataset
    from modeltailor.modalities import Modality
    from modeltailor.training.loop import TrainSettings


@dataclass
class FitResult:
    """What a strategy's fit returns: history rows, what config.json records, and more."""

    history: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    is_main_process: bool = True
    #: Head-fitting strategies: the embeddings and choice the head came from (not saved).
    features: tuple[Any, Any] | None = field(default=None, repr=False)
    head_choice: dict[str, Any] | None = field(default=None, repr=False)
    #: The data the fit actually used: the given splits minus what failed to decode, or with
    #: validation data held out of `train` when none was given. None: the given splits.
    train: Any = field(default=None, repr=False)
    val: Any = field(default=None, repr=False)


@dataclass
class FitContext:
    """What a strategy's fit needs besides the model and the data."""

    spec: BackboneSpec
    pre: Any
    settings: TrainSettings
    modality: Modality
    #: The estimator being fitted (modality settings such as `augment` are read from it).
    estimator: Any
    #: Where checkpoints go (None: a temporary folder), and whether to resume from them.
    output: Path | None = None
    resume: bool = False
    #: Lines for config.json's fit notes ("no validation data given: ...").
    notes: list[str] = field(default_factory=list)

    def train(self, model: TailoredModel, strategy: Strategy, train, val) -> FitResult:
        """The Lightning loop, checkpointing into the run folder when there is one."""
        from modeltailor.run import IDENTITY_FILE, RunDir, atomic_write_json, check_same_run
        from modeltailor.training.loop import train_network

        self.modality.before_training(self.estimator, model)
        args = (model, strategy, train, val, self.pre, self.settings)
        if self.output is not None:
            ckpt_dir = RunDir(self.output).checkpoints
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            identity = self.run_identity(strategy, train)
            if self.resume:
                check_same_run(RunDir(self.output), identity)
            atomic_write_json(ckpt_dir / IDENTITY_FILE, identity)
            return train_network(*args, ckpt_dir, self.resume)
        with tempfile.TemporaryDirectory(prefix="modeltailor-") as tmp:
            return train_network(*args, Path(tmp), False)

    def run_identity(self, strategy: Strategy, train: LabeledDataset) -> dict[str, Any]:
        """What makes checkpoints belong to this training: `--resume` refuses others."""
        from modeltailor.run import run_identity

        identity = run_identity(self.modality.name, self.spec.name, strategy.name, train)
        # The optimizer's parameter groups follow the schedule: another one cannot resume.
        identity["layer_schedule"] = {
            "head_epochs": strategy.head_epochs,
            "unfreeze": "all" if strategy.unfrozen_groups < 0 else strategy.unfrozen_groups,
        }
        return identity

    def embed(self, model: TailoredModel, data: LabeledDataset) -> np.ndarray:
        from modeltailor.training.inference import embed_examples

        s = self.settings
        return embed_examples(model, self.pre, data, s.batch_size, s.num_workers, s.verbose)


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
    #: What early stopping and the best checkpoint follow: "val_loss" (lowest) or "val_acc"
    #: (highest; for label sets where validation accuracy saturates while the unsmoothed loss
    #: grows with confidence).
    monitor: str = "val_loss"
    #: Adapters injected into the body (LoRA settings for peft), None for none.
    adapters: dict | None = field(default=None, compare=False, hash=False)
    #: Backbone capabilities (`backbones.catalogue.Capabilities` field names) this needs.
    requires: frozenset[str] = frozenset({"trainable", "pretrained"})

    def runs_on(self, capabilities: Any) -> bool:
        """Whether a backbone with these capabilities can be tailored this way."""
        return self.requires <= capabilities.names()

    # -- fitting -----------------------------------------------------------------------------
    def trains_layers(self) -> bool:
        """Whether the fit is the layer schedule below (the Lightning loop), not a closed-form
        or pair-tuning fit of its own: what `unfreeze` and `head_epochs` can change."""
        return type(self).fit is Strategy.fit

    def prepare_model(self, model: TailoredModel) -> None:
        """Before fitting: inject adapters (LoRA) when the strategy has them."""
        if self.adapters:
            model.add_adapters(self.adapters)

    def fit(
        self,
        model: TailoredModel,
        train: LabeledDataset,
        val: LabeledDataset | None,
        context: FitContext,
    ) -> FitResult:
        """Train the network on `train`, early-stopping on `val`; without validation data, 10%
        of `train` is held out (stratified, seeded). A head that starts as a probe is LP-FT."""
        if val is None or len(val) == 0:
            train, val, _ = train.split(0.9, 0.1, 0.0, seed=context.settings.seed)
            context.notes.append("no validation data given: 10% of the training data held out")
            if val is None:
                raise DataError(f"{train.source}: too few examples to hold out validation data")
        train, val = context.modality.prepare(train), context.modality.prepare(val)
        train.validate("training data")
        if self.head_init == "probe" and self.pretrained:
            from modeltailor.strategies.lp_ft import fit_from_probe

            result = fit_from_probe(self, model, train, val, context)
        else:
            result = context.train(model, self, train, val)
            result.train, result.val = train, val
        if self.adapters:
            result.info["adapters"] = {
                "method": "LoRA (peft)",
                **self.adapters,
                "trainable_parameters": model.trainable_parameters(),
            }
        result.info["head_epochs"] = self.head_epochs
        result.info["unfrozen_groups"] = "all" if self.unfrozen_groups < 0 else self.unfrozen_groups
        return result

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


#: Listing order: from retraining least to most, then the no-pretraining baselines.
_LISTING = ("linear-probe", "fine-tune", "full", "lora", "few-shot", "scratch", "baseline")


def list_strategies() -> list[Strategy]:
    """Registered strategies, least retraining first (others in registration order, last)."""
    rank = {name: i for i, name in enumerate(_LISTING)}
    return sorted(_STRATEGIES.values(), key=lambda s: rank.get(s.name, len(rank)))
