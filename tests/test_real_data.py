"""Real-data checks on ../shared/data (slow: `make test-slow`; skipped when the data is absent)."""

from __future__ import annotations

import pytest

from modeltailor import ImageClassifier, load_image_folder

from .conftest import hymenoptera

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ants_bees():
    train, val, _ = load_image_folder(hymenoptera()).split()
    return train, val


def test_linear_probe_on_hymenoptera(ants_bees):
    train, val = ants_bees
    clf = ImageClassifier(strategy="linear-probe", verbose=False).fit(train)
    assert clf.fit_info_["selected_by"] == "cross-validation on train"  # val/ never touched
    assert clf.evaluate(val)["accuracy"] >= 0.95


def test_fine_tune_on_hymenoptera(ants_bees):
    train, val = ants_bees
    clf = ImageClassifier(strategy="fine-tune", verbose=False).fit(train)
    assert clf.evaluate(val)["accuracy"] >= 0.96


def test_scratch_is_far_behind_transfer(ants_bees):
    train, val = ants_bees
    clf = ImageClassifier(strategy="scratch", epochs=8, verbose=False).fit(train)
    assert clf.evaluate(val)["accuracy"] < 0.85
