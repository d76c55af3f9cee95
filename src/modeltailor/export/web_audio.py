"""The web page of an audio run: choose, drop or record clips, see labels and probabilities.

    runs/<name>/export/web/index.html      file drop, Record button (web_template/audio_index.html)
                           app.js          UI, decoding, recording, inference (audio_app.js)
                           audio_dsp.js    header sample rates, downmix, resample_poly, windows
                           page_common.js  what the pages share: runtime set-up, model, drop zone
                           app-data.js     labels, preprocessing.json, limits (generated)
                           model.js [model-2.js ...]  the verified export/model.onnx, base64
                           ort.wasm.min.js, ort-wasm.js, style.css, labels.json, preprocessing.json

The same rules as the image and text pages (`modeltailor.export.web`): classic scripts only,
the model and the runtime's wasm embedded as base64, no network at run time, file:// and
http:// alike. The graph takes windows of 16-kHz mono samples with the log-mel front end
inside, so the page only has to make the rows `tailor predict` makes. Decoding is the
browser's (decodeAudioData) but at the file's own sample rate, read from its header (WAV,
FLAC, Ogg Vorbis/Opus, AIFF), so the browser does not resample; the downmix (mean of
channels) and the resampling (a port of scipy's resample_poly) are done in audio_dsp.js, as
Python does them. Files whose header the page cannot read are decoded at `FALLBACK_RATE` and
resampled from there: the page says their probabilities may differ a little.

Two browser decoders differ from libsndfile, measured in Chromium: 16-bit PCM comes out with
positive samples divided by 32767 instead of 32768 (audio_dsp.js undoes it, after which the
samples are identical), and Ogg Vorbis files can lose their last partial block (255 of 3,839
samples on an FSDD clip; the page compares the decoded length with the file's last granule
position and says so; probabilities then differ by up to ~4e-3 on the runs tested).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

#: Windows per onnxruntime call (a long clip is many windows of 16,000 samples).
WINDOW_BATCH = 8
#: A recording stops by itself after this many seconds.
RECORD_SECONDS = 10
#: The decoding rate for files whose header gives none (the browser resamples them).
FALLBACK_RATE = 48000
#: Template file -> name in the web folder.
AUDIO_TEMPLATES = {
    "audio_index.html": "index.html",
    "audio_app.js": "app.js",
    "audio_dsp.js": "audio_dsp.js",
    "page_common.js": "page_common.js",
    "style.css": "style.css",
}


def audio_page_files(out_dir: Path, dist: Path, title: str) -> tuple[dict[str, bytes], dict]:
    """Every file of an audio run's web folder, by name; and its manifest details."""
    from modeltailor.export import web, web_text

    labels = json.loads((out_dir / "labels.json").read_text(encoding="utf-8"))
    pre = json.loads((out_dir / "preprocessing.json").read_text(encoding="utf-8"))
    model = (out_dir / "model.onnx").read_bytes()
    parts = web_text._base64_parts("MODELTAILOR_MODEL_PARTS", model, web_text.MODEL_PART_BYTES)
    names = web_text.model_script_names(len(parts))
    app = {
        "title": title,
        "labels": labels,
        "preprocessing": pre,
        "top_k": min(web.TOP_K, len(labels)),
        "onnxruntime_web": web.ORT_WEB_VERSION,
        "model_bytes": len(model),
        "window_batch": WINDOW_BATCH,
        "record_seconds": RECORD_SECONDS,
        "fallback_rate": FALLBACK_RATE,
    }
    files = web.model_page_files(AUDIO_TEMPLATES, title, names, parts, app, dist, labels, pre)
    return files, _details(names, model)


def _details(names: list[str], model: bytes) -> dict[str, Any]:
    return {
        "model": {
            "files": [f"web/{n}" for n in names],
            "embeds": "model.onnx (base64)",
            "sha256": hashlib.sha256(model).hexdigest(),
        },
        "preprocessing": (
            "decodeAudioData at the file's own sample rate (from its header), mean of the "
            "channels, scipy's resample_poly ported to JavaScript, the half-overlapping "
            "windows of clip_windows, window logits averaged per clip; recordings "
            "(getUserMedia) take the same steps from the AudioContext's rate"
        ),
        "record_seconds": RECORD_SECONDS,
    }
