"""Real-data checks on ../shared/data (slow: `make test-slow`; skipped when the data is absent)."""

from __future__ import annotations

from pathlib import Path

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
    assert clf.fit_info_["selected_by"] == "cross-validation (5 folds, train)"  # val/ untouched
    assert clf.evaluate(val)["accuracy"] >= 0.95


def test_fine_tune_on_hymenoptera(ants_bees):
    train, val = ants_bees
    clf = ImageClassifier(strategy="fine-tune", verbose=False).fit(train)
    assert clf.evaluate(val)["accuracy"] >= 0.96


def test_scratch_is_far_behind_transfer(ants_bees):
    train, val = ants_bees
    clf = ImageClassifier(strategy="scratch", epochs=8, verbose=False).fit(train)
    assert clf.evaluate(val)["accuracy"] < 0.85


SPAMASSASSIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "spamassassin.csv"


@pytest.fixture(scope="module")
def spam_split():
    if not SPAMASSASSIN.exists():
        pytest.skip("../shared/data/spamassassin.csv absent")
    from modeltailor import load_text

    train, _, test = load_text(SPAMASSASSIN).split(0.8, 0.0, 0.2, seed=0)
    return train, test


def test_spamassassin_baseline(spam_split):
    """TF-IDF + logistic regression on the issue's split: the opponent pretraining must beat."""
    from modeltailor import TextClassifier

    train, test = spam_split
    clf = TextClassifier(strategy="baseline", verbose=False).fit(train)
    assert clf.evaluate(test)["macro_f1"] >= 0.97


def test_spamassassin_linear_probe_on_long_emails(spam_split):
    """Windowed MiniLM probe on a fifth of the e-mails (every window of a long e-mail read)."""
    from modeltailor import TextClassifier

    train, test = spam_split
    small_train = train.subset(list(range(0, len(train), 5)))
    small_test = test.subset(list(range(0, len(test), 4)))
    clf = TextClassifier(strategy="linear-probe", verbose=False).fit(small_train)
    assert clf.fit_info_["long_texts"]["share_of_training_texts_windowed"] > 0.3
    assert clf.evaluate(small_test)["macro_f1"] >= 0.9


def test_spamassassin_eight_shot_few_shot_beats_tfidf_on_the_same_texts(spam_split):
    """8 e-mails per class, no validation data: the tuned MiniLM must beat TF-IDF trained on
    the same 16 e-mails by a clear margin (seed-0 draw; a quarter of the test e-mails)."""
    import numpy as np

    from modeltailor import TextClassifier

    train, test = spam_split
    labels = np.asarray(train.labels)
    rng = np.random.default_rng(0)
    picked = [int(i) for c in (0, 1) for i in rng.choice(np.flatnonzero(labels == c), 8, False)]
    shots, small_test = train.subset(picked), test.subset(list(range(0, len(test), 4)))
    baseline = TextClassifier(strategy="baseline", verbose=False).fit(shots)
    few = TextClassifier(strategy="few-shot", verbose=False).fit(shots)
    tfidf_f1 = baseline.evaluate(small_test, record=False)["macro_f1"]
    few_f1 = few.evaluate(small_test, record=False)["macro_f1"]
    assert few_f1 >= max(0.8, tfidf_f1 + 0.05), (few_f1, tfidf_f1)


FSDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd"


@pytest.fixture(scope="module")
def fsdd_nicolas():
    """FSDD with the hardest speaker (nicolas) held out: unseen voices, never touched."""
    if not FSDD.is_dir():
        pytest.skip("../shared/data/fsdd absent")
    from modeltailor import load_audio_folder

    data = load_audio_folder(FSDD, group_by=r"_([a-z]+)_")
    test = [i for i, g in enumerate(data.groups) if g == "nicolas"]
    train = [i for i, g in enumerate(data.groups) if g != "nicolas"]
    part, val, _ = data.subset(train).split(0.9, 0.1, 0.0, seed=0)
    return part, val, data.subset(test)


def test_fsdd_pretrained_probe_beats_mfcc_on_an_unseen_speaker(fsdd_nicolas):
    from modeltailor import AudioClassifier

    train, val, test = fsdd_nicolas
    base = AudioClassifier(strategy="baseline", verbose=False).fit(train, val)
    probe = AudioClassifier("speech-embedding", verbose=False).fit(train, val)
    assert base.evaluate(test)["accuracy"] < 0.7
    assert probe.evaluate(test)["accuracy"] >= 0.93
