"""Web export: a static folder that classifies in the browser with onnxruntime-web.

One page per modality, chosen by the run's config.json: images here, text in
`modeltailor.export.web_text`, audio in `modeltailor.export.web_audio` (same rules: classic
scripts, everything embedded). The image page:

    runs/<name>/export/web/index.html     the page: pick, drop or paste an image, see the top 3
                           app.js          UI and inference
                           preprocess.js   the Python eval preprocessing, re-implemented in JS
                           page_common.js  what every page shares: runtime set-up, top list, drop
                           app-data.js     labels, preprocessing and title (generated)
                           model.js        the verified export/model.onnx, base64
                           ort.wasm.min.js onnxruntime-web's wasm-only bundle (from npm)
                           ort-wasm.js     its wasm binary (base64) and ES-module glue
                           style.css, labels.json, preprocessing.json

Why everything is a classic script: a page opened from file:// may not fetch() files or load
module scripts/workers (browsers block both), and the issue asks for a folder that works from
file:// and from any static server with no network at run time. So the model and the runtime's
wasm are embedded as base64 in .js files (a third larger than the binaries), the runtime's small
ES-module glue is handed to onnxruntime-web as a blob: URL, and inference is single-threaded
(threads need cross-origin isolation, which neither file:// nor a plain server gives).

onnxruntime-web is pinned (ORT_WEB_VERSION) and installed from the npm registry at export time
into a cache folder (`$MODELTAILOR_NPM_CACHE`, else `<modeltailor cache>/npm`), reused after
(see `modeltailor.export.npm`).

Preprocessing parity: preprocess.js reproduces torchvision's uint8 antialiased resize (torch's
fixed-point PIL-SIMD kernel), centre crop and /255 exactly (tests/test_web.py compares it with
`eval_transform` under node). The browser decodes images itself, so two differences remain:
(1) JPEGs at least twice `draft_size` on both sides (586 px for efficientnet-lite0 runs) are
decoded by Python in Pillow's draft mode (DCT-domain downscaling by 2, 4 or 8, see
`open_image`), which a browser cannot do: it decodes at full size and resizes, so on such
photos the page's probabilities can differ from `tailor predict` (measured: logits moved by
1-25 on five such photos with the Fashion-MNIST probe, whose outputs are mostly saturated; the
page shows a note for these files); (2) semi-transparent pixels pass through the canvas's
premultiplied alpha and may differ by one level after compositing on white. Other images give
the same pixels as Python, up to the JPEG decoder (libjpeg-turbo in both Pillow and Chromium:
identical on the photos tested, logits within 1e-3).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import shutil
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

from modeltailor._files import swap_into_place
from modeltailor.export.base import MANIFEST, ExportError, copy_model_card
from modeltailor.export.npm import npm_package
from modeltailor.export.onnx import export_onnx
from modeltailor.run import MODEL_FILE, RunDir, atomic_write_json

ORT_WEB_VERSION = "1.30.0"
#: The only dist files the page uses: the wasm-only UMD bundle, its ES-module glue and binary.
ORT_BUNDLE = "ort.wasm.min.js"
ORT_GLUE = "ort-wasm-simd-threaded.mjs"
ORT_WASM = "ort-wasm-simd-threaded.wasm"
TEMPLATE_FILES = ("index.html", "app.js", "preprocess.js", "page_common.js", "style.css")
TOP_K = 3


def onnxruntime_web_dist(version: str = ORT_WEB_VERSION, root: Path | None = None) -> Path:
    """onnxruntime-web's dist folder, installed once with npm into the cache and reused."""
    files = [f"dist/{name}" for name in (ORT_BUNDLE, ORT_GLUE, ORT_WASM)]
    package = npm_package("onnxruntime-web", version, files, "the web export", root)
    return package / "dist"


