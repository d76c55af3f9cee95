"""The run report: ECE arithmetic, predictions.csv, every section, a headless Chromium render."""

from __future__ import annotations

import csv
import functools
import html
import http.server
import json
import logging
import shutil
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from modeltailor.cli import main
from modeltailor.evaluation.metrics import classification_metrics
from modeltailor.report import plots, write_report
from tests.conftest import copy_classes

SECTIONS = (
    "summary",
    "learning-curves",
    "confusion-matrix",
    "per-class",
    "reliability",
    "mistakes",
    "data",
    "config",
)
FIGURES = ("learning_curves", "confusion_matrix", "per_class", "reliability")
JAPANESE = {"スニーカー": "sneaker", "ズボン": "trouser"}
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory, fashion_dir) -> Path:
    """A 3-epoch fine-tune on Japanese class names: the body unfreezes after epoch 2."""
    data = copy_classes(fashion_dir, tmp_path_factory.mktemp("写真"), JAPANESE, 8)
    run = tmp_path_factory.mktemp("runs") / "調整"
    args = ["train", str(data), "--strategy", "fine-tune", "--epochs", "3", "--output", str(run)]
    extra = ["--batch-size", "8", "--val-fraction", "0.25", "--test-fraction", "0.25", "--quiet"]
    assert main(args + extra) == 0
    return run


