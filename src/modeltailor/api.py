"""Public Python API, scikit-learn style: the constructor stores settings, `fit` returns self.

clf = ImageClassifier(backbone="efficientnet_lite0", strategy="fine-tune").fit(train, val)
clf.evaluate(test); clf.save("runs/pets")
ImageClassifier.load("runs/pets").predict(["x.jpg"])
TextClassifier(strategy="fine-tune").fit(load_text("reviews.csv")).predict(["配送が遅すぎる"])
"""

from __future__ import annotations

import platform
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch

from modeltailor.backbones import get_backbone
from modeltailor.backbones.catalogue import BackboneSpec, preprocessing_from_dict
from modeltailor.backbones.model import TailoredModel
from modeltailor.data.dataset import LabeledDataset, Skipped
from modeltailor.data.images import ImageDataset, find_images
from modeltailor.data.text import TextItem
from modeltailor.defaults import DEFAULT_IMAGE_BACKBONE, DEFAULT_STRATEGY  # noqa: F401 (re-exported)
from modeltailor.errors import BackboneError, DataError, RunError
from modeltailor.evaluation.metrics import classification_metrics
from modeltailor.run import FORMAT_VERSION, RunDir
from modeltailor.strategies import get_strategy
from modeltailor.training.features import EmbeddingCache, extract_embeddings
from modeltailor.training.inference import predict_logits, softmax
from modeltailor.training.loop import FitResult, TrainSettings, fit_linear_probe, train_network


