"""Issue 19: closed-form choices (C, text side features, the baseline alone) are made by
stratified k-fold cross-validation over train + validation, never touching test data."""

from __future__ import annotations

import csv
import json
import random

import numpy as np

from modeltailor import TextClassifier, load_classifier, load_text
from modeltailor.cli import example_folder, main
from modeltailor.training.heads import (
    C_GRID,
    CV_MAX_ROWS,
    cv_folds,
    fit_head,
    rows_in_folds,
    stack_rows,
)

EN = example_folder().parent / "text" / "tickets_en.csv"


def _write(path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *rows])


def test_probe_chooses_c_by_cross_validation_over_train_and_validation():
    train, val, _ = load_text(EN).split(0.6, 0.2, 0.2, seed=0)
    clf = TextClassifier(strategy="linear-probe", verbose=False).fit(train, val)
    sel = clf.fit_info_["selection"]
    assert sel["folds"] == 5 and not sel["grouped"]
    assert sel["examples"] == len(train) + len(val)
    probe_rows = [r for r in sel["candidates"] if r["candidate"] == "embeddings"]
    assert [r["C"] for r in probe_rows] == list(C_GRID)
    assert all({"macro_f1", "log_loss", "accuracy"} <= set(r) for r in sel["candidates"])
    assert sum(r["chosen"] for r in sel["candidates"]) == 1
    chosen = next(r for r in sel["candidates"] if r["chosen"])
    assert chosen["candidate"] == sel["chosen"]
    assert clf.fit_info_["selected_by"].startswith("cross-validation (5 folds")
    # text: the side features and the baseline alone were candidates on the same folds
    names = {r["candidate"] for r in sel["candidates"]}
    assert names == {"embeddings", "embeddings + TF-IDF", "TF-IDF baseline alone"}
    assert sel["baseline"]["macro_f1"] == sel["best_per_candidate"]["TF-IDF baseline alone"][
        "macro_f1"
    ]


def test_folds_are_stratified_capped_by_the_smallest_class_and_grouped():
    y = np.array([0] * 10 + [1] * 3)
    folds, record = cv_folds(y, None, seed=0)
    assert record["folds"] == len(folds) == 3 and not record["grouped"]
    _, record = cv_folds(np.arange(2400) % 2, None, seed=0)
    assert record["folds"] == 3  # many examples: 3 folds rank the candidates for half the cost
    groups = np.array([f"s{i % 4}" for i in range(30)])
    y = np.array([i % 2 for i in range(30)])
    folds, record = cv_folds(y, groups, seed=0)
    assert record["grouped"] and record["folds"] == len(folds) >= 2
    for tr, te in folds:
        assert not set(groups[tr]) & set(groups[te])  # a speaker never on both sides


def test_large_data_is_cross_validated_on_a_stratified_sample_that_keeps_rare_classes():
    """Issue 21: beyond CV_MAX_ROWS the folds cover a sample, so the CV's copies do not grow
    with the data; a class of 3 rows still gets all 3, and only sampled rows are stacked."""
    rng = np.random.default_rng(0)
    y = np.concatenate([rng.integers(0, 3, CV_MAX_ROWS + 2000), [3, 3, 3]])
    folds, record = cv_folds(y, None, seed=0)
    used, local = rows_in_folds(folds, len(y))
    assert used is not None and CV_MAX_ROWS <= len(used) < len(y)
    assert record["sampled_from"] == len(y) and "sample of" in record["method"]
    assert set(np.flatnonzero(y == 3)) <= set(used.tolist())
    for (tr, te), (ltr, lte) in zip(folds, local, strict=True):
        assert not set(tr.tolist()) & set(te.tolist())
        assert np.array_equal(used[ltr], tr) and np.array_equal(used[lte], te)
    x = np.arange(len(y), dtype=np.float32)[:, None]
    n_train = len(y) - 500
    picked = stack_rows(x[:n_train], x[n_train:], used)  # rows from train and validation
    assert np.array_equal(picked[:, 0], used.astype(np.float32))
    assert cv_folds(y[:CV_MAX_ROWS], None, seed=0)[1].get("sampled_from") is None


