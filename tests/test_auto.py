"""`tailor train --strategy auto [--budget]` (issue 19): cheapest first under a time budget, a
leaderboard on the validation split, the winner saved and only it scored on the test split."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from modeltailor.auto import MIN_TRAIN_SECONDS, parse_budget, probe_backbones
from modeltailor.cli import main
from modeltailor.errors import ModelTailorError

EN = Path(__file__).parents[1] / "src" / "modeltailor" / "examples" / "text" / "tickets_en.csv"


def test_budgets_read_like_durations():
    assert parse_budget("10m") == 600 and parse_budget("90s") == 90 and parse_budget("90") == 90
    assert parse_budget("1h30m") == 5400 and parse_budget(45) == 45 and parse_budget(None) is None
    for bad in ("ten minutes", "0", "-5m", ""):
        with pytest.raises(ModelTailorError, match="--budget"):
            parse_budget(bad)


def test_probes_try_shippable_backbones_first():
    """use-multilingual (numpy, not exportable) goes after the exportable encoders, so a tie
    on validation keeps a model `tailor export` can ship."""
    order = probe_backbones("text")
    assert order.index("minilm-l6") < order.index("use-multilingual")
    assert "tfidf" not in order  # the baseline is its own stage


def _split_files(folder: Path, poison: bool) -> Path:
    """tickets_en as train/val/test CSVs; `poison` shuffles the test labels."""
    rows = list(csv.DictReader(EN.open(encoding="utf-8")))
    random.Random(0).shuffle(rows)
    n = len(rows)
    parts = {"train": rows[: n * 6 // 10], "val": rows[n * 6 // 10 : n * 8 // 10],
             "test": rows[n * 8 // 10 :]}  # fmt: skip
    if poison:
        labels = [r["label"] for r in parts["test"]]
        parts["test"] = [{**r, "label": labels[(i + 1) % len(labels)]}
                         for i, r in enumerate(parts["test"])]  # fmt: skip
    folder.mkdir(parents=True)
    for name, part in parts.items():
        with (folder / f"{name}.csv").open("w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(part)
    return folder


@pytest.mark.slow
def test_auto_ranks_on_validation_and_never_reads_test_labels(tmp_path, capsys):
    """Poisoned test labels change the test score, never the leaderboard or the choice. No
    budget (a budget makes the choice depend on the machine's speed); one epoch for the
    trained stage."""
    runs = {}
    for poison in (False, True):
        data = _split_files(tmp_path / f"data-{poison}", poison)
        run = tmp_path / f"run-{poison}"
        code = main(["train", str(data), "--strategy", "auto", "--epochs", "1",
                     "--output", str(run)])  # fmt: skip
        assert code == 0
        runs[poison] = json.loads((run / "config.json").read_text(encoding="utf-8"))
    clean, poisoned = (runs[p]["fit"]["auto"] for p in (False, True))
    assert clean["chosen"] == poisoned["chosen"]
    assert [r["val_macro_f1"] for r in clean["leaderboard"]] == [
        r["val_macro_f1"] for r in poisoned["leaderboard"]
    ]
    board = clean["leaderboard"]
    assert [r["status"] for r in board] == ["done"] * len(board)
    assert board[0]["strategy"] == "baseline"
    assert board[-1]["strategy"] == "few-shot"  # a few texts per class: pair tuning
    chosen = [r for r in board if r["chosen"]]
    assert len(chosen) == 1 and chosen[0]["val_macro_f1"] == max(r["val_macro_f1"] for r in board)
    assert runs[False]["strategy"] == clean["chosen"]["strategy"]
    assert runs[False]["backbone"] == clean["chosen"]["backbone"]
    metrics = json.loads((tmp_path / "run-True" / "metrics.json").read_text(encoding="utf-8"))
    assert "test" in metrics  # only the winner is scored on test, after the choice
    report = (tmp_path / "run-False" / "report.html").read_text(encoding="utf-8")
    assert 'id="auto"' in report and "How this model was chosen" in report
    assert "--strategy auto" in capsys.readouterr().out


def test_a_short_budget_skips_what_does_not_fit_and_says_why(tmp_path):
    run = tmp_path / "run"
    assert main(["train", str(EN), "--strategy", "auto", "--budget", "5s", "--quiet",
                 "--output", str(run)]) == 0  # fmt: skip
    auto = json.loads((run / "config.json").read_text(encoding="utf-8"))["fit"]["auto"]
    assert auto["budget_seconds"] == 5 and auto["skipped"]
    trained = auto["leaderboard"][-1]
    assert trained["strategy"] == "few-shot" and trained["status"].startswith("skipped")
    assert f"{MIN_TRAIN_SECONDS:.0f} s" in trained["status"] or "spent" in trained["status"]


def test_auto_refuses_settings_it_would_override(tmp_path, capsys):
    code = main(["train", str(EN), "--strategy", "auto", "--backbone", "minilm-l6",
                 "--output", str(tmp_path / "run")])  # fmt: skip
    assert code != 0
    err = capsys.readouterr().err
    assert "--strategy auto chooses the backbone" in err and "Traceback" not in err