def _needs_onnx_export(run: RunDir, out_dir: Path) -> bool:
    """No verified ONNX export yet, or one that no longer matches the run: older than its
    weights (trained again) or with other labels (the page shows the export's labels)."""
    spec = _export_spec(run)
    extra = spec.page_inputs if spec is not None else ()
    names = ["model.onnx", "labels.json", "preprocessing.json", *extra]
    needed = [out_dir / n for n in names]
    if not all(p.is_file() for p in needed):
        return True
    weights = run.path / MODEL_FILE
    if weights.is_file() and weights.stat().st_mtime > needed[0].stat().st_mtime:
        return True
    return run.has("labels.json") and run.read_json("labels.json") != json.loads(
        needed[1].read_text(encoding="utf-8")
    )


def _js_global(name: str, value: Any) -> bytes:
    """`window.NAME = <json>;` with every non-ASCII character escaped, so the file decodes
    the same whatever charset a server announces (labels may be Japanese)."""
    return f"window.{name} = {json.dumps(value, ensure_ascii=True)};\n".encode("ascii")


def _base64_global(name: str, data: bytes) -> bytes:
    return f"window.{name} = ".encode("ascii") + b'"' + base64.b64encode(data) + b'";\n'


def _template(name: str) -> bytes:
    return resources.files("modeltailor.export").joinpath("web_template", name).read_bytes()


def _jpeg_draft_size(run_path: Path) -> int:
    """The size `open_image` drafts JPEGs to (the page warns when Python would use it)."""
    from modeltailor.backbones.catalogue import Preprocessing
    from modeltailor.data.transforms import draft_size

    config = json.loads((run_path / "config.json").read_text(encoding="utf-8"))
    return draft_size(Preprocessing.from_dict(config["preprocessing"]))


def _page_files(out_dir: Path, dist: Path, title: str) -> dict[str, bytes]:
    """Every file of the web folder, by name."""
    labels = json.loads((out_dir / "labels.json").read_text(encoding="utf-8"))
    pre = json.loads((out_dir / "preprocessing.json").read_text(encoding="utf-8"))
    app = {
        "title": title,
        "labels": labels,
        "preprocessing": pre,
        "top_k": min(TOP_K, len(labels)),
        "jpeg_draft_size": _jpeg_draft_size(out_dir.parent),
        "onnxruntime_web": ORT_WEB_VERSION,
    }
    files = {name: _template(name) for name in TEMPLATE_FILES}
    files["index.html"] = files["index.html"].replace(
        b"{{title}}", html.escape(title).encode("utf-8")
    )
    files["app-data.js"] = _js_global("MODELTAILOR_APP", app)
    files.update(runtime_files(dist))
    files["model.js"] = _base64_global("MODELTAILOR_MODEL", (out_dir / "model.onnx").read_bytes())
    files["labels.json"] = json.dumps(labels, indent=2, ensure_ascii=False).encode("utf-8")
    files["preprocessing.json"] = json.dumps(pre, indent=2, ensure_ascii=False).encode("utf-8")
    return files


def model_page_files(
    templates: dict[str, str],
    title: str,
    names: list[str],
    parts: list[bytes],
    app: dict[str, Any],
    dist: Path,
    labels: Any,
    pre: Any,
) -> dict[str, bytes]:
    """The files a page whose model ships in script parts has in common (text, audio): its
    templates, index.html loading the parts, app-data.js, onnxruntime-web, the parts, and
    labels.json / preprocessing.json."""
    files = {out: _template(src) for src, out in templates.items()}
    scripts = "\n".join(f'<script defer src="{n}"></script>' for n in names).encode("ascii")
    files["index.html"] = (
        files["index.html"]
        .replace(b"{{title}}", html.escape(title).encode("utf-8"))
        .replace(b"{{model_scripts}}", scripts)
    )
    files["app-data.js"] = _js_global("MODELTAILOR_APP", app)
    files.update(runtime_files(dist))
    files.update(zip(names, parts, strict=True))
    files["labels.json"] = json.dumps(labels, indent=2, ensure_ascii=False).encode("utf-8")
    files["preprocessing.json"] = json.dumps(pre, indent=2, ensure_ascii=False).encode("utf-8")
    return files


