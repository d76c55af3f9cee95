"""Public Python API, scikit-learn style: the constructor stores settings, `fit` returns self.

clf = ImageClassifier(backbone="efficientnet_lite0", strategy="fine-tune").fit(train, val)
clf.evaluate(test); clf.save("runs/pets")
ImageClassifier.load("runs/pets").predict(["x.jpg"])
TextClassifier(strategy="fine-tune").fit(load_text("reviews.csv")).predict(["配送が遅すぎる"])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator

from modeltailor.backbones import get_backbone
from modeltailor.backbones.catalogue import BackboneSpec
from modeltailor.backbones.model import TailoredModel
from modeltailor.data.dataset import LabeledDataset, Skipped
from modeltailor.defaults import DEFAULT_IMAGE_BACKBONE, DEFAULT_STRATEGY  # noqa: F401 (re-exported)
from modeltailor.errors import BackboneError, DataError, ModelTailorError, RunError
from modeltailor.evaluation.metrics import classification_metrics
from modeltailor.modalities import Modality, get_modality
from modeltailor.modalities.base import augment_level
from modeltailor.run import RunDir, describe_data, split_record
from modeltailor.strategies import get_strategy
from modeltailor.strategies.base import FitContext
from modeltailor.training.features import EmbeddingCache, extract_embeddings
from modeltailor.training.inference import predict_logits, softmax
from modeltailor.training.loop import TrainSettings
from modeltailor.training.selection import baseline_comparison


class TailoredClassifier(BaseEstimator):
    """The one estimator: fit, calibrate, predict, evaluate, save and load, for every modality.

    scikit-learn's contract: the constructor stores its settings as given (resolved in `fit`),
    `get_params`/`set_params` and `sklearn.base.clone` work, fitted attributes end in `_`.
    `output` is where checkpoints go during `fit` (a temporary folder when None). Everything
    that differs between images, texts and audio is asked of the modality (`modalities/`):
    the subclasses below only name theirs.

    `augment` is how much the strategies that train layers vary the training inputs: "none",
    "light", "default" or "strong" (True/False: "default"/"none"); each modality says what
    each level does (`modality_.augmentation`). Modality settings: `window_seconds` (audio),
    `combine_tfidf` (text: let closed-form heads add TF-IDF features when that wins on
    validation data).
    """

    #: Name of the registered modality (modalities/) this estimator tailors models for.
    modality = ""

    def __init__(
        self,
        backbone: str | None = None,
        strategy: str = DEFAULT_STRATEGY,
        *,
        weights: str | None = None,
        epochs: int | None = None,
        lr: float | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        label_smoothing: float = 0.1,
        class_weights: str = "auto",
        patience: int | None = None,
        unfreeze: int | str | None = None,
        head_epochs: int | None = None,
        devices: int | str = "auto",
        distributed: str | None = None,
        precision: str | None = None,
        embed_precision: str = "auto",
        output: str | Path | None = None,
        resume: bool = False,
        verbose: bool = True,
        augment: str | bool = "default",
        window_seconds: float | None = None,
        combine_tfidf: bool = True,
        time_limit: float | None = None,
    ) -> None:
        self.backbone = backbone
        self.strategy = strategy
        self.weights = weights
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.label_smoothing = label_smoothing
        self.class_weights = class_weights
        self.patience = patience
        self.unfreeze = unfreeze
        self.head_epochs = head_epochs
        self.devices = devices
        self.distributed = distributed
        self.precision = precision
        self.embed_precision = embed_precision
        self.output = output
        self.resume = resume
        self.verbose = verbose
        self.augment = augment
        self.window_seconds = window_seconds
        self.combine_tfidf = combine_tfidf
        #: Seconds a trained strategy may train (None: no limit): it stops at the limit and
        #: keeps its best validation epoch so far (`--strategy auto` gives it what is left).
        self.time_limit = time_limit

    @property
    def modality_(self) -> Modality:
        """The registered modality object (images, texts, audio, or one a user added)."""
        return get_modality(self.modality)

    # -- fitting -------------------------------------------------------------------------------
    def _settings(self) -> TrainSettings:
        return TrainSettings(
            epochs=self.epochs,
            lr=self.lr,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            seed=self.seed,
            label_smoothing=self.label_smoothing,
            class_weights=self.class_weights,
            patience=self.patience,
            devices=self.devices,
            distributed=self.distributed,
            precision=self.precision,
            embed_precision=self.embed_precision,
            verbose=self.verbose,
            augment=self._augment(),
            max_seconds=self.time_limit,
        )

    def _augment(self) -> str:
        """The augmentation level the loop applies ("none" where the modality has none)."""
        level = augment_level(self.augment)
        return level if self.modality_.augmentation else "none"

    def _layer_schedule(self, strategy):
        """The strategy with the layers the user chose to train: `unfreeze` body groups
        counted from the top ("all", 0 = head only) after `head_epochs` head-only epochs."""
        from dataclasses import replace

        if self.unfreeze is None and self.head_epochs is None:
            return strategy
        if not strategy.trains_layers():
            raise ModelTailorError(
                f"unfreeze / head_epochs apply to strategies that train layers (fine-tune, "
                f"full, scratch, lora), not {strategy.name}"
            )
        changes: dict[str, int] = {}
        if self.unfreeze is not None:
            valid = isinstance(self.unfreeze, int) and self.unfreeze >= 0
            if self.unfreeze != "all" and not valid:
                raise ModelTailorError(f"unfreeze={self.unfreeze!r}: a number >= 0 or 'all'")
            changes["unfrozen_groups"] = -1 if self.unfreeze == "all" else self.unfreeze
        if self.head_epochs is not None:
            if self.head_epochs < 0:
                raise ModelTailorError(f"head_epochs={self.head_epochs}: must be >= 0")
            changes["head_epochs"] = self.head_epochs
        return replace(strategy, **changes)

    def _augmentation_record(self, strategy) -> dict[str, Any]:
        """What config.json says about augmentation: the level, what it does, whether the
        strategy saw it (closed-form heads embed every input once, as inference does)."""
        level = self._augment()
        applied = strategy.trains_layers() and level != "none"
        return {
            "level": level,
            "does": self.modality_.augmentation.get(level, "nothing: inputs as read"),
            "applied": applied,
        }

    def _check_options(self) -> None:
        """A modality setting changed from its default on a modality that does not read it
        would be silently ignored: refuse it instead."""
        defaults = TailoredClassifier().get_params()
        changed = {"augment": augment_level(self.augment) != defaults["augment"]}
        for name in ("window_seconds", "combine_tfidf"):
            changed[name] = getattr(self, name) != defaults[name]
        for name, differs in changed.items():
            if differs and name not in self.modality_.options:
                raise ModelTailorError(f"{name} does not apply to {self.modality_.noun}")

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, train: LabeledDataset, val: LabeledDataset | None = None) -> TailoredClassifier:
        """Train on `train`; `val` drives early stopping and head selection (never test data).

        Without `val`, the linear probe chooses its head by cross-validation on `train`, and
        the trainable strategies hold out 10% of `train` (stratified, seeded) for validation.
        """
        train.validate("training data")
        self._check_options()
        modality = self.modality_
        strategy = get_strategy(self.strategy)
        backbone = self.backbone or modality.default_backbone(self, train)
        spec = get_backbone(backbone, self.weights)
        if spec.modality != self.modality:
            raise BackboneError(f"'{spec.name}' is a {spec.modality} backbone, not {self.modality}")
        if not spec.supports(strategy.name):
            able = [s.name for s in _backbones_supporting(strategy.name, self.modality)]
            raise BackboneError(
                f"backbone '{spec.name}' cannot do {strategy.name}; backbones that can: {able}"
            )
        strategy = self._layer_schedule(spec.recipe(strategy))
        spec = modality.specialise(self, spec, train)
        settings = self._settings()
        torch.manual_seed(self.seed)
        pre = spec.inference_preprocessing()
        n_classes = len(train.class_names)
        model = TailoredModel(spec.build(n_classes, pretrained=strategy.pretrained))
        strategy.prepare_model(model)
        context = FitContext(spec, pre, settings, modality, self, self.output, self.resume)
        result = strategy.fit(model, train, val, context)
        if result.train is not None:
            train, val = result.train, result.val
        self.side_ = None
        if result.features is not None or "head_init" in result.info:
            # a head fitted in closed form, or LP-FT's choice: maybe with side features
            modality.extend_head(self, model, train, val, pre, result, settings)
        self.model_ = model.eval()
        self.spec_ = spec
        self.preprocessing_ = pre
        self.classes_ = list(train.class_names)
        self.history_ = result.history
        self.is_main_process_ = result.is_main_process
        details = modality.fit_details(self, model, train)
        self.fit_info_ = {**result.info, **details, "notes": context.notes}
        self.fit_info_["augmentation"] = self._augmentation_record(strategy)
        if result.is_main_process:  # other DDP processes stop after their share of the work
            self.fit_info_["baseline"] = baseline_comparison(
                self, strategy, result.info, train, val
            )
        self.adapters_ = strategy.adapters
        self.skipped_ = train.skipped + (val.skipped if val is not None else [])
        self.data_ = {
            "train": describe_data(train),
            "val": describe_data(val) if val is not None else None,
            "skipped": [s.__dict__ for s in self.skipped_],
        }
        self.splits_ = {"train": split_record(train)}
        if val is not None:
            self.splits_["val"] = split_record(val, keep_texts=True)
        self.val_data_ = val
        self.metrics_: dict[str, Any] = {}
        self.temperature_ = 1.0
        self.calibration_: dict[str, Any] | None = None
        return self

    def calibrate(self, val: LabeledDataset | None = None) -> TailoredClassifier:
        """Fit a softmax temperature on validation data (default: the data `fit` validated on).

        Predictions keep their arg-max; probabilities become better calibrated. The
        temperature is saved with the run, and predict, serve and every export apply it.
        """
        from modeltailor.evaluation.calibration import expected_calibration_error, fit_temperature

        self._check_fitted()
        val = val if val is not None else getattr(self, "val_data_", None)
        if val is None or len(val) == 0:
            raise DataError("calibration needs validation data, and there is none")
        logits, bad = self._raw_logits(val.items)
        labels = _align_labels(val, self.classes_)
        y = np.array([lab for item, lab in zip(val.items, labels, strict=True) if item not in bad])
        temperature = round(fit_temperature(logits, y), 6)
        self.calibration_ = {
            "method": "temperature scaling",
            "temperature": temperature,
            "fitted_on": f"validation data ({len(y)} examples)",
            "validation_ece_before": expected_calibration_error(softmax(logits), y),
            "validation_ece_after": expected_calibration_error(softmax(logits / temperature), y),
        }
        self.temperature_ = temperature
        return self

    # -- using the model ---------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            name = type(self).__name__
            raise RunError(f"this classifier is not fitted: call fit() or {name}.load()")

    def _logits(self, items: list) -> tuple[np.ndarray, dict]:
        """Logits for files, divided by the calibration temperature (1 when uncalibrated)."""
        logits, bad = self._raw_logits(items)
        return logits / getattr(self, "temperature_", 1.0), bad

    def _raw_logits(self, items: list) -> tuple[np.ndarray, dict]:
        """The network's logits plus any side model's (text: TF-IDF) for usable items."""
        logits, bad = self._network_logits(items)
        side = self.modality_.side_logits(self, [item for item in items if item not in bad])
        return (logits if side is None else logits + side), bad

    def _network_logits(self, items: list) -> tuple[np.ndarray, dict]:
        """Logits for items; a linear probe fitted in this process reuses the embedding cache."""
        self._check_fitted()
        if (
            getattr(self, "spec_", None) is not None
            and get_strategy(self.strategy).uses_feature_cache
        ):
            data = LabeledDataset(list(items), [0] * len(items), self.classes_)
            # the numeric path the head was fitted in (fit.embeddings), and its cache
            used = self.fit_info_.get("embeddings", {})
            cache = EmbeddingCache(
                self.spec_,
                self.preprocessing_,
                numerics=used.get("numeric_path", "fp32"),
                device=used.get("device", "cpu"),
            )
            feats, bad = extract_embeddings(
                self.model_,
                data,
                self.preprocessing_,
                cache,
                self.batch_size,
                self.num_workers,
                self.verbose,
            )
            with torch.inference_mode():
                logits = self.model_.classifier()(torch.from_numpy(feats)).numpy()
            return logits, bad
        return predict_logits(
            self.model_,
            list(items),
            self.preprocessing_,
            self.batch_size,
            self.num_workers,
            self.verbose and len(items) > 64,
        )

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, one row per input (columns follow `classes_`)."""
        items = X.items if isinstance(X, LabeledDataset) else self.modality_.as_items(X)
        logits, bad = self._logits(items)
        if bad:
            first = next(iter(bad.items()))
            raise DataError(f"{first[0]}: {first[1]} ({len(bad)} unreadable input(s))")
        return softmax(logits)

    def predict(self, X: Any) -> list[str]:
        return [self.classes_[i] for i in self.predict_proba(X).argmax(axis=1)]

    def _ranked(self, items: list, top_k: int) -> tuple[list[tuple[Any, dict]], dict]:
        """(item, {label, probability, top_k}) for every usable item, and {item: reason}."""
        logits, bad = self._logits(items)
        good = [item for item in items if item not in bad]
        proba = softmax(logits)
        k = min(top_k, len(self.classes_))
        out = []
        for item, p in zip(good, proba, strict=True):
            order = np.argsort(-p)[:k]
            ranked = [{"label": self.classes_[i], "probability": float(p[i])} for i in order]
            out.append((item, {**ranked[0], "top_k": ranked}))
        return out, bad

    def score(self, dataset: LabeledDataset) -> float:
        """Accuracy on a labelled dataset (scikit-learn's `score`)."""
        return self.evaluate(dataset, record=False)["accuracy"]

    def evaluate(
        self, dataset: LabeledDataset, record: bool = True, *, return_predictions: bool = False
    ) -> Any:
        """Metrics on labelled data; files that fail to decode are reported and skipped.

        With `return_predictions`, returns (metrics, {"items", "labels", "proba"}) too: the very
        probabilities the metrics came from, so a run's report never recomputes the model.
        """
        self._check_fitted()
        labels = _align_labels(dataset, self.classes_)
        logits, bad = self._logits(dataset.items)
        y = [lab for item, lab in zip(dataset.items, labels, strict=True) if item not in bad]
        if not y:
            raise DataError(f"{dataset.source}: nothing usable to evaluate")
        proba = softmax(logits)
        metrics = classification_metrics(y, proba, self.classes_)
        metrics["source"] = dataset.source
        metrics["skipped"] = [{"path": str(k), "reason": v} for k, v in bad.items()]
        if record:
            self.metrics_ = {"test": metrics}
        if return_predictions:
            kept = [item for item in dataset.items if item not in bad]
            return metrics, {"items": kept, "labels": y, "proba": proba}
        return metrics

    def overlap_with_training(self, dataset: LabeledDataset) -> dict[str, int]:
        """How many items of `dataset` were (by content) in this model's train/val data."""
        splits = getattr(self, "splits_", {})
        digests = set(dataset.digests())
        return {
            name: len(digests & set(rec["sha1"]))
            for name, rec in splits.items()
            if name in ("train", "val")
        }

    def predict_files(
        self, paths: list[str | Path], top_k: int = 3
    ) -> tuple[list[dict], list[Skipped]]:
        """Predictions for files and folders; unreadable inputs are returned, not raised."""
        files, skipped = self.modality_.find_inputs(paths)
        ranked, bad = self._ranked(files, top_k)
        skipped += [Skipped(str(p), r) for p, r in bad.items()]
        return [{"path": str(f), **r} for f, r in ranked], skipped

    # -- run directory -----------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """Everything config.json records about this fitted classifier (run.py)."""
        from modeltailor.run import run_config

        return run_config(self)

    def save(self, path: str | Path, metrics: dict[str, Any] | None = None) -> RunDir:
        """Write the run directory (atomic files; checkpoints already there are kept)."""
        from modeltailor.run import save_run

        return save_run(self, path, metrics)

    @classmethod
    def load(cls, path: str | Path, verbose: bool = False) -> TailoredClassifier:
        """A trained classifier from its run folder; needs no weights package, no network."""
        from modeltailor.run import load_run

        return load_run(cls, path, verbose)

    def predict_texts(self, texts: list[str], top_k: int = 3) -> list[dict]:
        """{text, label, probability, top_k} per text, in input order (text runs)."""
        ranked, _ = self._ranked(self.modality_.as_items(texts), top_k)
        return [{"text": item.text, **r} for item, r in ranked]


