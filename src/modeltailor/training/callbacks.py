"""Callbacks of the training loop (fastai-style: every behaviour is a callback)."""

from __future__ import annotations

import time
from typing import Any

import lightning as L


class History(L.Callback):
    """One row per epoch: losses, accuracy, learning rate, trainable parameters, speed.

    Its rows travel in the checkpoint, so a resumed run keeps its full history.
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self._t0 = 0.0
        self._train_seconds = 0.0
        self._images = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.perf_counter()
        self._images = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._images += len(batch[1])
        self._train_seconds = time.perf_counter() - self._t0

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        m = trainer.callback_metrics
        opt = trainer.optimizers[0]
        row: dict[str, Any] = {"epoch": trainer.current_epoch + 1}
        for key in ("train_loss", "val_loss", "val_acc", "trainable_params"):
            if key in m:
                row[key] = round(float(m[key]), 6)
        row["lr_head"] = opt.param_groups[0]["lr"]
        row["train_seconds"] = round(self._train_seconds, 3)
        world = trainer.world_size
        row["images_per_second"] = round(self._images * world / max(self._train_seconds, 1e-9), 2)
        self.rows.append(row)

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict.get("rows", []))
