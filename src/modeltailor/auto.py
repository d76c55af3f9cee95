"""`tailor train --strategy auto [--budget 10m]`: cheapest first, under a time budget.

Like AutoGluon's `fit(time_limit=...)` and its `leaderboard()`, for transfer learning: the
no-pretraining baseline first (seconds), then a linear probe on every installed pretrained
backbone of the modality, smallest first (embeddings are cached, so a rerun costs seconds),
then the trained strategy that suits the data on the best probe's backbone, for the time that
is left. Every candidate is scored on the validation split by macro-F1; the test split is not
looked at here (`tailor train` scores only the winner on it). The winner is returned fitted;
the leaderboard, with what was skipped for lack of time and why, goes to its fit info.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from modeltailor.data.dataset import LabeledDataset
from modeltailor.errors import ModelTailorError

#: What the leaderboard ranks by (the selection never reads the test split).
SCORED_BY = "macro-F1 on the validation split (ties: lower validation log-loss)"
#: Few examples per class: pair-tuning (few-shot) beats fine-tuning on texts (bench_fewshot).
FEW_SHOT_MAX_PER_CLASS = 16
#: The least time worth giving a trained strategy: a shorter run would stop inside its
#: first epoch and be scored on a barely trained network.
MIN_TRAIN_SECONDS = 30.0
#: Below this many million parameters a backbone's count says nothing of its cost (numpy and
#: ONNX models count 0): such probes are neither estimated nor used to estimate.
MIN_PARAMS_TO_SCALE = 1.0
#: Kept back from a trained stage's limit for scoring it on validation and saving the run.
RESERVE_FRACTION = 0.05


def parse_budget(text: str | float | None) -> float | None:
    """'10m', '90s', '1h', '1h30m' or plain seconds -> seconds (None: no budget)."""
    if text is None:
        return None
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        raw = str(text).strip().lower()
        number = r"(\d+(?:\.\d+)?)"
        parts = re.fullmatch(rf"(?:{number}h)?(?:{number}m)?(?:{number}s?)?", raw)
        if not raw or parts is None or not any(parts.groups()):
            raise ModelTailorError(f"--budget {text!r}: a duration such as 10m, 90s, 1h or 1h30m")
        h, m, s = (float(g) if g else 0.0 for g in parts.groups())
        seconds = 3600 * h + 60 * m + s
    if seconds <= 0:
        raise ModelTailorError(f"--budget {text!r}: must be more than zero")
    return seconds


@dataclass
class Stage:
    """One leaderboard row: a strategy on a backbone, and what came of it."""

    strategy: str
    backbone: str | None
    status: str = "pending"  # done | skipped: why | failed: why
    val_macro_f1: float | None = None
    val_accuracy: float | None = None
    val_log_loss: float | None = None
    train_seconds: float | None = None
    chosen: bool = False


def probe_backbones(modality: str) -> list[str]:
    """Installed pretrained backbones that make embeddings: those `tailor export` can ship
    first (a tie on validation then keeps a shippable model), smallest first within each."""
    from modeltailor.backbones import list_backbones

    specs = [
        s
        for s in list_backbones(modality)
        if s.supports("linear-probe") and s.capabilities.pretrained and s.is_installed()
    ]
    order = sorted(specs, key=lambda s: (not s.capabilities.exportable, s.params_m, s.name))
    return [s.name for s in order]


def has_baseline(modality: str) -> bool:
    from modeltailor.backbones import list_backbones

    return any(s.supports("baseline") for s in list_backbones(modality))


def trained_strategy(backbone: str, train: LabeledDataset) -> str:
    """The trained strategy for this data: few-shot pair tuning when examples per class are
    few and the backbone supports it (sentence encoders), else fine-tuning."""
    from modeltailor.backbones import get_backbone

    smallest = int(np.bincount(train.labels).min()) if len(train) else 0
    if smallest <= FEW_SHOT_MAX_PER_CLASS and get_backbone(backbone).supports("few-shot"):
        return "few-shot"
    return "fine-tune"


def validation_scores(clf, val: LabeledDataset) -> tuple[float, float, float]:
    """(macro-F1, accuracy, log-loss) of a fitted classifier on the validation split."""
    from sklearn.metrics import accuracy_score, f1_score

    from modeltailor.training.heads import log_loss

    classes = list(clf.classes_)
    y = np.array([classes.index(val.class_names[i]) for i in val.labels])
    proba = np.asarray(clf.predict_proba(val.items), dtype=np.float64)
    pred = proba.argmax(1)
    labels = list(range(len(classes)))
    f1 = f1_score(y, pred, labels=labels, average="macro", zero_division=0)
    loss = round(log_loss(y, proba / proba.sum(1, keepdims=True)), 6)
    return float(f1), float(accuracy_score(y, pred)), loss


def rank(stage: Stage) -> tuple[float, float]:
    """What the leaderboard maximises: validation macro-F1, then lower validation log-loss.
    With few validation items every candidate can score 1.000 (16 e-mails on spamassassin
    32-shot); log-loss then still tells a confident model from a lucky one."""
    loss = stage.val_log_loss if stage.val_log_loss is not None else float("inf")
    return (stage.val_macro_f1 or 0.0, -loss)


class AutoSearch:
    """Runs the stages in order while the budget lasts; keeps the best fitted classifier."""

    def __init__(
        self,
        make: Callable[..., Any],
        modality: str,
        budget: float | None,
        on_stage: Callable[[Stage, float], None] | None = None,
    ) -> None:
        self.make, self.modality, self.budget = make, modality, budget
        self.on_stage = on_stage or (lambda stage, elapsed: None)
        self.board: list[Stage] = []
        self.best: Any = None
        self._started = 0.0
        self._probe_rate: float | None = None  # probe seconds per million parameters

    # -- the clock -----------------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.perf_counter() - self._started

    def left(self) -> float:
        return float("inf") if self.budget is None else self.budget - self.elapsed()

    # -- the search ------------------------------------------------------------------------------
    def run(self, train: LabeledDataset, val: LabeledDataset) -> tuple[Any, dict[str, Any]]:
        if val is None or not len(val):
            raise ModelTailorError(
                "--strategy auto ranks candidates on the validation split: give it one "
                "(--val-fraction above 0, or a val/ folder)"
            )
        from modeltailor.backbones import get_backbone

        self._started = time.perf_counter()
        if has_baseline(self.modality):
            self._stage(Stage("baseline", None), train, val)
        else:
            why = f"skipped: no no-pretraining baseline for {self.modality} yet"
            self._record(Stage("baseline", None, why))
        for name in probe_backbones(self.modality):
            estimate = self._probe_estimate(get_backbone(name).params_m)
            self._stage(Stage("linear-probe", name), train, val, estimate=estimate)
        self._trained_stage(train, val)
        if self.best is None:
            failures = "; ".join(f"{s.strategy} {s.backbone}: {s.status}" for s in self.board)
            raise ModelTailorError(f"--strategy auto: no candidate finished ({failures})")
        return self.best, self.summary()

    def _probe_estimate(self, params_m: float) -> float | None:
        """Seconds a probe on a backbone of `params_m` million parameters should take: the
        probes so far, per parameter (None: nothing to go by yet, it runs)."""
        if self._probe_rate is None or params_m < MIN_PARAMS_TO_SCALE:
            return None
        return self._probe_rate * params_m

    def _learn_probe_rate(self, stage: Stage) -> None:
        """Seconds per million parameters of the slowest probe so far. Backbones without a
        parameter count that means anything (numpy models: 0) teach nothing."""
        from modeltailor.backbones import get_backbone

        params_m = get_backbone(stage.backbone).params_m
        if params_m >= MIN_PARAMS_TO_SCALE and stage.train_seconds is not None:
            rate = stage.train_seconds / params_m
            self._probe_rate = max(rate, self._probe_rate or 0.0)

    def _trained_stage(self, train: LabeledDataset, val: LabeledDataset) -> None:
        from modeltailor.backbones import get_backbone

        probes = [
            s for s in self.board
            if s.strategy == "linear-probe" and s.val_macro_f1 is not None
            and get_backbone(s.backbone).capabilities.trainable
        ]  # fmt: skip
        if not probes:
            return
        best_probe = max(probes, key=lambda s: s.val_macro_f1)
        stage = Stage(trained_strategy(best_probe.backbone, train), best_probe.backbone)
        limit = None
        if self.budget is not None:
            limit = self.left() - RESERVE_FRACTION * self.budget
            if limit < MIN_TRAIN_SECONDS:
                stage.status = (
                    f"skipped: {max(self.left(), 0):.0f} s of the budget left, a trained "
                    f"strategy needs at least {MIN_TRAIN_SECONDS:.0f} s"
                )
                self._record(stage)
                return
        self._stage(stage, train, val, time_limit=limit)

    def _stage(
        self,
        stage: Stage,
        train: LabeledDataset,
        val: LabeledDataset,
        estimate: float | None = None,
        time_limit: float | None = None,
    ) -> None:
        left = self.left()
        if left <= 0:
            stage.status = "skipped: the budget is spent"
            return self._record(stage)
        if estimate is not None and estimate > left:
            stage.status = f"skipped: needs about {estimate:.0f} s, {left:.0f} s left"
            return self._record(stage)
        started = time.perf_counter()
        try:
            clf = self.make(strategy=stage.strategy, backbone=stage.backbone, time_limit=time_limit)
            clf.fit(train, val)
            stage.val_macro_f1, stage.val_accuracy, stage.val_log_loss = validation_scores(
                clf, val
            )
        except ModelTailorError as exc:
            stage.status = f"failed: {exc}"
            return self._record(stage)
        stage.train_seconds = round(time.perf_counter() - started, 2)
        stage.status = "done" + (" (stopped at its time limit)" if _hit_limit(clf) else "")
        if stage.strategy == "linear-probe":
            self._learn_probe_rate(stage)
        if self._better(stage):
            self.best = clf
        self._record(stage)

    def _better(self, stage: Stage) -> bool:
        """Strictly better than every finished stage (`rank`): full ties keep the earlier,
        cheaper one."""
        ranks = [rank(s) for s in self.board if s.val_macro_f1 is not None]
        return not ranks or rank(stage) > max(ranks)

    def _record(self, stage: Stage) -> None:
        self.board.append(stage)
        self.on_stage(stage, self.elapsed())

    def summary(self) -> dict[str, Any]:
        done = [s for s in self.board if s.val_macro_f1 is not None]
        winner = max(done, key=rank)  # max keeps the first of equals
        for s in self.board:
            s.chosen = s is winner
        return {
            "budget_seconds": self.budget,
            "seconds": round(self.elapsed(), 2),
            "scored_by": SCORED_BY,
            "chosen": {"strategy": winner.strategy, "backbone": self.best.spec_.name},
            "leaderboard": [asdict(s) for s in self.board],
            "skipped": [f"{s.strategy} {s.backbone or ''}: {s.status}".replace(" :", ":")
                        for s in self.board if s.status.startswith("skipped")],
        }  # fmt: skip


def _hit_limit(clf) -> bool:
    info = getattr(clf, "fit_info_", {}) or {}
    run, most = info.get("epochs_run"), info.get("max_epochs")
    limit = getattr(clf, "time_limit", None)
    return bool(limit and run is not None and most and run < most and not info.get("early_stopped"))
