"""Predictors: one loaded model behind one call, whatever runtime executes it.

A predictor turns one upload into a model input (`decode`: per modality) and a list of inputs
into class probabilities (`probabilities`: per backend). Image uploads are decoded exactly as
`tailor predict` decodes files (`open_image` with the same JPEG draft size, then
`eval_transform`), so the ONNX and PyTorch backends give the same answers as the CLI. Text or
audio would add a predictor class with its own `decode` and `accepts`; the app stays as it is.
"""

from __future__ import annotations

import io
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modeltailor.backbones.catalogue import Preprocessing
from modeltailor.data.images import ImageReadError
from modeltailor.data.transforms import eval_transform, load_for_model
from modeltailor.errors import RunError
from modeltailor.run import MODEL_FILE, RunDir
from modeltailor.training.inference import softmax

BACKENDS = ("auto", "onnx", "pytorch")
ONNX_FILE = Path("export") / "model.onnx"
#: Inputs per forward pass: bounds activation memory whatever a request or a queue holds.
CHUNK = 32
#: An image longer than this many times its width (or the reverse) is refused: resizing its
#: short side to the model's input would make a few-byte file expand to gigabytes.
MAX_ASPECT = 20


class InputError(Exception):
    """One upload cannot be used (empty, not decodable, refused); the message says why."""


def cpu_threads() -> int:
    """Cores this process may run on (cpusets included), the right intra-op thread count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class Predictor(ABC):
    """A loaded model: uploads in, probabilities out. Safe to call from many threads."""

    modality: str
    backend: str

    def __init__(self, labels: list[str], model_file: Path) -> None:
        self.labels = labels
        self.model_file = model_file
        self._decoding = threading.BoundedSemaphore(cpu_threads())
        self._combined = Combiner(self._logits)

    def accepts(self, content_type: str | None) -> bool:
        """Whether an upload declared as `content_type` may hold this modality's input."""
        return True

    def decode(self, data: bytes, name: str) -> Any:
        """A model input from an upload's bytes; raises InputError naming the problem.

        Decoding is CPU-bound: at most one per core runs at a time, which also bounds the
        memory that large (but legal) images take while many requests arrive together.
        """
        if not data:
            raise InputError("the file is empty")
        with self._decoding:
            return self._decode(data, name)

    def probabilities(self, inputs: list) -> np.ndarray:
        """Class probabilities (rows follow `inputs`, columns follow `labels`).

        Requests that arrive while a forward pass runs are served together by the next one.
        """
        return softmax(self._combined(inputs))

    @abstractmethod
    def _decode(self, data: bytes, name: str) -> Any: ...

    @abstractmethod
    def _logits(self, inputs: list) -> np.ndarray: ...


class ImagePredictor(Predictor):
    """Images: any format Pillow reads, preprocessed as the run's config.json says."""

    modality = "image"

    def __init__(self, labels: list[str], model_file: Path, pre: Preprocessing) -> None:
        super().__init__(labels, model_file)
        self.pre = pre
        self._transform = eval_transform(pre)

    def accepts(self, content_type: str | None) -> bool:
        """image/*, or a type that says nothing (clients send octet-stream for unknown names)."""
        kind = (content_type or "").split(";")[0].strip().lower()
        return kind in ("", "application/octet-stream") or kind.startswith("image/")

    def _decode(self, data: bytes, name: str) -> torch.Tensor:
        return image_tensor(data, name, self.pre, self._transform)


def image_tensor(data: bytes, name: str, pre: Preprocessing, transform: Callable) -> torch.Tensor:
    """Normalised CHW pixels of one encoded image: the same steps as `decoded_batches`."""
    try:
        img = load_for_model(_Upload(data, name), pre)
    except ImageReadError as exc:
        raise InputError(str(exc)) from exc
    short, long = sorted(img.size)
    if long > MAX_ASPECT * short:
        raise InputError(
            f"{img.width}x{img.height} pixels: more than {MAX_ASPECT}:1 is too elongated to "
            "resize for the model; crop it first"
        )
    return transform(img)


class _Upload(io.BytesIO):
    """In-memory file whose repr is its name, so Pillow's messages name the upload."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self.name = name

    def __repr__(self) -> str:
        return repr(self.name)


class TorchPredictor(ImagePredictor):
    """The run's model.safetensors through PyTorch, as `ImageClassifier.predict` runs it."""

    backend = "pytorch"

    def __init__(self, run: RunDir) -> None:
        from modeltailor.api import ImageClassifier

        clf = ImageClassifier.load(run.path)
        super().__init__(clf.classes_, run.path / MODEL_FILE, clf.preprocessing_)
        self.model = clf.model_.eval().to(memory_format=torch.channels_last)
        self.temperature = clf.temperature_

    @torch.inference_mode()
    def _logits(self, inputs: list) -> np.ndarray:
        logits = np.concatenate(
            [
                self.model(x.contiguous(memory_format=torch.channels_last)).float().numpy()
                for x in _chunks(inputs)
            ]
        )
        return logits / self.temperature  # as ImageClassifier applies it; exports bake it in


