"""REST server benchmark: `tailor serve` under concurrent clients posting real photos.

Prints one JSON line per measurement. Measured in the same run, for figures that survive noisy
shared machines: the model's own batch-1 latency (the predictor called directly on one
decoded image, no HTTP), then one client alone, then N concurrent clients. The target is
p95 <= 2 x batch-1 latency + 20 ms with zero errors.

    python bench/bench_serve.py RUN [--backend auto|onnx|pytorch] [--clients 8] [--requests 50]
    python bench/bench_serve.py --train [--export]   # linear probe on hymenoptera first

With all clients sending back to back (a closed loop), the server is saturated: by Little's law
mean latency = clients / throughput, so the concurrent p95 also says how much throughput the
server gets out of the cores (the `service_ms` line is wall time per request served).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

import modeltailor  # noqa: F401  (applies the malloc fix first)
from modeltailor.cli import main as tailor
from modeltailor.serve import load_predictor

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hymenoptera_data"


def emit(**row) -> None:
    print(json.dumps(row), flush=True)


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else 0


def photos(data: Path, n: int = 64) -> list[tuple[str, bytes, str]]:
    """(name, bytes, content type) of `n` images spread over the folder, read once."""
    files = sorted(p for p in data.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        sys.exit(f"no images under {data}")
    step = max(1, len(files) // n)
    kinds = {".png": "image/png"}
    return [
        (p.name, p.read_bytes(), kinds.get(p.suffix.lower(), "image/jpeg"))
        for p in files[::step][:n]
    ]


def batch1_ms(run: Path, backend: str, images: list, repeats: int) -> dict:
    """The predictor on one image, called directly: what inference alone costs."""
    predictor = load_predictor(run, backend)
    name, data, _ = images[0]
    decode, model = [], []
    for i in range(repeats + 3):
        t0 = time.perf_counter()
        x = predictor.decode(data, name)
        t1 = time.perf_counter()
        predictor.probabilities([x])
        if i >= 3:  # warm-up
            decode.append((t1 - t0) * 1e3)
            model.append((time.perf_counter() - t1) * 1e3)
    return {
        "backend": predictor.backend,
        "model_ms_p50": round(statistics.median(model), 2),
        "model_ms_min": round(min(model), 2),
        "decode_ms_p50": round(statistics.median(decode), 2),
    }


def start_server(run: Path, backend: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "modeltailor.cli", "serve", str(run), "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, "--backend", backend], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    sys.exit("the server did not start")


def load(url: str, images: list, clients: int, requests: int) -> dict:
    """`clients` threads, each posting `requests` single-image requests back to back."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            for i in range(requests):
                name, data, kind = images[(k * requests + i) % len(images)]
                t = time.perf_counter()
                try:
                    r = http.post("/predict", files={"files": (name, data, kind)})
                    ok = r.status_code == 200
                    problem = "" if ok else f"{r.status_code} {r.text[:200]}"
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                with lock:
                    latencies.append((time.perf_counter() - t) * 1e3)
                    if problem:
                        errors.append(problem)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    n = clients * requests
    return {
        "clients": clients,
        "requests": n,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "p50_ms": round(percentile(latencies, 50), 1),
        "p95_ms": round(percentile(latencies, 95), 1),
        "max_ms": round(max(latencies), 1),
        "requests_per_s": round(n / wall, 1),
        "service_ms": round(wall * 1e3 / n, 1),
        "littles_law_mean_ms": round(clients * wall * 1e3 / n, 1),  # what saturation implies
    }


def train_run(data: Path, export: bool) -> Path:
    run = Path(tempfile.mkdtemp(prefix="bench-serve-")) / "run"
    assert tailor(["train", str(data), "--output", str(run), "--quiet"]) == 0
    if export:
        assert tailor(["export", str(run)]) == 0
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", help="run folder (or --train)")
    ap.add_argument("--train", action="store_true", help="train a linear probe on --data first")
    ap.add_argument("--export", action="store_true", help="with --train: also export ONNX")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="images to post")
    ap.add_argument("--backend", default="auto", choices=["auto", "onnx", "pytorch"])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=50, help="per client")
    args = ap.parse_args()
    if not args.run and not args.train:
        ap.error("give a run folder, or --train")
    run = train_run(args.data, args.export) if args.train else Path(args.run)
    images = photos(args.data)
    b1 = batch1_ms(run, args.backend, images, repeats=60)
    emit(measure="batch1", run=str(run), cpus=os.cpu_count(), **b1)
    proc, url = start_server(run, args.backend)
    try:
        load(url, images, 2, 5)  # warm-up: first requests pay one-off allocations
        target = round(2 * b1["model_ms_p50"] + 20, 1)
        for clients in sorted({1, args.clients}):
            row = load(url, images, clients, args.requests)
            ok = row["errors"] == 0 and row["p95_ms"] <= target
            emit(measure="load", backend=b1["backend"], target_p95_ms=target, meets=ok, **row)
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    main()
