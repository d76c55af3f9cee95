"""Temperature scaling: fitted on validation data, saved with the run, applied everywhere."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import softmax

from modeltailor.api import ImageClassifier
from modeltailor.cli import main
from modeltailor.evaluation.calibration import expected_calibration_error, fit_temperature


def test_fit_temperature_recovers_the_temperature_that_generated_the_labels():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(4000, 5))
    y = np.array([rng.choice(5, p=p) for p in softmax(logits / 2.5, axis=1)])
    assert fit_temperature(logits, y) == pytest.approx(2.5, rel=0.08)


def test_ece_by_hand():
    # Two confident right answers (0.9) and two hesitant ones (0.6, one of them wrong):
    # bin 0.9: |1 - 0.9| * 2/4 = 0.05; bin 0.6: |0.5 - 0.6| * 2/4 = 0.05.
    proba = np.array([[0.9, 0.1], [0.1, 0.9], [0.6, 0.4], [0.6, 0.4]])
    y = np.array([0, 1, 0, 1])
    assert expected_calibration_error(proba, y) == pytest.approx(0.10)
    assert expected_calibration_error(np.eye(2)[[0, 1]], np.array([0, 1])) == 0.0


def test_calibrated_run_predicts_and_exports_with_its_temperature(fashion_dir, tmp_path):
    run = tmp_path / "calibrated"
    assert main(["train", str(fashion_dir), "--output", str(run), "--calibrate", "--quiet"]) == 0
    cal = json.loads((run / "config.json").read_text())["calibration"]
    assert cal["temperature"] > 0 and cal["temperature"] != 1.0
    assert cal["validation_ece_after"] <= cal["validation_ece_before"] + 1e-9

    clf = ImageClassifier.load(run)
    files = sorted((fashion_dir / "sneaker").iterdir())[:6]
    raw, _ = clf._raw_logits(files)
    proba = clf.predict_proba(files)
    np.testing.assert_allclose(proba, softmax(raw / cal["temperature"], axis=1), atol=1e-6)
    assert (proba.argmax(1) == raw.argmax(1)).all()  # calibration never changes a prediction

    from modeltailor.export import export_onnx
    from modeltailor.export.base import pixels_for
    from modeltailor.export.onnx import _ort_logits

    manifest = export_onnx(run)
    assert manifest["calibration"] == {"temperature": cal["temperature"], "in_graph": True}
    pixels, _ = pixels_for(files, clf.preprocessing_)
    onnx_proba = softmax(_ort_logits(run / "export" / "model.onnx", pixels), axis=1)
    np.testing.assert_allclose(onnx_proba, proba, atol=1e-5)
