"""ONNX export, checked against PyTorch before anything is written.

The graph takes float32 RGB pixels in [0, 1], NCHW, already resized and centre-cropped as
`preprocessing.json` describes; normalisation is inside the graph. The batch axis is dynamic.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from modeltailor.export.base import (  # noqa: F401  (re-exported for callers of this module)
    ExportError,
    NormalizedModel,
    parity,
    pixels_for,
    prepare,
    refuse_disagreement,
    update_manifest,
    verification_items,
)

OPSET = 18


def _ort_logits(path: Path, pixels: np.ndarray, batch: int = 32) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate(
        [session.run(None, {name: pixels[i : i + batch]})[0] for i in range(0, len(pixels), batch)]
    )


def export_onnx(
    run_path: str | Path,
    quantize: str | None = None,
    data: str | Path | None = None,
    force: bool = False,
    max_examples: int = 256,
) -> dict[str, Any]:
    """Write run/export/model.onnx (and model.int8.onnx), labels, preprocessing and manifest."""
    job = prepare(run_path, data, max_examples)
    sections: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=job.run.path, prefix=".export-") as tmp:
        fp32 = Path(tmp) / "model.onnx"
        _torch_export(job.model, job.preprocessing.input_size, fp32)
        check = parity(job.reference, _ort_logits(fp32, job.pixels))
        sections["onnx"] = {
            "file": "model.onnx",
            "bytes": fp32.stat().st_size,
            "opset": OPSET,
            "input": {"name": "pixels", "layout": "NCHW", "batch": "dynamic"},
            "accuracy": job.accuracy(job.reference),
            "parity_vs_pytorch": check,
            "verified_on": job.verified_on,
        }
        refuse_disagreement("ONNX", check)
        files = [fp32]
        if quantize == "int8":
            from modeltailor.export.quantize import quantize_int8

            int8, sections["int8"] = quantize_int8(fp32, job, Path(tmp), force)
            files.append(int8)
        job.out_dir.mkdir(exist_ok=True)
        for f in files:
            shutil.move(str(f), job.out_dir / f.name)
    return update_manifest(job.out_dir, job, sections)


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
