"""Export benchmark (issues 3, 18): PyTorch eager vs ONNX fp32 vs ONNX int8 vs TFLite on one run.

For each format, in one process so the ratios survive a noisy shared machine: batch-1 latency
(p50/p95 over repeated single examples: an image, or all windows of one text), batch-32
throughput (examples per second), accuracy on the run's validation examples, and file size.
All runtimes get the same 2 threads. Works for any modality that exports (images, texts).

    python bench/bench_export.py [--run runs/hym] [--data ../shared/data/hymenoptera_data]
    python bench/bench_export.py --run runs/spam --data ../shared/data/spamassassin.csv

Without --run (or when it does not exist yet) a linear probe is trained on --data first, then
exported with `--quantize int8` (and to TFLite where the modality exports it).
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
from modeltailor.modalities import get_modality

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


def eager_runner(job) -> Callable[[dict], np.ndarray]:
    runner = TorchRunner(job.model, job.spec.input_names)
    return runner.channels_last() if job.spec.input_names == ["pixels"] else runner


def onnx_runner(path: Path) -> Callable[[dict], np.ndarray]:
    return OnnxRunner(path, THREADS)


def tflite_runner(path: Path, input_names: list[str]) -> Callable[[dict], np.ndarray]:
    return TfliteRunner(path, THREADS, input_names=input_names)


def server_graphs(export: Path) -> dict[str, Path]:
    """The export's onnxruntime server graphs (manifest sections onnx_server / int8_server)."""
    manifest = json.loads((export / "manifest.json").read_text(encoding="utf-8"))
    out = {}
    for fmt, section in (("onnx_fp32_server", "onnx_server"), ("onnx_int8_server", "int8_server")):
        name = (manifest.get(section) or {}).get("file")
        if name and (export / name).is_file():
            out[fmt] = export / name
    return out


def macro_f1(job, logits: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    labelled = job.labels >= 0
    pred = job.example_logits(logits).argmax(1)
    return round(float(f1_score(job.labels[labelled], pred[labelled], average="macro")), 4)


def rows_of(job, examples: range) -> dict[str, np.ndarray]:
    """The graph rows of some verification examples (a text: its windows), trimmed to the
    longest row they hold (padding beyond it is masked out anyway)."""
    keep = np.isin(job.owners, list(examples))
    rows = {name: x[keep] for name, x in job.inputs.items()}
    mask = rows.get("attention_mask")
    if mask is not None:
        length = max(int(mask.sum(1).max()), 2)
        rows = {name: x[:, :length] for name, x in rows.items()}
    return rows


def ensure_run(run: Path, data: Path) -> None:
    if not (run / "model.safetensors").is_file():
        assert tailor(["train", str(data), "--output", str(run), "--quiet"]) == 0
    export = run / "export"
    if not (export / "model.int8.onnx").is_file():
        assert tailor(["export", str(run), "--quantize", "int8"]) == 0
    tflite = (
        "tflite"
        in get_modality(json.loads((run / "config.json").read_text())["modality"])
        .export_spec()
        .formats
    )
    if tflite and not (export / "model.tflite").is_file():  # may be refused (says why)
        tailor(["export", str(run), "--format", "tflite"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--run", type=Path, default=Path("runs/bench-export-hymenoptera"))
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--latency-reps", type=int, default=100)
    ap.add_argument("--throughput-reps", type=int, default=5)
    ap.add_argument(
        "--formats",
        nargs="*",
        help="measure only these formats (and pytorch_eager), e.g. "
        "onnx_fp32 onnx_int8 onnx_fp32_server onnx_int8_server",
    )
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    ensure_run(args.run, args.data)
    job = prepare(args.run, None)
    export = args.run / "export"
    # Each runtime is made just before it is measured: idle thread pools of the others
    # (onnxruntime spins its threads) must not compete with it.
    runners = {
        "pytorch_eager": (lambda: eager_runner(job), args.run / "model.safetensors"),
        "onnx_fp32": (lambda: onnx_runner(export / "model.onnx"), export / "model.onnx"),
        "onnx_int8": (lambda: onnx_runner(export / "model.int8.onnx"), export / "model.int8.onnx"),
    }
    for name, file in server_graphs(export).items():  # onnxruntime-only fused graphs
        runners[name] = (lambda file=file: onnx_runner(file), file)
    if (export / "model.tflite").is_file():
        runners["tflite_fp32"] = (
            lambda: tflite_runner(export / "model.tflite", job.spec.input_names),
            export / "model.tflite",
        )
    if args.formats:
        runners = {k: v for k, v in runners.items() if k in args.formats or k == "pytorch_eager"}
    n = len(job.labels)
    one, batch = rows_of(job, range(1)), rows_of(job, range(min(32, n)))
    results = {}
    for name, (make, path) in runners.items():
        run = make()
        logits = np.concatenate(
            [run(rows_of(job, range(i, min(i + 32, n)))) for i in range(0, n, 32)]
        )
        latency = np.array(timed(run, one, args.latency_reps)) * 1000
        through = timed(run, batch, args.throughput_reps)
        results[name] = row = {
            "format": name,
            "modality": job.classifier.modality,
            "backbone": json.loads((args.run / "config.json").read_text())["backbone"],
            "accuracy": job.accuracy(logits),
            "macro_f1": macro_f1(job, logits),
            "examples": n,
            "rows": int(len(job.owners)),
            "batch1_p50_ms": round(float(np.percentile(latency, 50)), 2),
            "batch1_p95_ms": round(float(np.percentile(latency, 95)), 2),
            "batch32_examples_per_second": round(min(32, n) * len(through) / sum(through), 1),
            "file_mb": round(path.stat().st_size / 1e6, 2),
        }
        emit(**row)
        del run
    emit(measure="targets", **targets(results))


def targets(results: dict[str, dict]) -> dict[str, float]:
    """Issue 18's targets, for the standard graphs and (where measured) the server graphs."""
    eager, out = results["pytorch_eager"], {}
    for suffix in ("", "_server"):
        fp32, int8 = results.get(f"onnx_fp32{suffix}"), results.get(f"onnx_int8{suffix}")
        if int8 is not None:
            out[f"int8{suffix}_vs_eager_throughput"] = round(
                int8["batch32_examples_per_second"] / eager["batch32_examples_per_second"], 2
            )
            out[f"int8{suffix}_macro_f1_drop_points"] = round(
                (eager["macro_f1"] - int8["macro_f1"]) * 100, 2
            )
            out[f"int8{suffix}_accuracy_drop_points"] = round(
                (eager["accuracy"] - int8["accuracy"]) * 100, 2
            )
        if fp32 is not None:
            out[f"onnx_fp32{suffix}_vs_eager_batch1_p50"] = round(
                fp32["batch1_p50_ms"] / eager["batch1_p50_ms"], 2
            )
        if fp32 is not None and int8 is not None:
            out[f"int8{suffix}_size_ratio"] = round(int8["file_mb"] / fp32["file_mb"], 3)
    return out


if __name__ == "__main__":
    main()
