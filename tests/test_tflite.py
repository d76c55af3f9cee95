"""TFLite (LiteRT) export: converted, run in the LiteRT interpreter and checked like ONNX."""

from __future__ import annotations

import builtins
import json
import shutil

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
