"""What every export format shares: the model as exported, the images it is checked on, the
reference outputs from PyTorch, the parity figures, the manifest and the model card.

Every format is verified the same way before it is written: run on the run's validation images
(or a folder the user names) and compared with PyTorch; any top-1 disagreement refuses it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from modeltailor.errors import ModelTailorError
from modeltailor.modalities.base import ExportSpec
from modeltailor.run import RunDir, atomic_write_bytes, atomic_write_json
from modeltailor.training.loaders import decoded_batches

MANIFEST = "manifest.json"


class ExportError(ModelTailorError):
    """An export was refused (it disagrees with PyTorch, or loses too much accuracy)."""


class NormalizedModel(nn.Module):
    """Pixels in [0, 1] -> logits: normalisation (and a calibration temperature, when the run
    has one) live in the exported graph, so every runtime gives the run's probabilities."""

    def __init__(self, model: nn.Module, mean, std, temperature: float = 1.0) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.temperature = float(temperature)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        logits = self.model((pixels - self.mean) / self.std)
        return logits / self.temperature if self.temperature != 1.0 else logits


def unnormalize(pixels: torch.Tensor, pre) -> np.ndarray:
    """Normalised model input -> the [0, 1] pixels an exported graph takes (it normalises
    by itself): what verification, serving and benchmarks feed every export."""
    mean = torch.tensor(pre.mean).view(1, 3, 1, 1)
    std = torch.tensor(pre.std).view(1, 3, 1, 1)
    return (pixels * std + mean).contiguous().numpy()


def pixels_for(items: list, pre) -> tuple[np.ndarray, list[int]]:
    """Resized, cropped [0, 1] pixels (N, 3, H, W) of the files that decode, and their indices.

    The same decoding as training and prediction (`decoded_batches`), with the normalisation
    undone.
    """
    chunks, kept = [], []
    for pixels, indices, _ in decoded_batches(items, pre, batch_size=32, num_workers=0, bad={}):
        if indices:
            chunks.append(unnormalize(pixels, pre))
            kept.extend(indices)
    if not chunks:
        return np.empty((0, 3, pre.input_size, pre.input_size), np.float32), kept
    return np.concatenate(chunks).astype(np.float32, copy=False), kept


def verification_items(
    run: RunDir, split: str, data: Path | None, limit: int, spec: ExportSpec | None = None
) -> tuple[list, list]:
    """(items, class names) to verify on: a folder or file given by the user (read by the
    run's modality), else the run's own split as the modality keeps it (`spec.verification`;
    by default the files splits.json lists)."""
    if data is not None:
        from modeltailor.modalities import get_modality

        modality = get_modality(run.read_json("config.json").get("modality", "image"))
        ds = modality.load(data, {})
        return ds.items[:limit], [ds.class_names[i] for i in ds.labels[:limit]]
    if spec is not None and spec.verification is not None:
        return spec.verification(run, split, limit)
    splits = run.read_json("splits.json") if run.has("splits.json") else {}
    rec = splits.get(split) or splits.get("train")
    if not rec:
        raise ExportError(f"{run.path}: no {split} files recorded; pass --data FOLDER")
    pairs = [
        (p, lab) for p, lab in zip(rec["items"], rec["labels"], strict=True) if Path(p).is_file()
    ]
    if not pairs:
        raise ExportError(
            f"{run.path}: the {split} files are gone; pass --data FOLDER to verify on"
        )
    pairs = pairs[:limit]
    return [Path(p) for p, _ in pairs], [lab for _, lab in pairs]


def parity(reference: np.ndarray, candidate: np.ndarray) -> dict[str, Any]:
    agree = reference.argmax(1) == candidate.argmax(1)
    return {
        "examples": int(len(reference)),
        "max_abs_logit_diff": float(np.abs(reference - candidate).max()),
        "top1_agreement": float(agree.mean()),
        "top1_disagreements": int((~agree).sum()),
    }


def refuse_disagreement(fmt: str, check: dict[str, Any], noun: str = "images") -> None:
    if check["top1_disagreements"]:
        raise ExportError(
            f"{fmt} export disagrees with PyTorch on {check['top1_disagreements']} of "
            f"{check['examples']} {noun} (max logit diff {check['max_abs_logit_diff']:.2e}); "
            "nothing was written"
        )


@dataclass
class ExportJob:
    """A run loaded for export, with the inputs and PyTorch outputs every format is checked on.

    Rows are what the graph sees (an image, a window of a text); `owners` says which
    verification example each row belongs to. Figures about examples (accuracy) combine an
    example's row logits as prediction does: their mean, plus the side logits a modality adds
    outside the graph (text: the TF-IDF side head), both divided by the temperature.
    """

    run: RunDir
    classifier: Any
    spec: ExportSpec
    model: nn.Module  # the network with what the graph holds besides (normalisation, temperature)
    inputs: dict[str, np.ndarray]  # the graph's inputs for the verification rows
    owners: np.ndarray  # example index (0..n-1) of every row
    labels: np.ndarray  # class index per example, -1 where the label is not a class of the run
    reference: np.ndarray  # PyTorch logits per row
    verified_on: str
    side: np.ndarray | None = None  # logits per example added outside the graph (/temperature)
    items: list | None = None  # the verification examples

    @property
    def out_dir(self) -> Path:
        return self.run.path / "export"

    @property
    def preprocessing(self):
        return self.classifier.preprocessing_

    @property
    def pixels(self) -> np.ndarray:
        """The one input of a single-input graph (images: (N, 3, H, W) pixels in [0, 1])."""
        if len(self.inputs) != 1:
            raise ExportError(f"this format takes one input; the graph has {list(self.inputs)}")
        return next(iter(self.inputs.values()))

    def example_logits(self, rows: np.ndarray) -> np.ndarray:
        """Per-example logits from per-row ones: the mean of each example's rows (+ side)."""
        n = len(self.labels)
        if len(rows) == n and np.array_equal(self.owners, np.arange(n)) and self.side is None:
            return rows
        sums = np.zeros((n, rows.shape[1]), np.float64)
        np.add.at(sums, self.owners, rows)
        counts = np.bincount(self.owners, minlength=n)[:, None]
        out = sums / np.maximum(counts, 1)
        if self.side is not None:
            out = out + self.side
        return out.astype(np.float32)

    def accuracy(self, rows: np.ndarray) -> float | None:
        """Top-1 accuracy of per-row logits, combined per example."""
        labelled = self.labels >= 0
        if not labelled.any():
            return None
        logits = self.example_logits(rows)
        return float((logits.argmax(1)[labelled] == self.labels[labelled]).mean())


