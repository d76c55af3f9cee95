"""Predictors: a modality's decoder in front of a runner, one loaded model behind one call.

A predictor turns one upload into the exported graph's inputs (`decode`: the modality's serve
decoder) and a list of those into class probabilities (`probabilities`: a runner from
`export/runners.py`, PyTorch or onnxruntime). Both backends take the very inputs the export is
verified on: image uploads are decoded exactly as `tailor predict` decodes files (`open_image`
with the same JPEG draft size, then `eval_transform`) and handed over as [0, 1] pixels, and the
graph (or its PyTorch original) normalises and applies the calibration temperature itself.
A new modality supplies a decoder; nothing here changes.

Texts and clips are served through their export contract instead: the upload is read as
dataset items (`Modality.read_upload`: a table's rows, a clip) and turned into the graph's
rows by `ExportSpec.inputs`, the function the export was verified with. An example may be
several rows (a long text's windows, a long clip's): its logits are their mean, plus what the
modality adds outside the graph (the TF-IDF side head), as `tailor predict` computes them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from modeltailor.errors import RunError
from modeltailor.export.runners import OnnxRunner, Runner, TorchRunner, cpu_threads
from modeltailor.modalities.base import InputError
from modeltailor.run import MODEL_FILE, RunDir
from modeltailor.training.inference import softmax

BACKENDS = ("auto", "onnx", "pytorch")
ONNX_FILE = Path("export") / "model.onnx"
#: Inputs per forward pass: bounds activation memory whatever a request or a queue holds.
CHUNK = 32

__all__ = ["BACKENDS", "Example", "InputError", "Predictor", "cpu_threads", "load_predictor"]


class Decoder(Protocol):
    """A modality's upload decoder (`Modality.serve_decoder`)."""

    def accepts(self, content_type: str | None) -> bool:
        """Whether an upload declared as `content_type` may hold this modality's input."""

    def decode(self, data: bytes, name: str) -> dict[str, np.ndarray]:
        """The graph's inputs for one example (no batch axis); raises InputError."""


@dataclass
class Example:
    """One example as the graph sees it: its rows (an image: one; a long text: one per
    window) and the logits added outside the graph, already divided by the temperature."""

    rows: dict[str, np.ndarray]
    side: np.ndarray | None = None

    @property
    def size(self) -> int:
        return len(next(iter(self.rows.values())))


class ItemDecoder:
    """Uploads read as dataset items by the modality, made into graph rows by its export
    spec (`inputs(items, classifier)`); the classifier supplies tokenizer, windows and side
    features, so what is served is exactly what the export was verified on."""

    def __init__(self, modality: Any, clf: Any, spec: Any) -> None:
        self.modality, self.clf, self.spec = modality, clf, spec

    def accepts(self, content_type: str | None) -> bool:
        return self.modality.accepts_upload(content_type)

    def examples(self, data: bytes, name: str) -> list[tuple[str, Example]]:
        import tempfile

        suffix = Path(name).suffix.lower()[:16]
        with tempfile.TemporaryDirectory(prefix="modeltailor-upload-") as tmp:
            path = Path(tmp) / f"upload{suffix}"
            path.write_bytes(data)
            try:
                named = self.modality.read_upload(path, name)
                return self._examples(named)
            finally:
                self.modality.forget_upload(path)

    def texts(self, texts: list[str]) -> list[tuple[str, Example]] | None:
        named = self.modality.json_items(texts)
        return None if named is None else self._examples(named)

    def _examples(self, named: list[tuple[str, Any]]) -> list[tuple[str, Example]]:
        out = []
        for name, item in named:
            rows, owners = self.spec.inputs([item], self.clf)
            if not len(owners):
                raise InputError(f"{name}: could not be read")
            side = self.modality.side_logits(self.clf, [item])
            if side is not None:
                side = (np.asarray(side, np.float64)[0] / self.clf.temperature_).astype(np.float32)
            out.append((name, Example(rows, side)))
        return out


