"""What a browser page needs to tokenise text exactly as Python does.

Text models are exported as graphs over token ids, so the page must reproduce the run's
tokenizer (Rust `tokenizers`, read from `text_model/tokenizer.json`) id for id, and cut the ids
into windows as `TextEncoder.encode` does. Three pieces:

- **Tokenizers.js** (`@huggingface/tokenizers`, pinned `TOKENIZERS_JS_VERSION`, MIT-licensed,
  no dependencies, 37 kB minified): loads a tokenizer.json in Node or a browser. Installed with
  npm into the npm cache at the time it is needed (`tokenizers_js_package`), like
  onnxruntime-web. `tokenizers_js_script` wraps its CommonJS bundle as a classic script, since
  a page opened from file:// cannot load ES modules.
- **web_template/text_tokenizer.js**: `loadTokenizer` builds the library's Tokenizer and
  swaps in exact versions of the steps where the library differs from Rust (see that file).
  Rust decides some steps with its own Unicode tables, which neither match nor are as stable
  as a browser's, so `unicode_tables` runs every code point through the run's own Rust
  BertNormalizer / BertPreTokenizer once and hands the page the results (30-40 kB of JSON).
- **web_template/text_windows.js**: the window algorithm (`windows`, `spread`, the stable
  prefix, specials per window) and mean-combining of window logits.

`tests/test_js_tokenizer.py` checks Node's windows against `TextEncoder.encode` on a hostile
corpus for MiniLM (WordPiece) and e5 (Unigram with a "query: " prefix).
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from modeltailor.export.npm import npm_package

TOKENIZERS_JS = "@huggingface/tokenizers"
TOKENIZERS_JS_VERSION = "0.2.0"
#: The CommonJS bundle: self-contained (no require), wrapped as a classic script for pages.
TOKENIZERS_JS_BUNDLE = "dist/tokenizers.min.cjs"
#: The page's JavaScript for text models, in web_template/ (classic scripts, CommonJS in Node).
TEXT_SCRIPTS = ("text_tokenizer.js", "text_windows.js")
#: Files of a run's text_model/ folder the page reads (tokenizer_config.json may be absent).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")

_SURROGATES = range(0xD800, 0xE000)
_HANGUL_FIRST, _HANGUL_LAST = 0xAC00, 0xD7A3


def tokenizers_js_package(root: Path | None = None) -> Path:
    """The pinned @huggingface/tokenizers package folder, installed once with npm."""
    return npm_package(
        TOKENIZERS_JS,
        TOKENIZERS_JS_VERSION,
        [TOKENIZERS_JS_BUNDLE, "LICENSE"],
        "exporting a text model to the web",
        root,
    )


def tokenizers_js_script(package: Path) -> bytes:
    """The library as one classic script that defines `globalThis.TokenizersJS`.

    Why a wrapper: file:// pages cannot load ES modules, and the CommonJS bundle only needs a
    `module` object to write its exports to.
    """
    bundle = (package / TOKENIZERS_JS_BUNDLE).read_bytes()
    version = json.dumps(TOKENIZERS_JS_VERSION).encode("ascii")
    return (
        b"/* @huggingface/tokenizers " + version.strip(b'"') + b" (MIT licence), wrapped as a "
        b"classic script */\n(function () {\nvar module = { exports: {} };\n"
        b"(function (module, exports) {\n" + bundle + b"\n})(module, module.exports);\n"
        b"module.exports.version = " + version + b";\n"
        b"globalThis.TokenizersJS = module.exports;\n})();\n"
    )


def text_script(name: str) -> bytes:
    """One of TEXT_SCRIPTS, as shipped in the package."""
    return resources.files("modeltailor.export").joinpath("web_template", name).read_bytes()


def tokenizer_assets(folder: Path) -> dict[str, Any]:
    """What `loadTokenizer` takes: the run's tokenizer files and the Unicode tables for them.

    `folder` is a run's text_model/ folder (what `save_text_assets` wrote). Truncation and
    padding settings in it are ignored on purpose: the window algorithm does the cutting.
    """
    tokenizer = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    return {"tokenizer": tokenizer, "config": config, "tables": unicode_tables(tokenizer)}


# -- Unicode tables: what Rust decides per code point ------------------------------------------


def _code_points() -> Iterator[int]:
    return (cp for cp in range(0x110000) if cp not in _SURROGATES)


def _components(config: dict | None, key: str) -> Iterator[dict]:
    """Every component of a tokenizer.json section, looking inside Sequences."""
    if not config:
        return
    yield config
    for member in config.get(key) or ():
        yield from _components(member, key)


def _ranges(cps: list[int]) -> list[list[int]]:
    """Sorted code points -> [[first, last], ...] runs."""
    out: list[list[int]] = []
    for cp in cps:
        if out and out[-1][1] == cp - 1:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return out


def bert_normalizer_table(config: dict) -> dict[str, Any]:
    """Rust's BertNormalizer output for every code point on its own, compressed.

    Runs of code points that are dropped, become a space, are padded with spaces (CJK), or
    decompose algorithmically (Hangul syllables) are ranges [first, last, kind]; any other
    change is listed in `map`. Exact for text, since Rust normalises char by char, except for
    the canonical reordering of marks that survive accent stripping (none in practice).
    """
    from tokenizers import normalizers

    norm = normalizers.BertNormalizer(
        clean_text=config.get("clean_text", True),
        handle_chinese_chars=config.get("handle_chinese_chars", True),
        strip_accents=config.get("strip_accents"),
        lowercase=config.get("lowercase", True),
    )
    kinds: dict[str, list[int]] = {"drop": [], "space": [], "pad": [], "hangul": []}
    mapped: dict[str, str] = {}
    for cp in _code_points():
        ch = chr(cp)
        out = norm.normalize_str(ch)
        if out == ch:
            continue
        if out == "":
            kinds["drop"].append(cp)
        elif out == " ":
            kinds["space"].append(cp)
        elif out == f" {ch} ":
            kinds["pad"].append(cp)
        elif _HANGUL_FIRST <= cp <= _HANGUL_LAST and out == unicodedata.normalize("NFD", ch):
            kinds["hangul"].append(cp)
        else:
            mapped[str(cp)] = out
    ranges = [[a, b, kind] for kind, cps in kinds.items() for a, b in _ranges(cps)]
    return {"ranges": sorted(ranges), "map": mapped}


def bert_pre_tokenizer_table() -> dict[str, list[list[int]]]:
    """The code points Rust's BertPreTokenizer splits on: whitespace and punctuation ranges."""
    from tokenizers import pre_tokenizers

    pre = pre_tokenizers.BertPreTokenizer()
    found: dict[str, list[int]] = {"whitespace": [], "punctuation": []}
    for cp in _code_points():
        ch = chr(cp)
        parts = [p for p, _ in pre.pre_tokenize_str(f"a{ch}b")]
        if parts == ["a", "b"]:
            found["whitespace"].append(cp)
        elif parts == ["a", ch, "b"]:
            found["punctuation"].append(cp)
        elif parts != [f"a{ch}b"]:
            raise ValueError(f"BertPreTokenizer split U+{cp:04X} unexpectedly: {parts}")
    return {kind: _ranges(cps) for kind, cps in found.items()}


def unicode_tables(tokenizer: dict) -> dict[str, Any]:
    """The tables text_tokenizer.js needs for this tokenizer.json (empty when none).

    Keys: `bert_normalizer` (one table per BertNormalizer, in the order they appear) and
    `bert_pre_tokenizer`. About 1 s of Rust calls per table.
    """
    tables: dict[str, Any] = {}
    bert = [
        bert_normalizer_table(c)
        for c in _components(tokenizer.get("normalizer"), "normalizers")
        if c.get("type") == "BertNormalizer"
    ]
    if bert:
        tables["bert_normalizer"] = bert
    pre = _components(tokenizer.get("pre_tokenizer"), "pretokenizers")
    if any(c.get("type") == "BertPreTokenizer" for c in pre):
        tables["bert_pre_tokenizer"] = bert_pre_tokenizer_table()
    return tables
