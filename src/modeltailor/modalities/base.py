"""The modality contract: everything that differs between images, texts, audio (or anything else).

One `Modality` object per modality, registered by name. The estimator, the command line, the
report, export and serve ask the registry instead of asking "which modality is this?": a new
modality is one module that subclasses `Modality` and calls `register_modality`, plus its
backbones (see tests/test_new_modality.py, which adds one without touching the package).

A method with a default here is what most file-based modalities need; override what differs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from modeltailor.errors import ModelTailorError

if TYPE_CHECKING:
    import torch

    from modeltailor.backbones.catalogue import BackboneSpec
    from modeltailor.data.dataset import LabeledDataset, Skipped
    from modeltailor.run import RunDir


#: How much training inputs are varied (`--augment`); each modality says what each level does.
AUGMENT_LEVELS = ("none", "light", "default", "strong")


def augment_level(value: str | bool | None) -> str:
    """A level from AUGMENT_LEVELS; True/None mean "default", False "none" (the old bool)."""
    if value is None or value is True:
        return "default"
    if value is False:
        return "none"
    if value not in AUGMENT_LEVELS:
        raise ModelTailorError(f"augment={value!r}: one of {', '.join(AUGMENT_LEVELS)}")
    return str(value)


class InputError(Exception):
    """One upload a serve decoder cannot use (empty, not decodable, refused); says why."""


@dataclass
class TfliteSpec:
    """How a modality's graph becomes a batch-1 TFLite model with the fixed input shapes apps
    feed (LiteRT graphs are static; rows shorter than the shape are padded with zeros, which
    every modality's mask input reads as padding).

    `example` gives the conversion inputs at those shapes, `layout` rearranges the graph for
    apps (images: NHWC), `app_input` is model.tflite.json's "input" section.
    """

    example: Callable[[Any], tuple]
    app_input: Callable[[Any], dict[str, Any]]
    layout: Callable[[Any], Any] | None = None


@dataclass
class ExportSpec:
    """How a modality's model meets an exported graph.

    `wrap` puts what must live inside the graph around the network (image normalisation, the
    calibration temperature); `inputs` turns items into the graph's inputs exactly as training
    and prediction decode them, with the item each row belongs to (an image is one row, a
    long text one row per window: an item's logits are the mean of its rows', as prediction
    combines them); `example` gives a batch for tracing; `describe` is what
    `preprocessing.json` tells an app about the steps outside the graph.
    """

    input_names: list[str]
    wrap: Callable[[torch.nn.Module, Any, float], torch.nn.Module]
    #: (items, the classifier) -> (graph inputs, the index in `items` of every row)
    inputs: Callable[[list, Any], tuple[dict[str, np.ndarray], list[int]]]
    example: Callable[[Any], tuple]
    describe: Callable[[Any], dict[str, Any]]
    #: Which axes of each input vary, and their names ({0: "batch"} when not given).
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict)
    #: Export formats beyond ONNX this modality's graphs are known to work in.
    formats: tuple[str, ...] = ("onnx",)
    #: What the verification messages call the examples ("images", "clips").
    noun: str = "examples"
    #: The classifier -> one line saying why it cannot be exported, or None.
    refuse: Callable[[Any], str | None] | None = None
    #: The same for `tailor serve --backend pytorch`, which runs `wrap` eagerly and needs no
    #: traced graph (None: whatever `refuse` says).
    refuse_eager: Callable[[Any], str | None] | None = None
    #: (export job, export folder) -> what preprocessing.json says of the files an app needs
    #: beside the graph, after checking and writing them there (a tokenizer, a side head).
    assets: Callable[[Any, Path], dict[str, Any]] | None = None
    #: (run, split, limit) -> (items, class names) to verify on when no folder is given;
    #: None: the split's files as splits.json lists them.
    verification: Callable[[RunDir, str, int], tuple[list, list[str]]] | None = None
    #: int8: "static" (calibrated QDQ, for convolutions) or "dynamic" (MatMul weights int8,
    #: activations quantised at run time: transformers, whose inputs vary in length).
    quantization: str = "static"
    #: Initializer-name prefixes int8 must leave in fp32 besides the head: fixed transforms
    #: whose exact values the features depend on (audio's DFT basis and mel filter bank).
    exact_weights: tuple[str, ...] = ()
    #: (export folder, onnxruntime-web's dist folder, title) -> (every file of the web page by
    #: name, its manifest details): the page `tailor export --format web` writes.
    web_page: Callable[[Path, Path, str], tuple[dict[str, bytes], dict[str, Any]]] | None = None
    #: Files beside model.onnx the page reads besides labels and preprocessing (a tokenizer):
    #: a missing one makes the verified ONNX export again first.
    page_inputs: tuple[str, ...] = ()
    #: TFLite conversion (formats must name "tflite" too).
    tflite: TfliteSpec | None = None
    #: The ONNX opset of traced graphs. 23 has the standard `Attention` op: torch.onnx turns
    #: scaled-dot-product attention into one node that onnxruntime (and onnxruntime-web) runs
    #: fused, instead of the MatMul/Softmax/Where chain opset 18 spells out.
    opset: int = 18


class Modality:
    """Defaults for a modality whose examples are files in a folder per class."""

    #: Registry key, written into every run's config.json and preprocessing record.
    name: str = ""
    #: What its examples are called in messages and reports ("images", "texts", "clips").
    noun: str = "examples"
    #: Estimator settings this modality reads besides the shared ones (e.g. "window_seconds").
    options: tuple[str, ...] = ()
    #: What each `--augment` level does to this modality's training inputs (help, README,
    #: config.json, the model card). Empty: the modality does not augment (augment is refused).
    augmentation: ClassVar[dict[str, str]] = {}
    #: The default backbone when it never depends on the data (named in run folders and
    #: `tailor compare` tables); None when `default_backbone` looks at the data.
    named_default_backbone: str | None = None
    #: When two modalities recognise a path, the lower number is asked first.
    priority: int = 50

    # -- data in ---------------------------------------------------------------------------
    def recognises(self, path: str | Path) -> bool:
        """Whether `tailor train PATH` holds this modality's data."""
        return False

    def load(
        self, path: str | Path, options: dict[str, Any], class_names: list[str] | None = None
    ) -> LabeledDataset:
        """The labelled dataset at `path` (`options`: CLI data options, e.g. text_column)."""
        raise NotImplementedError(f"{self.name}: no reader")

    def find_inputs(self, paths: list[str | Path]) -> tuple[list, list[Skipped]]:
        """Inputs to predict on from files/folders, and what was skipped."""
        raise ModelTailorError(f"{self.name} runs cannot read files to predict on")

    def as_items(self, X: Any) -> list:
        """Whatever a user passes to `predict` as dataset items."""
        return [Path(x) for x in X]

    def prepare(self, data: LabeledDataset) -> LabeledDataset:
        """Drop what cannot be read before training (e.g. files that fail to decode)."""
        return data

    # -- preprocessing and backbones ---------------------------------------------------------
    def preprocessing_from_dict(self, d: dict[str, Any]) -> Any:
        """The preprocessing record (`to_dict`/`from_dict`, a `modality` field) of a run."""
        raise NotImplementedError(f"{self.name}: no preprocessing record")

    def input_pipeline(self, pre: Any) -> Any:
        """How items become model input (`training.inputs.InputPipeline`) for networks that
        bring none of their own (`input_pipeline()` on the network comes first)."""
        raise NotImplementedError(f"{self.name}: the network must provide input_pipeline()")

    def default_backbone(self, clf: Any, train: LabeledDataset) -> str:
        raise ModelTailorError(f"{self.name}: give a backbone (see `tailor backbones`)")

    def specialise(self, clf: Any, spec: BackboneSpec, train: LabeledDataset) -> BackboneSpec:
        """The backbone record fitted to the data (audio: the window length from the clips)."""
        return spec

    def fit_details(self, clf: Any, model: Any, train: LabeledDataset) -> dict[str, Any]:
        """What config.json records about this modality's inputs (long texts, clip windows)."""
        return {}

    # -- the trained model ---------------------------------------------------------------------
    def before_training(self, clf: Any, model: Any) -> None:
        """Set what the network needs to know while it trains (audio: augmentation)."""

    def extend_head(self, clf: Any, model: Any, train, val, pre, result, settings) -> None:
        """After a closed-form head: side features may join it (text: TF-IDF)."""

    def side_logits(self, clf: Any, items: list) -> np.ndarray | None:
        """Logits a side model adds to the network's (text: the TF-IDF side head)."""
        return None

    def save_assets(self, clf: Any, run: RunDir) -> None:
        """Files besides the weights that loading needs (text: architecture + tokenizer)."""

    def load_assets(self, clf: Any, run: RunDir) -> None:
        """Read back what `save_assets` wrote, after the weights are loaded."""

    def network_for(self, run: RunDir, cfg: dict[str, Any]) -> torch.nn.Module:
        """The network a saved run was trained with, before its weights are loaded."""
        raise NotImplementedError(f"{self.name}: cannot rebuild a saved network")

    # -- command line ------------------------------------------------------------------------
    def add_cli_options(self, parser: argparse.ArgumentParser, command: str) -> None:
        """Options of `tailor <command>` that only this modality reads."""

    def flags_set(self, args: argparse.Namespace) -> list[str]:
        """This modality's own flags that `args` sets: an error on another modality's data."""
        return []

    def estimator_options(self, args: argparse.Namespace) -> dict[str, Any]:
        """Estimator settings (names in `options`) from parsed command-line options."""
        return {}

    def predict_command(self, clf: Any, args: argparse.Namespace) -> int | None:
        """`tailor predict` for inputs that are not files (text: --text, tables); None: the
        shared path, which classifies the files and folders given."""
        return None

    # -- report / export / serve ---------------------------------------------------------------
    #: The model card's task: Hugging Face's pipeline tag ("" -> "<name>-classification").
    pipeline_tag: str = ""
    #: Hugging Face's dataset loader for data laid out as this modality's folders ("": by the
    #: data file's suffix, csv or json).
    dataset_type: str = ""
    #: What the card's "How to use it" passes to `tailor predict` and to `clf.predict`.
    card_predict_args: tuple[str, ...] = ("FILES",)
    card_python_example: str = '"example"'
    #: Whether the card names the backbone's languages even when the catalogue has none.
    card_states_languages: bool = False

    def card_language(self, spec: Any) -> str | None:
        """The card's `language:` front-matter entry for this backbone, or None."""
        return None

    def card_input_limits(self, pre: dict[str, Any], fit: dict[str, Any]) -> list[str]:
        """The card's lines on what the model reads of an input (size, window, length)."""
        if not pre:
            return []
        from modeltailor.report.card import _md

        shown = ", ".join(f"{k}={v}" for k, v in pre.items() if k != "modality")
        return [f"- **Input**: as recorded in config.json's preprocessing: {_md(shown)}."]

    def report_example(self, path: str) -> tuple[str, str | None]:
        """How the report shows one example: ("thumbnail" | "clip", a data URI, or None when
        the file is gone), or ("text", "") for the row's text snippet (its path, for files)."""
        return "text", ""

    #: Cosine above which two `fingerprint`s are the same content (`tailor doctor`).
    fingerprint_threshold: float = 1.0
    #: Cosine of centred, L2-normalised embeddings (the modality's default backbone) at or
    #: above which `tailor doctor` calls two items near duplicates (--near-threshold overrides).
    near_threshold: float = 0.95

    def fingerprint(self, item: Any) -> np.ndarray | None:
        """A small vector that survives re-encoding and resizing, for near-duplicate search
        beside the embeddings (images: a 16x16 grey thumbnail); None: embeddings only, or
        the item cannot be read."""
        return None

    def embedding_example(self, pre: Any) -> Any:
        """A random batch of what the backbone's `embed` takes (after preprocessing), for
        tracing it to ONNX Runtime for frozen extraction (`training/onnx_embed.py`); None:
        that numeric path is not offered for this modality."""
        return None

    def baseline_features(self, items: list) -> tuple[str, list[np.ndarray | None]] | None:
        """A cheap no-pretraining baseline for modalities whose catalogue has none (images):
        its name and one feature vector per item (None: unreadable). None: no baseline."""
        return None

    def snippet(self, item: Any) -> str | None:
        """The text predictions.csv keeps beside an item (texts), None for files."""
        return None

    def export_spec(self) -> ExportSpec | None:
        """How this modality's models are exported; None: not exportable yet."""
        return None

    def serve_decoder(self, pre: Any) -> Any:
        """Turns an upload into an export input (see serve/); None: not servable yet.

        Modalities whose uploads are read as dataset items instead (a clip, a table of
        texts) leave this None and define `read_upload`: the server then feeds the graph
        with `export_spec().inputs`, the very function the export was verified with."""
        return None

    #: Upload content types the server accepts for this modality (besides none/octet-stream).
    upload_types: tuple[str, ...] = ()

    def accepts_upload(self, content_type: str | None) -> bool:
        mime = (content_type or "").split(";")[0].strip().lower()
        return mime in ("", "application/octet-stream") or any(
            mime == t or (t.endswith("/") and mime.startswith(t)) for t in self.upload_types
        )

    def read_upload(self, path: Path, name: str) -> list[tuple[str, Any]]:
        """(name, item) per example an uploaded file holds (saved at `path`, sent as
        `name`); raises InputError naming what is wrong. Not defined: not servable."""
        raise NotImplementedError

    def servable(self) -> bool:
        """Whether `tailor serve` can answer for this modality's runs."""
        kind = type(self)
        return kind.serve_decoder is not Modality.serve_decoder or (
            kind.read_upload is not Modality.read_upload
        )

    def forget_upload(self, path: Path) -> None:
        """Drop what reading an upload left behind (a cached decoded clip)."""

    def json_items(self, texts: list[str]) -> list[tuple[str, Any]] | None:
        """(name, item) per text of a JSON request body; None: this modality takes files."""
        return None
