"""Fitting: the Lightning loop for trainable strategies, the cached-embedding path for probes."""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

from modeltailor.backbones.catalogue import Preprocessing, TextPreprocessing
from modeltailor.backbones.model import TailoredModel
from modeltailor.data.dataset import LabeledDataset
from modeltailor.errors import ModelTailorError
from modeltailor.strategies.base import FitResult, Strategy  # noqa: F401 (FitResult re-exported)
from modeltailor.training.heads import class_weight_vector
from modeltailor.training.inputs import pipeline_for


@dataclass
class TrainSettings:
    """Everything a fit needs besides data, model and strategy (all stored in config.json)."""

    epochs: int | None = None
    lr: float | None = None
    batch_size: int = 32
    num_workers: int = 0
    seed: int = 0
    label_smoothing: float = 0.1
    class_weights: str = "auto"  # auto | none | balanced
    patience: int | None = None
    devices: int | str = "auto"
    distributed: str | None = None  # Lightning strategy: ddp, ddp_spawn, fsdp...
    precision: str | None = None  # bf16-mixed, 16-mixed...
    #: Numbers a frozen backbone embeds in (linear probe): auto | fp32 | bf16 (numerics.py).
    embed_precision: str = "auto"
    accelerator: str = "auto"
    verbose: bool = True
    #: How much training inputs vary (modalities.AUGMENT_LEVELS); the estimator resolves it.
    augment: str = "default"
    #: Wall-clock limit of the training loop (Lightning's max_time); None: none.
    max_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def train_network(
    model: TailoredModel,
    strategy: Strategy,
    train: LabeledDataset,
    val: LabeledDataset,
    pre: Preprocessing | TextPreprocessing,
    settings: TrainSettings,
    checkpoint_dir: Path,
    resume: bool = False,
) -> FitResult:
    """Train with Lightning; afterwards `model` holds the weights of the best validation epoch.

    Lightning is imported here, not with the module: a linear probe never trains a network,
    and importing it costs ~70 MB of memory for nothing (issue 21)."""
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from modeltailor.training.callbacks import History
    from modeltailor.training.module import ClassifierModule

    L.seed_everything(settings.seed, workers=True, verbose=False)
    _share_cores(settings)
    epochs = settings.epochs if settings.epochs is not None else strategy.epochs
    pipeline = pipeline_for(model, pre)
    # A big text model takes part of the batch per pass and accumulates to the full step.
    at_once = pipeline.rows_at_once(settings.batch_size)
    accumulate = settings.batch_size // at_once
    train_loader, val_loader = pipeline.training_loaders(
        train, val, at_once, settings.num_workers, settings.seed, settings.augment
    )
    weights = class_weight_vector(train.labels, len(train.class_names), settings.class_weights)
    module = ClassifierModule(
        model,
        strategy,
        steps_per_epoch=math.ceil(len(train_loader) / accumulate),
        epochs=epochs,
        lr=settings.lr,
        class_weights=weights,
        label_smoothing=settings.label_smoothing,
        channels_last=pipeline.channels_last,
    )
    history = History()
    mode = "max" if strategy.monitor == "val_acc" else "min"
    best = ModelCheckpoint(
        dirpath=checkpoint_dir,
        filename="best",
        monitor=strategy.monitor,
        mode=mode,
        save_top_k=1,
        save_last=True,
        enable_version_counter=False,
    )
    patience = settings.patience if settings.patience is not None else strategy.patience
    with quiet_lightning():
        trainer = L.Trainer(
            max_epochs=epochs,
            max_time=timedelta(seconds=settings.max_seconds) if settings.max_seconds else None,
            accumulate_grad_batches=accumulate,
            accelerator=settings.accelerator,
            devices=settings.devices,
            strategy=settings.distributed or "auto",
            precision=settings.precision,  # type: ignore[arg-type]
            callbacks=[
                best,
                EarlyStopping(strategy.monitor, patience=patience, mode=mode),
                history,
            ],
            logger=False,
            enable_model_summary=False,
            enable_progress_bar=settings.verbose,
            num_sanity_val_steps=0,
            deterministic=True,
            default_root_dir=checkpoint_dir,
            log_every_n_steps=1,
        )
        last = checkpoint_dir / "last.ckpt"
        ckpt = str(last) if resume and last.is_file() else None
        if resume and ckpt is None:
            raise ModelTailorError(f"{checkpoint_dir}: nothing to resume (no last.ckpt)")
        if ckpt is not None:
            check_checkpoint(last)
        trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt, weights_only=True)
    best_path = best.best_model_path
    if best_path and Path(best_path).is_file():
        state = torch.load(best_path, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state)
    stopped = trainer.early_stopping_callback
    info = {
        "epochs_run": trainer.current_epoch,
        "max_epochs": epochs,
        "best_epoch": _best_epoch(history.rows, strategy.monitor),
        "best_epoch_by": strategy.monitor,
        "early_stopped": bool(stopped and stopped.stopped_epoch),
        "class_weights": weights.tolist() if weights is not None else None,
        "examples_per_step": settings.batch_size,
        "examples_at_once": at_once,
        "world_size": trainer.world_size,
        "resumed_from": ckpt,
    }
    return FitResult(history.rows, info, trainer.is_global_zero)


def check_checkpoint(path: Path) -> None:
    """Refuse, in one line, a checkpoint that cannot be resumed safely: unreadable, or one
    that would need unpickling arbitrary objects (never done: a run folder may come from
    anyone)."""
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, truncated zip, EOF...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelTailorError(
            f"{path}: cannot resume from this checkpoint ({type(exc).__name__}: {first[:200]}); "
            "train again without --resume, into another --output"
        ) from exc


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Hide Lightning's start-up chatter (hardware lines, tips) and the warning about modules
    in eval mode: frozen BatchNorm layers are in eval mode on purpose."""
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for pattern in (
                ".*module\\(s\\) in eval mode.*",
                ".*LeafSpec.*",
                ".*exists and is not empty.*",
            ):
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _best_epoch(rows: list[dict[str, Any]], monitor: str = "val_loss") -> int | None:
    scored = [r for r in rows if monitor in r]
    if not scored:
        return None
    sign = -1.0 if monitor == "val_acc" else 1.0
    return min(scored, key=lambda r: sign * r[monitor])["epoch"]


def _share_cores(settings: TrainSettings) -> None:
    """Several CPU processes (DDP) must share the cores instead of oversubscribing them."""
    if isinstance(settings.devices, int) and settings.devices > 1 and not torch.cuda.is_available():
        torch.set_num_threads(max(1, (os.cpu_count() or 2) // settings.devices))
