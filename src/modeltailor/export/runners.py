"""Runners: one exported graph (or the PyTorch model it came from) behind one call.

A runner takes the graph's named inputs as numpy arrays, batch first, and returns logits. The
same runners check exports against PyTorch, serve requests (`serve/` = modality decoder and
runner) and are timed by the benchmarks, so what is verified is what is served and measured.
Runners know nothing about modalities: the modality's export spec says what the inputs are.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn


class Runner(Protocol):
    """Named inputs (batch first) -> logits (batch, classes)."""

    backend: str
    input_names: list[str]

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray: ...


def cpu_threads() -> int:
    """Cores this process may run on (cpusets included), the right intra-op thread count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class TorchRunner:
    """The exported graph's PyTorch original (the model with normalisation and temperature
    wrapped around it, as `ExportSpec.wrap` makes it), in eager mode."""

    backend = "pytorch"

    def __init__(self, model: nn.Module, input_names: list[str]) -> None:
        self.model = model.eval()
        self.input_names = list(input_names)
        # 4-D inputs (images) run faster channels-last on CPU CNNs (DESIGN.md).
        self._channels_last = False

    def channels_last(self) -> TorchRunner:
        self.model = self.model.to(memory_format=torch.channels_last)
        self._channels_last = True
        return self

    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(x))
        if self._channels_last and t.dim() == 4:
            t = t.contiguous(memory_format=torch.channels_last)
        return t

    @torch.inference_mode()
    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        args = [self._tensor(inputs[name]) for name in self.input_names]
        return self.model(*args).float().numpy()


#: onnxruntime graph fusions that make our graphs slower on the CPU, so sessions skip them.
#: SkipLayerNormFusion turns Add + LayerNormalization into the contrib SkipLayerNormalization,
#: whose CPU kernel takes 59 ms where the two standard ops take 33 ms on a (65, 256, 384)
#: batch (2 threads); on the spamassassin MiniLM export it costs int8 a fifth of its batch-1
#: latency (NOTES-ortspeed.md). Same arithmetic either way: no parity changes beyond rounding.
SLOW_FUSIONS = ("SkipLayerNormFusion",)


class OnnxRunner:
    """An ONNX file through onnxruntime on the CPU."""

    backend = "onnx"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, {name: inputs[name] for name in self.input_names})[0]


def _argument_position(detail: dict) -> tuple[int, str]:
    """litert-torch names inputs `serving_default_args_<i>`: the forward's i-th argument."""
    head, _, number = detail["name"].rpartition("_")
    return (int(number), head) if number.isdigit() else (detail["index"], detail["name"])


class TfliteRunner:
    """A batch-1 .tflite (as apps run it) through the LiteRT interpreter, one example at a
    time; 4-D inputs are given NCHW like every other runner and fed NHWC.

    LiteRT graphs have fixed shapes: a row shorter than the input (a text window) is padded
    with zeros, which the mask input of every such graph reads as padding, and cast to the
    input's type (the converter turns int64 ids into int32). `input_names` are the graph's
    inputs in order (the converter names them args_0, args_1, ...).
    """

    backend = "tflite"

    def __init__(
        self, path: str | Path, threads: int = 2, input_names: list[str] | None = None
    ) -> None:
        from modeltailor.export.tflite import _require_litert

        _, interpreter_cls = _require_litert()
        self.interpreter = interpreter_cls(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        details = sorted(self.interpreter.get_input_details(), key=_argument_position)
        if input_names is None:
            input_names = ["pixels"] if len(details) == 1 else [d["name"] for d in details]
        self.input_names = list(input_names)
        self._inputs = [(d["index"], tuple(d["shape"][1:]), d["dtype"]) for d in details]
        self._output = self.interpreter.get_output_details()[0]["index"]

    @staticmethod
    def _fit(one: np.ndarray, shape: tuple[int, ...], dtype) -> np.ndarray:
        if one.ndim == 3:  # CHW -> HWC
            one = one.transpose(1, 2, 0)
        if one.shape != shape:
            pads = [(0, want - have) for have, want in zip(one.shape, shape, strict=True)]
            one = np.pad(one, pads)
        return np.ascontiguousarray(one[None], dtype=dtype)

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        arrays = [inputs[name] for name in self.input_names]
        rows = []
        for i in range(len(arrays[0])):
            for (index, shape, dtype), x in zip(self._inputs, arrays, strict=True):
                self.interpreter.set_tensor(index, self._fit(x[i], shape, dtype))
            self.interpreter.invoke()
            rows.append(self.interpreter.get_tensor(self._output)[0].copy())
        return np.stack(rows)
