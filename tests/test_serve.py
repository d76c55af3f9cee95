"""`tailor serve`: real HTTP against real uvicorn servers on free localhost ports."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from schemathesis import GenerationMode

from modeltailor._runtime import _libc, malloc_mode
from modeltailor.api import ImageClassifier
from modeltailor.errors import RunError
from modeltailor.export import export_onnx
from modeltailor.serve import create_app, load_predictor
from modeltailor.training.inference import softmax

from .conftest import SHARED_DATA

TOL = 1e-4


@contextmanager
def live(app) -> Iterator[str]:
    """The app behind uvicorn in a thread, on a port the OS picks; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def torch_app(probe_run):
    return create_app(probe_run, backend="pytorch")


@pytest.fixture(scope="module")
def torch_url(torch_app) -> Iterator[str]:
    with live(torch_app) as url:
        yield url


@pytest.fixture(scope="module")
def onnx_run(probe_run, tmp_path_factory) -> Path:
    """A copy of the probe run with its own export (other tests keep using probe_run)."""
    run = tmp_path_factory.mktemp("serve") / "probe"
    shutil.copytree(probe_run, run, ignore=shutil.ignore_patterns("export"))
    export_onnx(run, max_examples=16)
    return run


@pytest.fixture(scope="module")
def onnx_url(onnx_run) -> Iterator[str]:
    with live(create_app(onnx_run)) as url:  # auto: the export is there, so ONNX
        yield url


@pytest.fixture(scope="module")
def images(fashion_dir) -> list[Path]:
    """Two bundled images per class, plus real JPEG photos when ../shared/data has them."""
    classes = sorted(d for d in fashion_dir.iterdir() if d.is_dir())
    files = [p for d in classes for p in sorted(d.iterdir())[:2]]
    photos = SHARED_DATA / "hymenoptera_data" / "val" / "bees"
    return files + (sorted(photos.glob("*.jpg"))[:4] if photos.is_dir() else [])


def upload(paths: list[Path]) -> list[tuple[str, tuple[str, bytes, str]]]:
    kind = {".png": "image/png", ".jpg": "image/jpeg"}
    return [("files", (p.name, p.read_bytes(), kind[p.suffix])) for p in paths]


def post(url: str, files, k: int | None = None, **kw) -> httpx.Response:
    params = {"k": k} if k is not None else None
    return httpx.post(f"{url}/predict", files=files, params=params, timeout=60, **kw)


