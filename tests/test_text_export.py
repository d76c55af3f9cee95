"""Text runs ship as a graph of integers with the tokenizer beside it (issue 18).

The decisive check reads nothing but the export folder: `tokenizers` on tokenizer.json, the
window rule as preprocessing.json states it (written again here, independently of
backbones/text.py), onnxruntime on model.onnx, tfidf_side.json by hand: the probabilities
must be `tailor predict`'s.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnxruntime as ort
import pytest
from tokenizers import Tokenizer

from modeltailor import TextClassifier, load_classifier, load_text
from modeltailor.backbones.tfidf import CHAR_SETTINGS, WORD_SETTINGS, TfidfText
from modeltailor.cli import main
from modeltailor.export import export_onnx
from modeltailor.export.base import ExportError
from modeltailor.export.text import side_logits_from_json

EXAMPLES = Path(__file__).parents[1] / "src" / "modeltailor" / "examples" / "text"
EN = EXAMPLES / "tickets_en.csv"
LONG = " ".join(f"Line {k}: the invoice was charged twice, please refund it." for k in range(120))
TEXTS = [
    "The app crashes when I open the settings page.",
    "Where is my parcel? It has been two weeks.",
    "I was charged twice for one order.",
    "Café İstanbul ＡＢＣ a𠮷b",
    "請求書が二重に届きました",
    "",
    LONG,  # several windows
]


@pytest.fixture(scope="module")
def probe_export(tmp_path_factory) -> tuple[Path, TextClassifier]:
    """The default text run (linear probe on MiniLM), exported with int8."""
    run = tmp_path_factory.mktemp("text-export") / "probe"
    code = main(["train", str(EN), "--output", str(run), "--quiet", "--backbone", "minilm-l6"])
    assert code == 0
    export_onnx(run, quantize="int8")
    return run, load_classifier(run)


def _windows_from_doc(tok: Tokenizer, doc: dict, text: str) -> list[list[int]]:
    """preprocessing.json's window rule, as an app would write it."""
    prefix_ids = doc["prefix_ids"]
    ids = tok.encode(doc["prefix"] + text, add_special_tokens=False).ids
    if ids[: len(prefix_ids)] == prefix_ids:
        content = ids[len(prefix_ids) :]
    else:
        content = tok.encode(text, add_special_tokens=False).ids
    size = doc["window_content_tokens"]
    if len(content) <= size:
        chunks = [content]
    else:
        step = max(1, size - int(size * doc["window_overlap"]))
        starts = list(range(0, len(content) - size + 1, step))
        if starts[-1] + size < len(content):
            starts.append(len(content) - size)
        chunks = [content[s : s + size] for s in starts]
    limit = doc["max_windows"]
    if limit and len(chunks) > limit:
        picks = sorted({round(i * (len(chunks) - 1) / (limit - 1)) for i in range(limit)})
        chunks = [chunks[i] for i in picks]
    cls, sep = doc["special_tokens"]["cls"]["id"], doc["special_tokens"]["sep"]["id"]
    return [[cls, *prefix_ids, *c, sep] for c in chunks]


