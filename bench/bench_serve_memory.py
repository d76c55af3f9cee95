"""Server memory under sustained load: `tailor serve`'s RSS while N clients post real photos.

Starts the server as `tailor serve` does, drives `--clients` threads posting single images back
to back for `--seconds`. RSS (VmRSS from /proc) is read every `--sample` seconds and one JSON
line printed per `--every` seconds: the window's min / mean / max RSS, requests and p50 latency.
Then a summary: start (after a warm-up, before the load), peak, the first and last windows'
mean, the slope in MB/min of the window means over the second half (least squares), RSS
`--idle` seconds after the load, requests served, requests/s, p50/p95 latency, the server's CPU
per request and errors. A server whose memory stays flat has a slope near 0 and a last window
close to its first.

    python bench/bench_serve_memory.py RUN [--backend auto|onnx|pytorch] [--clients 8]
        [--seconds 600] [--label after]
    python bench/bench_serve_memory.py --train [--export] ...   # linear probe on hymenoptera

The server runs from whichever `modeltailor` this interpreter imports, so another checkout is
measured by running the script with `PYTHONPATH=that/src` (the summary names the source).
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from pathlib import Path

import httpx

import modeltailor
from bench_serve import DEFAULT_DATA, emit, load, percentile, photos, start_server, train_run


def rss_mb(pid: int) -> dict[str, float]:
    """VmRSS, RssAnon and VmHWM (peak) of a process, in MB (from /proc/PID/status)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)  # kB -> MiB
    return fields


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU seconds a process has used so far (/proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (name) "
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def slope_mb_per_min(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) points, in MB per minute."""
    if len(samples) < 2:
        return 0.0
    ts, ys = [t for t, _ in samples], [y for _, y in samples]
    mt, my = statistics.fmean(ts), statistics.fmean(ys)
    var = sum((t - mt) ** 2 for t in ts)
    cov = sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True))
    return round(60 * cov / var, 2) if var else 0.0


class Load:
    """`clients` threads posting single images back to back until stopped."""

    def __init__(self, url: str, images: list, clients: int) -> None:
        self.url, self.images, self.clients = url, images, clients
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.latencies: list[float] = []  # this interval's (ms)
        self.all_latencies: list[float] = []
        self.requests = 0
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._client, args=(k,)) for k in range(clients)]

    def _client(self, k: int) -> None:
        i = k
        with httpx.Client(base_url=self.url, timeout=120) as http:
            while not self.stop.is_set():
                name, data, kind = self.images[i % len(self.images)]
                i += self.clients
                t = time.perf_counter()
                try:
                    r = http.post("/predict", files={"files": (name, data, kind)})
                    problem = "" if r.status_code == 200 else f"{r.status_code} {r.text[:200]}"
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                ms = (time.perf_counter() - t) * 1e3
                with self.lock:
                    self.requests += 1
                    self.latencies.append(ms)
                    if problem:
                        self.errors.append(problem)

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def interval(self) -> tuple[int, list[float]]:
        """Requests and latencies since the last call."""
        with self.lock:
            done, self.latencies = self.latencies, []
        self.all_latencies.extend(done)
        return len(done), done

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


def measure(url: str, pid: int, images: list, args: argparse.Namespace) -> dict:
    load(url, images, 2, 5)  # warm-up: the model's first passes allocate once
    start = rss_mb(pid)
    user0, sys0 = cpu_seconds(pid)
    emit(measure="rss", t_s=0.0, requests=0, rss_mb=start["VmRSS"], anon_mb=start["RssAnon"])
    means = [(0.0, start["VmRSS"])]  # (end of window, mean RSS in it)
    peak = start["VmRSS"]
    traffic = Load(url, images, args.clients)
    began = time.monotonic()
    traffic.start()
    try:
        window: list[float] = []
        while (elapsed := time.monotonic() - began) < args.seconds:
            time.sleep(min(args.sample, args.seconds - elapsed))
            now = rss_mb(pid)
            window.append(now["VmRSS"])
            peak = max(peak, now["VmRSS"])
            t = time.monotonic() - began
            if len(window) * args.sample < args.every and t < args.seconds:
                continue
            n, lat = traffic.interval()
            means.append((round(t, 1), statistics.fmean(window)))
            emit(
                measure="rss",
                t_s=round(t, 1),
                requests=n,
                p50_ms=round(statistics.median(lat), 1) if lat else None,
                rss_mb=now["VmRSS"],
                anon_mb=now["RssAnon"],
                # RSS sampled every --sample seconds in this window: a server that hands
                # memory back periodically saw-tooths between the two
                rss_min_mb=min(window),
                rss_mean_mb=round(statistics.fmean(window), 1),
                rss_max_mb=max(window),
            )
            window = []
    finally:
        traffic.finish()
    wall = time.monotonic() - began
    traffic.interval()
    end = rss_mb(pid)
    user, system = (b - a for a, b in zip((user0, sys0), cpu_seconds(pid), strict=True))
    time.sleep(args.idle)  # what the server holds once the load is over
    idle = rss_mb(pid)
    served = max(traffic.requests, 1)
    second_half = [(t, y) for t, y in means if t >= args.seconds / 2]
    lat = traffic.all_latencies
    return {
        "start_mb": start["VmRSS"],  # after a warm-up, before the load
        "peak_mb": max(peak, end["VmHWM"]),  # VmHWM: the kernel's high-water mark
        "first_window_mb": round(means[1][1], 1) if len(means) > 1 else None,
        "last_window_mb": round(means[-1][1], 1),
        "end_mb": end["VmRSS"],
        "idle_mb": idle["VmRSS"],
        "growth_mb": round(means[-1][1] - means[1][1], 1) if len(means) > 1 else None,
        "slope_mb_per_min_second_half": slope_mb_per_min(second_half),
        "slope_mb_per_min_all": slope_mb_per_min(means[1:]),
        "requests": traffic.requests,
        "requests_per_s": round(traffic.requests / wall, 1),
        "p50_ms": round(percentile(lat, 50), 1),
        "p95_ms": round(percentile(lat, 95), 1),
        # CPU the server spent per request: what the malloc settings cost, less sensitive than
        # latency to other work on a shared machine
        "server_cpu_ms_per_request": round((user + system) * 1e3 / served, 1),
        "server_sys_share": round(system / max(user + system, 1e-9), 3),
        "errors": len(traffic.errors),
        "first_error": traffic.errors[0] if traffic.errors else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", help="run folder (or --train)")
    ap.add_argument("--train", action="store_true", help="train a linear probe on --data first")
    ap.add_argument("--export", action="store_true", help="with --train: also export ONNX")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="images to post")
    ap.add_argument("--backend", default="auto", choices=["auto", "onnx", "pytorch"])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=600, help="how long the load lasts")
    ap.add_argument("--every", type=float, default=10, help="seconds per printed RSS line")
    ap.add_argument("--sample", type=float, default=1, help="seconds between RSS readings")
    ap.add_argument("--idle", type=float, default=15, help="seconds idle before the last sample")
    ap.add_argument("--label", default="", help="a name for this measurement in the output")
    args = ap.parse_args()
    if not args.run and not args.train:
        ap.error("give a run folder, or --train")
    run = train_run(args.data, args.export) if args.train else Path(args.run)
    images = photos(args.data)
    proc, url = start_server(run, args.backend)
    try:
        backend = httpx.get(f"{url}/health").json()["backend"]
        setting = {
            "label": args.label,
            "backend": backend,
            "clients": args.clients,
            "seconds": args.seconds,
            "cpus": os.cpu_count(),
            "src": str(Path(modeltailor.__file__).parent),
            "run": str(run),
        }
        emit(measure="setting", **setting)
        emit(measure="summary", **setting, **measure(url, proc.pid, images, args))
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    main()
