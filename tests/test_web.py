"""Web export: the JS preprocessing equals torchvision's, and the page in headless Chromium
gives `tailor predict`'s answers, from http:// and from file://."""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torchvision.transforms import v2 as T

from modeltailor.backbones.catalogue import Preprocessing
from modeltailor.cli import main
from modeltailor.data.transforms import eval_transform, load_for_model
from modeltailor.export import ExportError
from modeltailor.export import npm as npm_export
from modeltailor.export import web as web_export
from modeltailor.export.base import preprocessing_doc

from .conftest import SHARED_DATA

TEMPLATE = Path(web_export.__file__).parent / "web_template"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
HALF = (0.5, 0.5, 0.5)
JAPANESE = {"bag": "かばん", "sandal": "サンダル"}

# conftest gives every session a fresh MODELTAILOR_CACHE (embeddings must not leak between
# runs); the pinned npm package may: keep it where a user's own export would, so only the
# first test session downloads it.
os.environ.setdefault(
    "MODELTAILOR_NPM_CACHE",
    str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modeltailor/npm"),
)

NODE_RUNNER = """
const fs = require("fs");
const P = require(process.argv[2]);
for (const job of JSON.parse(fs.readFileSync(process.argv[3], "utf8"))) {
  const rgba = new Uint8Array(fs.readFileSync(job.rgba));
  const r = P.preprocess(rgba, job.width, job.height, job.pre);
  fs.writeFileSync(job.out + ".crop", Buffer.from(r.crop));
  fs.writeFileSync(job.out + ".f32", Buffer.from(r.tensor.buffer));
}
"""


# -- preprocess.js under node vs torchvision ---------------------------------------------------
def _parity_images(fashion_dir: Path, tmp_path: Path) -> list[Path]:
    """Bundled 28x28 PNGs (upscaled), real photos if present, noise, and a PNG with alpha."""
    images = [sorted((fashion_dir / c).iterdir())[0] for c in ("bag", "coat", "sneaker")]
    photos = SHARED_DATA / "hymenoptera_data" / "val"
    if photos.is_dir():
        images += sorted(photos.glob("*/*.jpg"))[:4]
    rng = np.random.default_rng(0)
    noise = tmp_path / "noise.png"
    Image.fromarray(rng.integers(0, 256, (517, 333, 3), dtype=np.uint8)).save(noise)
    alpha = tmp_path / "alpha.png"
    Image.fromarray(rng.integers(0, 256, (40, 61, 4), dtype=np.uint8), "RGBA").save(alpha)
    return [*images, noise, alpha]


def _as_canvas_would_give(path: Path, decoded: Image.Image) -> Image.Image:
    """RGBA input for preprocess.js: the file's straight alpha when it has some (the JS must
    composite it on white like `open_image`), else the very pixels Python decoded (this test
    is about resizing, not about JPEG decoders or Pillow's draft mode)."""
    with Image.open(path) as img:
        if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
            return img.convert("RGBA")
    return decoded.convert("RGBA")


PREPROCESSINGS = [
    Preprocessing(256, HALF, HALF, "bicubic", 0.875),  # efficientnet-lite0 at its test size
    Preprocessing(224, HALF, HALF, "bilinear", 0.9),
    Preprocessing(224, HALF, HALF, "nearest", 1.0),
    Preprocessing(224, HALF, HALF, "bicubic", 1.15),  # crop larger than the resize: padding
]


def _run_node(jobs: list[dict], tmp_path: Path) -> None:
    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed: the JS preprocessing cannot be checked")
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    (tmp_path / "runner.js").write_text(NODE_RUNNER)
    script = str(TEMPLATE / "preprocess.js")
    subprocess.run(
        [node, str(tmp_path / "runner.js"), script, str(tmp_path / "jobs.json")],
        check=True,
        timeout=120,
    )