class OnnxPredictor(ImagePredictor):
    """The verified export (export/model.onnx) through onnxruntime on the CPU.

    The graph normalises by itself (and divides by the run's calibration temperature), so the
    normalisation `image_tensor` applies is undone first, exactly as the export's verification
    (`pixels_for`) feeds it.
    """

    backend = "onnx"

    def __init__(self, run: RunDir) -> None:
        import onnxruntime as ort

        pre = Preprocessing.from_dict(run.read_json("config.json")["preprocessing"])
        labels = run.read_json("labels.json")
        _check_export(run, labels)
        super().__init__(labels, run.path / ONNX_FILE, pre)
        options = ort.SessionOptions()
        options.intra_op_num_threads = cpu_threads()
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(self.model_file), options, providers=["CPUExecutionProvider"]
        )
        self._input = self.session.get_inputs()[0].name

    def _logits(self, inputs: list) -> np.ndarray:
        from modeltailor.export.base import unnormalize

        return np.concatenate(
            [
                self.session.run(None, {self._input: unnormalize(x, self.pre)})[0]
                for x in _chunks(inputs)
            ]
        )


def temperature(run: RunDir) -> float:
    """The run's calibration temperature (1 when uncalibrated): logits are divided by it."""
    return float((run.read_json("config.json").get("calibration") or {}).get("temperature", 1))


def _check_export(run: RunDir, labels: list[str]) -> None:
    """Refuse an export that no longer matches its run (retrained, or calibrated since)."""
    if run.has("export/labels.json") and run.read_json("export/labels.json") != labels:
        raise RunError(f"{run.path}: export/ is from another model; run `tailor export` again")
    manifest = run.read_json("export/manifest.json") if run.has("export/manifest.json") else {}
    baked = float((manifest.get("calibration") or {}).get("temperature", 1))
    if abs(baked - temperature(run)) > 1e-9:
        raise RunError(
            f"{run.path}: export/ has calibration temperature {baked:g}, the run "
            f"{temperature(run):g}; run `tailor export` again"
        )


def _chunks(inputs: list) -> Iterator[torch.Tensor]:
    for i in range(0, len(inputs), CHUNK):
        yield torch.stack(inputs[i : i + CHUNK])


@dataclass
class _Job:
    inputs: list
    result: np.ndarray | None = None
    error: BaseException | None = None
    done: bool = field(default=False)


class Combiner:
    """Serialises calls to `fn` and merges the ones that queued up into a single call.

    One forward pass at a time already keeps every core busy; running several at once only
    adds contention. Whoever gets the lock runs everything queued so far, so under load the
    model sees bigger batches (cheaper per image) and waiting threads just collect results.
    """

    def __init__(self, fn: Callable[[list], np.ndarray]) -> None:
        self._fn = fn
        self._running = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Job] = []

    def __call__(self, inputs: list) -> np.ndarray:
        job = _Job(inputs)
        with self._queue_lock:
            self._queue.append(job)
        with self._running:
            if not job.done:
                with self._queue_lock:
                    jobs, self._queue = self._queue, []
                self._run(jobs)
        if job.error is not None:  # a fresh exception per thread keeps tracebacks apart
            raise RuntimeError("inference failed for a batch of requests") from job.error
        assert job.result is not None
        return job.result

    def _run(self, jobs: list[_Job]) -> None:
        try:
            out = self._fn([x for job in jobs for x in job.inputs])
            ends = np.cumsum([len(job.inputs) for job in jobs])
            for job, end in zip(jobs, ends, strict=True):
                job.result = out[end - len(job.inputs) : end]
        except Exception as exc:  # every waiting request fails, not just this thread's
            for job in jobs:
                job.error = exc
        finally:
            for job in jobs:
                job.done = True


def load_predictor(run_path: str | Path, backend: str = "auto") -> Predictor:
    """The predictor for a run: ONNX when a verified export exists (auto), else PyTorch."""
    run = RunDir(run_path)
    if not run.path.is_dir():
        raise RunError(f"{run.path}: no such run folder")
    modality = run.read_json("config.json").get("modality")
    if modality != "image":
        raise RunError(f"{run.path}: serving {modality} runs is not supported yet")
    if backend not in BACKENDS:
        raise RunError(f"unknown backend '{backend}': choose from {list(BACKENDS)}")
    has_onnx = (run.path / ONNX_FILE).is_file()
    if backend == "onnx" and not has_onnx:
        raise RunError(f"{run.path}: no {ONNX_FILE}; run `tailor export {run.path}` first")
    if backend == "onnx" or (backend == "auto" and has_onnx):
        return OnnxPredictor(run)
    return TorchPredictor(run)