class ImageClassifier(TailoredClassifier):
    """Tailor a pretrained image backbone to labelled images (a folder per class).

    `backbone=None` is EfficientNet-Lite0, TFLite Model Maker's own default.
    """

    modality = "image"


class TextClassifier(TailoredClassifier):
    """Tailor a pretrained language model to labelled texts (`load_text`: CSV, TSV, JSONL or a
    folder per class of .txt files).

    `backbone=None` picks `minilm-l6` for English and `e5-small-multilingual` when CJK texts
    are common. Texts longer than the model's window are split into overlapping windows whose
    embeddings (linear probe) or logits (trained strategies) are averaged.
    """

    modality = "text"


class AudioClassifier(TailoredClassifier):
    """Tailor a pretrained speech encoder to labelled clips (`load_audio_folder`: a folder per
    class of WAV/FLAC/OGG/MP3 files, any sample rate, mono or stereo).

    The window length is chosen from the training clips (long enough for 95% of them, see
    `choose_window`) unless `window_seconds` is set; longer clips are cut into overlapping
    windows whose embeddings (linear probe) or logits (trained strategies) are averaged,
    shorter ones padded and masked. `augment` turns training-time speed change, time shift,
    gain, noise and SpecAugment on.
    """

    modality = "audio"


_CLASSIFIERS: dict[str, type[TailoredClassifier]] = {
    c.modality: c for c in (ImageClassifier, TextClassifier, AudioClassifier)
}


