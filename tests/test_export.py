"""Exports are verified against PyTorch before they are written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modeltailor.cli import main
from modeltailor.export import ExportError, export_onnx
from modeltailor.export import onnx as onnx_export


@pytest.fixture(scope="module")
def exported(probe_run):
    assert main(["export", str(probe_run)]) == 0
    return probe_run / "export"


def test_onnx_export_matches_pytorch_on_validation_images(exported):
    manifest = json.loads((exported / "manifest.json").read_text())
    check = manifest["onnx"]["parity_vs_pytorch"]
    assert check["examples"] == 40 and check["top1_agreement"] == 1.0
    assert check["max_abs_logit_diff"] < 1e-3
    assert json.loads((exported / "labels.json").read_text())[0] == "ankle-boot"
    assert (exported / "model.onnx").is_file()


def test_onnx_batch_axis_is_dynamic(exported):
    import onnxruntime as ort

    session = ort.InferenceSession(str(exported / "model.onnx"))
    size = json.loads((exported / "preprocessing.json").read_text())["center_crop"]
    for batch in (1, 5):
        x = np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32)
        assert session.run(None, {"pixels": x})[0].shape == (batch, 10)


def test_int8_records_accuracy_and_is_forced_only_past_one_point(probe_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(probe_run, run, ignore=shutil.ignore_patterns("export"))
    q = export_onnx(run, quantize="int8", force=True)["int8"]
    assert q["size_ratio"] <= 0.35 and (run / "export" / "model.int8.onnx").is_file()
    assert q["forced"] == (q["accuracy_drop"] > 0.01)
    assert q["accuracy_int8"] == max(t["accuracy"] for t in q["tried"]) and q["kept_fp32"]
    assert q["settings"]["per_channel"] in ("depthwise", "all")


def test_an_export_that_disagrees_is_refused_and_nothing_is_written(
    probe_run, tmp_path, monkeypatch
):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(probe_run, run, ignore=shutil.ignore_patterns("export"))
    real = onnx_export._ort_logits
    monkeypatch.setattr(onnx_export, "_ort_logits", lambda p, x: real(p, x)[:, ::-1].copy())
    with pytest.raises(ExportError, match="disagrees with PyTorch"):
        export_onnx(run)
    assert not (run / "export").exists()


def test_a_second_format_keeps_the_first_formats_manifest_entry(exported, probe_run, tmp_path):
    import shutil

    from modeltailor.export.base import prepare, update_manifest

    run = tmp_path / "run"
    shutil.copytree(probe_run, run)
    job = prepare(run, None, max_examples=4)
    manifest = update_manifest(run / "export", job, {"other": {"file": "x"}})
    assert manifest["onnx"]["parity_vs_pytorch"]["examples"] == 40
    assert manifest["other"] == {"file": "x"}
