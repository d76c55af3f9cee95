"""The web page of a text run: type or drop a CSV of texts, see labels and probabilities.

    runs/<name>/export/web/index.html        text box and CSV drop (web_template/text_index.html)
                           app.js            UI and inference (web_template/text_app.js)
                           text_tokenizer.js the run's tokenizer, exact (see text_js)
                           text_windows.js   TextEncoder.encode's windows and their averaging
                           text_side.js      the TF-IDF side head and Python's string rules
                           page_common.js    what every page shares: runtime set-up, top list, drop
                           tokenizers.js     @huggingface/tokenizers, wrapped as a classic script
                           tokenizer-data.js tokenizer.json, its config and Unicode tables (base64)
                           app-data.js       labels, preprocessing, side head, Python text tables
                           model.js [model-2.js ...]  the verified export/model.onnx, base64
                           ort.wasm.min.js, ort-wasm.js, style.css, labels.json, preprocessing.json

The same rules as the image page (`modeltailor.export.web`): classic scripts only, the model
and the runtime's wasm embedded as base64, no network at run time, file:// and http:// alike.
Two things are text-specific:

- **Sizes.** A JavaScript string holds at most 2^29 - 24 characters in V8, and a script's
  source is one string, so a model whose base64 would not fit (multilingual-e5-small: 472 MB,
  630 MB as base64) is split into scripts of `MODEL_PART_BYTES` each; the page decodes them
  into one buffer. The tokenizer (17 MB for e5, 0.7 MB for MiniLM) is base64 JSON in
  tokenizer-data.js, decoded with TextDecoder, so no server charset can garble it.
- **Python's string rules.** The TF-IDF side head (when the run has one) lowercases with
  `str.lower`, finds words with `(?u)\\b\\w\\w+\\b` and collapses whitespace with `\\s\\s+`;
  CSV texts are `str.strip`ped. JavaScript's `\\w`, `\\s`, `toLowerCase` and Unicode version
  differ, so `python_text_tables` ships what Python decides per code point (word characters,
  whitespace, lowercase mappings, the final-sigma classes) and text_side.js applies them
  code point by code point, as Python iterates strings.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modeltailor.export import text_js

#: Raw model bytes per embedded script: 128 MiB of base64, well below V8's string limit.
MODEL_PART_BYTES = 96 * 2**20
#: Windows per onnxruntime call (attention memory grows with batch x length^2).
WINDOW_BATCH = 8
#: Template file -> name in the web folder.
TEXT_TEMPLATES = {
    "text_index.html": "index.html",
    "text_app.js": "app.js",
    "style.css": "style.css",
    "text_tokenizer.js": "text_tokenizer.js",
    "text_windows.js": "text_windows.js",
    "text_side.js": "text_side.js",
    "page_common.js": "page_common.js",
}

_SURROGATES = range(0xD800, 0xE000)
_WORD = re.compile(r"\w")
_SPACE = re.compile(r"\s")


def _ranges(flags: Iterator[tuple[int, bool]]) -> list[list[int]]:
    out: list[list[int]] = []
    for cp, on in flags:
        if not on:
            continue
        if out and out[-1][1] == cp - 1:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return out


def _code_points() -> list[int]:
    return [cp for cp in range(0x110000) if cp not in _SURROGATES]


def python_text_tables() -> dict[str, Any]:
    """What this Python decides per code point, for text_side.js (about 2 s, 40 kB of JSON).

    `word`/`space`: ranges re's `\\w`/`\\s` match. `lower`: every code point `str.lower`
    changes (to one or more characters), but capital sigma, whose lowercase depends on its
    neighbours: `sigma` gives the two classes CPython's rule reads (case-ignorable, and cased
    but not case-ignorable), found by asking `str.lower` itself.
    """
    cps = _code_points()
    chars = [chr(cp) for cp in cps]
    lower = {str(cp): ch.lower() for cp, ch in zip(cps, chars, strict=True) if ch.lower() != ch}
    lower.pop(str(0x3A3), None)
    # Σ after c is final iff c is cased and not ignorable; after "A" + c iff c is either.
    cased = [(c + "Σ").lower()[-1] == "ς" for c in chars]
    either = [("A" + c + "Σ").lower()[-1] == "ς" for c in chars]
    return {
        "word": _ranges((cp, bool(_WORD.match(ch))) for cp, ch in zip(cps, chars, strict=True)),
        "space": _ranges((cp, bool(_SPACE.match(ch))) for cp, ch in zip(cps, chars, strict=True)),
        "lower": lower,
        "sigma": {
            "cased": _ranges(zip(cps, cased, strict=True)),
            "ignorable": _ranges(
                (cp, e and not c) for cp, e, c in zip(cps, either, cased, strict=True)
            ),
        },
    }


def _base64_parts(name: str, data: bytes, size: int) -> list[bytes]:
    """`data` as scripts that push base64 chunks onto window.NAME (an array)."""
    chunks = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
    return [
        f"(window.{name} = window.{name} || []).push(".encode("ascii")
        + b'"'
        + base64.b64encode(chunk)
        + b'");\n'
        for chunk in chunks
    ]


def model_script_names(parts: int) -> list[str]:
    return ["model.js"] + [f"model-{k}.js" for k in range(2, parts + 1)]


def text_page_files(out_dir: Path, dist: Path, title: str) -> tuple[dict[str, bytes], dict]:
    """Every file of a text run's web folder, by name; and its manifest details."""

    from modeltailor.export import web

    labels = json.loads((out_dir / "labels.json").read_text(encoding="utf-8"))
    pre = json.loads((out_dir / "preprocessing.json").read_text(encoding="utf-8"))
    side = None
    if "tfidf_side" in pre:  # the export wrote it, checked against scikit-learn
        side_file = out_dir / pre["tfidf_side"]["file"]
        side = json.loads(side_file.read_text(encoding="utf-8"))
    model = (out_dir / "model.onnx").read_bytes()
    parts = _base64_parts("MODELTAILOR_MODEL_PARTS", model, MODEL_PART_BYTES)
    names = model_script_names(len(parts))
    app = {
        "title": title,
        "labels": labels,
        "preprocessing": pre,
        "top_k": min(web.TOP_K, len(labels)),
        "onnxruntime_web": web.ORT_WEB_VERSION,
        "tokenizers_js": text_js.TOKENIZERS_JS_VERSION,
        "model_bytes": len(model),
        "window_batch": WINDOW_BATCH,
        "tfidf_side": side,
        "python": python_text_tables(),
    }
    assets = text_js.tokenizer_assets(out_dir)  # the export's tokenizer.json (sha256 checked)
    assets_json = json.dumps(assets, ensure_ascii=False).encode("utf-8")
    files = web.model_page_files(TEXT_TEMPLATES, title, names, parts, app, dist, labels, pre)
    files["tokenizer-data.js"] = web._base64_global("MODELTAILOR_TOKENIZER", assets_json)
    files["tokenizers.js"] = text_js.tokenizers_js_script(text_js.tokenizers_js_package())
    details = {
        "model": {
            "files": [f"web/{n}" for n in names],
            "embeds": "model.onnx (base64, in parts of at most "
            f"{MODEL_PART_BYTES // 2**20} MiB of model)",
            "sha256": hashlib.sha256(model).hexdigest(),
        },
        "tokenizer": {
            "file": "web/tokenizer-data.js",
            "embeds": "tokenizer.json, tokenizer_config.json and Unicode tables (base64 JSON)",
            "tokenizers_js": text_js.TOKENIZERS_JS_VERSION,
            "sha256": pre.get("tokenizer", {}).get("sha256"),
        },
        "tfidf_side": side is not None,
        "preprocessing": (
            "tokenised in the browser (Tokenizers.js with exact ports of the Rust normalisers), "
            "cut into windows as TextEncoder.encode does, window logits averaged per text"
            + (", plus the TF-IDF side head from tfidf_side.json" if side else "")
        ),
    }
    return files, details
