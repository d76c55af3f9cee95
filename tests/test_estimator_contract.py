"""The estimators keep scikit-learn's contract: explicit settings, get/set_params, clone, and
a saved run that loads back with every setting it was trained with."""

from __future__ import annotations

import json

import pytest
from sklearn.base import clone

from modeltailor.api import (
    AudioClassifier,
    ImageClassifier,
    TailoredClassifier,
    TextClassifier,
    load_classifier,
)
from modeltailor.data.text import load_text


def test_clone_gives_an_equal_unfitted_estimator():
    clf = ImageClassifier(strategy="fine-tune", epochs=3)
    twin = clone(clf)
    assert type(twin) is ImageClassifier and twin is not clf
    assert twin.get_params() == clf.get_params()
    assert twin.strategy == "fine-tune" and twin.epochs == 3
    assert not hasattr(twin, "model_")


@pytest.mark.parametrize("cls", [ImageClassifier, TextClassifier, AudioClassifier])
def test_get_params_round_trips_for_every_modality(cls):
    params = cls(strategy="full", lr=3e-4, seed=7).get_params()
    assert params["lr"] == 3e-4 and params["seed"] == 7
    rebuilt = cls(**params)
    assert rebuilt.get_params() == params
    rebuilt.set_params(batch_size=8, epochs=2)
    assert rebuilt.batch_size == 8 and rebuilt.epochs == 2
    with pytest.raises(ValueError):
        rebuilt.set_params(no_such_setting=1)


def test_every_constructor_setting_is_an_explicit_parameter():
    import inspect

    signature = inspect.signature(TailoredClassifier.__init__)
    kinds = {p.kind for p in signature.parameters.values()}
    assert inspect.Parameter.VAR_KEYWORD not in kinds
    assert inspect.Parameter.VAR_POSITIONAL not in kinds


def test_a_saved_run_loads_back_with_every_setting(tmp_path):
    """The TF-IDF baseline trains in seconds; every setting given, incl. text's own, returns."""
    from modeltailor.cli import example_folder

    texts = example_folder().parent / "text" / "tickets_en.csv"
    train, val, _ = load_text(texts).split(0.7, 0.3, 0.0, seed=0)
    clf = TextClassifier(
        strategy="baseline", combine_tfidf=False, label_smoothing=0.05, batch_size=16, seed=3
    )
    clf.fit(train, val).save(tmp_path / "run")
    loaded = load_classifier(tmp_path / "run")
    assert isinstance(loaded, TextClassifier)
    expected = {k: v for k, v in clf.get_params().items() if k not in ("output", "verbose")}
    expected["backbone"] = "tfidf"  # the backbone the run resolved (None asked for the default)
    got = loaded.get_params()
    assert {k: got[k] for k in expected} == expected
    cfg = json.loads((tmp_path / "run" / "config.json").read_text(encoding="utf-8"))
    assert cfg["params"]["combine_tfidf"] is False


def test_a_setting_the_modality_does_not_read_is_refused(fashion_dir):
    from modeltailor.data import load_image_folder
    from modeltailor.errors import ModelTailorError

    data = load_image_folder(fashion_dir)
    with pytest.raises(ModelTailorError, match="window_seconds does not apply to images"):
        ImageClassifier(window_seconds=2.0).fit(data)
