"""Frozen extraction in ONNX Runtime: the backbone's `embed` as an fp32 ONNX graph.

Why: ONNX Runtime folds every batch norm into its convolution, fuses the activation, and runs
its own blocked kernels. On the 2-core machines here it embedded EfficientNet-Lite0 at 256 px
about twice as fast as PyTorch eager fp32, and faster than bf16 autocast on AMX. Its embeddings
were within 1e-5 of PyTorch's (`bench/bench_extract.py`). It is the fast path on CPUs without
bf16 hardware too, since it needs nothing beyond AVX2.

The graph is traced once per backbone weights, input shape and library versions, and kept
beside the embedding cache (`graphs/`). Before a process uses it, its output is compared with
the PyTorch forward pass on the same random batch, so a graph that exported wrongly is never
used.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modeltailor.errors import ModelTailorError

#: Opset of the traced embedding graph (the image exports' opset).
OPSET = 18
#: Largest |ONNX - torch| allowed on the check batch, relative to the largest |torch| value.
MAX_RELATIVE_DIFFERENCE = 1e-3

#: Rows per ONNX Runtime call. EfficientNet-Lite0 at 256 px, 2 threads: 32 rows at once held
#: 1,149 MB of peak RSS, 16 rows 636 MB at the same speed (interleaved median 0.99x), and 16
#: without the memory-pattern planner 429 MB, no slower; 8 rows 376 MB but 6% slower.
ROWS_PER_RUN = 16

_SESSIONS: dict[Path, Any] = {}


class OnnxEmbedUnavailable(ModelTailorError):
    """The ONNX Runtime path cannot embed for this backbone here (the reason says why)."""


class _Embed(torch.nn.Module):
    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.embed(x)


def onnxruntime_version() -> str | None:
    """The installed onnxruntime's version, read from its metadata: importing the package
    (~0.4 s) would cost a cached probe rerun a third of its time."""
    import importlib.metadata
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is None:
        return None
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def graph_file(spec: Any, shape: tuple[int, ...], root: Path) -> Path:
    """Where the traced `embed` graph of `spec` for inputs of `shape` (batch axis excluded)
    is kept: any change of weights, shape or library version traces a new one."""
    key = {
        "architecture": spec.architecture,
        "weights": spec.weights_identity(),
        "shape": list(shape),
        "torch": torch.__version__.split("+")[0],
        "onnxruntime": onnxruntime_version(),
        "opset": OPSET,
    }
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return root / "graphs" / f"{spec.name.replace('/', '_')}-{digest}.onnx"


class OrtEmbedder:
    """`net.embed` run by ONNX Runtime on the CPU, with torch tensors in and out."""

    def __init__(self, net: torch.nn.Module, spec: Any, example: torch.Tensor, root: Path):
        if onnxruntime_version() is None:
            raise OnnxEmbedUnavailable("onnxruntime is not installed")
        self.path = graph_file(spec, tuple(example.shape[1:]), root)
        if not self.path.exists():
            _trace(net, example, self.path)
        self.session = _session(self.path)
        identity = _net_identity(net)
        if _CHECKED.get(self.path) != identity:
            self._check(net, example)
            _CHECKED[self.path] = identity

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        feed = np.ascontiguousarray(x.detach().float().contiguous().numpy())
        parts = [
            self.session.run(None, {"x": feed[i : i + ROWS_PER_RUN]})[0]
            for i in range(0, len(feed), ROWS_PER_RUN)
        ]
        return torch.from_numpy(np.concatenate(parts) if len(parts) > 1 else parts[0])

    def _check(self, net: torch.nn.Module, example: torch.Tensor) -> None:
        with torch.inference_mode():
            want = net.embed(example.contiguous()).float()
        got = self(example)
        scale = max(1.0, float(want.abs().max()))
        diff = float((got - want).abs().max()) if got.shape == want.shape else float("inf")
        if not diff <= MAX_RELATIVE_DIFFERENCE * scale:
            _SESSIONS.pop(self.path, None)
            _CHECKED.pop(self.path, None)
            self.path.unlink(missing_ok=True)
            raise OnnxEmbedUnavailable(
                f"ONNX Runtime's embeddings differ from PyTorch's by {diff:.3g} (graph removed)"
            )


#: The network each graph was last checked against in this process (`_net_identity`): a fit
#: embeds train, validation and test through three embedders of one frozen network, and each
#: check runs PyTorch's forward pass too (hymenoptera: 3 checks were ~0.3 s quiet, 3 s loaded).
_CHECKED: dict[Path, tuple[int, ...]] = {}


def _net_identity(net: torch.nn.Module) -> tuple[int, ...]:
    """The object, and its tensors' in-place version counters (an optimiser step or a
    `load_state_dict` bumps them): a network changed since its check is checked again."""
    tensors = [*net.parameters(), *net.buffers()]
    return (id(net), len(tensors), *(t._version for t in tensors))


def _trace(net: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    """torch.export of `net.embed` to ONNX with a dynamic batch, written atomically (several
    processes may trace the same graph at once: each writes its own file, the last wins)."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                _Embed(net).eval(),
                (example.contiguous(),),
                dynamo=True,
                input_names=["x"],
                output_names=["embedding"],
                dynamic_shapes=({0: batch},),
                opset_version=OPSET,
                verbose=False,
            )
        fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
        os.close(fd)
        program.save(tmp)
        os.replace(tmp, path)
    except Exception as exc:
        raise OnnxEmbedUnavailable(f"the backbone did not trace to ONNX: {exc}") from exc


def _session(path: Path):
    """One ONNX Runtime session per graph and process, with torch's thread count."""
    if path not in _SESSIONS:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.enable_mem_pattern = False  # see ROWS_PER_RUN: less memory, no slower
        options.log_severity_level = 3
        try:
            _SESSIONS[path] = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            path.unlink(missing_ok=True)
            raise OnnxEmbedUnavailable(f"ONNX Runtime could not load the graph: {exc}") from exc
    return _SESSIONS[path]
