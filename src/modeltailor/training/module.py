"""The LightningModule every strategy trains through."""

from __future__ import annotations

import lightning as L
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from modeltailor.backbones.model import TailoredModel
from modeltailor.strategies.base import Strategy


class ClassifierModule(L.LightningModule):
    """Cross-entropy classifier whose freeze state and learning rates follow a Strategy."""

    def __init__(
        self,
        model: TailoredModel,
        strategy: Strategy,
        steps_per_epoch: int,
        epochs: int,
        lr: float | None = None,
        class_weights: torch.Tensor | None = None,
        label_smoothing: float = 0.1,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        self.model = model
        self.strategy = strategy
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.epochs = epochs
        self.lr = lr or strategy.lr
        self.train_loss = nn.CrossEntropyLoss(weight=class_weights, label_smoothing=label_smoothing)
        self.val_loss = nn.CrossEntropyLoss()
        self.channels_last = channels_last
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self._apply_freeze(0)

    # -- freeze schedule: a function of the epoch, so resume restores it -------------------
    def _apply_freeze(self, epoch: int) -> int:
        k = self.strategy.trainable_groups(self.model.num_body_groups, epoch)
        self.model.set_trainable(k)
        return k

    def on_train_epoch_start(self) -> None:
        # Train mode every epoch: Lightning keeps each submodule's mode as it found it, and a
        # model that just computed the probe's embeddings (a cold cache) is in eval mode, which
        # would silently train without dropout, BatchNorm updates or SpecAugment.
        self.model.train()
        k = self._apply_freeze(self.current_epoch)
        self.log("trainable_groups", float(k), on_epoch=True, sync_dist=True)
        self.log(
            "trainable_params",
            float(self.model.trainable_parameters()),
            on_epoch=True,
            sync_dist=True,
        )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["modeltailor_trainable_groups"] = self.strategy.trainable_groups(
            self.model.num_body_groups, self.current_epoch
        )

    # -- steps -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = self.train_loss(self(x), y)
        self.log(
            "train_loss", loss, on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True
        )
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        acc = (logits.argmax(1) == y).float().mean()
        self.log("val_loss", self.val_loss(logits, y), batch_size=len(y), sync_dist=True)
        self.log("val_acc", acc, batch_size=len(y), sync_dist=True, prog_bar=True)

    # -- optimisation: every parameter group exists from the first step ----------------------
    def configure_optimizers(self):
        n = self.model.num_body_groups
        groups = [{"params": self.model.head_parameters(), "lr": self.lr, "start_epoch": 0}]
        s = self.strategy
        horizon = max(self.epochs, s.head_epochs) + 1  # independent of --epochs: resumable
        for i in reversed(range(n)):
            depth = n - 1 - i
            start = next((e for e in range(horizon) if s.trainable_groups(n, e) > depth), None)
            if start is None:
                continue  # never trained by this strategy
            lr = self.lr * s.body_lr_scale * s.layer_decay**depth
            groups.append({"params": self.model.body_group(i), "lr": lr, "start_epoch": start})
        optimizer = torch.optim.AdamW(groups, lr=self.lr, weight_decay=s.weight_decay)
        total = self.epochs * self.steps_per_epoch
        warmup = self.steps_per_epoch

        def factor_for(start_epoch: int):
            start = start_epoch * self.steps_per_epoch
            return lambda step: s.lr_factor(step, total, start, warmup)

        lambdas = [factor_for(g["start_epoch"]) for g in groups]
        scheduler = LambdaLR(optimizer, lambdas)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
