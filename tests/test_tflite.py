"""TFLite (LiteRT) export: converted, run in the LiteRT interpreter and checked like ONNX."""

from __future__ import annotations

import builtins
import json
import shutil

import numpy as np
import pytest

from modeltailor.cli import main
from modeltailor.export import ExportError
from modeltailor.export import tflite as tflite_export

pytest.importorskip("litert_torch", reason="optional extra: pip install 'modeltailor[tflite]'")


def test_tflite_export_agrees_with_pytorch_and_ships_what_an_app_needs(probe_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(probe_run, run, ignore=shutil.ignore_patterns("export"))
    assert main(["export", str(run), "--format", "tflite"]) == 0
    folder = run / "export"
    manifest = json.loads((folder / "manifest.json").read_text())
    check = manifest["tflite"]["parity_vs_pytorch"]
    assert check["examples"] == 40 and check["top1_agreement"] == 1.0
    assert check["max_abs_logit_diff"] < 1e-3
    classes = json.loads((run / "labels.json").read_text())
    assert (folder / "labels.txt").read_text(encoding="utf-8").splitlines() == classes
    app = json.loads((folder / "model.tflite.json").read_text())
    size = app["input"]["center_crop"]
    assert app["input"]["shape"] == [1, size, size, 3] and app["output"]["shape"] == [1, 10]

    # The interpreter on its own, fed like an app feeds it, gives PyTorch's answers.
    job = tflite_export.prepare(run, None, max_examples=5)
    logits = tflite_export.tflite_logits(folder / "model.tflite", job.pixels)
    assert (logits.argmax(1) == job.reference.argmax(1)).all()


def test_missing_extra_names_the_install_command(monkeypatch):
    real_import = builtins.__import__

    def no_litert(name, *args, **kwargs):
        if name.startswith("litert_torch"):
            raise ImportError("No module named 'litert_torch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_litert)
    with pytest.raises(ExportError, match=r"pip install 'modeltailor\[tflite\]'"):
        tflite_export.export_tflite("does-not-matter")


def _interpreter(folder):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(folder / "model.tflite"), num_threads=2)
    interpreter.allocate_tensors()
    app = json.loads((folder / "model.tflite.json").read_text(encoding="utf-8"))
    return interpreter, app


def _invoke(interpreter, rows: list) -> np.ndarray:
    """One window per call, as an app runs a batch-1 graph; inputs in model.tflite.json's
    order."""
    inputs = interpreter.get_input_details()
    out = interpreter.get_output_details()[0]["index"]
    logits = []
    for row in rows:
        for detail, x in zip(inputs, row, strict=True):
            interpreter.set_tensor(detail["index"], x[None].astype(detail["dtype"]))
        interpreter.invoke()
        logits.append(interpreter.get_tensor(out)[0].copy())
    return np.stack(logits)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_a_text_run_ships_as_tflite_with_its_tokenizer(tmp_path):
    """One window of max_length int32 ids per call, padded with the pad id and mask 0; the
    tokenizer, the window rule and the side head from the export folder alone give
    `predict_proba` (issue 18)."""
    from tokenizers import Tokenizer

    from modeltailor import load_classifier
    from modeltailor.export.text import side_logits_from_json
    from tests.test_text_export import EN, TEXTS, _windows_from_doc

    run = tmp_path / "text"
    assert main(["train", str(EN), "--output", str(run), "--quiet", "--backbone", "minilm-l6"]) == 0
    assert main(["export", str(run), "--format", "tflite"]) == 0
    folder = run / "export"
    interpreter, app = _interpreter(folder)
    doc = json.loads((folder / "preprocessing.json").read_text(encoding="utf-8"))
    length = doc["max_length"]
    assert app["input"]["shape"] == [1, length] and app["input"]["dtype"] == "int32"
    assert [d["dtype"] for d in interpreter.get_input_details()] == [np.int32, np.int32]
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    pad = doc["special_tokens"]["pad"]["id"]
    logits = []
    for text in TEXTS:
        rows = []
        for window in _windows_from_doc(tok, doc, text):
            ids, mask = np.full(length, pad, np.int32), np.zeros(length, np.int32)
            ids[: len(window)], mask[: len(window)] = window, 1
            rows.append((ids, mask))
        logits.append(_invoke(interpreter, rows).mean(0))
    logits = np.stack(logits)
    if "tfidf_side" in doc:
        side = json.loads((folder / doc["tfidf_side"]["file"]).read_text(encoding="utf-8"))
        logits = logits + side_logits_from_json(side, TEXTS)
    want = load_classifier(run).predict_proba(TEXTS)
    assert np.allclose(_softmax(logits), want, atol=1e-4)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["tflite"]["parity_vs_pytorch"]["max_abs_logit_diff"] < 1e-3
    assert (folder / "labels.txt").read_text(encoding="utf-8").splitlines() == json.loads(
        (run / "labels.json").read_text(encoding="utf-8")
    )


def test_an_audio_run_ships_as_tflite_with_its_front_end_inside(tmp_path, capsys):
    """Whisper's log-mel front end converts too (convolutions, no complex STFT): one window of
    16-kHz samples and its mask per call gives `predict_proba`, stereo and long clips included.
    A speech-embedding run (an ONNX graph, not PyTorch) is refused in one line."""
    import soundfile as sf

    from modeltailor import AudioClassifier, load_audio_folder
    from tests.test_audio_export import DIGITS, SPEAKER, _app_windows, _clips

    train, val, _ = load_audio_folder(DIGITS, group_by=SPEAKER).split(0.7, 0.15, 0.15, seed=0)
    run = tmp_path / "whisper"
    clf = AudioClassifier("whisper-tiny-en-encoder", verbose=False).fit(train, val)
    clf.save(run)
    assert main(["export", str(run), "--format", "tflite"]) == 0
    folder = run / "export"
    interpreter, app = _interpreter(folder)
    doc = json.loads((folder / "preprocessing.json").read_text(encoding="utf-8"))
    assert app["input"]["shape"] == [1, doc["window_samples"]]
    files = _clips(tmp_path, doc["window_samples"])
    logits = []
    for f in files:
        wave, rate = sf.read(f, dtype="float32", always_2d=True)
        samples, mask = _app_windows(wave.mean(1), doc)
        logits.append(_invoke(interpreter, list(zip(samples, mask, strict=True))).mean(0))
    assert np.allclose(_softmax(np.stack(logits)), clf.predict_proba(files), atol=1e-4)

    probe = tmp_path / "se"
    AudioClassifier("speech-embedding", verbose=False).fit(train, val).save(probe)
    assert main(["export", str(probe), "--format", "tflite"]) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "use --format onnx" in err