class TailoredClassifier:
    """What every modality shares: fit, calibrate, predict, evaluate, save and load.

    Parameters are stored as given (scikit-learn's contract); they are resolved in `fit`.
    `output` is where checkpoints go during `fit` (a temporary folder when None). A modality
    subclass says how its items are read, which backbone is the default and how a saved
    network is rebuilt; the training loop, strategies and run folder are the same.
    """

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
        devices: int | str = "auto",
        distributed: str | None = None,
        precision: str | None = None,
        output: str | Path | None = None,
        resume: bool = False,
        verbose: bool = True,
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
        self.devices = devices
        self.distributed = distributed
        self.precision = precision
        self.output = output
        self.resume = resume
        self.verbose = verbose

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
            verbose=self.verbose,
        )

    # -- modality hooks ----------------------------------------------------------------------
    def _choose_backbone(self, train: LabeledDataset) -> str:
        return self.backbone or DEFAULT_IMAGE_BACKBONE

    def _prepare(self, data: LabeledDataset) -> LabeledDataset:
        """Drop what cannot be read before training (images: files that fail to decode)."""
        return data

    def _as_items(self, X: Any) -> list:
        return list(X)

    def _fit_details(self, model: TailoredModel, train: LabeledDataset) -> dict[str, Any]:
        return {}

    def _specialise(self, spec: BackboneSpec, train: LabeledDataset) -> BackboneSpec:
        """The backbone record fitted to the data (audio: the window length from the clips)."""
        return spec

    def _network_for(self, run: RunDir, cfg: dict[str, Any]) -> torch.nn.Module:
        raise NotImplementedError

    def _extend_head(self, model, train, val, pre, result: FitResult, settings) -> None:
        """After a closed-form head: a modality may add side features (text: TF-IDF)."""

    def _save_assets(self, run: RunDir) -> None:
        """Files besides the weights that loading needs (text: architecture + tokenizer)."""

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, train: LabeledDataset, val: LabeledDataset | None = None) -> TailoredClassifier:
        """Train on `train`; `val` drives early stopping and head selection (never test data).

        Without `val`, the linear probe chooses its head by cross-validation on `train`, and
        the trainable strategies hold out 10% of `train` (stratified, seeded) for validation.
        """
        train.validate("training data")
        strategy = get_strategy(self.strategy)
        spec = get_backbone(self._choose_backbone(train), self.weights)
        if spec.modality != self.modality:
            raise BackboneError(f"'{spec.name}' is a {spec.modality} backbone, not {self.modality}")
        if not spec.supports(strategy.name):
            able = [s.name for s in _backbones_supporting(strategy.name, self.modality)]
            raise BackboneError(
                f"backbone '{spec.name}' cannot do {strategy.name}; backbones that can: {able}"
            )
        strategy = spec.recipe(strategy)
        spec = self._specialise(spec, train)
        settings = self._settings()
        torch.manual_seed(self.seed)
        pre = spec.inference_preprocessing()
        n_classes = len(train.class_names)
        model = TailoredModel(spec.build(n_classes, pretrained=strategy.pretrained))
        if strategy.adapters:
            model.add_adapters(strategy.adapters)
        notes: list[str] = []
        if strategy.classical:
            info = model.net.fit_classical(model, train, val, settings)
            result = FitResult(info.pop("rows"), info)
        elif strategy.uses_feature_cache:
            result, train, val = fit_linear_probe(model, spec, train, val, pre, settings)
        elif strategy.contrastive:
            result = self._fit_contrastive(model, strategy, train, val, pre, settings)
        else:
            if val is None or len(val) == 0:
                train, val, _ = train.split(0.9, 0.1, 0.0, seed=self.seed)
                notes.append("no validation data given: 10% of the training data held out")
                if val is None:
                    raise DataError(f"{train.source}: too few examples to hold out validation data")
            train, val = self._prepare(train), self._prepare(val)
            train.validate("training data")
            if strategy.head_init == "probe" and strategy.pretrained:
                result, train, val = self._train_from_probe(
                    model, spec, strategy, train, val, pre, settings
                )
            else:
                result = self._train(model, strategy, train, val, pre, settings)
        self.side_ = None
        if result.features is not None or "head_init" in result.info:
            # a head fitted in closed form, or LP-FT's choice: maybe with side features
            self._extend_head(model, train, val, pre, result, settings)
        self.model_ = model.eval()
        self.spec_ = spec
        self.preprocessing_ = pre
        self.classes_ = list(train.class_names)
        self.history_ = result.history
        self.is_main_process_ = result.is_main_process
        self.fit_info_ = {**result.info, **self._fit_details(model, train), "notes": notes}
        self.adapters_ = strategy.adapters
        if strategy.adapters:
            self.fit_info_["adapters"] = {
                "method": "LoRA (peft)",
                **strategy.adapters,
                "trainable_parameters": model.trainable_parameters(),
            }
        if not (strategy.uses_feature_cache or strategy.classical or strategy.contrastive):
            self.fit_info_["head_epochs"] = strategy.head_epochs
        self.skipped_ = train.skipped + (val.skipped if val is not None else [])
        self.data_ = {
            "train": _describe(train),
            "val": _describe(val) if val is not None else None,
            "skipped": [s.__dict__ for s in self.skipped_],
        }
        self.splits_ = {"train": split_record(train)}
        if val is not None:
            self.splits_["val"] = split_record(val)
        self._val = val
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
        val = val if val is not None else getattr(self, "_val", None)
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

    def _train_from_probe(self, model, spec, strategy, train, val, pre, settings):
        """LP-FT: fit the head as a linear probe, train from there, and keep whichever of the
        two is better on validation data (accuracy, a tie keeping the trained one; pooled per
        example, the way predictions are made). Text side features may then join the kept one.

        With little data a few optimizer steps can throw a good probe away; model selection on
        validation data catches that, and config.json says which one was kept.
        """
        probe, train, val = fit_linear_probe(model, spec, train, val, pre, settings)
        pinned = set(getattr(model.net, "always_frozen", ()))
        saved = {
            k: v.detach().clone()
            for k, v in model.state_dict().items()
            if k.removeprefix("net.") not in pinned
        }
        y_val = np.asarray(val.labels)
        # The probe's validation embeddings are already computed: its logits need no model pass.
        with torch.inference_mode():
            probe_logits = model.classifier()(torch.from_numpy(probe.features[1])).numpy()
        probe_scores = _val_scores(probe_logits, y_val)
        result = self._train(model, strategy, train, val, pre, settings)
        tuned = _val_scores(self._pooled_logits(model, pre, val), y_val)
        # Accuracy decides, and a tie keeps the trained model the user asked for: label
        # smoothing keeps its probabilities below 1, so a log-loss tie-break would always
        # favour the probe (FSDD standard split: both 0.9963 on validation).
        better = tuned["accuracy"] >= probe_scores["accuracy"]
        if not better:
            model.load_state_dict(saved, strict=False)
            # The probe's embeddings and head choice stand, so side features can still join it.
            result.features, result.head_choice = probe.features, probe.head_choice
        result.info["head_init"] = {
            "method": "linear probe (LP-FT)",
            "C": probe.info["C"],
            "validation": {"probe": probe_scores, "trained": tuned},
            "kept": "trained" if better else "probe",
        }
        return result, train, val

    def _fit_contrastive(self, model, strategy, train, val, pre, settings) -> FitResult:
        """Pairs tune the body; the head is then chosen on validation data. Without any (the
        usual few-shot case) it is SetFit's head, a logistic regression with C=1 on the tuned
        embeddings: cross-validation cannot choose, since the body was tuned on those very
        texts and separates every fold perfectly (so it picked the weakest regularisation),
        and for the same reason no TF-IDF side features are tried."""
        from modeltailor.training.contrastive import tune_contrastive
        from modeltailor.training.heads import C_GRID, fit_fixed_head, fit_logreg_head

        epochs = self.epochs if self.epochs is not None else strategy.epochs
        lr = self.lr if self.lr is not None else strategy.lr
        info, history = tune_contrastive(model, train, lr, epochs, settings)
        x_train = self._embed(model, pre, train)
        y_train, n_classes = np.asarray(train.labels), len(train.class_names)
        if val is None or len(val) == 0:
            fitted = fit_fixed_head(model, x_train, y_train, n_classes, settings, c=1.0)
            info = {"contrastive": info, "C": fitted["C"], "selected_by": fitted["selected_by"]}
            return FitResult(history, info)
        x_val = self._embed(model, pre, val)
        fitted = fit_logreg_head(
            model, x_train, y_train, x_val, np.asarray(val.labels), n_classes, settings,
            C_GRID, scale=True,
        )  # fmt: skip
        info = {
            "contrastive": info,
            "C": fitted["C"],
            "selected_by": fitted["selected_by"],
            "head_search": fitted["rows"],
        }
        return FitResult(history, info, features=(x_train, x_val), head_choice=fitted)

    def _embed(self, model, pre, data: LabeledDataset) -> np.ndarray:
        """Per-example embeddings (windows averaged), computed afresh: the body was just tuned,
        so the embedding cache, which holds the frozen backbone's, does not apply."""
        from modeltailor._progress import progress_bar
        from modeltailor.training.inputs import pipeline_for, pooled_outputs

        model.eval()
        pipeline, items = pipeline_for(model, pre), list(data.items)
        with progress_bar(pipeline.units(items), "embedding", self.verbose) as bar:
            rows, _ = pooled_outputs(
                model.embed, pipeline, items, self.batch_size, self.num_workers, {}, bar.advance
            )
        return rows

    def _pooled_logits(self, model, pre, data: LabeledDataset) -> np.ndarray:
        logits, _ = predict_logits(model, list(data.items), pre, self.batch_size, self.num_workers)
        return logits

    def _train(self, model, strategy, train, val, pre, settings) -> FitResult:
        if self.output is not None:
            ckpt_dir = RunDir(self.output).checkpoints
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            return train_network(model, strategy, train, val, pre, settings, ckpt_dir, self.resume)
        with tempfile.TemporaryDirectory(prefix="modeltailor-") as tmp:
            return train_network(model, strategy, train, val, pre, settings, Path(tmp), False)

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
        """Logits for files; a linear probe fitted in this process reuses the embedding cache."""
        self._check_fitted()
        if (
            getattr(self, "spec_", None) is not None
            and get_strategy(self.strategy).uses_feature_cache
        ):
            data = LabeledDataset(list(items), [0] * len(items), self.classes_)
            cache = EmbeddingCache(self.spec_, self.preprocessing_)
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
        items = X.items if isinstance(X, LabeledDataset) else self._as_items(X)
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

    def _find_files(self, paths: list[str | Path]) -> tuple[list[Path], list[Skipped]]:
        raise NotImplementedError(f"{type(self).__name__} does not read files to predict on")

    def predict_files(
        self, paths: list[str | Path], top_k: int = 3
    ) -> tuple[list[dict], list[Skipped]]:
        """Predictions for files and folders; unreadable inputs are returned, not raised."""
        files, skipped = self._find_files(paths)
        ranked, bad = self._ranked(files, top_k)
        skipped += [Skipped(str(p), r) for p, r in bad.items()]
        return [{"path": str(f), **r} for f, r in ranked], skipped

    # -- run directory -----------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        self._check_fitted()
        spec = self.spec_
        return {
            "format_version": FORMAT_VERSION,
            "modality": self.modality,
            "backbone": spec.name,
            "architecture": spec.architecture,
            "weights": spec.weights_identity(),
            "backbone_license": spec.license,
            "strategy": self.strategy,
            "num_classes": len(self.classes_),
            "preprocessing": self.preprocessing_.to_dict(),
            "settings": self._settings().to_dict(),
            "data": self.data_,
            "fit": self.fit_info_,
            "calibration": getattr(self, "calibration_", None),
            # A run with adapters stores only them + the head: the body comes from here on load.
            "adapters": getattr(self, "adapters_", None),
            "base_weights": spec.weights_identity() if getattr(self, "adapters_", None) else None,
            "versions": _versions(),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def save(self, path: str | Path, metrics: dict[str, Any] | None = None) -> RunDir:
        """Write the run directory (atomic files; checkpoints already there are kept)."""
        run = RunDir(path)
        cfg = self.config()
        run.write_json("config.json", cfg)
        run.write_json("labels.json", self.classes_)
        run.write_json("splits.json", self.splits_)
        run.write_history(self.history_)
        self._save_assets(run)
        state = self.model_.trained_state()
        run.save_model(state, {"modality": self.modality, "architecture": cfg["architecture"]})
        if metrics is not None or self.metrics_:
            run.write_json("metrics.json", metrics if metrics is not None else self.metrics_)
        return run

    @classmethod
    def load(cls, path: str | Path, verbose: bool = False) -> TailoredClassifier:
        """A trained classifier from its run folder; needs no weights package, no network."""
        run = RunDir(path)
        if not run.path.is_dir():
            raise RunError(f"{run.path}: no such run folder")
        cfg = run.read_json("config.json")
        if cfg.get("modality") != cls.modality:
            raise RunError(f"{run.path}: a {cfg.get('modality')} run, not {cls.modality}")
        settings = cfg.get("settings", {})
        clf = cls(
            backbone=cfg["backbone"],
            strategy=cfg["strategy"],
            batch_size=settings.get("batch_size", 32),
            seed=settings.get("seed", 0),
            verbose=verbose,
        )
        model = TailoredModel(clf._network_for(run, cfg))
        if cfg.get("adapters"):
            model.add_adapters(cfg["adapters"])
        _load_weights(model, run, partial=bool(cfg.get("adapters")))
        clf.model_ = model.eval()
        clf.spec_ = None
        clf.preprocessing_ = preprocessing_from_dict(cfg["preprocessing"])
        clf.classes_ = list(run.read_json("labels.json"))
        clf.history_ = []
        clf.fit_info_ = cfg.get("fit", {})
        clf.data_ = cfg.get("data", {})
        clf.splits_ = run.read_json("splits.json") if run.has("splits.json") else {}
        clf.metrics_ = run.read_json("metrics.json") if run.has("metrics.json") else {}
        clf.calibration_ = cfg.get("calibration")
        clf.temperature_ = float((clf.calibration_ or {}).get("temperature", 1.0))
        clf.is_main_process_ = True
        clf.config_ = cfg
        return clf


class ImageClassifier(TailoredClassifier):
    """Tailor a pretrained image backbone to labelled images (a folder per class)."""

    modality = "image"

    def __init__(self, backbone: str = DEFAULT_IMAGE_BACKBONE, *args: Any, **kwargs: Any):
        super().__init__(backbone, *args, **kwargs)

    def _prepare(self, data: LabeledDataset) -> LabeledDataset:
        return data.verify() if isinstance(data, ImageDataset) else data

    def _as_items(self, X: Any) -> list:
        return [Path(x) for x in X]

    def _network_for(self, run: RunDir, cfg: dict[str, Any]) -> torch.nn.Module:
        return timm.create_model(
            cfg["architecture"], pretrained=False, num_classes=cfg["num_classes"]
        )

    def _find_files(self, paths: list[str | Path]) -> tuple[list[Path], list[Skipped]]:
        return find_images(paths)


class TextClassifier(TailoredClassifier):
    """Tailor a pretrained language model to labelled texts (`load_text`: CSV, TSV, JSONL or a
    folder per class of .txt files).

    `backbone=None` picks `minilm-l6` for English and `e5-small-multilingual` when CJK texts
    are common. Texts longer than the model's window are split into overlapping windows whose
    embeddings (linear probe) or logits (trained strategies) are averaged.
    """

    modality = "text"

    def __init__(
        self,
        backbone: str | None = None,
        strategy: str = DEFAULT_STRATEGY,
        *,
        combine_tfidf: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone, strategy, **kwargs)
        #: Let closed-form heads (linear-probe, few-shot) add TF-IDF features when that wins
        #: on validation data / cross-validation (training/hybrid.py).
        self.combine_tfidf = combine_tfidf

    def _extend_head(self, model, train, val, pre, result: FitResult, settings) -> None:
        from modeltailor.training.hybrid import fit_hybrid_head

        if not self.combine_tfidf or not hasattr(model.net, "encode"):
            return
        if result.features is None:  # LP-FT kept the trained network: embed with its tuned body
            result.features = (self._embed(model, pre, train), self._embed(model, pre, val))
            trained = result.info["head_init"]["validation"]["trained"]
            result.head_choice = {**trained, "C": None, "selected_by": "the trained network"}
        x_train, x_val = result.features
        side, record = fit_hybrid_head(
            model, x_train, train, x_val, val, result.head_choice, settings
        )
        self.side_ = side
        result.info["tfidf_side"] = record

    def _raw_logits(self, items: list) -> tuple[np.ndarray, dict]:
        """The network's logits, plus the TF-IDF side head's when the run has one."""
        logits, bad = super()._raw_logits(items)
        side = getattr(self, "side_", None)
        if side is not None:
            texts = [_text(item) for item in items if item not in bad]
            logits = logits + side.logits(texts)
        return logits, bad

    def _choose_backbone(self, train: LabeledDataset) -> str:
        from modeltailor.backbones.text import default_text_backbone

        if self.backbone:
            return self.backbone
        if get_strategy(self.strategy).classical:
            return "tfidf"
        return default_text_backbone([_text(item) for item in train.items])

    def _as_items(self, X: Any) -> list:
        if isinstance(X, str):
            raise TypeError("pass a list of texts, not one string")
        return [
            x if isinstance(x, TextItem) else TextItem(str(x), f"text {i + 1}")
            for i, x in enumerate(X)
        ]

    def _fit_details(self, model: TailoredModel, train: LabeledDataset) -> dict[str, Any]:
        from modeltailor.backbones.text import multi_window_share

        encoder = model.net
        if not hasattr(encoder, "encode"):
            return {}  # not a windowed encoder (the TF-IDF baseline reads whole texts)
        share = multi_window_share(encoder.encode([_text(i) for i in train.items]))
        return {
            "long_texts": {
                "policy": "split into windows of max_length tokens, overlapping by "
                f"{encoder.pre.window_overlap:g} of a window; "
                "embeddings (linear-probe) or logits (trained strategies) averaged per text",
                "max_length": encoder.pre.max_length,
                "share_of_training_texts_windowed": round(share, 4),
            }
        }

    def _save_assets(self, run: RunDir) -> None:
        from modeltailor.backbones.text import ASSETS_FOLDER

        self.model_.net.save_assets(run.path / ASSETS_FOLDER)
        side = getattr(self, "side_", None)
        if side is not None:
            from safetensors.torch import save_file

            folder = run.path / SIDE_FOLDER
            side.save_assets(folder)
            head = {k: v.contiguous() for k, v in side.get_classifier().state_dict().items()}
            save_file(head, str(folder / "head.safetensors"))

    @classmethod
    def load(cls, path: str | Path, verbose: bool = False) -> TextClassifier:
        clf = super().load(path, verbose)
        folder = RunDir(path).path / SIDE_FOLDER
        clf.side_ = None
        if folder.is_dir():
            from safetensors.torch import load_file

            from modeltailor.backbones.tfidf import TfidfText

            side = TfidfText.load(folder, len(clf.classes_))
            side.get_classifier().load_state_dict(load_file(str(folder / "head.safetensors")))
            clf.side_ = side.eval()
        return clf

    def _network_for(self, run: RunDir, cfg: dict[str, Any]) -> torch.nn.Module:
        from modeltailor.backbones.text import ASSETS_FOLDER, load_text_network

        if cfg.get("adapters"):  # only adapters were saved: the body is the package's
            return _pretrained_body(run, cfg)
        pre = preprocessing_from_dict(cfg["preprocessing"])
        return load_text_network(run.path / ASSETS_FOLDER, pre, cfg["num_classes"])

    def predict_texts(self, texts: list[str], top_k: int = 3) -> list[dict]:
        """{text, label, probability, top_k} per text, in input order."""
        ranked, _ = self._ranked(self._as_items(texts), top_k)
        return [{"text": item.text, **r} for item, r in ranked]


class AudioClassifier(TailoredClassifier):
    """Tailor a pretrained speech encoder to labelled clips (`load_audio_folder`: a folder per
    class of WAV/FLAC/OGG files, any sample rate, mono or stereo).

    The window length is chosen from the training clips (long enough for 95% of them, see
    `choose_window`); longer clips are cut into overlapping windows whose embeddings (linear
    probe) or logits (trained strategies) are averaged, shorter ones padded and masked.
    `augment` turns training-time speed change, time shift, gain, noise and SpecAugment on.
    """

    modality = "audio"

    def __init__(
        self,
        backbone: str | None = None,
        strategy: str = DEFAULT_STRATEGY,
        *,
        augment: bool = True,
        window_seconds: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone, strategy, **kwargs)
        self.augment = augment
        self.window_seconds = window_seconds

    def _choose_backbone(self, train: LabeledDataset) -> str:
        from modeltailor.backbones.audio import default_audio_backbone

        return self.backbone or default_audio_backbone(self.strategy)

    def _specialise(self, spec: BackboneSpec, train: LabeledDataset) -> BackboneSpec:
        from dataclasses import replace

        from modeltailor.backbones.audio import choose_window
        from modeltailor.data.audio import AudioDataset

        window = self.window_seconds
        if window is None:
            window = choose_window(train.durations()) if isinstance(train, AudioDataset) else 2.0
        return replace(spec, preprocessing=replace(spec.preprocessing, window_seconds=window))

    def fit(self, train: LabeledDataset, val: LabeledDataset | None = None) -> AudioClassifier:
        super().fit(train, val)
        self.model_.net.augment = self.augment
        return self

    def _prepare(self, data: LabeledDataset) -> LabeledDataset:
        from modeltailor.data.audio import AudioDataset

        return data.verify() if isinstance(data, AudioDataset) else data

    def _train(self, model, strategy, train, val, pre, settings) -> FitResult:
        model.net.augment = self.augment
        return super()._train(model, strategy, train, val, pre, settings)

    def _as_items(self, X: Any) -> list:
        return [Path(x) for x in X]

    def _fit_details(self, model: TailoredModel, train: LabeledDataset) -> dict[str, Any]:
        from modeltailor.data.audio import AudioDataset

        pre = model.net.pre
        seconds = train.durations() if isinstance(train, AudioDataset) else []
        longer = sum(s > pre.window_seconds for s in seconds)
        return {
            "clips": {
                "policy": f"windows of {pre.window_seconds:g} s (chosen to hold 95% of the "
                "training clips whole unless set), overlapping by "
                f"{pre.window_overlap:g} of a window; shorter clips padded and the padding "
                "masked out of pooling; embeddings (linear-probe) or logits (trained "
                "strategies) averaged per clip",
                "window_seconds": pre.window_seconds,
                "sample_rate": pre.sample_rate,
                "share_of_training_clips_windowed": round(longer / len(seconds), 4)
                if seconds
                else None,
                "median_seconds": round(float(np.median(seconds)), 3) if seconds else None,
                "augment": self.augment,
            }
        }

    def _save_assets(self, run: RunDir) -> None:
        from modeltailor.backbones.audio import ASSETS_FOLDER

        self.model_.net.save_assets(run.path / ASSETS_FOLDER)

    def _network_for(self, run: RunDir, cfg: dict[str, Any]) -> torch.nn.Module:
        from modeltailor.backbones.audio import ASSETS_FOLDER, load_audio_network

        pre = preprocessing_from_dict(cfg["preprocessing"])
        if cfg.get("adapters"):  # only adapters were saved: the body is the package's
            return _pretrained_body(run, cfg, pre)
        return load_audio_network(run.path / ASSETS_FOLDER, pre, cfg["num_classes"])

    def _find_files(self, paths: list[str | Path]) -> tuple[list[Path], list[Skipped]]:
        from modeltailor.data.audio import find_audio

        return find_audio(paths)


CLASSIFIERS: dict[str, type[TailoredClassifier]] = {
    "image": ImageClassifier,
    "text": TextClassifier,
    "audio": AudioClassifier,
}


#: Run sub-folder of a text run's TF-IDF side head (vocabulary JSON + head weights).
SIDE_FOLDER = "tfidf_side"


def classifier_for(data: LabeledDataset) -> type[TailoredClassifier]:
    """The classifier class for a dataset's modality (text datasets hold `TextItem`s)."""
    from modeltailor.data.audio import AudioDataset
    from modeltailor.data.text import TextDataset

    if isinstance(data, AudioDataset):
        return AudioClassifier
    return TextClassifier if isinstance(data, TextDataset) else ImageClassifier


def load_classifier(path: str | Path, verbose: bool = False) -> TailoredClassifier:
    """Load a run folder with the classifier class of its modality."""
    run = RunDir(path)
    if not run.path.is_dir():
        raise RunError(f"{run.path}: no such run folder")
    modality = run.read_json("config.json").get("modality", "image")
    if modality not in CLASSIFIERS:
        raise RunError(f"{run.path}: a {modality} run, which this version cannot load")
    return CLASSIFIERS[modality].load(run.path, verbose=verbose)


def _pretrained_body(run: RunDir, cfg: dict[str, Any], pre: Any = None) -> torch.nn.Module:
    """The catalogue backbone an adapter run was trained on, exactly those weights; `pre`
    replaces the catalogue's preprocessing when the run specialised it (audio windows)."""
    from dataclasses import replace

    spec = get_backbone(cfg["backbone"])
    if pre is not None:
        spec = replace(spec, preprocessing=pre)
    if spec.weights_identity() != cfg.get("base_weights"):
        raise RunError(
            f"{run.path}: trained with adapters on {cfg.get('base_weights')}, but the installed "
            f"weights are {spec.weights_identity()} ({spec.install_hint})"
        )
    return spec.build(cfg["num_classes"], pretrained=True)


def _text(item: Any) -> str:
    return item.text if isinstance(item, TextItem) else str(item)


def _val_scores(logits: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy and log loss of pooled per-example logits."""
    proba = softmax(logits)
    loss = float(-np.log(np.clip(proba[np.arange(len(y)), y], 1e-12, 1)).mean())
    return {"accuracy": round(float((proba.argmax(1) == y).mean()), 6), "log_loss": round(loss, 6)}


def _load_weights(model: TailoredModel, run: RunDir, partial: bool) -> None:
    """Load model.safetensors; with adapters it holds only adapters + head, and every one of
    those (and nothing else) must match."""
    state = run.load_model_state()
    try:
        missing, unexpected = model.load_state_dict(state, strict=not partial)
    except RuntimeError as exc:
        raise RunError(f"{run.path}: model.safetensors does not match config.json ({exc})") from exc
    expected = set(model.trained_state()) if partial else set()
    if partial and (unexpected or set(state) != expected):
        raise RunError(
            f"{run.path}: model.safetensors does not hold this run's adapters and head "
            f"(unexpected: {unexpected[:3]}, absent: {sorted(expected - set(state))[:3]})"
        )


def split_record(data: LabeledDataset) -> dict[str, list]:
    """Which files (path, label, content hash) a split held: for overlap checks, exports
    that verify on validation data, and reports that show mistakes."""
    return {
        "items": [str(i) for i in data.items],
        "labels": [data.class_names[lab] for lab in data.labels],
        "sha1": data.digests(),
    }


def _describe(data: LabeledDataset) -> dict[str, Any]:
    return {"source": data.source, "n": len(data), "class_counts": data.class_counts()}


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


def _versions() -> dict[str, str]:
    import lightning
    import sklearn

    from modeltailor import __version__

    return {
        "modeltailor": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "lightning": lightning.__version__,
        "scikit-learn": sklearn.__version__,
    }
