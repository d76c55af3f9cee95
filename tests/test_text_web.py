"""Web export of text runs: the page in headless Chromium gives `tailor predict`'s answers.

The default runs on the example tickets (MiniLM for English, multilingual-e5-small for
Japanese) are exported with `tailor export RUN --format web`, opened over file:// and http://,
and every text typed in (the examples' texts and hostile ones) must get Python's top-1 label
and probabilities within 1e-3; a dropped CSV gives `tailor predict FILE.csv`'s rows. The TF-IDF
side head in JavaScript (text_side.js) must equal `side_logits_from_json` on tricky texts for
both analyzers, and Python's string rules (str.lower, str.strip) on every code point. Needs
node, npm (once, for the pinned packages), Debian's chromium and playwright: skipped with the
reason otherwise.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import functools
import http.server
import io
import json
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from modeltailor import TextClassifier, load_classifier, load_text
from modeltailor.backbones.tfidf import CHAR_SETTINGS, WORD_SETTINGS, TfidfText
from modeltailor.cli import main
from modeltailor.data.text import read_text_rows
from modeltailor.export import ExportError, text_js, web_text
from modeltailor.export import web as web_export
from modeltailor.export.text import side_logits_from_json

from .test_web import browser  # noqa: F401  (the fixture; and the npm cache setting)

EXAMPLES = Path(__file__).parents[1] / "src" / "modeltailor" / "examples" / "text"
EN, JA = EXAMPLES / "tickets_en.csv", EXAMPLES / "tickets_ja.csv"
TEMPLATE = Path(web_export.__file__).parent / "web_template"
SIDE_RUNNER = Path(__file__).parent / "node" / "text_side.cjs"
LONG = " ".join(f"Line {k}: the invoice was charged twice, please refund it." for k in range(120))
LONG_JA = "請求書が二重に届きました。返金をお願いします。" * 120

#: Texts that trip JavaScript ports of Python (each comment says what it exercises).
HOSTILE = [
    "emoji 😀 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 1️⃣ refund please",  # surrogate pairs, ZWJ sequences
    "a𠮷b",  # a non-BMP ideograph: one code point in Python, two UTF-16 units in JS
    "𠮷野家で注文した商品が届かない",
    "",
    "   \t\n  ",
    LONG,  # >= 3 windows (MiniLM: 9)
    LONG_JA,
    "ΟΔΥΣΣΕΥΣ ΣΑΣ σας: Σ alone, ΑΣ. end",  # final sigma
    "İstanbul İI ß ẞ Ǆǅǆ ﬀ Å K",  # lowercase that changes length or script
    "Café naïve e\u0301te \u0301start",  # combining marks: not \w in Python
    "ＦＵＬＬ－ＷＩＤＴＨ ＡＢＣ　１２３ ｶﾀｶﾅ ﾃﾞｽ ① ½ ㍻",
    "ctrl\x00a\x1cb\x85c\u2028d\ufeffe\u200bf non\u00a0breaking",  # Python vs JS whitespace
    "x_y __init__ 3.14 1,000 user@mail.jp https://example.com/?id=42",
    "नमस्ते दुनिया 서울 Москва — столица",  # vowel signs split Python's \w runs
    "a [SEP] b [CLS] c <s> d </s> e <unk>",
]

#: Word and char n-gram material for the side-head checks (beyond HOSTILE).
SIDE_TEXTS = [
    *HOSTILE,
    "Refund   me, please!\n\nTwice  charged\t\tagain",
    "配送 が 遅い。\u3000\u3000配送が遅い",
    "ΣΣ Σ. aΣ Σa a\u0301Σ Σ\u0301",
    "\u1e9e\u0130\u03a3\u1f88\u2126\u212a\u212b",
    "𝐀𝐁𝐂 𝟏𝟐 🄰🄱 ⅰⅱⅲ Ⅻ",
    "_ __ a_ _a 9 99 ٣٤ ١٢",
]


def _texts(*paths: Path) -> list[str]:
    return [t for p in paths for t in (i.text for i in load_text(p).items)]


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    if not found:
        pytest.skip("node is not installed: the page's JavaScript cannot be checked")
    return found


@pytest.fixture(scope="module")
def npm_packages():
    try:
        web_export.onnxruntime_web_dist()
        text_js.tokenizers_js_package()
    except ExportError as exc:
        pytest.skip(f"the pinned npm packages could not be installed: {exc}")


@pytest.fixture(scope="module")
def tables() -> dict:
    return web_text.python_text_tables()


def _node_side(node: str, job: dict, tmp_path: Path) -> dict:
    (tmp_path / "side-job.json").write_text(json.dumps(job), encoding="utf-8")
    done = subprocess.run(
        [node, str(SIDE_RUNNER), str(TEMPLATE / "text_side.js"), str(tmp_path / "side-job.json")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


# -- Python's string rules and the TF-IDF side head, in node ----------------------------------
def test_js_lower_and_strip_equal_python_on_every_code_point(node, tables, tmp_path):
    """str.lower() and str.strip() on every code point, alone and around sigmas."""
    cps = [chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000]
    sweep = ["".join(cps[k : k + 4096]) for k in range(0, len(cps), 4096)]
    sigma = [f"A{c}Σ{c}b" for c in cps[:0x3000]] + [f"Σ{c}" for c in cps[:0x3000]]
    texts = [*SIDE_TEXTS, *sweep, *sigma, " \x1c a \x85", "\u3000x\u2029"]
    got = _node_side(node, {"doc": None, "tables": tables, "texts": texts}, tmp_path)
    wrong = [t[:40] for t, g in zip(texts, got["lower"], strict=True) if g != t.lower()]
    assert not wrong, f"{len(wrong)} texts lowercase differently: {wrong[:5]}"
    assert got["strip"] == [t.strip() for t in texts]


def _side_doc(settings: dict, texts: list[str], seed: int) -> dict:
    """A tfidf_side.json as write_side makes it, with a vocabulary from `texts`."""
    side = TfidfText({**settings, "min_df": 1}, 3)
    side.fit_vocabulary(texts)
    vec = side.vectorizer
    rng = np.random.default_rng(seed)
    return {
        "analyzer": vec.analyzer,
        "ngram_range": list(vec.ngram_range),
        "lowercase": bool(vec.lowercase),
        "token_pattern": vec.token_pattern if vec.analyzer == "word" else None,
        "sublinear_tf": bool(vec.sublinear_tf),
        "norm": vec.norm,
        "terms": vec.get_feature_names_out().tolist(),
        "idf": [float(v) for v in vec.idf_],
        "weight": rng.normal(size=(3, len(vec.idf_))).tolist(),
        "bias": rng.normal(size=3).tolist(),
    }


@pytest.mark.parametrize("settings", [WORD_SETTINGS, CHAR_SETTINGS], ids=["word", "char"])
def test_js_side_head_equals_side_logits_from_json(settings, node, tables, tmp_path):
    vocabulary = [*_texts(EN, JA), *SIDE_TEXTS]
    doc = _side_doc(settings, vocabulary, seed=len(settings["analyzer"]))
    probe = [*SIDE_TEXTS, *_texts(EN, JA)[::3], "Ω", "aa", "a a"]
    got = _node_side(node, {"doc": doc, "tables": tables, "texts": probe}, tmp_path)
    want = side_logits_from_json(doc, probe)
    assert np.abs(np.asarray(got["logits"]) - want).max() < 1e-9
    assert np.abs(want - np.asarray(doc["bias"])).max(1).min() == 0  # some texts have no terms
    assert (np.abs(want - np.asarray(doc["bias"])).max(1) > 0).sum() > len(probe) // 2


# -- pages in Chromium -------------------------------------------------------------------------
@contextlib.contextmanager
def _serve(folder: Path):
    """`folder` on a free localhost port, as any static server would serve it."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _train_and_export(csv_file: Path, run: Path, *extra: str) -> Path:
    assert main(["train", str(csv_file), "--output", str(run), "--quiet", *extra]) == 0
    assert main(["export", str(run), "--format", "web"]) == 0
    return run


