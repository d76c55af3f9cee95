"""Export benchmark (issue 3): PyTorch eager vs ONNX fp32 vs ONNX int8 vs TFLite on one run.

For each format, in one process so the ratios survive a noisy shared machine: batch-1 latency
(p50/p95 over repeated single images), batch-32 throughput, accuracy on the run's validation
images, and file size. All runtimes get the same 2 threads.

    python bench/bench_export.py [--run runs/hym] [--data ../shared/data/hymenoptera_data]

Without --run (or when it does not exist yet) a linear probe is trained on --data first, then
exported with `--quantize int8` and to TFLite.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import modeltailor  # noqa: F401  (applies the malloc fix first)
from modeltailor.cli import main as tailor
from modeltailor.export.base import prepare
from modeltailor.export.runners import OnnxRunner, TfliteRunner, TorchRunner

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hymenoptera_data"
THREADS = 2


def emit(**row) -> None:
    print(json.dumps(row), flush=True)


def timed(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, reps: int) -> list[float]:
    fn(x)  # warm-up
    seconds = []
    for _ in range(reps):
        t = time.perf_counter()
        fn(x)
        seconds.append(time.perf_counter() - t)
    return seconds


def eager_runner(model) -> Callable[[np.ndarray], np.ndarray]:
    return _pixels_in(TorchRunner(model, ["pixels"]).channels_last())


def onnx_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    return _pixels_in(OnnxRunner(path, THREADS))


def tflite_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    return _pixels_in(TfliteRunner(path, THREADS))


def _pixels_in(runner) -> Callable[[np.ndarray], np.ndarray]:
    """The shared runners (the ones export verification and `tailor serve` use) over pixels."""
    return lambda x: runner({"pixels": x})


def ensure_run(run: Path, data: Path) -> None:
    if not (run / "model.safetensors").is_file():
        assert tailor(["train", str(data), "--output", str(run), "--quiet"]) == 0
    export = run / "export"
    if not (export / "model.int8.onnx").is_file():
        assert tailor(["export", str(run), "--quantize", "int8"]) == 0
    if not (export / "model.tflite").is_file():
        assert tailor(["export", str(run), "--format", "tflite"]) == 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--run", type=Path, default=Path("runs/bench-export-hymenoptera"))
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--latency-reps", type=int, default=100)
    ap.add_argument("--throughput-reps", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    ensure_run(args.run, args.data)
    job = prepare(args.run, None)
    export = args.run / "export"
    # Each runtime is made just before it is measured: idle thread pools of the others
    # (onnxruntime spins its threads) must not compete with it.
    runners = {
        "pytorch_eager": (lambda: eager_runner(job.model), args.run / "model.safetensors"),
        "onnx_fp32": (lambda: onnx_runner(export / "model.onnx"), export / "model.onnx"),
        "onnx_int8": (lambda: onnx_runner(export / "model.int8.onnx"), export / "model.int8.onnx"),
        "tflite_fp32": (lambda: tflite_runner(export / "model.tflite"), export / "model.tflite"),
    }
    one, batch = job.pixels[:1], job.pixels[:32]
    results = {}
    for name, (make, path) in runners.items():
        run = make()
        chunks = [job.pixels[i : i + 32] for i in range(0, len(job.pixels), 32)]
        logits = np.concatenate([run(chunk) for chunk in chunks])
        latency = np.array(timed(run, one, args.latency_reps)) * 1000
        through = timed(run, batch, args.throughput_reps)
        results[name] = row = {
            "format": name,
            "accuracy": job.accuracy(logits),
            "images": len(job.pixels),
            "batch1_p50_ms": round(float(np.percentile(latency, 50)), 2),
            "batch1_p95_ms": round(float(np.percentile(latency, 95)), 2),
            "batch32_images_per_second": round(len(batch) * len(through) / sum(through), 1),
            "file_mb": round(path.stat().st_size / 1e6, 2),
        }
        emit(**row)
        del run
    eager, fp32, int8 = results["pytorch_eager"], results["onnx_fp32"], results["onnx_int8"]
    emit(
        measure="targets",
        int8_vs_eager_throughput=round(
            int8["batch32_images_per_second"] / eager["batch32_images_per_second"], 2
        ),
        int8_accuracy_drop_points=round((fp32["accuracy"] - int8["accuracy"]) * 100, 2),
        int8_size_ratio=round(int8["file_mb"] / fp32["file_mb"], 3),
        onnx_fp32_vs_eager_batch1_p50=round(fp32["batch1_p50_ms"] / eager["batch1_p50_ms"], 2),
    )


if __name__ == "__main__":
    main()