def test_preprocess_js_equals_torchvision_eval_transform(fashion_dir, tmp_path):
    images = _parity_images(fashion_dir, tmp_path)
    jobs, expected = [], []
    for i, pre in enumerate(PREPROCESSINGS):
        steps = eval_transform(pre).transforms
        to_bytes, to_unit = T.Compose(steps[:3]), T.Compose(steps[:4])  # before Normalize
        for j, path in enumerate(images):
            reference = load_for_model(path, pre)  # RGB composited on white, maybe drafted
            rgba = _as_canvas_would_give(path, reference)
            raw = tmp_path / f"{i}-{j}.rgba"
            raw.write_bytes(np.asarray(rgba).tobytes())
            out = str(tmp_path / f"{i}-{j}")
            jobs.append(
                {
                    "rgba": str(raw),
                    "width": rgba.width,
                    "height": rgba.height,
                    "pre": preprocessing_doc(pre),
                    "out": out,
                }  # fmt: skip
            )
            expected.append((path.name, pre, to_bytes(reference), to_unit(reference), out))
    _run_node(jobs, tmp_path)
    for name, pre, crop, unit, out in expected:
        size = pre.input_size
        js_crop = np.fromfile(out + ".crop", np.uint8).reshape(size, size, 3).transpose(2, 0, 1)
        js_unit = np.fromfile(out + ".f32", np.float32).reshape(3, size, size)
        where = f"{name} ({pre.interpolation}, crop_pct {pre.crop_pct})"
        assert np.array_equal(js_crop, crop.numpy()), where
        assert np.abs(js_unit - unit.numpy()).max() == 0.0, where


# -- the exported folder -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def ort_dist():
    try:
        return web_export.onnxruntime_web_dist()
    except ExportError as exc:
        pytest.skip(f"onnxruntime-web could not be installed from npm: {exc}")


@pytest.fixture(scope="module")
def web_run(probe_run, tmp_path_factory, ort_dist) -> Path:
    """A copy of the probe run with two Japanese labels and a Japanese name, exported to web
    through the CLI. The verified ONNX export is made first unless test_export already made
    one this session (reused: it takes longer than everything else here)."""
    run = tmp_path_factory.mktemp("web") / "ファッション-probe"
    shutil.copytree(probe_run, run, ignore=shutil.ignore_patterns("export"))
    done = probe_run / "export"
    if (done / "model.onnx").is_file():
        (run / "export").mkdir()
        for name in ("model.onnx", "labels.json", "preprocessing.json", "manifest.json"):
            shutil.copy2(done / name, run / "export" / name)
    for labels_file in (run / "labels.json", run / "export" / "labels.json"):
        if labels_file.is_file():
            labels = json.loads(labels_file.read_text(encoding="utf-8"))
            renamed = [JAPANESE.get(name, name) for name in labels]
            labels_file.write_text(json.dumps(renamed, ensure_ascii=False), encoding="utf-8")
    assert main(["export", str(run), "--format", "web"]) == 0
    return run


def test_web_folder_holds_the_verified_model_and_only_the_runtime_it_needs(web_run):
    export = web_run / "export"
    web = export / "web"
    manifest = json.loads((export / "manifest.json").read_text(encoding="utf-8"))
    section = manifest["web"]
    assert manifest["onnx"]["parity_vs_pytorch"]["top1_agreement"] == 1.0
    assert section["onnxruntime_web"]["version"] == web_export.ORT_WEB_VERSION
    assert sorted(p.name for p in web.iterdir()) == sorted(section["files"])
    assert not list(web.glob("*.wasm")) and not list(web.glob("*.mjs"))
    model_js = (web / "model.js").read_text(encoding="ascii")
    embedded = base64.b64decode(model_js.split('"')[1])
    assert embedded == (export / "model.onnx").read_bytes()
    labels = json.loads((web / "labels.json").read_text(encoding="utf-8"))
    assert "かばん" in labels and labels == json.loads((export / "labels.json").read_text("utf-8"))
    assert '<meta charset="utf-8">' in (web / "index.html").read_text(encoding="utf-8")
    assert section["bytes"] < 60e6


