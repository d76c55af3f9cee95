"""ONNX export, checked against PyTorch before anything is written.

The graph takes float32 RGB pixels in [0, 1], NCHW, already resized and centre-cropped as
`preprocessing.json` describes; normalisation is inside the graph. The batch axis is dynamic.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modeltailor.export.base import (  # noqa: F401  (re-exported for callers of this module)
    ExportError,
    NormalizedModel,
    batches,
    parity,
    pixels_for,
    prepare,
    refuse_disagreement,
    update_manifest,
    verification_items,
)

#: onnxruntime-only graphs (contrib ops) beside the standard ones; the web page keeps model.onnx.
SERVER_FP32 = "model.server.onnx"
SERVER_INT8 = "model.server.int8.onnx"
SERVER_RUNTIME = (
    "onnxruntime CPU only: com.microsoft contrib ops (Attention, Gelu); onnxruntime-web "
    "and other runtimes use model.onnx / model.int8.onnx"
)
#: How far the fused server graph may drift from PyTorch (what model.onnx is held to).
SERVER_TOLERANCE = 1e-3


def _ort_logits(path: Path, inputs: dict[str, np.ndarray] | np.ndarray) -> np.ndarray:
    """Logits of an ONNX file over named inputs (an array: the graph's only input)."""
    from modeltailor.export.runners import OnnxRunner

    runner = OnnxRunner(path)
    if isinstance(inputs, np.ndarray):
        inputs = {runner.input_names[0]: inputs}
    return np.concatenate([runner(batch) for batch in batches(inputs)])


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
        opset = _write_graph(job, fp32)
        check = parity(job.reference, _ort_logits(fp32, job.inputs))
        sections["onnx"] = {
            "file": "model.onnx",
            "bytes": fp32.stat().st_size,
            "opset": opset,
            "input": _input_section(job),
            "accuracy": job.accuracy(job.reference),
            "examples": int(len(job.labels)),  # parity counts rows: a long text has several
            "parity_vs_pytorch": check,
            "verified_on": job.verified_on,
        }
        refuse_disagreement("ONNX", check, job.spec.noun)
        files = [fp32]
        server, sections["onnx_server"] = _server_graph(job, fp32, Path(tmp))
        files += [server] if server else []
        if quantize is None:  # an int8 graph from an earlier export is not of this model
            (job.out_dir / "model.int8.onnx").unlink(missing_ok=True)
            sections["int8"] = sections["int8_server"] = None
        if quantize == "int8":
            from modeltailor.export.quantize import quantize_int8

            int8, sections["int8"] = quantize_int8(fp32, job, Path(tmp), force)
            files.append(int8)
            server_int8, sections["int8_server"] = _server_int8(job, server, Path(tmp), force)
            files += [server_int8] if server_int8 else []
        job.out_dir.mkdir(exist_ok=True)
        for name in (SERVER_FP32, SERVER_INT8):  # an earlier export's are not of this model
            (job.out_dir / name).unlink(missing_ok=True)
        for f in files:
            shutil.move(str(f), job.out_dir / f.name)
    return update_manifest(job.out_dir, job, sections)


def _server_graph(job, fp32: Path, workdir: Path) -> tuple[Path | None, dict[str, Any] | None]:
    """model.server.onnx: model.onnx with onnxruntime's fused CPU kernels (`fuse.py`), for
    `tailor serve` and other onnxruntime servers; verified like model.onnx, and kept only if
    it agrees as closely. None when nothing in the graph fuses (images)."""
    import onnx

    from modeltailor.export.fuse import fuse_for_onnxruntime

    model = onnx.load(str(fp32))
    fused = fuse_for_onnxruntime(model)
    if not fused["attention"]:
        return None, None
    path = workdir / SERVER_FP32
    onnx.save(model, str(path))
    check = parity(job.reference, _ort_logits(path, job.inputs))
    if check["top1_disagreements"] or check["max_abs_logit_diff"] > SERVER_TOLERANCE:
        path.unlink()
        return None, {"skipped": "the fused graph drifts from PyTorch", "parity_vs_pytorch": check}
    return path, {
        "file": SERVER_FP32,
        "bytes": path.stat().st_size,
        "from": "model.onnx",
        "runtime": SERVER_RUNTIME,
        "fused": fused,
        "parity_vs_pytorch": check,
        "verified_on": job.verified_on,
    }


def _server_int8(
    job, server: Path | None, workdir: Path, force: bool
) -> tuple[Path | None, dict[str, Any] | None]:
    """model.server.int8.onnx: the server graph dynamically quantised (its contrib Attention
    becomes QAttention), judged by the same accuracy rule as model.int8.onnx. A refusal
    leaves model.int8.onnx standing and says why in the manifest."""
    if server is None:
        return None, None
    from modeltailor.export.quantize import quantize_dynamic_int8

    try:
        path, info = quantize_dynamic_int8(
            server, job, workdir, force, SERVER_INT8, ("MatMul", "Attention", "Gather")
        )
    except ExportError as exc:
        return None, {"skipped": str(exc)}
    return path, {**info, "from": SERVER_FP32, "runtime": SERVER_RUNTIME}


def _input_section(job) -> dict[str, Any] | list[dict[str, Any]]:
    """What manifest.json says of the graph's inputs (one input: its record, as before)."""
    rows = [
        {
            "name": name,
            "dtype": str(job.inputs[name].dtype),
            "batch": "dynamic",
            "dynamic_axes": {str(k): v for k, v in job.spec.dynamic_axes.get(name, {}).items()},
        }
        for name in job.spec.input_names
    ]
    if job.spec.input_names == ["pixels"]:
        rows[0] = {"name": "pixels", "layout": "NCHW", "batch": "dynamic"}
    return rows[0] if len(rows) == 1 else rows


def _dim(label: str):
    """One named dynamic axis; inputs that share a name share the size (ids and mask)."""
    return (
        torch.export.Dim(label, min=1, max=4096)
        if label == "batch"
        else torch.export.Dim(label, min=2, max=8192)
    )


def _write_graph(job, path: Path) -> int:
    """The graph of `job.model` at `path`, and its opset: traced by torch.export, unless the
    model is an ONNX graph already and writes itself (`write_onnx`: speech-embedding)."""
    write_onnx = getattr(job.model, "write_onnx", None)
    if write_onnx is None:
        _torch_export(job, path)
        return job.spec.opset
    try:
        return int(write_onnx(path))
    except Exception as exc:
        raise ExportError(f"the ONNX graph could not be written: {exc}") from exc


def _torch_export(job, path: Path) -> None:
    """The wrapped model through torch.export to ONNX, each input's batch axis dynamic."""
    spec = job.spec
    example = spec.example(job.preprocessing)
    dims: dict[str, torch.export.Dim] = {}
    dynamic = {}
    for name in spec.input_names:
        axes = spec.dynamic_axes.get(name, {0: "batch"})
        dynamic[name] = {axis: dims.setdefault(label, _dim(label)) for axis, label in axes.items()}
    try:
        with warnings.catch_warnings():
            # inputs that share an axis name (ids and mask: "length") are constrained equal,
            # which is meant; torch says so for every such axis
            warnings.filterwarnings("ignore", message=".*axis name.*will not be used")
            program = _onnx_program(job, example, spec, dynamic)
        program.save(str(path))
    except Exception as exc:
        raise ExportError(f"torch.onnx.export failed: {exc}") from exc


def _onnx_program(job, example, spec, dynamic):
    return torch.onnx.export(
        job.model,
        example,
        dynamo=True,
        input_names=list(spec.input_names),
        output_names=["logits"],
        dynamic_shapes=dynamic,
        opset_version=spec.opset,
        verbose=False,
    )