class Predictor:
    """A loaded model: uploads in, probabilities out. Safe to call from many threads."""

    def __init__(
        self, labels: list[str], model_file: Path, modality: str, decoder: Any, runner: Runner
    ) -> None:
        self.labels = labels
        self.model_file = model_file
        self.modality = modality
        self.decoder = decoder
        self.runner = runner
        self._decoding = threading.BoundedSemaphore(cpu_threads())
        self._combined = Combiner(self._logits)

    @property
    def backend(self) -> str:
        return self.runner.backend

    @property
    def takes_texts(self) -> bool:
        """Whether a JSON body of texts is an input (text runs)."""
        from modeltailor.modalities.base import Modality

        if not isinstance(self.decoder, ItemDecoder):
            return False
        return type(self.decoder.modality).json_items is not Modality.json_items

    @property
    def noun(self) -> str:
        from modeltailor.modalities import get_modality

        return get_modality(self.modality).noun

    def accepts(self, content_type: str | None) -> bool:
        return self.decoder.accepts(content_type)

    def decode(self, data: bytes, name: str) -> Example:
        """The one example an upload holds; raises InputError naming the problem."""
        (pair,) = self.examples(data, name)
        return pair[1]

    def examples(self, data: bytes, name: str) -> list[tuple[str, Example]]:
        """(name, example) per example in an upload (a table of texts holds many); raises
        InputError naming the problem.

        Decoding is CPU-bound: at most one per core runs at a time, which also bounds the
        memory that large (but legal) images take while many requests arrive together.
        """
        if not data:
            raise InputError("the file is empty")
        with self._decoding:
            if isinstance(self.decoder, ItemDecoder):
                return self.decoder.examples(data, name)
            inputs = self.decoder.decode(data, name)
            return [(name, Example({k: v[None] for k, v in inputs.items()}))]

    def texts(self, texts: list[str]) -> list[tuple[str, Example]] | None:
        """(name, example) per text of a JSON body; None when the model takes files."""
        if not isinstance(self.decoder, ItemDecoder):
            return None
        with self._decoding:
            return self.decoder.texts(texts)

    def probabilities(self, examples: list[Example]) -> np.ndarray:
        """Class probabilities (rows follow `examples`, columns follow `labels`).

        Requests that arrive while a forward pass runs are served together by the next one.
        """
        return softmax(self._combined(examples))

    def _logits(self, examples: list[Example]) -> np.ndarray:
        """Every example's rows through the graph, CHUNK rows at a time, then averaged per
        example (plus its side logits)."""
        rows = [
            {name: x[r] for name, x in ex.rows.items()} for ex in examples for r in range(ex.size)
        ]
        owners = np.repeat(np.arange(len(examples)), [ex.size for ex in examples])
        out = np.concatenate([self.runner(batch) for batch in _chunks(rows)])
        sums = np.zeros((len(examples), out.shape[1]), np.float64)
        np.add.at(sums, owners, out)
        logits = sums / np.bincount(owners, minlength=len(examples))[:, None]
        for k, ex in enumerate(examples):
            if ex.side is not None:
                logits[k] += ex.side
        return logits.astype(np.float32)


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


def _onnx_graph(run: RunDir) -> Path:
    """The graph to serve: the export's onnxruntime server graph (fused contrib kernels,
    verified against PyTorch like model.onnx) when the manifest lists it, else model.onnx."""
    manifest = run.read_json("export/manifest.json") if run.has("export/manifest.json") else {}
    name = (manifest.get("onnx_server") or {}).get("file")
    return ONNX_FILE.parent / name if name and run.has(f"export/{name}") else ONNX_FILE


def _chunks(rows: list[dict[str, np.ndarray]]) -> Iterator[dict[str, np.ndarray]]:
    """Graph rows stacked into batches of at most CHUNK, input by input; rows of different
    lengths (token windows) are right-padded with zeros (their attention mask is 0 there)."""
    for i in range(0, len(rows), CHUNK):
        part = rows[i : i + CHUNK]
        yield {name: _stacked([x[name] for x in part]) for name in part[0]}


def _stacked(arrays: list[np.ndarray]) -> np.ndarray:
    shape = tuple(max(s) for s in zip(*(a.shape for a in arrays), strict=True))
    if all(a.shape == shape for a in arrays):
        return np.stack(arrays)
    out = np.zeros((len(arrays), *shape), arrays[0].dtype)
    for k, a in enumerate(arrays):
        out[(k, *(slice(0, n) for n in a.shape))] = a
    return out


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
    from modeltailor.modalities import get_modality

    run = RunDir(run_path)
    if not run.path.is_dir():
        raise RunError(f"{run.path}: no such run folder")
    cfg = run.read_json("config.json")
    modality = get_modality(cfg.get("modality", "image"))
    pre = modality.preprocessing_from_dict(cfg["preprocessing"])
    decoder, spec = modality.serve_decoder(pre), modality.export_spec()
    if not modality.servable() or spec is None:
        raise RunError(f"{run.path}: serving {modality.name} runs is not supported yet")
    if backend not in BACKENDS:
        raise RunError(f"unknown backend '{backend}': choose from {list(BACKENDS)}")
    has_onnx = (run.path / ONNX_FILE).is_file()
    if backend == "onnx" and not has_onnx:
        raise RunError(f"{run.path}: no {ONNX_FILE}; run `tailor export {run.path}` first")
    labels = run.read_json("labels.json")
    use_onnx = backend == "onnx" or (backend == "auto" and has_onnx)
    clf = None
    if decoder is None:  # texts, clips: read as items, made into rows by the export spec
        from modeltailor.api import load_classifier

        clf = load_classifier(run.path)
        refuse = spec.refuse if use_onnx or spec.refuse_eager is None else spec.refuse_eager
        refusal = refuse(clf) if refuse is not None else None
        if refusal:
            raise RunError(f"{run.path}: cannot serve: {refusal}")
        decoder = ItemDecoder(modality, clf, spec)
    if use_onnx:
        _check_export(run, labels)
        graph = _onnx_graph(run)
        runner: Runner = OnnxRunner(run.path / graph, cpu_threads())
        return Predictor(labels, run.path / graph, modality.name, decoder, runner)
    if clf is None:
        from modeltailor.api import load_classifier

        clf = load_classifier(run.path)
    model = spec.wrap(clf.model_.eval(), clf.preprocessing_, clf.temperature_)
    runner = TorchRunner(model, spec.input_names).channels_last()
    return Predictor(clf.classes_, run.path / MODEL_FILE, modality.name, decoder, runner)
