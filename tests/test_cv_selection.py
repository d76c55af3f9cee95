"""Issue 19: closed-form choices (C, text side features, the baseline alone) are made by
stratified k-fold cross-validation over train + validation, never touching test data."""

from __future__ import annotations

import numpy as np

from modeltailor import TextClassifier, load_text
from modeltailor.cli import example_folder
from modeltailor.training.heads import C_GRID, cv_folds

EN = example_folder().parent / "text" / "tickets_en.csv"


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


def test_folds_are_stratified_capped_by_the_smallest_class_and_grouped():
    y = np.array([0] * 10 + [1] * 3)
    folds, record = cv_folds(y, None, seed=0)
    assert record["folds"] == len(folds) == 3 and not record["grouped"]
    groups = np.array([f"s{i % 4}" for i in range(30)])
    y = np.array([i % 2 for i in range(30)])
    folds, record = cv_folds(y, groups, seed=0)
    assert record["grouped"] and record["folds"] == len(folds) >= 2
    for tr, te in folds:
        assert not set(groups[tr]) & set(groups[te])  # a speaker never on both sides
