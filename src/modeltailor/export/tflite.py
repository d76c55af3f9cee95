"""TFLite (LiteRT) export for Android and iOS apps, verified like the ONNX export.

`litert-torch` converts the PyTorch model without TensorFlow; the `ai-edge-litert` interpreter
then runs it on the validation images and any top-1 disagreement with PyTorch refuses it. Both
are an optional extra (they pull jax): `pip install 'modeltailor[tflite]'`.

The model takes what a phone's camera frame or bitmap gives after resizing: float32 RGB in
[0, 1], NHWC, batch 1 (the layout TFLite image models use); normalisation is inside the graph.
Beside it go `labels.txt` (one label per line, the label file Model Maker shipped) and
`model.tflite.json`, the input/output description an app needs. (Model Maker embedded the same
facts as TFLite metadata; the writer for that, tflite-support, needs protobuf 3 and cannot be
installed beside onnx, so they are written as plain files.)
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from modeltailor.export.base import (
    ExportError,
    ExportJob,
    parity,
    prepare,
    preprocessing_doc,
    refuse_disagreement,
    update_manifest,
)
from modeltailor.modalities.base import TfliteSpec
from modeltailor.run import atomic_write_bytes, atomic_write_json

MISSING = (
    "TFLite export needs the optional extra: pip install 'modeltailor[tflite]' "
    "(litert-torch and ai-edge-litert; no TensorFlow)"
)


def _require_litert():
    try:
        import litert_torch
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise ExportError(f"{MISSING} [{exc}]") from exc
    return litert_torch, Interpreter


def tflite_logits(
    path: Path, inputs: dict[str, np.ndarray] | np.ndarray, threads: int = 2
) -> np.ndarray:
    """Logits of a batch-1 .tflite over a batch of rows (the shared runner); an array is the
    one input of an image graph, (N, 3, H, W) pixels."""
    from modeltailor.export.runners import TfliteRunner

    if isinstance(inputs, np.ndarray):
        inputs = {"pixels": inputs}
    return TfliteRunner(path, threads, input_names=list(inputs))(inputs)


def image_spec() -> TfliteSpec:
    """Images as apps hold them: one NHWC float32 RGB frame in [0, 1]."""

    def example(job: ExportJob) -> tuple:
        import torch

        size = job.preprocessing.input_size
        return (torch.rand(1, size, size, 3),)

    def layout(model):
        litert_torch, _ = _require_litert()
        return litert_torch.to_channel_last_io(model, args=[0])

    def app_input(job: ExportJob) -> dict[str, Any]:
        pre = job.preprocessing
        doc = preprocessing_doc(pre, layout="NHWC")
        return {
            "shape": [1, pre.input_size, pre.input_size, 3],
            "dtype": "float32",
            "layout": "NHWC",
            "color": "RGB",
            "range": [0.0, 1.0],
            "resize_shorter_side_to": doc["resize_shorter_side_to"],
            "center_crop": doc["center_crop"],
            "interpolation": doc["interpolation"],
            "normalisation": "inside the model",
        }

    return TfliteSpec(example=example, app_input=app_input, layout=layout)


def _convert(job: ExportJob, spec: TfliteSpec, path: Path) -> None:
    litert_torch, _ = _require_litert()

    model = spec.layout(job.model) if spec.layout is not None else job.model
    try:
        # The converter prints its own progress lines; ours is the one users should read.
        with contextlib.redirect_stdout(io.StringIO()), _quiet_converter():
            edge = litert_torch.convert(model.eval(), spec.example(job))
            edge.export(str(path))
    except Exception as exc:
        raise ExportError(f"litert-torch could not convert this model: {exc}") from exc


@contextlib.contextmanager
def _quiet_converter():
    """litert-torch logs that int64 inputs become int32 (meant: apps feed int32 ids)."""
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def app_description(job: ExportJob, spec: TfliteSpec) -> dict[str, Any]:
    """What a mobile app needs to feed the model and read its answer."""
    return {
        "model": "model.tflite",
        "labels": "labels.txt",
        "input": spec.app_input(job),
        "output": {
            "shape": [1, len(job.classifier.classes_)],
            "meaning": "logits; softmax gives probabilities; index i is line i of labels.txt",
        },
        "backbone": job.classifier.backbone,
    }


def export_tflite(
    run_path: str | Path, data: str | Path | None = None, max_examples: int = 256
) -> dict[str, Any]:
    """Write run/export/model.tflite + labels.txt + model.tflite.json, verified first."""
    from modeltailor.export.runners import TfliteRunner

    _require_litert()
    job = prepare(run_path, data, max_examples)
    spec = job.spec.tflite or image_spec()
    if hasattr(job.model, "write_onnx"):  # an ONNX graph already (speech-embedding)
        raise ExportError(
            f"{job.run.path}: this run's network is an ONNX graph, not a PyTorch one, so "
            "litert-torch cannot convert it; use --format onnx"
        )
    with tempfile.TemporaryDirectory(dir=job.run.path, prefix=".export-") as tmp:
        path = Path(tmp) / "model.tflite"
        _convert(job, spec, path)
        runner = TfliteRunner(path, 2, input_names=list(job.spec.input_names))
        check = parity(job.reference, runner(job.inputs))
        refuse_disagreement("TFLite", check, job.spec.noun)
        section = {
            "file": "model.tflite",
            "bytes": path.stat().st_size,
            "input": {"shape": spec.app_input(job).get("shape"), "batch": 1},
            "accuracy": job.accuracy(job.reference),
            "examples": int(len(job.labels)),
            "parity_vs_pytorch": check,
            "verified_on": job.verified_on,
            "app_files": ["labels.txt", "model.tflite.json"],
        }
        del runner  # the interpreter maps the file
        job.out_dir.mkdir(exist_ok=True)
        shutil.move(str(path), job.out_dir / "model.tflite")
    labels = "".join(f"{name}\n" for name in job.classifier.classes_)
    atomic_write_bytes(job.out_dir / "labels.txt", labels.encode("utf-8"))
    atomic_write_json(job.out_dir / "model.tflite.json", app_description(job, spec))
    return update_manifest(job.out_dir, job, {"tflite": section})
