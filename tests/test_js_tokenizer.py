"""The browser's tokenisation and windowing (export/web_template/text_*.js) against Python.

A text model's page must feed the ONNX graph the very ids `TextEncoder.encode` makes, window
for window. Node runs the shipped scripts as a page would (classic scripts: the wrapped
Tokenizers.js bundle, text_tokenizer.js, text_windows.js) on a hostile corpus, once per model,
and every window must equal Python's. Needs node and, once, npm with registry access (for the
pinned @huggingface/tokenizers); skipped with the reason otherwise.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from modeltailor.backbones import get_backbone
from modeltailor.backbones.text import ASSETS_FOLDER, spread, windows
from modeltailor.export import ExportError, text_js
from modeltailor.export import npm as npm_export

RUNNER = Path(__file__).parent / "node" / "text_windows.mjs"

# As in test_web: the pinned npm package is kept where a user's own export would keep it.
os.environ.setdefault(
    "MODELTAILOR_NPM_CACHE",
    str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modeltailor/npm"),
)

WORDS = (
    "The parcel arrived late, the box was torn and two of the cups inside were broken; "
    "customer service promised a refund within 14 days (ticket #A-5521) but nobody called back. "
    "配送が遅すぎる。箱は破れていて、中のカップが二つ割れていました。 Ünïcödé naïve café ΣΟΦΙΑΣ "
)

#: Texts that have tripped JS tokenizers (each comment says what it exercises).
HOSTILE = [
    "が パ ｶﾞ ＡＢＣ Café İstanbul 𠮷 a𠮷b",  # kana, half/full width, accents, non-BMP kanji
    "a𠮷b",  # non-BMP CJK glued to Latin: BertNormalizer must pad it (UTF-16 walk did not)
    "non\u00a0breaking and zero\u200bwidth inside words",
    "ctrl\x00a\x01b\x07c\x1bd\x7fe\x85f\u2028g\u2029h\ufeffi\u200ej\u0890k",  # controls, Cf
    "emoji 😀 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🥰 🫠 1️⃣ #️⃣",  # modifiers, ZWJ sequences, keycaps
    "",
    "   \t\n  \r\n ",
    "東京は日本の首都で、世界有数の大都市です。今日はいい天気ですね。散歩に行きましょう！",
    "ＦＵＬＬ－ＷＩＤＴＨ ＡＢＣ　１２３ and ｶﾀｶﾅ ﾃﾞｽ ｱｲｳｴｵ ㈱ ① ℡ ㍻ ﬁ Ⅻ ½",
    "ΟΔΥΣΣΕΥΣ ΣΑΣ σας",  # final sigma: Rust lowercases char by char
    "Ａ\u0301 e\u0301 n\u0303o x\u0301y \u0301start",  # combining marks, one grapheme each
    "\u0301leading combining mark",  # merges with the prefix's last space in e5
    "İı ß ẞ Ǆǅǆ ﬀ Å Å K",  # case mappings that change length or script
    "\U0002b820\U0002b920 \U0002ceb0 \U00030000 \U0001f970 \ue000 \u0378",  # CJK ext, PUA, Cn
    "a؝b c৽d e᙭f g⹂h i𑁇j k‽l ¡¿ — – … «»",  # punctuation the Unicode tables disagree on
    "===== _____ ----- ***** ~~~~~ ..... !!!!!",  # equal-score Unigram splits
    "a [SEP] b [CLS] c <s> d </s> e <unk> f <mask> [MASK]",  # special tokens inside text
    "x" * 100 + " " + "y" * 101,  # WordPiece's 100-character word limit
    "서울은 한국의 수도입니다. Москва — столица России. 北京是中国的首都。 नमस्ते दुनिया",
    "https://example.com/?id=42&ref=spam#top <b>FREE</b> $$$ 3.14 1,000,000 user@mail.jp",
]


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    if not found:
        pytest.skip("node is not installed: the browser's tokenisation cannot be checked")
    return found


@pytest.fixture(scope="module")
def library_script(node, tmp_path_factory) -> Path:
    try:
        package = text_js.tokenizers_js_package()
    except ExportError as exc:
        pytest.skip(f"@huggingface/tokenizers could not be installed from npm: {exc}")
    path = tmp_path_factory.mktemp("tokenizers-js") / "tokenizers.js"
    path.write_bytes(text_js.tokenizers_js_script(package))
    return path


def _scripts(library: Path | None) -> list[str]:
    template = Path(text_js.__file__).parent / "web_template"
    names = [str(template / n) for n in text_js.TEXT_SCRIPTS]
    return [str(library), *names] if library else names


def _run(node: str, job: dict, tmp_path: Path) -> dict:
    (tmp_path / "job.json").write_text(json.dumps(job), encoding="utf-8")
    done = subprocess.run(
        [node, str(RUNNER), str(tmp_path / "job.json")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def _repeat(net, n: int) -> str:
    """A text of exactly `n` content tokens ("the" is one token in every vocabulary here)."""
    text = " ".join(["the"] * n)
    assert len(net._ids([text])[0]) == n
    return text


def _long(net, tokens: int) -> str:
    """Varied text (English, Japanese, accents) of at least `tokens` content tokens."""
    per = len(net._ids([WORDS])[0])
    return WORDS * (tokens // per + 1)


def corpus(net) -> list[str]:
    """HOSTILE, then texts at and around one window's length, and two long ones."""
    budget = net.window_budget  # max_length - 2 - len(prefix ids)
    step = budget - int(budget * net.pre.window_overlap)
    return [
        *HOSTILE,
        _repeat(net, budget - 1),
        _repeat(net, budget),  # exactly one full window
        _repeat(net, budget + 1),  # two windows: the second ends at the text's end
        _long(net, 2 * step + budget + 50),  # three windows or more
        _long(net, step * (net.pre.max_windows + 3) + budget),  # capped at max_windows
    ]