def test_head_is_the_standardised_logistic_regression_folded_into_one_layer():
    """fit_head standardises in place (float32 kept) and folds mean and sd into the weights:
    the same probabilities as sklearn's StandardScaler + LogisticRegression pipeline."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    x = (rng.normal(size=(300, 8)) * [1, 5, 0.1, 1, 1, 2, 3, 1] + y[:, None]).astype(np.float32)
    x[:, 3] = 7.0  # a constant column
    weight, bias = fit_head(x, y, 0.3, False, 3)
    logits = x @ weight.T + bias
    ours = np.exp(logits - logits.max(1, keepdims=True))
    ours /= ours.sum(1, keepdims=True)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=0.3, max_iter=3000)).fit(x, y)
    assert np.abs(ours - pipe.predict_proba(x)).max() < 1e-3


def test_poisoned_test_labels_do_not_change_the_choice(tmp_path, capsys):
    """The test split is never part of the cross-validation: scrambling its labels leaves
    every candidate's score and the choice as they were."""
    rows = list(csv.reader(EN.open(encoding="utf-8")))[1:]
    random.Random(0).shuffle(rows)
    test = rows[:9]
    labels = sorted({r[1] for r in rows})
    poisoned = [(t, labels[(labels.index(y) + 1) % len(labels)]) for t, y in test]
    selections = []
    for name, test_rows in (("clean", test), ("poisoned", poisoned)):
        folder = tmp_path / name
        _write(folder / "train.csv", rows[9:30])
        _write(folder / "val.csv", rows[30:])
        _write(folder / "test.csv", test_rows)
        run = tmp_path / f"run-{name}"
        assert main(["train", str(folder), "--output", str(run), "--quiet"]) == 0
        cfg = json.loads((run / "config.json").read_text(encoding="utf-8"))
        selections.append((cfg["fit"]["selection"], cfg["fit"]["baseline"]))
    assert selections[0][0]["examples"] == len(rows) - 9
    assert selections[0] == selections[1]
    # the baseline's cross-validated score beside the chosen model's, in config and terminal
    base = selections[0][1]
    assert {"name", "macro_f1", "chosen_macro_f1", "points", "verdict"} <= set(base)
    assert "baseline: TF-IDF + logistic regression" in capsys.readouterr().out
    card = (tmp_path / "run-clean" / "README.md").read_text(encoding="utf-8")
    assert f"(no pretraining) {base['macro_f1']:.3f}, this model" in card


def test_text_where_the_baseline_clearly_wins_is_chosen_and_saves(tmp_path):
    """Classes told apart only by a product code among 40 random made-up words: the
    embedding barely sees it, TF-IDF sees nothing else, and the baseline alone is chosen."""
    rng = random.Random(0)
    rows = []
    for i in range(80):
        code = ("zq7x", "zq9x")[i % 2]
        # each filler word occurs once: TF-IDF drops it (min_df=2), the embedding reads it
        words = ["".join(rng.choice("bcdfghklmnprstvz") for _ in range(7)) for _ in range(40)]
        words.insert(rng.randrange(41), code)
        rows.append((" ".join(words), code))
    _write(tmp_path / "codes.csv", rows)
    train, val, test = load_text(tmp_path / "codes.csv").split(0.6, 0.2, 0.2, seed=0)
    clf = TextClassifier(strategy="linear-probe", verbose=False).fit(train, val)
    sel = clf.fit_info_["selection"]
    best = sel["best_per_candidate"]
    assert best["embeddings"]["macro_f1"] < 0.8, best
    assert sel["chosen"] == "TF-IDF baseline alone", best
    assert clf.fit_info_["tfidf_side"]["kept"] == "TF-IDF baseline alone"
    assert clf.fit_info_["baseline"]["verdict"] == "the baseline is better here, and was chosen"
    assert clf.score(test) >= 0.95
    again = load_classifier(clf.save(tmp_path / "run").path)
    np.testing.assert_allclose(
        clf.predict_proba(test.texts), again.predict_proba(test.texts), atol=1e-5
    )


def test_audio_probe_folds_keep_speakers_apart_and_show_the_mfcc_baseline():
    from modeltailor import AudioClassifier, load_audio_folder

    digits = example_folder().parent / "audio" / "digits"
    data = load_audio_folder(digits, group_by=r"_([a-z]+)_")
    train, val, _ = data.split(0.7, 0.15, 0.15, seed=0)
    clf = AudioClassifier(strategy="linear-probe", verbose=False).fit(train, val)
    sel = clf.fit_info_["selection"]
    assert sel["grouped"] and sel["method"].startswith("grouped stratified")
    base = clf.fit_info_["baseline"]
    assert base["name"].startswith("MFCC") and 0 <= base["macro_f1"] <= 1
    assert base["verdict"].startswith(("pretraining bought", "the baseline is better"))


def test_image_probe_shows_the_colour_texture_baseline():
    """Images have a cheap baseline too: colour, edge and texture histograms, C by CV."""
    from modeltailor import ImageClassifier, load_image_folder
    from modeltailor.training.image_baseline import NAME, image_features

    data = load_image_folder(example_folder())
    assert image_features(data.items[0]).shape == (128 + 64 * 9 + 256,)
    train, val, _ = data.split(0.3, 0.1, 0.6, seed=0)  # 96 + 32 images: a cheap probe
    clf = ImageClassifier(strategy="linear-probe", verbose=False).fit(train, val)
    base = clf.fit_info_["baseline"]
    assert base["name"] == NAME and 0.3 <= base["macro_f1"] <= 1  # 8 classes: chance 0.125
    assert base["scored_by"].startswith("stratified 5-fold")
    assert base["verdict"].startswith(("pretraining bought", "the baseline is better"))
