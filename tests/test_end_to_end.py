"""The user's path through the CLI and the Python API, on the bundled example photos."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from modeltailor import ImageClassifier, load_image_folder
from modeltailor.cli import main
from modeltailor.training.features import EmbeddingCache

TAILOR = [sys.executable, "-m", "modeltailor.cli"]


def test_train_writes_a_complete_run(probe_run):
    for name in (
        "config.json",
        "labels.json",
        "model.safetensors",
        "metrics.json",
        "history.csv",
        "splits.json",
    ):
        assert (probe_run / name).is_file(), name
    metrics = json.loads((probe_run / "metrics.json").read_text())
    assert metrics["test"]["n"] == 40 and metrics["test"]["accuracy"] > 0.6
    assert metrics["validation"]["n"] == 40
    config = json.loads((probe_run / "config.json").read_text())
    assert config["backbone"] == "efficientnet_lite0" and config["settings"]["seed"] == 0
    assert config["versions"]["torch"].startswith("2.14.1")
    splits = json.loads((probe_run / "splits.json").read_text())
    assert len(splits["train"]["sha1"]) == 320 and len(splits["test"]["items"]) == 40
    assert not list(probe_run.glob("**/*.tmp"))
    assert not list(probe_run.glob("*.pt")) and not list(probe_run.glob("*.pkl"))


def test_predict_json_and_top_k(probe_run, fashion_dir, capsys):
    img = sorted((fashion_dir / "trouser").iterdir())[0]
    assert main(["predict", str(probe_run), str(img), "--json", "--top-k", "2"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (row,) = doc["predictions"]
    assert row["label"] == "trouser" and len(row["top_k"]) == 2
    assert row["top_k"][0]["probability"] >= row["top_k"][1]["probability"]


def test_predict_reports_unreadable_files_and_goes_on(probe_run, fashion_dir, tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    good = sorted((fashion_dir / "bag").iterdir())[0]
    assert main(["predict", str(probe_run), str(bad), str(good), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in doc["predictions"]] == [str(good)]
    assert doc["skipped"][0]["path"] == str(bad)


def test_evaluate_warns_when_data_was_used_for_training(probe_run, fashion_dir, capsys):
    assert main(["evaluate", str(probe_run), str(fashion_dir), "--json"]) == 0
    captured = capsys.readouterr()
    metrics = json.loads(captured.out)
    assert metrics["n"] == 400 and metrics["overlap_with_training"]["train"] == 320
    assert "optimistic" in captured.err


def test_a_run_loads_in_a_new_process_from_the_folder_alone(probe_run, fashion_dir, tmp_path):
    img = sorted((fashion_dir / "sandal").iterdir())[0]
    in_process = ImageClassifier.load(probe_run).predict_proba([img])[0]
    env = {**os.environ, "MODELTAILOR_CACHE": str(tmp_path / "empty-cache")}
    res = subprocess.run(
        [*TAILOR, "predict", str(probe_run), str(img), "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        cwd=tmp_path,
    )
    row = json.loads(res.stdout)["predictions"][0]
    assert row["probability"] == pytest.approx(float(in_process.max()), abs=1e-5)


def test_untrainable_data_is_one_line_and_nonzero(tmp_path, fashion_dir, capsys):
    (tmp_path / "only").mkdir()
    for f in sorted((fashion_dir / "bag").iterdir())[:3]:
        (tmp_path / "only" / f.name).write_bytes(f.read_bytes())
    assert main(["train", str(tmp_path), "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "at least 2 classes" in err and str(tmp_path) in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()  # no compute, nothing written


def test_python_api_four_lines(fashion_dir, tmp_path):
    train, val, test = load_image_folder(fashion_dir).split(0.8, 0.1, seed=0)
    clf = ImageClassifier(strategy="linear-probe", verbose=False).fit(train, val)
    assert clf.evaluate(test)["accuracy"] > 0.6
    clf.save(tmp_path / "run")
    loaded = ImageClassifier.load(tmp_path / "run")
    assert loaded.predict(test.items[:5]) == clf.predict(test.items[:5])
    assert 0.0 <= loaded.score(test) <= 1.0


def test_linear_probe_rerun_computes_no_embedding_again(fashion_dir):
    train, val, _ = load_image_folder(fashion_dir).split(0.8, 0.1, seed=0)
    clf = ImageClassifier(verbose=False).fit(train, val)
    cache = EmbeddingCache(clf.spec_, clf.preprocessing_)
    shards = sorted(cache.dir.glob("*.npy"))
    again = ImageClassifier(verbose=False).fit(train, val)
    assert sorted(cache.dir.glob("*.npy")) == shards  # nothing new written
    assert again.fit_info_["C"] == clf.fit_info_["C"]


def test_interrupted_extraction_resumes_where_it_stopped(fashion_dir, tmp_path, monkeypatch):
    from modeltailor.backbones import get_backbone
    from modeltailor.backbones.model import TailoredModel
    from modeltailor.training import features

    monkeypatch.setenv("MODELTAILOR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(features, "SHARD_ROWS", 32)
    data = load_image_folder(fashion_dir).subset(list(range(0, 400, 4)))  # 100 images
    spec = get_backbone("efficientnet_lite0")
    model = TailoredModel(spec.build(10))
    cache = features.EmbeddingCache(spec, spec.preprocessing)
    real_write = cache.write_shard
    calls = []

    def crash_after_two(keys, rows):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(len(keys))
        real_write(keys, rows)

    monkeypatch.setattr(cache, "write_shard", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        features.extract_embeddings(model, data, spec.preprocessing, cache, verbose=False)
    fresh = features.EmbeddingCache(spec, spec.preprocessing)
    assert len(fresh) == 64  # two finished shards survived the crash
    embedded = []
    fresh_write = fresh.write_shard
    monkeypatch.setattr(fresh, "write_shard", lambda k, r: (embedded.extend(k), fresh_write(k, r)))
    feats, bad = features.extract_embeddings(model, data, spec.preprocessing, fresh, verbose=False)
    assert len(embedded) == 36 and feats.shape == (100, model.num_features) and not bad


def test_demo_runs_end_to_end(tmp_path, capsys):
    assert main(["demo", "--output", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "run is in" in out and (tmp_path / "demo" / "model.safetensors").is_file()


def test_truncated_training_image_is_reported_and_recorded(small_dir, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(small_dir, data)
    victim = sorted((data / "sneaker").iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:80])  # header intact, pixels cut off
    run = tmp_path / "run"
    assert main(["train", str(data), "--output", str(run), "--quiet"]) == 0
    assert str(victim) in capsys.readouterr().err
    config = json.loads((run / "config.json").read_text())
    assert str(victim) in [s["path"] for s in config["data"]["skipped"]]