def code_point_texts() -> list[str]:
    """Every BMP code point and every 17th beyond, each in contexts that stress one step:
    glued to letters (pre-tokenizer), doubled, and after a base with a charsmap entry, where a
    short grapheme is replaced whole (Precompiled). A full sweep passed once (2 x 1.1M)."""
    cps = [*range(0x10000), *range(0x10000, 0x110000, 17)]
    return [
        f"a{c}b {c}{c}x \uff21{c} \u00a0{c} \t{c}"
        for c in map(chr, cps)
        if not 0xD800 <= ord(c) < 0xE000
    ]


# e5 (a 250k-piece vocabulary, about a minute) runs with `make test-slow`
E5 = pytest.param("e5-small-multilingual", marks=pytest.mark.slow)


@pytest.mark.parametrize("name", ["minilm-l6", E5])
def test_node_windows_equal_python(name, node, library_script, tmp_path):
    """Every window of every corpus text, as ids with specials, equals TextEncoder.encode."""
    net = get_backbone(name).build(2)
    folder = tmp_path / ASSETS_FOLDER
    net.save_assets(folder)  # what a run keeps, and what the export will read
    assets = text_js.tokenizer_assets(folder)
    (tmp_path / "assets.json").write_text(json.dumps(assets), encoding="utf-8")
    texts = corpus(net)
    expected = net.encode(texts)
    long_text = texts[-1]
    assert len(expected[-1]) == net.pre.max_windows < len(net.encode([long_text], False)[0])
    assert len(expected[-2]) >= 3 and [len(e) for e in expected[-5:-2]] == [1, 1, 2]

    job = {"scripts": _scripts(library_script), "assets": str(tmp_path / "assets.json")}
    sweep = code_point_texts()
    job.update(pre=net.pre.to_dict(), texts=texts, uncapped=[long_text], ids_texts=sweep)
    got = _run(node, job, tmp_path)

    assert got["version"] == text_js.TOKENIZERS_JS_VERSION
    wrong = [
        (t[:60], e, g) for t, e, g in zip(texts, expected, got["windows"], strict=True) if e != g
    ]
    assert not wrong, f"{len(wrong)} texts differ: {[w[0] for w in wrong]}; first: {wrong[0]}"
    assert got["uncapped"] == [len(net.encode([long_text], capped=False)[0])]
    ids = net._ids(sweep)
    wrong = [hex(ord(t[1])) for t, e, g in zip(sweep, ids, got["ids"], strict=True) if e != g]
    assert not wrong, f"{len(wrong)} code points tokenise differently: {wrong[:20]}"