def classifier_class(modality: str) -> type[TailoredClassifier]:
    """The estimator class of a registered modality (made on first use for a new one)."""
    get_modality(modality)  # an unknown name fails here, with the names that exist
    if modality not in _CLASSIFIERS:
        name = "".join(part.title() for part in modality.replace("-", "_").split("_"))
        _CLASSIFIERS[modality] = type(
            f"{name}Classifier", (TailoredClassifier,), {"modality": modality}
        )
    return _CLASSIFIERS[modality]


def classifier_for(data: LabeledDataset) -> type[TailoredClassifier]:
    """The classifier class for a dataset's modality (readers name it; plain datasets are
    images)."""
    return classifier_class(getattr(data, "modality", None) or "image")


def load_classifier(path: str | Path, verbose: bool = False) -> TailoredClassifier:
    """Load a run folder with the classifier class of its modality."""
    run = RunDir(path)
    if not run.path.is_dir():
        raise RunError(f"{run.path}: no such run folder")
    cfg = run.read_json("config.json")
    if not isinstance(cfg, dict):
        raise RunError(f"{run.path / 'config.json'}: damaged, not a JSON object")
    modality = cfg.get("modality", "image")
    try:
        cls = classifier_class(modality)
    except ModelTailorError as exc:
        raise RunError(f"{run.path}: a {modality} run, which this version cannot load") from exc
    return cls.load(run.path, verbose=verbose)


def _align_labels(dataset: LabeledDataset, classes: list[str]) -> list[int]:
    """Map a dataset's labels onto the model's classes (names must be known to the model)."""
    unknown = [c for c in dataset.class_names if c not in classes]
    used = {dataset.class_names[i] for i in set(dataset.labels)}
    if unknown and used & set(unknown):
        raise DataError(
            f"{dataset.source}: classes {sorted(used & set(unknown))} are unknown to the model "
            f"({classes})"
        )
    return [classes.index(dataset.class_names[i]) for i in dataset.labels]


def _backbones_supporting(strategy: str, modality: str) -> list[BackboneSpec]:
    from modeltailor.backbones import list_backbones

    return [s for s in list_backbones(modality) if s.supports(strategy)]