def _predictions(run: Path) -> list[dict[str, str]]:
    with (run / "predictions.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


# -- expected calibration error ---------------------------------------------------------------
def test_ece_matches_a_hand_computed_example():
    proba = np.array([[0.9, 0.1], [0.08, 0.92], [0.82, 0.18], [0.3, 0.7], [0.45, 0.55]])
    y = [0, 1, 1, 1, 0]  # right (0.90), right (0.92), wrong (0.82), right (0.70), wrong (0.55)
    m = classification_metrics(y, proba, ["a", "b"])
    # bins of width 1/15: {0.90, 0.92} share (13/15, 14/15]; the others are alone in theirs
    expected = (2 * abs(1 - 0.91) + abs(0 - 0.82) + abs(1 - 0.7) + abs(0 - 0.55)) / 5
    assert m["ece"] == pytest.approx(expected) == pytest.approx(0.37)
    bins = m["reliability"]
    assert len(bins) == 15 and sum(b["count"] for b in bins) == 5
    assert bins[13] == pytest.approx(
        {"lower": 13 / 15, "upper": 14 / 15, "count": 2, "confidence": 0.91, "accuracy": 1.0}
    )
    assert [i for i, b in enumerate(bins) if b["count"]] == [8, 10, 12, 13]
    assert bins[0]["confidence"] is None and bins[0]["accuracy"] is None


def test_ece_is_zero_for_certain_right_answers():
    m = classification_metrics([0, 1], np.array([[1.0, 0.0], [0.0, 1.0]]), ["a", "b"])
    assert m["ece"] == 0.0 and m["reliability"][-1]["count"] == 2


# -- the run's files --------------------------------------------------------------------------
def test_predictions_csv_holds_every_held_out_image_and_matches_metrics(probe_run):
    metrics, splits = _json(probe_run / "metrics.json"), _json(probe_run / "splits.json")
    rows = _predictions(probe_run)
    labels = _json(probe_run / "labels.json")
    assert list(rows[0])[:5] == ["split", "path", "label", "predicted", "confidence"]
    assert list(rows[0])[5:] == [f"p:{c}" for c in labels]
    for split, key in (("test", "test"), ("validation", "val")):
        mine = [r for r in rows if r["split"] == split]
        assert len(mine) == metrics[split]["n"] == len(splits[key]["items"])
        assert sorted(r["path"] for r in mine) == sorted(splits[key]["items"])
        right = sum(r["label"] == r["predicted"] for r in mine)
        assert right / len(mine) == pytest.approx(metrics[split]["accuracy"])
        cm = np.zeros((len(labels), len(labels)), int)
        for r in mine:
            cm[labels.index(r["label"]), labels.index(r["predicted"])] += 1
        assert cm.tolist() == metrics[split]["confusion_matrix"]
        proba = np.array([[float(r[f"p:{c}"]) for c in labels] for r in mine])
        assert np.allclose(proba.sum(axis=1), 1, atol=1e-4)
        assert np.allclose(proba.max(axis=1), [float(r["confidence"]) for r in mine])
        assert 0 <= metrics[split]["ece"] <= 1 and len(metrics[split]["reliability"]) == 15


def test_train_writes_a_report_with_every_section(probe_run):
    page = (probe_run / "report.html").read_text(encoding="utf-8")
    for section in SECTIONS:
        assert f'id="{section}"' in page, section
    for name in FIGURES:
        png = probe_run / "report" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f'id="img-{name}"' in page
    assert "Not drawn" not in page
    assert 'src="http' not in page and 'href="http' not in page  # nothing to fetch
    assert "data:image/jpeg;base64," in page  # thumbnails of the mistakes
    text = html.unescape(page)
    metrics, config = _json(probe_run / "metrics.json"), _json(probe_run / "config.json")
    assert f"{metrics['test']['ece']:.3f}" in text and "never saw" in text
    assert json.dumps(config, indent=2, ensure_ascii=False) in text  # the full configuration
    assert "<td>ankle-boot</td><td>32</td><td>4</td><td>4</td>" in page  # counts per split


def test_report_rebuilds_fast_and_lists_vanished_files(probe_run, tmp_path, capsys):
    run = shutil.copytree(probe_run, tmp_path / "copy", ignore=shutil.ignore_patterns("*.safe*"))
    shutil.rmtree(run / "report")
    (run / "report.html").unlink()
    rows = (run / "predictions.csv").read_text(encoding="utf-8")
    gone = [r for r in _predictions(run) if r["split"] == "test" and r["label"] != r["predicted"]]
    for r in gone[:2]:  # two of the mistakes were deleted since training
        rows = rows.replace(r["path"], str(tmp_path / "deleted" / Path(r["path"]).name))
    (run / "predictions.csv").write_text(rows, encoding="utf-8")
    started = time.perf_counter()
    assert main(["report", str(run)]) == 0
    assert time.perf_counter() - started < 10  # no model: about a second on a laptop
    assert "report written to" in capsys.readouterr().out
    html = (run / "report.html").read_text(encoding="utf-8")
    assert all((run / "report" / f"{n}.png").is_file() for n in FIGURES)
    assert "Files no longer readable" in html
    assert all(Path(r["path"]).name in html for r in gone[:2])


def test_report_of_a_run_without_predictions_or_ece_still_has_every_section(probe_run, tmp_path):
    run = shutil.copytree(probe_run, tmp_path / "old", ignore=shutil.ignore_patterns("*.safe*"))
    (run / "predictions.csv").unlink()
    metrics = _json(run / "metrics.json")
    for split in ("validation", "test"):
        metrics[split].pop("ece"), metrics[split].pop("reliability")
    (run / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    html = write_report(run).read_text(encoding="utf-8")
    assert all(f'id="{s}"' in html for s in SECTIONS)
    assert "no predictions.csv" in html and "no calibration bins" in html
    assert not (run / "report" / "reliability.png").exists()


def test_without_a_test_split_the_page_says_so_and_judges_validation(small_dir, tmp_path):
    run = tmp_path / "no-test"
    args = ["train", str(small_dir), "--output", str(run), "--quiet", "--test-fraction", "0"]
    assert main([*args, "--val-fraction", "0.25"]) == 0
    page = (run / "report.html").read_text(encoding="utf-8")
    assert 'id="honesty"' in page and "Only validation figures exist" in page
    assert 'Reliability <span class="muted">(validation)' in page
    assert {r["split"] for r in _predictions(run)} == {"validation"}


def test_report_on_a_missing_run_is_one_line_and_nonzero(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "config.json is missing" in capsys.readouterr().err


def test_fine_tune_report_marks_the_unfreeze_and_keeps_japanese_names(tuned_run):
    config = _json(tuned_run / "config.json")
    assert config["fit"]["head_epochs"] == 2
    html = (tuned_run / "report.html").read_text(encoding="utf-8")
    assert all(f'id="{s}"' in html for s in SECTIONS)
    assert all(name in html for name in JAPANESE)
    assert "Not drawn" not in html
    rows = _predictions(tuned_run)
    assert {r["label"] for r in rows} <= set(JAPANESE) and f"p:{next(iter(JAPANESE))}" in rows[0]
    metrics = _json(tuned_run / "metrics.json")
    assert len([r for r in rows if r["split"] == "test"]) == metrics["test"]["n"]


def test_cjk_labels_without_a_cjk_font_fall_back_quietly(monkeypatch, caplog):
    """No CJK font installed: boxes in the PNG, a hint in the page, no warnings or log spam."""
    monkeypatch.setattr(plots, "font_family", functools.cache(lambda: ("DejaVu Sans",)))
    scores = {"precision": 0.5, "recall": 1.0, "f1": 0.67, "support": 3}
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING, logger="matplotlib"):
        warnings.simplefilter("error")
        png = plots.per_class({name: scores for name in JAPANESE})
        cm = plots.confusion([[3, 0], [1, 2]], list(JAPANESE))
    assert png[:4] == cm[:4] == b"\x89PNG" and not caplog.records
    assert "ス" in plots.missing_glyphs(JAPANESE) and not plots.missing_glyphs(["sneaker"])


# -- in a browser -----------------------------------------------------------------------------
class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _serve(folder: Path) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _check_page(browser, url: str, shot: Path) -> None:
    """Every section visible, every image decoded, no console error, nothing fetched."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    fetched: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: errors.append(f"failed: {r.url}"))
    page.on("request", lambda r: fetched.append(r.url) if r.url != url else None)
    page.goto(url, wait_until="load")
    for section in SECTIONS:
        assert page.locator(f"#{section}").is_visible(), section
    sizes = page.evaluate("Array.from(document.images, i => i.complete ? i.naturalWidth : 0)")
    assert len(sizes) >= len(FIGURES) and min(sizes) > 0, sizes
    page.screenshot(path=str(shot), full_page=True)
    page.close()
    assert not errors, errors
    assert all(u.startswith("data:") for u in fetched), fetched
    assert shot.stat().st_size > 10_000


def test_report_renders_in_headless_chromium(probe_run, tuned_run, tmp_path):
    if not CHROMIUM.is_file():
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    server = _serve(probe_run)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            _check_page(browser, (probe_run / "report.html").as_uri(), tmp_path / "probe.png")
            _check_page(browser, (tuned_run / "report.html").as_uri(), tmp_path / "tuned.png")
            port = server.server_address[1]
            _check_page(browser, f"http://127.0.0.1:{port}/report.html", tmp_path / "http.png")
            browser.close()
    finally:
        server.shutdown()
