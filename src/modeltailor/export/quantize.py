"""int8 quantization with onnxruntime: static QDQ, calibrated on training images.

Candidate settings are tried fastest first (per-tensor int8 runs ~1.7x fp32 on VNNI/AMX CPUs,
per-channel is slower than fp32 there: DESIGN.md); the first whose validation accuracy is within
1 point of fp32 is kept, and what was tried is recorded in the manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from modeltailor.export.onnx import (
    ExportError,
    _ort_logits,
    parity,
    pixels_for,
    verification_items,
)

MAX_ACCURACY_DROP = 0.01
CALIBRATION_IMAGES = 128
CANDIDATES: tuple[dict[str, Any], ...] = (
    {"per_channel": False, "calibration": "MinMax"},
    {"per_channel": False, "calibration": "Percentile"},
    {"per_channel": True, "calibration": "MinMax"},
)


def _classifier_nodes(path: Path) -> list[str]:
    """The final Gemm/MatMul (+ bias Add): the classification head stays fp32.

    A linear-probe head folds the feature standardisation into its weights, whose scales then
    differ by orders of magnitude within a row: int8 would flatten them (20 points lost on
    the bundled example). The head is a tiny share of the compute.
    """
    import onnx

    nodes = onnx.load(str(path)).graph.node
    for i in range(len(nodes) - 1, -1, -1):
        if nodes[i].op_type in ("Gemm", "MatMul"):
            tail = [n.name for n in nodes[i + 1 :] if n.op_type == "Add"]
            return [nodes[i].name, *tail]
    return []


class _Reader:
    """onnxruntime CalibrationDataReader over pre-computed pixels."""

    def __init__(self, name: str, pixels: np.ndarray, batch: int = 16) -> None:
        self._batches = iter([{name: pixels[i : i + batch]} for i in range(0, len(pixels), batch)])

    def get_next(self):
        return next(self._batches, None)


def quantize_int8(
    fp32: Path,
    clf,
    run,
    val_pixels: np.ndarray,
    y: np.ndarray,
    reference: np.ndarray,
    workdir: Path,
    force: bool,
) -> tuple[Path, dict[str, Any]]:
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    calib_paths, _ = verification_items(run, "train", None, CALIBRATION_IMAGES)
    calib, _ = pixels_for(calib_paths, clf.preprocessing_)
    prepared = workdir / "model.pre.onnx"
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    name = ort.InferenceSession(str(prepared)).get_inputs()[0].name
    keep_fp32 = _classifier_nodes(prepared)
    labelled = y >= 0
    fp32_acc = (
        float((reference.argmax(1)[labelled] == y[labelled]).mean()) if labelled.any() else None
    )
    tried = []
    out = workdir / "model.int8.onnx"
    for cand in CANDIDATES:
        quantize_static(
            str(prepared),
            str(out),
            _Reader(name, calib),
            quant_format=QuantFormat.QDQ,
            per_channel=cand["per_channel"],
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=getattr(CalibrationMethod, cand["calibration"]),
            nodes_to_exclude=keep_fp32,
        )
        logits = _ort_logits(out, val_pixels)
        acc = float((logits.argmax(1)[labelled] == y[labelled]).mean()) if labelled.any() else None
        entry = {**cand, "accuracy": acc, "parity_vs_pytorch_fp32": parity(reference, logits)}
        tried.append(entry)
        if fp32_acc is None or acc >= fp32_acc - MAX_ACCURACY_DROP:
            break
    chosen = tried[-1]
    drop = (fp32_acc - chosen["accuracy"]) if fp32_acc is not None else None
    if drop is not None and drop > MAX_ACCURACY_DROP and not force:
        raise ExportError(
            f"int8 loses {drop * 100:.1f} accuracy points on the validation images "
            f"({fp32_acc:.3f} -> {chosen['accuracy']:.3f}) with every setting tried; "
            "use --force to write it anyway"
        )
    info = {
        "file": out.name,
        "bytes": out.stat().st_size,
        "fp32_bytes": fp32.stat().st_size,
        "size_ratio": round(out.stat().st_size / fp32.stat().st_size, 4),
        "format": "QDQ static, activations uint8, weights int8",
        "kept_fp32": keep_fp32,
        "calibration_images": int(len(calib)),
        "settings": {"per_channel": chosen["per_channel"], "calibration": chosen["calibration"]},
        "accuracy_fp32": fp32_acc,
        "accuracy_int8": chosen["accuracy"],
        "accuracy_drop": drop,
        "forced": bool(force and drop is not None and drop > MAX_ACCURACY_DROP),
        "tried": tried,
    }
    return out, info