def batches(inputs: dict[str, np.ndarray], size: int = 32):
    """The same rows of every input, `size` at a time."""
    n = len(next(iter(inputs.values())))
    for i in range(0, n, size):
        yield {name: x[i : i + size] for name, x in inputs.items()}


def prepare(run_path: str | Path, data: str | Path | None, max_examples: int = 256) -> ExportJob:
    """Load the run, turn the verification examples into graph inputs, run PyTorch once."""
    from modeltailor.api import load_classifier

    run = RunDir(run_path)
    clf = load_classifier(run.path)
    spec = clf.modality_.export_spec()
    if spec is None:
        raise ExportError(f"{run.path}: exporting {clf.modality} runs is not supported yet")
    refusal = spec.refuse(clf) if spec.refuse is not None else None
    if refusal:
        raise ExportError(f"{run.path}: {refusal}")
    pre = clf.preprocessing_
    items, names = verification_items(run, "val", Path(data) if data else None, max_examples, spec)
    inputs, owners = spec.inputs(items, clf)
    if not len(owners):
        raise ExportError(f"{run.path}: none of the verification {spec.noun} could be read")
    kept = sorted(set(owners))  # examples with at least one row, in their order
    position = {item: k for k, item in enumerate(kept)}
    row_owners = np.array([position[i] for i in owners], dtype=np.int64)
    items = [items[i] for i in kept]
    names = [names[i] for i in kept]
    y = np.array([clf.classes_.index(n) if n in clf.classes_ else -1 for n in names])
    side = clf.modality_.side_logits(clf, items)
    if side is not None:
        side = (np.asarray(side, np.float64) / clf.temperature_).astype(np.float32)
    model = spec.wrap(
        clf.model_.to(memory_format=torch.contiguous_format), pre, clf.temperature_
    ).eval()
    with torch.inference_mode():
        reference = np.concatenate(
            [
                model(*[torch.from_numpy(b[name]) for name in spec.input_names]).numpy()
                for b in batches(inputs)
            ]
        )
    verified_on = f"folder {data}" if data else "the run's validation split"
    return ExportJob(
        run, clf, spec, model, inputs, row_owners, y, reference, verified_on, side, items
    )


def preprocessing_doc(pre, layout: str = "NCHW") -> dict[str, Any]:
    """How to turn an image into the exported model's input (what is not inside the graph)."""
    return {
        "input": f"pixels: float32 RGB in [0, 1], {layout}",
        "resize_shorter_side_to": int(math.floor(pre.input_size / pre.crop_pct)),
        "center_crop": pre.input_size,
        "interpolation": pre.interpolation,
        "normalisation": {"mean": list(pre.mean), "std": list(pre.std), "in_graph": True},
        "output": "logits (apply softmax for probabilities), classes in labels.json order",
    }


def calibration_doc(job: ExportJob) -> dict[str, Any]:
    temperature = job.classifier.temperature_
    return {"temperature": temperature, "in_graph": temperature != 1.0}


def update_manifest(out_dir: Path, job: ExportJob, sections: dict[str, Any]) -> dict[str, Any]:
    """Merge one format's sections into export/manifest.json (other formats' entries stay)."""
    path = out_dir / MANIFEST
    manifest: dict[str, Any] = {}
    if path.is_file():
        import json

        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            manifest = {}
    manifest.update(
        {
            "source_run": str(job.run.path),
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "labels": "labels.json",
            "preprocessing": "preprocessing.json",
            "calibration": calibration_doc(job),
        }
    )
    manifest.update(sections)
    manifest = {k: v for k, v in manifest.items() if v is not None}  # None: a section withdrawn
    out_dir.mkdir(exist_ok=True)
    atomic_write_json(out_dir / "labels.json", job.classifier.classes_)
    doc = job.spec.describe(job.preprocessing)
    if job.spec.assets is not None:
        doc.update(job.spec.assets(job, out_dir))
    atomic_write_json(out_dir / "preprocessing.json", doc)
    atomic_write_json(path, manifest)
    copy_model_card(job.run, out_dir)
    return manifest


def copy_model_card(run: RunDir, out_dir: Path) -> Path:
    """The run's model card (README.md) in the export folder, so the exported files travel
    with what a person needs to know about them. It is rebuilt first from the run's files
    (it lists the exports in export/manifest.json, so it changes with every export)."""
    from modeltailor.report.card import CARD_FILE, write_model_card

    card = write_model_card(run.path)
    target = out_dir / CARD_FILE
    atomic_write_bytes(target, card.read_bytes())
    return target