# -- the page in headless Chromium -------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def served(web_run):
    """The web folder on a free localhost port, as any static server would serve it."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(web_run / "export" / "web"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _test_images(fashion_dir: Path) -> list[Path]:
    images = [sorted((fashion_dir / c).iterdir())[0] for c in ("bag", "sandal", "trouser")]
    photos = SHARED_DATA / "hymenoptera_data" / "val"
    if photos.is_dir():  # real JPEG photos, ~500x375 (below Pillow's draft-mode threshold)
        images += [sorted((photos / "ants").glob("*.jpg"))[0], sorted(photos.glob("bees/*"))[0]]
    return images


def _classify_in_page(page, images: list[Path]) -> list[dict]:
    results = []
    for n, image in enumerate(images, start=1):
        page.set_input_files("#file", str(image))
        page.wait_for_function(
            f"document.getElementById('status').dataset.run === '{n}'"
            " || document.body.dataset.state === 'error'",
            timeout=60_000,
        )
        assert page.get_attribute("#status", "data-state") == "done", page.inner_text("#status")
        shown = page.eval_on_selector_all(
            "#predictions .prediction",
            "els => els.map(e => [e.dataset.label, Number(e.dataset.probability)])",
        )
        results.append({"shown": shown, **page.evaluate("window.MODELTAILOR_LAST")})
    return results


@pytest.mark.parametrize("scheme", ["http", "file"])
def test_page_in_chromium_matches_tailor_predict(
    scheme, web_run, served, browser, fashion_dir, tmp_path
):
    from modeltailor.api import ImageClassifier

    images = _test_images(fashion_dir)
    web = web_run / "export" / "web"
    url = f"{served}/index.html" if scheme == "http" else (web / "index.html").as_uri()
    page = browser.new_page()
    problems, requests = [], []
    page.on("console", lambda m: m.type == "error" and problems.append(m.text))
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(url)
    page.wait_for_function(
        "document.getElementById('status').dataset.state !== 'loading'", timeout=60_000
    )
    assert page.get_attribute("#status", "data-state") == "ready", page.inner_text("#status")
    results = _classify_in_page(page, images)
    page.screenshot(path=str(tmp_path / f"web-{scheme}.png"), full_page=True)
    assert page.title() == web_run.name
    page.close()

    clf = ImageClassifier.load(web_run)
    rows, skipped = clf.predict_files(images, top_k=len(clf.classes_))
    assert not skipped and len(rows) == len(results)
    for row, got in zip(rows, results, strict=True):
        expected = {t["label"]: t["probability"] for t in row["top_k"]}
        browser_probs = dict(zip(got["labels"], got["probabilities"], strict=True))
        assert got["shown"][0][0] == row["label"], row["path"]
        assert len(got["shown"]) == 3
        for label, p in got["shown"]:
            assert abs(p - expected[label]) <= 1e-3, (row["path"], label)
        assert max(abs(browser_probs[k] - v) for k, v in expected.items()) <= 1e-3, row["path"]
    assert problems == []
    local = (served, "file://", "blob:", "data:")
    assert [u for u in requests if not u.startswith(local)] == []  # no network at run time
    assert any("かばん" == r["shown"][0][0] for r in results)  # UTF-8 labels end to end


def test_a_run_without_onnx_export_gets_the_verified_one_first(monkeypatch, tmp_path):
    def refuse(run_path, data=None):
        raise ExportError(f"export_onnx({Path(run_path).name}, data={data})")

    monkeypatch.setattr(web_export, "export_onnx", refuse)
    (tmp_path / "run").mkdir()
    with pytest.raises(ExportError, match=r"export_onnx\(run, data=val\)"):
        web_export.export_web(tmp_path / "run", data="val")


# -- npm failures are explained ----------------------------------------------------------------
def test_missing_npm_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(npm_export.shutil, "which", lambda name: None)
    with pytest.raises(ExportError, match=r"npm is not installed.*npm install --prefix"):
        web_export.onnxruntime_web_dist(root=tmp_path)


def test_unreachable_registry_says_what_to_run(monkeypatch, tmp_path):
    failed = subprocess.CompletedProcess([], 1, "", "npm error code ENOTFOUND\nnpm error network")
    monkeypatch.setattr(npm_export.shutil, "which", lambda name: "/usr/bin/npm")
    monkeypatch.setattr(npm_export.subprocess, "run", lambda *a, **k: failed)
    with pytest.raises(ExportError, match=r"registry reachable.*ENOTFOUND.*run: npm install"):
        web_export.onnxruntime_web_dist(root=tmp_path)
    assert list(tmp_path.iterdir()) == []  # the staging folder is gone


def test_an_onnx_export_that_no_longer_matches_the_run_is_redone(tmp_path):
    from modeltailor.run import RunDir

    run = tmp_path / "run"
    (run / "export").mkdir(parents=True)
    for name in ("export/model.onnx", "export/labels.json", "export/preprocessing.json"):
        (run / name).write_text('["a", "b"]')
    (run / "labels.json").write_text('["a", "b"]')
    weights = run / "model.safetensors"
    weights.write_text("")
    exported = (run / "export" / "model.onnx").stat().st_mtime
    os.utime(weights, (exported - 10, exported - 10))
    assert not web_export._needs_onnx_export(RunDir(run), run / "export")
    (run / "labels.json").write_text('["a", "c"]')
    assert web_export._needs_onnx_export(RunDir(run), run / "export")
    (run / "labels.json").write_text('["a", "b"]')
    os.utime(weights, (exported + 10, exported + 10))  # trained again after the export
    assert web_export._needs_onnx_export(RunDir(run), run / "export")
