"""Run folders saved by an older modeltailor still load and predict what they predicted then.

tests/fixtures/runs_v1/ holds small runs trained and saved by commit ef30d94 (run format 1),
with each run's inputs and that code's probabilities in expected.json (see the README there).
Only the public surface is used - `load_classifier`, `predict_proba`, `classes_` and the
`tailor predict` CLI - so the test holds however the classifiers are built inside.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from modeltailor.api import load_classifier
from modeltailor.cli import main

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "runs_v1"
REPO = Path(__file__).resolve().parents[1]
RUNS = sorted(p.name for p in FIXTURES.iterdir() if (p / "expected.json").is_file())


def expected_of(name: str) -> dict:
    return json.loads((FIXTURES / name / "expected.json").read_text(encoding="utf-8"))


def copy_run(name: str, tmp_path: Path) -> Path:
    """A copy of the fixture: nothing a loader or predictor writes can land in the repo."""
    return Path(shutil.copytree(FIXTURES / name, tmp_path / name))


def model_inputs(expected: dict) -> list[str]:
    """Texts as they are; files (relative to the repo root) as absolute paths."""
    if expected["input_kind"] == "texts":
        return list(expected["inputs"])
    return [str(REPO / p) for p in expected["inputs"]]


def test_every_modality_has_an_old_run():
    assert {"image", "text", "audio"} <= set(RUNS)


@pytest.mark.parametrize("name", RUNS)
def test_old_run_loads_and_predicts_as_before(name, tmp_path):
    expected = expected_of(name)
    clf = load_classifier(copy_run(name, tmp_path))

    assert type(clf).__name__ == expected["classifier"]
    assert list(clf.classes_) == expected["classes"]
    proba = np.asarray(clf.predict_proba(model_inputs(expected)), dtype=np.float64)
    want = np.asarray(expected["probabilities"], dtype=np.float64)
    assert proba.shape == want.shape
    np.testing.assert_allclose(proba, want, rtol=0, atol=1e-4, err_msg=name)
    assert [clf.classes_[i] for i in proba.argmax(axis=1)] == expected["labels"]


@pytest.mark.parametrize("name", RUNS)
def test_tailor_predict_reads_old_run(name, tmp_path):
    expected = expected_of(name)
    run = copy_run(name, tmp_path)
    inputs = model_inputs(expected)
    if expected["input_kind"] == "texts":
        argv = ["predict", str(run), *[a for text in inputs for a in ("--text", text)]]
    else:
        argv = ["predict", str(run), *inputs]
    assert main(argv) == 0
