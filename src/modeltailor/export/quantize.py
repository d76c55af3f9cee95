"""int8 quantization with onnxruntime: static QDQ, calibrated on training images.

Candidate settings are tried fastest first; the first whose validation accuracy is within
1 point of fp32 is kept, and what was tried is recorded in the manifest.

Why "depthwise" comes first: with BatchNorm folded in, a depthwise convolution's channels have
weight ranges that differ by orders of magnitude, so one per-tensor scale rounds most of them to
zero (the bundled example fell from 0.88 to 0.38). Per-channel scales for the depthwise weights
only fix that and stay on onnxruntime's fast int8 kernels, whereas per-channel everywhere makes
the pointwise convolutions slower than fp32 on these CPUs. Measured on hymenoptera (lite0,
batch 32): per-tensor 130 img/s, accuracy -1.3 points; all per-channel 94 img/s, -0.7;
depthwise per-channel 143 img/s, +-0 (fp32 onnxruntime: 61 img/s).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from modeltailor.defaults import MAX_ACCURACY_DROP
from modeltailor.export.base import ExportError, ExportJob, parity, pixels_for, verification_items
from modeltailor.export.onnx import _ort_logits

CALIBRATION_IMAGES = 128
CANDIDATES: tuple[dict[str, Any], ...] = (
    {"per_channel": "depthwise", "calibration": "MinMax"},
    {"per_channel": "depthwise", "calibration": "Percentile"},
    {"per_channel": "all", "calibration": "MinMax"},
)


def _depthwise_weights(nodes) -> list[str]:
    """Weight initialisers of grouped (depthwise) convolutions."""
    weights = []
    for node in nodes:
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if node.op_type == "Conv" and group > 1:
            weights.append(node.input[1])
    return weights


def _per_channel_options(setting: str, depthwise: list[str]) -> dict[str, Any]:
    """quantize_static keyword arguments for a candidate's per-channel setting."""
    if setting == "all":
        return {"per_channel": True}
    overrides = {name: [{"axis": 0}] for name in depthwise}
    return {"per_channel": False, "extra_options": {"TensorQuantOverrides": overrides}}


def _classifier_nodes(nodes) -> list[str]:
    """The final Gemm/MatMul (+ bias Add): the classification head stays fp32.

    A linear-probe head folds the feature standardisation into its weights, whose scales then
    differ by orders of magnitude within a row: int8 would flatten them (20 points lost on
    the bundled example). The head is a tiny share of the compute.
    """
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
    fp32: Path, job: ExportJob, workdir: Path, force: bool
) -> tuple[Path, dict[str, Any]]:
    """Calibrate on training images, try CANDIDATES, keep the first within 1 point of fp32.
    A graph the modality marks "dynamic" (transformers) is quantised without calibration."""
    if job.spec.quantization == "dynamic":
        return quantize_dynamic_int8(fp32, job, workdir, force)
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    calib_paths, _ = verification_items(job.run, "train", None, CALIBRATION_IMAGES)
    calib, _ = pixels_for(calib_paths, job.preprocessing)
    prepared = workdir / "model.pre.onnx"
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    graph = onnx.load(str(prepared)).graph  # read once for the input name and both node lists
    name = graph.input[0].name
    keep_fp32 = _classifier_nodes(graph.node)
    depthwise = _depthwise_weights(graph.node)

    def write(k: int, cand: dict[str, Any]) -> Path:
        path = workdir / f"candidate{k}.onnx"
        quantize_static(
            str(prepared),
            str(path),
            _Reader(name, calib),
            quant_format=QuantFormat.QDQ,
            **_per_channel_options(cand["per_channel"], depthwise),
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=getattr(CalibrationMethod, cand["calibration"]),
            nodes_to_exclude=keep_fp32,
        )
        return path

    out, chosen, tried, figures = _first_accurate(job, CANDIDATES, write, workdir, force)
    info = {
        "file": out.name,
        "bytes": out.stat().st_size,
        "fp32_bytes": fp32.stat().st_size,
        "size_ratio": round(out.stat().st_size / fp32.stat().st_size, 4),
        "format": "QDQ static, activations uint8, weights int8",
        "kept_fp32": keep_fp32,
        "calibration_images": int(len(calib)),
        "calibration_source": "the run's training split",
        "settings": {"per_channel": chosen["per_channel"], "calibration": chosen["calibration"]},
        **figures,
        "tried": tried,
    }
    return out, info