def assert_error(r: httpx.Response, status: int, *words: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert isinstance(body["detail"], str) and "Traceback" not in r.text
    for w in words:
        assert w in body["detail"], body["detail"]
    return body


def png_bytes(size: tuple[int, int], mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    return buf.getvalue()


# -- the API ---------------------------------------------------------------------------------
def test_health_and_metadata_describe_the_run(torch_url, probe_run):
    assert httpx.get(f"{torch_url}/health").json() == {"status": "ok", "backend": "pytorch"}
    meta = httpx.get(f"{torch_url}/metadata").json()
    config = json.loads((probe_run / "config.json").read_text())
    assert meta["labels"] == json.loads((probe_run / "labels.json").read_text())
    assert meta["metrics"] == json.loads((probe_run / "metrics.json").read_text())
    assert (meta["backbone"], meta["strategy"]) == (config["backbone"], config["strategy"])
    assert meta["preprocessing"] == config["preprocessing"]
    assert (meta["backend"], meta["model_file"]) == ("pytorch", "model.safetensors")
    docs = httpx.get(f"{torch_url}/openapi.json").json()
    assert "/predict" in docs["paths"] and httpx.get(f"{torch_url}/docs").status_code == 200


def test_single_and_batch_predictions_match_the_python_api(torch_url, probe_run, images):
    expected, skipped = ImageClassifier.load(probe_run).predict_files(images, top_k=3)
    assert not skipped and len(expected) == len(images)
    single = post(torch_url, upload(images[:1])).json()["predictions"]
    batch = post(torch_url, upload(images)).json()["predictions"]
    assert len(single) == 1 and len(batch) == len(images)
    for got, want in zip(single + batch, expected[:1] + expected, strict=True):
        assert got["file"] == Path(want["path"]).name and got["label"] == want["label"]
        assert abs(got["probability"] - want["probability"]) < TOL
        assert [t["label"] for t in got["top_k"]] == [t["label"] for t in want["top_k"]]
        got_p = [t["probability"] for t in got["top_k"]]
        assert np.allclose(got_p, [t["probability"] for t in want["top_k"]], atol=TOL)


def test_the_server_process_keeps_its_memory_bounded(torch_app):
    """create_app switches malloc to server mode (tests/test_runtime.py checks what it does)."""
    if _libc() is None:
        pytest.skip("glibc malloc only")
    assert malloc_mode() == "server"


def test_k_ranks_every_class_at_most(torch_url, images):
    ranked = post(torch_url, upload(images[:1]), k=100).json()["predictions"][0]["top_k"]
    assert len(ranked) == 10 and abs(sum(t["probability"] for t in ranked) - 1) < 1e-5
    probs = [t["probability"] for t in ranked]
    assert probs == sorted(probs, reverse=True)
    assert_error(post(torch_url, upload(images[:1]), k=0), 422, "k")


def test_onnx_and_pytorch_servers_agree(torch_url, onnx_url, images):
    assert httpx.get(f"{onnx_url}/metadata").json()["model_file"] == "export/model.onnx"
    answers = {}
    for url in (torch_url, onnx_url):
        r = post(url, upload(images), k=10).json()
        answers[r["backend"]] = r["predictions"]
    assert set(answers) == {"pytorch", "onnx"}
    for a, b in zip(answers["pytorch"], answers["onnx"], strict=True):
        assert a["label"] == b["label"]
        pa = {t["label"]: t["probability"] for t in a["top_k"]}
        pb = {t["label"]: t["probability"] for t in b["top_k"]}
        assert max(abs(pa[c] - pb[c]) for c in pa) < TOL


def test_a_calibration_temperature_is_applied_and_a_stale_export_refused(
    probe_run, onnx_run, tmp_path, images
):
    run = tmp_path / "calibrated"
    shutil.copytree(onnx_run, run)
    config = json.loads((run / "config.json").read_text())
    config["calibration"] = {"temperature": 2.0}
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunError, match="tailor export"):
        create_app(run)  # the export was made without that temperature
    plain, hot = load_predictor(probe_run, "pytorch"), load_predictor(run, "pytorch")
    x = [plain.decode(images[0].read_bytes(), images[0].name)]
    assert np.allclose(hot.probabilities(x), softmax(np.log(plain.probabilities(x)) / 2), atol=1e-6)


# -- refusals: always JSON with a `detail`, never a 5xx --------------------------------------
def test_wrong_content_types_are_415(torch_url, images):
    url = f"{torch_url}/predict"
    assert_error(httpx.post(url, json={"files": ["x.jpg"]}), 415, "multipart/form-data")
    raw = images[0].read_bytes()
    assert_error(httpx.post(url, content=raw, headers={"content-type": "image/png"}), 415)
    notes = [("files", ("notes.txt", b"not an image", "text/plain"))]
    body = assert_error(post(torch_url, upload(images[:1]) + notes), 415, "notes.txt")
    assert [f["file"] for f in body["files"]] == ["notes.txt"]


def test_bodies_over_the_limit_are_413(torch_url):
    big = os.urandom(21_000_000)
    declared = post(torch_url, [("files", ("big.jpg", big, "image/jpeg"))])
    assert_error(declared, 413, "20 MB")

    head = b'--xyz\r\nContent-Disposition: form-data; name="files"; filename="big.jpg"\r\n\r\n'
    body = head + big + b"\r\n--xyz--\r\n"

    def chunks():  # no Content-Length: the limit has to be counted as the body streams in
        for i in range(0, len(body), 1 << 20):
            yield body[i : i + (1 << 20)]

    streamed = httpx.post(
        f"{torch_url}/predict",
        content=chunks(),
        headers={"content-type": "multipart/form-data; boundary=xyz"},
        timeout=60,
    )
    assert "content-length" not in streamed.request.headers
    assert_error(streamed, 413, "20 MB")


def test_unusable_files_are_422_naming_file_and_problem(torch_url, images):
    good = upload(images[:1])
    cases = {
        "empty.jpg": (b"", "empty"),
        "corrupt.jpg": (os.urandom(2000), "cannot decode"),
        "truncated.png": (images[0].read_bytes()[:-40], "cannot decode"),
        "bomb.png": (png_bytes((12_000, 12_000), "1"), "decompression-bomb"),
        "thin.png": (png_bytes((1, 5000)), "elongated"),
    }
    for name, (data, words) in cases.items():
        files = good + [("files", (name, data, "image/png"))]
        body = assert_error(post(torch_url, files), 422, name, words)
        assert [f["file"] for f in body["files"]] == [name]
    two_bad = [("files", (n, b"", "image/png")) for n in ("a.png", "b.png")]
    assert_error(post(torch_url, two_bad), 422, "2 files refused", "a.png", "b.png")
    assert_error(post(torch_url, []), 415)  # no parts at all is not a multipart form
    assert_error(post(torch_url, None, data={"files": "hello"}), 415)
    assert_error(post(torch_url, upload(images[:1]) * 65), 400, "Too many files")


def test_an_unexpected_failure_is_a_generic_500(torch_app, torch_url, images, monkeypatch):
    def boom(inputs):
        raise RuntimeError("secret internal state /home/someone")

    monkeypatch.setattr(torch_app.state.predictor, "probabilities", boom)
    r = assert_error(post(torch_url, upload(images[:1])), 500, "server log")
    assert "secret" not in json.dumps(r) and "RuntimeError" not in json.dumps(r)


def test_inference_runs_off_the_event_loop(torch_app, torch_url, images, monkeypatch):
    real = torch_app.state.predictor.probabilities

    def slow(inputs):
        time.sleep(1.5)
        return real(inputs)

    monkeypatch.setattr(torch_app.state.predictor, "probabilities", slow)
    result = {}
    t = threading.Thread(target=lambda: result.update(r=post(torch_url, upload(images[:1]))))
    t.start()
    time.sleep(0.3)
    started = time.perf_counter()
    assert httpx.get(f"{torch_url}/health").status_code == 200
    assert time.perf_counter() - started < 0.5
    t.join(30)
    assert result["r"].status_code == 200


# -- the command line ------------------------------------------------------------------------
def test_tailor_serve_command(probe_run, images):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "modeltailor.cli", "serve", str(probe_run), "--port", str(port)]
    cmd += ["--backend", "pytorch", "--max-upload-mb", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        assert post(url, upload(images[:2])).status_code == 200
        big = [("files", ("big.png", os.urandom(1_100_000), "image/png"))]
        assert_error(post(url, big), 413, "1 MB")
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    assert f"at {url}" in output and "(pytorch)" in output


# -- property-based fuzzing from the OpenAPI schema ------------------------------------------
def test_fuzzed_requests_never_get_a_server_error(onnx_url):
    """Valid and invalid requests generated from /openapi.json (schemathesis + hypothesis).

    Driven through hypothesis directly: schemathesis' pytest fixture loader does not work
    with pytest 9 (it reads a private attribute that is gone).
    """
    api = schemathesis.openapi.from_url(f"{onnx_url}/openapi.json")
    cases = st.one_of([api.as_strategy(mode) for mode in GenerationMode])
    seen: set[int] = set()

    @given(case=cases)
    @settings(
        max_examples=120, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def check(case):
        response = case.call(timeout=30)
        seen.add(response.status_code)
        assert response.status_code < 500, response.text
        if response.status_code >= 400 and response.status_code not in (404, 405):
            assert isinstance(response.json()["detail"], str)

    check()
    assert 200 in seen and len(seen) > 1  # both accepted and refused requests were tried


def test_requests_queued_behind_a_forward_pass_share_the_next_one():
    from modeltailor.serve.backends import Combiner

    batches: list[int] = []

    def double(inputs: list) -> np.ndarray:
        time.sleep(0.2)
        batches.append(len(inputs))
        if -1 in inputs:
            raise ValueError("bad batch")
        return np.array(inputs) * 2

    combined = Combiner(double)
    results: dict[int, object] = {}

    def call(i: int) -> None:
        results[i] = list(combined([i, i + 100]))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: [2 * i, 2 * i + 200] for i in range(6)}
    assert sum(batches) == 12 and len(batches) < 6
    with pytest.raises(RuntimeError, match="inference failed") as info:
        combined([-1])
    assert isinstance(info.value.__cause__, ValueError)