def _app_logits(export: Path, texts: list[str], model: str = "model.onnx") -> np.ndarray:
    doc = json.loads((export / "preprocessing.json").read_text(encoding="utf-8"))
    tok = Tokenizer.from_file(str(export / doc["tokenizer"]["file"]))
    session = ort.InferenceSession(str(export / model), providers=["CPUExecutionProvider"])
    pad = doc["special_tokens"]["pad"]["id"]
    out = []
    for text in texts:
        wins = _windows_from_doc(tok, doc, text)
        length = max(len(w) for w in wins)
        ids = np.full((len(wins), length), pad, np.int64)
        mask = np.zeros_like(ids)
        for r, w in enumerate(wins):
            ids[r, : len(w)], mask[r, : len(w)] = w, 1
        (logits,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
        out.append(logits.mean(0))
    logits = np.stack(out)
    if "tfidf_side" in doc:
        side = json.loads((export / doc["tfidf_side"]["file"]).read_text(encoding="utf-8"))
        logits = logits + side_logits_from_json(side, texts)
    return logits


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_the_export_folder_alone_predicts_what_tailor_predict_does(probe_export):
    run, clf = probe_export
    export = run / "export"
    want = clf.predict_proba(TEXTS)
    got = _softmax(_app_logits(export, TEXTS))
    np.testing.assert_allclose(got, want, atol=1e-4)
    int8 = _softmax(_app_logits(export, TEXTS, "model.int8.onnx"))
    assert (int8.argmax(1) == want.argmax(1)).mean() >= 0.8


def test_manifest_and_preprocessing_describe_the_files(probe_export):
    run, _ = probe_export
    export = run / "export"
    doc = json.loads((export / "preprocessing.json").read_text(encoding="utf-8"))
    digest = hashlib.sha256((export / "tokenizer.json").read_bytes()).hexdigest()
    assert doc["tokenizer"]["sha256"] == digest
    assert (export / "tokenizer_config.json").is_file()
    assert doc["max_length"] == 256 and doc["window_content_tokens"] == 254
    assert doc["special_tokens"]["cls"] == {"token": "[CLS]", "id": 101}
    manifest = json.loads((export / "manifest.json").read_text(encoding="utf-8"))
    names = [row["name"] for row in manifest["onnx"]["input"]]
    assert names == ["input_ids", "attention_mask"]
    assert manifest["onnx"]["parity_vs_pytorch"]["top1_disagreements"] == 0
    assert manifest["onnx"]["parity_vs_pytorch"]["max_abs_logit_diff"] < 1e-3
    assert manifest["int8"]["format"].startswith("dynamic")
    assert manifest["int8"]["bytes"] < manifest["onnx"]["bytes"]


def test_the_server_graphs_use_fused_kernels_and_predict_the_same(probe_export):
    """model.server.onnx (onnxruntime's contrib Attention and Gelu) answers as model.onnx does;
    model.onnx keeps standard ops only (the web page runs it in onnxruntime-web)."""
    import onnx

    run, clf = probe_export
    export = run / "export"
    manifest = json.loads((export / "manifest.json").read_text(encoding="utf-8"))
    server = manifest["onnx_server"]
    assert server["file"] == "model.server.onnx" and server["from"] == "model.onnx"
    assert server["fused"]["attention"] == 6  # one per MiniLM layer
    assert server["parity_vs_pytorch"]["max_abs_logit_diff"] < 1e-3
    assert server["parity_vs_pytorch"]["top1_disagreements"] == 0
    assert manifest["int8_server"]["file"] == "model.server.int8.onnx"
    domains = {
        name: {n.domain for n in onnx.load(str(export / name), load_external_data=False).graph.node}
        for name in ("model.onnx", "model.server.onnx", "model.server.int8.onnx")
    }
    assert domains["model.onnx"] <= {""} and "com.microsoft" in domains["model.server.onnx"]
    want = clf.predict_proba(TEXTS)
    np.testing.assert_allclose(
        _softmax(_app_logits(export, TEXTS, "model.server.onnx")), want, atol=1e-4
    )
    int8 = _softmax(_app_logits(export, TEXTS, "model.server.int8.onnx"))
    assert (int8.argmax(1) == want.argmax(1)).mean() >= 0.8


def test_graph_takes_any_batch_and_length(probe_export):
    run, _ = probe_export
    session = ort.InferenceSession(str(run / "export" / "model.onnx"))
    for batch, length in ((1, 3), (5, 256), (2, 300)):
        ids = np.full((batch, length), 1000, np.int64)
        (logits,) = session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})
        assert logits.shape == (batch, 3)