@pytest.fixture(scope="module")
def en_run(tmp_path_factory, npm_packages) -> Path:
    """The default English run (linear probe on MiniLM), exported through the CLI."""
    return _train_and_export(EN, tmp_path_factory.mktemp("text-web") / "tickets-en")


class Page:
    """The exported page open in Chromium, with what it logged and requested."""

    def __init__(self, browser, url: str) -> None:  # noqa: F811
        self.page = browser.new_page(accept_downloads=True)
        self.problems: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(m.text))
        self.page.on("pageerror", lambda e: self.problems.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(url, timeout=300_000)  # e5: 630 MB of scripts to parse
        self.page.wait_for_function(
            "document.getElementById('status').dataset.state !== 'loading'", timeout=180_000
        )
        assert self.state == "ready", self.page.inner_text("#status")

    @property
    def state(self) -> str | None:
        return self.page.get_attribute("#status", "data-state")

    def _wait_run(self, n: int) -> None:
        self.page.wait_for_function(
            f"document.getElementById('status').dataset.run === '{n}'"
            " || document.body.dataset.state === 'error'",
            timeout=120_000,
        )
        assert self.state == "done", self.page.inner_text("#status")

    def type_texts(self, texts: list[str]) -> list[dict]:
        """Each text typed into the box and classified: what the page shows and computed."""
        out = []
        for text in texts:
            self.page.fill("#text", text)
            before = self.page.get_attribute("#status", "data-run") or "0"
            self.page.click("#classify")
            self._wait_run(int(before) + 1)
            shown = self.page.eval_on_selector_all(
                "#predictions .prediction",
                "els => els.map(e => [e.dataset.label, Number(e.dataset.probability)])",
            )
            last = self.page.evaluate("window.MODELTAILOR_LAST")
            assert last["text"] == text.replace("\r\n", "\n").replace("\r", "\n")
            out.append({"shown": shown, **last})
        return out

    def classify(self, texts: list[str]) -> list[dict]:
        return self.page.evaluate("(t) => ModeltailorTextApp.classifyTexts(t)", texts)

    def drop_csv(self, path: Path) -> tuple[list[list], str]:
        """The rows shown for a CSV ([label, probability] or None) and the downloaded CSV."""
        before = self.page.get_attribute("#status", "data-run") or "0"
        self.page.set_input_files("#csv", str(path))
        self._wait_run(int(before) + 1)
        rows = self.page.eval_on_selector_all(
            "#rows tbody tr",
            "els => els.map(e => e.dataset.label === undefined ? null"
            " : [e.dataset.label, Number(e.dataset.probability)])",
        )
        with self.page.expect_download() as info:
            self.page.click("#download")
        data = Path(info.value.path()).read_bytes()
        assert data.startswith(b"\xef\xbb\xbf")  # a BOM, for Excel
        return rows, data[3:].decode("utf-8")

    def close(self, origin: str) -> None:
        self.page.close()
        assert self.problems == []
        local = (origin, "file://", "blob:", "data:")
        assert [u for u in self.requests if not u.startswith(local)] == []  # no network


def _url(folder: Path, scheme: str, server: str) -> str:
    return f"{server}/index.html" if scheme == "http" else (folder / "index.html").as_uri()


def _check_against_python(results: list[dict], texts: list[str], clf, where: str) -> None:
    want = clf.predict_proba(texts)
    labels = clf.predict(texts)
    assert len(results) == len(texts)
    for text, got, p, label in zip(texts, results, want, labels, strict=True):
        assert got["labels"] == list(clf.classes_)
        assert got["top"][0]["label"] == label, (where, text[:60])
        assert np.abs(np.asarray(got["probabilities"]) - p).max() <= 1e-3, (where, text[:60])
        if "shown" in got:
            assert got["shown"] == [[t["label"], t["probability"]] for t in got["top"]]
            assert len(got["shown"]) == min(3, len(clf.classes_))


def test_text_web_folder_embeds_the_verified_model_and_tokenizer(en_run):
    export = en_run / "export"
    web = export / "web"
    manifest = json.loads((export / "manifest.json").read_text(encoding="utf-8"))
    section = manifest["web"]
    assert manifest["onnx"]["parity_vs_pytorch"]["top1_agreement"] == 1.0
    assert sorted(p.name for p in web.iterdir()) == sorted(section["files"])
    assert not list(web.glob("*.wasm")) and not list(web.glob("*.mjs"))
    model = b"".join(
        base64.b64decode(f.read_text(encoding="ascii").split('"')[1])
        for f in [web / name.removeprefix("web/") for name in section["model"]["files"]]
    )
    assert model == (export / "model.onnx").read_bytes()
    tokenizer = (web / "tokenizer-data.js").read_text(encoding="ascii").split('"')[1]
    assets = json.loads(base64.b64decode(tokenizer))
    assert assets["tokenizer"] == json.loads((export / "tokenizer.json").read_text("utf-8"))
    # cross-validation decides whether TF-IDF side features join the head; the page says so
    # exactly when the export folder carries them
    assert section["tfidf_side"] is (export / "tfidf_side.json").is_file()
    assert section["bytes"] < 160e6  # MiniLM: 91 MB of model, as base64


# over http:// too with `make test-slow` (the default suite keeps file://, the harder case)
@pytest.mark.parametrize("scheme", ["file", pytest.param("http", marks=pytest.mark.slow)])
def test_english_page_matches_tailor_predict(scheme, en_run, browser, tmp_path):  # noqa: F811
    clf = load_classifier(en_run)
    texts = [*_texts(EN, JA), *HOSTILE]
    typed = [t for t in texts if t.strip()]
    assert len(typed) >= 50
    typed = typed if scheme == "file" else typed[::4]  # the same page: fewer over http
    web = en_run / "export" / "web"
    with _serve(web) as server:
        page = Page(browser, _url(web, scheme, server))
        _check_against_python(page.type_texts(typed), typed, clf, scheme)
        results = page.classify(texts)
        assert [r["windows"] for r in results][texts.index(LONG)] >= 3
        _check_against_python(results, texts, clf, scheme)
        page.page.screenshot(path=str(tmp_path / f"text-web-{scheme}.png"), full_page=True)
        assert page.page.title() == en_run.name
        page.close(server)


def _hostile_csv(path: Path) -> Path:
    """A CSV with quoted commas, newlines and quotes inside texts, an empty row, hostile text."""
    rows = [
        ["id", "Text"],
        ["1", 'My order, "the blue one", never arrived\nand nobody answers'],
        ["2", ""],
        ["3", "   "],
        ["4", "a𠮷b 😀"],
        ["5", "The app crashes when I open the settings page."],
        ["6", LONG],
    ]
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def _sjis_csv(path: Path) -> Path:
    """Excel's Japanese CSV: Shift_JIS (CP932), with a label column (so predicted_* columns)."""
    text = JA.read_text(encoding="utf-8").replace("\n", "\r\n")
    path.write_bytes(text.encode("cp932"))
    return path


def test_csv_drop_classifies_every_row_and_downloads_results(en_run, browser, tmp_path):  # noqa: F811
    clf = load_classifier(en_run)
    web = en_run / "export" / "web"
    page = Page(browser, (web / "index.html").as_uri())
    for path in (_hostile_csv(tmp_path / "hostile.csv"), _sjis_csv(tmp_path / "チケット.csv")):
        data = read_text_rows(path)  # what `tailor predict FILE.csv` reads
        shown, downloaded = page.drop_csv(path)
        assert sum(r is not None for r in shown) == len(data.texts)
        assert len(shown) == len(data.texts) + len(data.skipped)
        want = clf.predict_texts(data.texts, top_k=1)
        got = [r for r in shown if r is not None]
        assert [g[0] for g in got] == [w["label"] for w in want], path.name
        assert max(abs(g[1] - w["probability"]) for g, w in zip(got, want, strict=True)) <= 1e-3
        table = list(csv.DictReader(io.StringIO(downloaded)))
        clash = "label" in [c.lower() for c in data.columns]
        label = "predicted_label" if clash else "label"
        assert [r[label] for r in table] == [w["label"] for w in want]
        assert [{k: r[k] for k in data.columns} for r in table] == data.rows
    page.close("file://")


# -- a run with a TF-IDF side head -------------------------------------------------------------
@pytest.fixture(scope="module")
def side_clf(npm_packages) -> tuple[TextClassifier, list[str]]:
    data = load_text(EN)
    train, val, _ = data.split(0.6, 0.2, 0.2, seed=0)
    clf = TextClassifier(backbone="minilm-l6", verbose=False).fit(train, val)
    return clf, [item.text for item in train.items]


# the char analyzer's page runs with `make test-slow` (Node checks it in the default suite)
@pytest.mark.parametrize(
    "settings",
    [WORD_SETTINGS, pytest.param(CHAR_SETTINGS, marks=pytest.mark.slow)],
    ids=["word", "char"],
)
def test_page_adds_the_tfidf_side_head(settings, side_clf, browser, tmp_path):  # noqa: F811
    """As test_text_export's run with side features (installed as extend_head would)."""
    clf, train_texts = side_clf
    side = TfidfText({**settings, "min_df": 1}, len(clf.classes_))
    side.fit_vocabulary([*train_texts, *_texts(JA)])
    clf.side_ = side
    run = tmp_path / "side"
    clf.save(run)
    assert main(["export", str(run), "--format", "web"]) == 0
    manifest = json.loads((run / "export" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["web"]["tfidf_side"] is True
    again = load_classifier(run)
    assert again.side_ is not None
    texts = [*SIDE_TEXTS, *_texts(EN)[::2], *_texts(JA)[::4]]
    doc = json.loads((run / "export" / "tfidf_side.json").read_text(encoding="utf-8"))
    assert (np.abs(side_logits_from_json(doc, texts) - doc["bias"]).max(1) > 0.01).sum() > 20
    web = run / "export" / "web"
    with _serve(web) as server:
        page = Page(browser, f"{server}/index.html")
        _check_against_python(page.classify(texts), texts, again, settings["analyzer"])
        page.close(server)


# -- Japanese: the default picks multilingual-e5-small ----------------------------------------
@pytest.mark.slow  # e5 (472 MB): training, the verified export and the page take minutes
def test_japanese_page_on_e5_matches_tailor_predict(tmp_path, browser, npm_packages):  # noqa: F811
    run = _train_and_export(JA, tmp_path / "問い合わせ")
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    assert config["backbone"] == "e5-small-multilingual"
    web = run / "export" / "web"
    manifest = json.loads((run / "export" / "manifest.json").read_text(encoding="utf-8"))
    assert len(manifest["web"]["model"]["files"]) > 1  # over one V8 string: in parts
    clf = load_classifier(run)
    texts = [*_texts(JA, EN), *HOSTILE]
    for scheme in ("file", "http"):
        with _serve(web) as server:
            page = Page(browser, _url(web, scheme, server))
            typed = [t for t in texts if t.strip()][:20] if scheme == "http" else []
            _check_against_python(page.type_texts(typed), typed, clf, scheme)
            _check_against_python(page.classify(texts), texts, clf, scheme)
            page.close(server)