def test_the_saved_tokenizer_is_the_one_read(tmp_path):
    """The page reads the run's text_model/ files; their truncation settings play no part."""
    net = get_backbone("minilm-l6").build(2)
    net.save_assets(tmp_path)
    assets = text_js.tokenizer_assets(tmp_path)
    assert assets["tokenizer"] == json.loads((tmp_path / "tokenizer.json").read_text("utf-8"))
    assert assets["config"]["cls_token"] == net.tokenizer.cls_token
    # MiniLM's config says 128; the windows (254 content tokens) pass all the same.
    assert assets["config"]["max_length"] == 128 < net.window_budget
    assert set(assets["tables"]) == {"bert_normalizer", "bert_pre_tokenizer"}


# -- the window arithmetic alone --------------------------------------------------------------
GRID = [
    [n, size, overlap, limit]
    for n in (0, 1, 5, 6, 7, 20, 21, 100, 257, 1000)
    for size in (1, 2, 3, 5, 8, 254)
    for overlap in (0.0, 0.125, 0.3, 0.5, 0.9)
    for limit in (None, 0, 1, 2, 3, 4, 64)
]
HALVES = [0.5, 1.5, 2.5, 3.5, -0.5, -1.5, 2.4999999999999996, 2.5000000000000004, 7.0, 1e6 + 0.5]


def test_windows_spread_and_rounding_match_python(node, tmp_path):
    """Python's round() is half-to-even, int() truncates: e.g. spread(6 windows, 3) picks 2."""
    rows = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)
    got = _run(
        node,
        {"scripts": _scripts(None), "grid": GRID, "round": HALVES, "rows": rows.tolist()},
        tmp_path,
    )
    expected = [
        [[w[0] if w else None, len(w)] for w in spread(windows(list(range(n)), size, o), lim)]
        for n, size, o, lim in GRID
    ]
    assert got["grid"] == expected
    assert got["round"] == [round(x) for x in HALVES]
    mean = (rows.astype(np.float64).sum(0) / len(rows)).astype(np.float32)
    assert np.array_equal(np.asarray(got["mean"], np.float32), mean)


# -- the same scripts in a browser, from file:// -----------------------------------------------
CHROMIUM = Path("/usr/bin/chromium")
PAGE = """<!doctype html><meta charset="utf-8"><pre id="out">pending</pre>
<script src="tokenizers.js"></script><script src="text_tokenizer.js"></script>
<script src="text_windows.js"></script><script src="data.js"></script>
<script>
try {
  const tok = ModeltailorTokenizer.loadTokenizer(TokenizersJS.Tokenizer, ASSETS);
  const out = TEXTS.map((t) => ModeltailorTextWindows.encodeText(tok, t, PRE));
  document.getElementById("out").textContent = JSON.stringify(out);
} catch (e) {
  document.getElementById("out").textContent = "ERROR " + e;
}
</script>"""


def test_a_file_page_gets_python_windows(library_script, tmp_path):
    """Classic scripts on a file:// page (no modules, no fetch) give Python's windows."""
    if not CHROMIUM.is_file():
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    net = get_backbone("minilm-l6").build(2)
    net.save_assets(tmp_path / ASSETS_FOLDER)
    texts = HOSTILE[:5]
    shutil.copy(library_script, tmp_path / "tokenizers.js")
    for name in text_js.TEXT_SCRIPTS:
        (tmp_path / name).write_bytes(text_js.text_script(name))
    data = {
        "ASSETS": text_js.tokenizer_assets(tmp_path / ASSETS_FOLDER),
        "TEXTS": texts,
        "PRE": net.pre.to_dict(),
    }
    (tmp_path / "data.js").write_text(
        "".join(f"window.{k} = {json.dumps(v, ensure_ascii=True)};\n" for k, v in data.items())
    )
    (tmp_path / "page.html").write_text(PAGE, encoding="utf-8")
    done = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--virtual-time-budget=20000", "--dump-dom",
         (tmp_path / "page.html").as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    found = re.search(r'<pre id="out">(.*?)</pre>', done.stdout, re.S)
    assert found, done.stderr[-2000:]
    shown = html.unescape(found.group(1))
    assert not shown.startswith(("ERROR", "pending")), shown
    assert json.loads(shown) == net.encode(texts)


def test_missing_npm_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setattr(npm_export.shutil, "which", lambda name: None)
    with pytest.raises(ExportError, match=r"text model.*@huggingface/tokenizers.*npm install"):
        text_js.tokenizers_js_package(root=tmp_path)