@pytest.mark.parametrize("settings", [WORD_SETTINGS, CHAR_SETTINGS], ids=["word", "char"])
def test_tfidf_side_json_equals_scikit_learn(settings, tmp_path):
    """The side head computed from its JSON alone equals the scikit-learn features + head."""
    import torch

    from modeltailor.export.text import write_side

    data = load_text(EN)
    texts = [item.text for item in data.items]
    side = TfidfText(settings, 3)
    side.fit_vocabulary(texts)
    torch.manual_seed(0)
    torch.nn.init.normal_(side.get_classifier().weight)
    probe = ["Refund   me, please!\n\nTwice  charged", "配送 が 遅い", "", *texts[:5]]

    job = SimpleNamespace(  # what write_side reads of an export job
        classifier=SimpleNamespace(side_=side, temperature_=2.0),
        items=probe,
        side=side.logits(probe) / 2.0,
    )
    path = tmp_path / "tfidf_side.json"
    record = write_side(job, path)
    doc = json.loads(path.read_text(encoding="utf-8"))
    np.testing.assert_allclose(side_logits_from_json(doc, probe), job.side, atol=1e-5)
    assert record["max_abs_logit_diff_vs_sklearn"] < 1e-4


def test_a_run_with_tfidf_side_features_exports_them(tmp_path):
    """A probe whose TF-IDF side head won on validation ships it as tfidf_side.json."""
    data = load_text(EN)
    train, val, _ = data.split(0.6, 0.2, 0.2, seed=0)
    clf = TextClassifier(backbone="minilm-l6", verbose=False).fit(train, val)
    side = TfidfText(WORD_SETTINGS, 3)
    side.fit_vocabulary([item.text for item in train.items])
    clf.side_ = side  # as extend_head installs it when the hybrid wins
    clf.save(tmp_path / "run")
    export_onnx(tmp_path / "run")
    doc = json.loads((tmp_path / "run" / "export" / "preprocessing.json").read_text())
    assert doc["tfidf_side"]["file"] == "tfidf_side.json"
    again = load_classifier(tmp_path / "run")
    texts = [item.text for item in val.items] + TEXTS[:3]
    got = _softmax(_app_logits(tmp_path / "run" / "export", texts))
    np.testing.assert_allclose(got, again.predict_proba(texts), atol=1e-4)


def test_baseline_is_refused_in_one_line(tmp_path, capsys):
    run = tmp_path / "baseline"
    assert main(["train", str(EN), "--strategy", "baseline", "--output", str(run), "--quiet"]) == 0
    with pytest.raises(ExportError, match="TF-IDF baseline is not exportable yet"):
        export_onnx(run)
    assert main(["export", str(run)]) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "TF-IDF baseline" in err


@pytest.mark.slow
def test_a_japanese_e5_run_ships_with_its_prefix(tmp_path):
    """multilingual-e5 (SentencePiece, a "query: " prefix, 512 tokens): the export folder alone
    reproduces tailor predict on Japanese and mixed texts; int8 quantises to about a quarter."""
    run = tmp_path / "ja"
    assert main(["train", str(EXAMPLES / "tickets_ja.csv"), "--output", str(run), "--quiet"]) == 0
    export_onnx(run, quantize="int8")
    clf = load_classifier(run)
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    assert config["backbone"] == "e5-small-multilingual"
    doc = json.loads((run / "export" / "preprocessing.json").read_text(encoding="utf-8"))
    assert doc["prefix"] and doc["prefix_ids"] and doc["window_content_tokens"] == 512 - 2 - 3
    texts = ["配送が遅すぎる", "ｶﾞｿﾘﾝ代の請求が二重です", "アプリが起動しません 😢", *TEXTS]
    got = _softmax(_app_logits(run / "export", texts))
    np.testing.assert_allclose(got, clf.predict_proba(texts), atol=1e-4)
    manifest = json.loads((run / "export" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["int8"]["size_ratio"] < 0.3


def test_a_plain_reexport_withdraws_the_old_int8_graph(probe_export, tmp_path):
    """int8 made from an earlier export is not verified against this one: it goes."""
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(probe_export[0], run)
    assert (run / "export" / "model.int8.onnx").is_file()
    export_onnx(run)
    manifest = json.loads((run / "export" / "manifest.json").read_text(encoding="utf-8"))
    assert "int8" not in manifest and not (run / "export" / "model.int8.onnx").exists()
    assert "int8_server" not in manifest
    assert not (run / "export" / "model.server.int8.onnx").exists()
    assert manifest["onnx_server"]["file"] == "model.server.onnx"