def _first_accurate(
    job: ExportJob,
    candidates: tuple[dict[str, Any], ...],
    write: Callable[[int, dict[str, Any]], Path],
    workdir: Path,
    force: bool,
    out_name: str = "model.int8.onnx",
) -> tuple[Path, dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """Write candidates in order (`write(k, candidate) -> path`) until one is within
    MAX_ACCURACY_DROP of fp32 on the verification examples; keep the most accurate tried (the
    first, the fastest, on ties), refused beyond the rule unless `force`. Returns the int8 file,
    the chosen candidate, every candidate tried (with its figures), and the accuracy fields."""
    fp32_acc = job.accuracy(job.reference)
    tried: list[dict[str, Any]] = []
    paths = []
    for k, cand in enumerate(candidates):
        paths.append(write(k, cand))
        logits = _ort_logits(paths[-1], job.inputs)
        acc = job.accuracy(logits)
        tried.append(
            {**cand, "accuracy": acc, "parity_vs_pytorch_fp32": parity(job.reference, logits)}
        )
        if fp32_acc is None or acc >= fp32_acc - MAX_ACCURACY_DROP:
            break
    best = max(range(len(tried)), key=lambda i: (tried[i]["accuracy"] or 0.0, -i))
    chosen = tried[best]
    drop = (fp32_acc - chosen["accuracy"]) if fp32_acc is not None else None
    if drop is not None and drop > MAX_ACCURACY_DROP and not force:
        raise ExportError(
            f"int8 loses {drop * 100:.1f} accuracy points on the validation {job.spec.noun} "
            f"({fp32_acc:.3f} -> {chosen['accuracy']:.3f}) with every setting tried; "
            "use --force to write it anyway"
        )
    out = workdir / out_name
    paths[best].rename(out)
    figures = {
        "accuracy_fp32": fp32_acc,
        "accuracy_int8": chosen["accuracy"],
        "accuracy_drop": drop,
        "forced": bool(force and drop is not None and drop > MAX_ACCURACY_DROP),
    }
    return out, chosen, tried, figures


def _int8_conv_weights(path: Path, keep_nodes: list[str], exact: tuple[str, ...]) -> int:
    """Store the float Conv weights dynamic quantisation left (Whisper's two stem convolutions:
    1.8 of the 10.5 MB int8 file) as int8 with one scale per output channel, dequantised by a
    DequantizeLinear node in front of the unchanged float Conv: a smaller file at fp32 speed.
    (Quantising them to ConvInteger instead made FSDD's batch of 32 ~45% slower.) Nodes in
    `keep_nodes` and weights named with an `exact` prefix stay fp32. Returns how many."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    done, new_nodes = 0, []
    for node in graph.node:
        weight = node.input[1] if node.op_type == "Conv" and len(node.input) > 1 else None
        if (
            weight not in inits
            or uses[weight] > 1  # shared: its other users keep the float tensor
            or node.name in keep_nodes
            or any(weight.startswith(prefix) for prefix in exact)
        ):
            new_nodes.append(node)
            continue
        w = numpy_helper.to_array(inits[weight]).astype(np.float32)
        peak = np.abs(w.reshape(len(w), -1)).max(axis=1)
        scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
        shape = (-1,) + (1,) * (w.ndim - 1)
        q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
        graph.initializer.remove(inits[weight])
        graph.initializer.extend(
            [
                numpy_helper.from_array(q, f"{weight}_int8"),
                numpy_helper.from_array(scale, f"{weight}_scale"),
                numpy_helper.from_array(np.zeros(len(w), np.int8), f"{weight}_zero_point"),
            ]
        )
        dq = f"{weight}_dequantized"
        new_nodes.append(
            helper.make_node(
                "DequantizeLinear",
                [f"{weight}_int8", f"{weight}_scale", f"{weight}_zero_point"],
                [dq],
                name=f"{node.name}_weight_dequantize",
                axis=0,
            )
        )
        node.input[1] = dq
        new_nodes.append(node)
        done += 1
    if done:
        del graph.node[:]
        graph.node.extend(new_nodes)
        onnx.save(model, str(path))
    return done


def _has_int8_matmul(path: Path) -> bool:
    """Whether dynamic quantisation turned any MatMul into an int8 one."""
    import onnx

    nodes = onnx.load(str(path), load_external_data=False).graph.node
    return any(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for n in nodes)


@contextmanager
def _quiet_root_logger():
    """onnxruntime's quantizer warns through the root logger; silence it for one call."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


DYNAMIC_CANDIDATES: tuple[dict[str, Any], ...] = (
    {"per_channel": False},
    {"per_channel": True},
)


def quantize_dynamic_int8(
    fp32: Path,
    job: ExportJob,
    workdir: Path,
    force: bool,
    out_name: str = "model.int8.onnx",
    op_types: tuple[str, ...] = ("MatMul", "Gather"),
) -> tuple[Path, dict[str, Any]]:
    """MatMul weights to int8, activations quantised per batch at run time (onnxruntime's
    dynamic quantisation): what transformer encoders take, since their inputs vary in length
    and no fixed calibration range fits every text. The classifier head stays fp32 (as for
    images); per-tensor first, per-channel if that loses more than the accuracy rule allows.
    `op_types` adds "Attention" for the onnxruntime server graph (`fuse.py`): its contrib
    Attention becomes QAttention (never for opset 23's standard Attention, a different op).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    head = _classifier_nodes(onnx.load(str(fp32), load_external_data=False).graph.node)
    # dynamic quantisation first rewrites Gemm as "<name>_MatMul" + "<name>_Add": keep both
    keep_fp32 = [*head, *(f"{name}_{part}" for name in head for part in ("MatMul", "Add"))]

    def write(k: int, cand: dict[str, Any]) -> Path:
        path = workdir / f"{Path(out_name).stem}.dynamic{k}.onnx"
        with _quiet_root_logger():  # "consider pre-processing": advice for static QDQ only
            quantize_dynamic(
                str(fp32),
                str(path),
                weight_type=QuantType.QInt8,
                op_types_to_quantize=list(op_types),
                per_channel=cand["per_channel"],
                nodes_to_exclude=keep_fp32,
            )
        _int8_conv_weights(path, keep_fp32, job.spec.exact_weights)
        if k == 0 and not _has_int8_matmul(path):
            raise ExportError(
                "int8: this graph has no MatMul weights besides the head to quantise (its "
                "weights are convolutions: a CNN or a closed-form model); export it without "
                "--quantize"
            )
        return path

    out, chosen, tried, figures = _first_accurate(
        job, DYNAMIC_CANDIDATES, write, workdir, force, out_name
    )
    return out, {
        "file": out.name,
        "bytes": out.stat().st_size,
        "fp32_bytes": fp32.stat().st_size,
        "size_ratio": round(out.stat().st_size / fp32.stat().st_size, 4),
        "format": (
            "dynamic: MatMul weights int8, activations quantised at run time; other "
            "convolution weights int8 per output channel, dequantised at load"
        ),
        "kept_fp32": keep_fp32,
        "settings": {"per_channel": chosen["per_channel"]},
        **figures,
        "tried": tried,
    }
