"""ONNX export, checked against PyTorch before anything is written.

The graph takes float32 RGB pixels in [0, 1], NCHW, already resized and centre-cropped as
`preprocessing.json` describes; normalisation is inside the graph. The batch axis is dynamic.
Every export is run with onnxruntime on the run's validation images and compared with PyTorch:
an export whose top-1 disagrees on any image is refused.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from modeltailor.errors import ModelTailorError
from modeltailor.run import RunDir, atomic_write_json
from modeltailor.training.loaders import decoded_batches

OPSET = 18


class ExportError(ModelTailorError):
    """An export was refused (it disagrees with PyTorch, or loses too much accuracy)."""


class NormalizedModel(nn.Module):
    """Pixels in [0, 1] -> logits: normalisation lives in the exported graph."""

    def __init__(self, model: nn.Module, mean, std) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model((pixels - self.mean) / self.std)


def pixels_for(items: list, pre) -> tuple[np.ndarray, list[int]]:
    """Resized, cropped [0, 1] pixels (N, 3, H, W) of the files that decode, and their indices.

    The same decoding as training and prediction (`decoded_batches`), with the normalisation
    undone: the exported graph normalises by itself.
    """
    mean = torch.tensor(pre.mean).view(1, 3, 1, 1)
    std = torch.tensor(pre.std).view(1, 3, 1, 1)
    chunks, kept = [], []
    for pixels, indices, _ in decoded_batches(items, pre, batch_size=32, num_workers=0, bad={}):
        if indices:
            chunks.append((pixels * std + mean).contiguous().numpy())
            kept.extend(indices)
    if not chunks:
        return np.empty((0, 3, pre.input_size, pre.input_size), np.float32), kept
    return np.concatenate(chunks).astype(np.float32, copy=False), kept


def verification_items(run: RunDir, split: str, data: Path | None, limit: int) -> tuple[list, list]:
    """(paths, labels) to verify on: the run's own split files, or a folder given by the user."""
    if data is not None:
        from modeltailor.data import load_image_folder

        ds = load_image_folder(data)
        return ds.items[:limit], [ds.class_names[i] for i in ds.labels[:limit]]
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


def _ort_logits(path: Path, pixels: np.ndarray, batch: int = 32) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate(
        [session.run(None, {name: pixels[i : i + batch]})[0] for i in range(0, len(pixels), batch)]
    )


def parity(reference: np.ndarray, candidate: np.ndarray) -> dict[str, Any]:
    agree = reference.argmax(1) == candidate.argmax(1)
    return {
        "examples": int(len(reference)),
        "max_abs_logit_diff": float(np.abs(reference - candidate).max()),
        "top1_agreement": float(agree.mean()),
        "top1_disagreements": int((~agree).sum()),
    }


def export_onnx(
    run_path: str | Path,
    quantize: str | None = None,
    data: str | Path | None = None,
    force: bool = False,
    max_examples: int = 256,
) -> dict[str, Any]:
    """Write run/export/model.onnx (and model.int8.onnx), labels, preprocessing and manifest."""
    from modeltailor.api import ImageClassifier

    run = RunDir(run_path)
    clf = ImageClassifier.load(run.path)
    pre = clf.preprocessing_
    paths, labels = verification_items(run, "val", Path(data) if data else None, max_examples)
    pixels, kept = pixels_for(paths, pre)
    labels = [labels[i] for i in kept]
    y = np.array([clf.classes_.index(lab) if lab in clf.classes_ else -1 for lab in labels])
    wrapped = NormalizedModel(
        clf.model_.to(memory_format=torch.contiguous_format), pre.mean, pre.std
    ).eval()
    with torch.inference_mode():
        reference = np.concatenate(
            [
                wrapped(torch.from_numpy(pixels[i : i + 32])).numpy()
                for i in range(0, len(pixels), 32)
            ]
        )
    out_dir = run.path / "export"
    manifest: dict[str, Any] = {
        "source_run": str(run.path),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    with tempfile.TemporaryDirectory(dir=run.path, prefix=".export-") as tmp:
        fp32 = Path(tmp) / "model.onnx"
        _torch_export(wrapped, pre.input_size, fp32)
        check = parity(reference, _ort_logits(fp32, pixels))
        manifest["onnx"] = {
            "file": "model.onnx",
            "bytes": fp32.stat().st_size,
            "opset": OPSET,
            "parity_vs_pytorch": check,
            "verified_on": _verified_on(data),
        }
        if check["top1_disagreements"]:
            raise ExportError(
                f"ONNX export disagrees with PyTorch on {check['top1_disagreements']} of "
                f"{check['examples']} images (max logit diff {check['max_abs_logit_diff']:.2e}); "
                "nothing was written"
            )
        files = [fp32]
        if quantize == "int8":
            from modeltailor.export.quantize import quantize_int8

            int8, info = quantize_int8(fp32, clf, run, pixels, y, reference, Path(tmp), force)
            manifest["int8"] = info
            files.append(int8)
        out_dir.mkdir(exist_ok=True)
        for f in files:
            shutil.move(str(f), out_dir / f.name)
    atomic_write_json(out_dir / "labels.json", clf.classes_)
    atomic_write_json(out_dir / "preprocessing.json", _preprocessing_doc(pre))
    manifest["labels"] = "labels.json"
    manifest["preprocessing"] = "preprocessing.json"
    atomic_write_json(out_dir / "manifest.json", manifest)
    return manifest


def _verified_on(data) -> str:
    return f"folder {data}" if data else "the run's validation split"


def _torch_export(model: nn.Module, size: int, path: Path) -> None:
    x = torch.rand(2, 3, size, size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    try:
        program = torch.onnx.export(
            model,
            (x,),
            dynamo=True,
            input_names=["pixels"],
            output_names=["logits"],
            dynamic_shapes={"pixels": {0: batch}},
            opset_version=OPSET,
            verbose=False,
        )
        program.save(str(path))
    except Exception as exc:
        raise ExportError(f"torch.onnx.export failed: {exc}") from exc


def _preprocessing_doc(pre) -> dict[str, Any]:
    import math

    return {
        "input": "pixels: float32 RGB in [0, 1], NCHW, batch axis dynamic",
        "resize_shorter_side_to": int(math.floor(pre.input_size / pre.crop_pct)),
        "center_crop": pre.input_size,
        "interpolation": pre.interpolation,
        "normalisation": {"mean": list(pre.mean), "std": list(pre.std), "in_graph": True},
        "output": "logits (apply softmax for probabilities), classes in labels.json order",
    }