def runtime_files(dist: Path) -> dict[str, bytes]:
    """onnxruntime-web for a page: the wasm-only bundle, and its glue and binary embedded."""
    runtime = {
        "version": ORT_WEB_VERSION,
        "mjs": (dist / ORT_GLUE).read_text(encoding="utf-8"),
    }
    return {
        "ort.wasm.min.js": (dist / ORT_BUNDLE).read_bytes(),
        "ort-wasm.js": _js_global("MODELTAILOR_ORT_WASM", runtime)
        + _base64_global("MODELTAILOR_ORT_WASM.wasm", (dist / ORT_WASM).read_bytes()),
    }


def _modality(run: RunDir) -> str:
    """The run's modality: which page it gets (runs from before modalities are images)."""
    if not run.has("config.json"):
        return "image"
    return run.read_json("config.json").get("modality", "image")


def _export_spec(run: RunDir):
    """The run's modality's export contract (its web page, the files that page reads)."""
    from modeltailor.modalities import get_modality

    return get_modality(_modality(run)).export_spec()


def image_page_files(out_dir: Path, dist: Path, title: str) -> tuple[dict[str, bytes], dict]:
    """Every file of an image run's web folder, by name; and its manifest details."""
    return _page_files(out_dir, dist, title), _image_details(out_dir)


def _write_folder(target: Path, files: dict[str, bytes]) -> None:
    """Write into a staging folder beside `target`, then swap it in: a reader (or a browser
    reloading the page) sees the old folder or the new one, never a mix."""
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".web-"))
    try:
        for name, data in files.items():
            (staging / name).write_bytes(data)
        staging.chmod(0o755)  # mkdtemp makes it private; a static server may run as another user
        swap_into_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def export_web(
    run_path: str | Path, data: str | Path | None = None, force: bool = False
) -> dict[str, Any]:
    """Write run/export/web/ and record it in export/manifest.json; returns the manifest.

    The model is the verified ONNX export: it is made first (checked against PyTorch, on `data`
    or the run's validation split) when missing, older than the run's weights, or with `force`.
    """
    run = RunDir(run_path)
    out_dir = run.path / "export"
    if force or _needs_onnx_export(run, out_dir):
        export_onnx(run.path, data=data)
    dist = onnxruntime_web_dist()
    title = run.path.resolve().name
    spec = _export_spec(run)
    page = spec.web_page if spec is not None else None
    if page is None:
        raise ExportError(f"{_modality(run)} runs have no web page yet")
    files, details = page(out_dir, dist, title)
    _write_folder(out_dir / "web", files)
    manifest = _read_manifest(out_dir / MANIFEST)
    manifest["web"] = _manifest_section(files, details)
    atomic_write_json(out_dir / MANIFEST, manifest)
    copy_model_card(run, out_dir)  # the card now lists the page
    return manifest


def _read_manifest(path: Path) -> dict[str, Any]:
    """The manifest other formats wrote (their sections stay), or a new one."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def _image_details(out_dir: Path) -> dict[str, Any]:
    model = (out_dir / "model.onnx").read_bytes()
    return {
        "model": {
            "file": "web/model.js",
            "embeds": "model.onnx (base64)",
            "sha256": hashlib.sha256(model).hexdigest(),
        },
        "preprocessing": (
            "preprocess.js reproduces eval_transform (uint8 antialiased resize, centre crop, "
            "/255); JPEGs >= 2x the resize size decode in Pillow draft mode in Python only"
        ),
    }


def _manifest_section(files: dict[str, bytes], details: dict[str, Any]) -> dict[str, Any]:
    return {
        "folder": "web",
        "entry": "web/index.html",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "onnxruntime_web": {
            "version": ORT_WEB_VERSION,
            "source": f"npm registry, onnxruntime-web@{ORT_WEB_VERSION}",
            "dist_files": [ORT_BUNDLE, ORT_GLUE, ORT_WASM],
            "execution": "wasm, single-threaded",
        },
        "files": {name: len(data) for name, data in sorted(files.items())},
        "bytes": sum(len(d) for d in files.values()),
        "top_k": TOP_K,
        **details,
    }
