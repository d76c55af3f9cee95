"""Text classification end to end: the shared core with the text reader and text backbones."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from modeltailor import TextClassifier, load_classifier, load_text
from modeltailor.backbones import get_backbone
from modeltailor.cli import main
from modeltailor.errors import BackboneError

EXAMPLES = Path(__file__).parents[1] / "src" / "modeltailor" / "examples" / "text"
EN = EXAMPLES / "tickets_en.csv"
JA = EXAMPLES / "tickets_ja.csv"


def _separation(backbone: str, data) -> float:
    """5-fold accuracy of a scaled logistic regression on the backbone's frozen embeddings."""
    x = get_backbone(backbone).build(0).embed_texts(data.texts)
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    return float(cross_val_score(probe, x, np.asarray(data.labels), cv=5).mean())


def test_multilingual_backbone_separates_japanese_that_minilm_cannot():
    data = load_text(JA)
    e5, minilm = _separation("e5-small-multilingual", data), _separation("minilm-l6", data)
    assert e5 >= 0.95, e5
    assert minilm <= 0.8 and e5 - minilm >= 0.2, (minilm, e5)


def test_japanese_txt_folders_pick_the_multilingual_backbone(tmp_path):
    """Folder per class of .txt files, Japanese names, default backbone chosen from the script."""
    data = load_text(JA)
    root = tmp_path / "問い合わせ"
    for i, (item, label) in enumerate(zip(data.items, data.labels, strict=True)):
        folder = root / data.class_names[label]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"苦情{i:02d}.txt").write_text(item.text, encoding="utf-8")
    run = tmp_path / "run"
    assert main(["train", str(root), "--output", str(run), "--quiet"]) == 0
    cfg = json.loads((run / "config.json").read_text(encoding="utf-8"))
    assert cfg["modality"] == "text" and cfg["backbone"] == "e5-small-multilingual"
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["test"]["accuracy"] >= 0.75  # 4 test texts: 3 of 4 at least
    clf = load_classifier(run)
    assert clf.predict(["荷物がまだ届きません。配送状況を教えてください。"]) == ["配送"]


def test_cli_train_predict_evaluate_english_csv(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(EN), "--output", str(run), "--quiet"]) == 0
    cfg = json.loads((run / "config.json").read_text(encoding="utf-8"))
    assert cfg["backbone"] == "minilm-l6" and cfg["preprocessing"]["modality"] == "text"
    assert cfg["fit"]["long_texts"]["share_of_training_texts_windowed"] == 0.0
    assert (run / "text_model" / "tokenizer.json").is_file()
    assert "text" in (run / "predictions.csv").read_text(encoding="utf-8").splitlines()[0]
    assert "texts that" in (run / "report.html").read_text(encoding="utf-8")
    capsys.readouterr()

    assert main(["predict", str(run), "--text", "I was billed twice this month", "--json"]) == 0
    (pred,) = json.loads(capsys.readouterr().out)["predictions"]
    assert pred["label"] == "billing" and pred["probability"] > 0.5

    # CSV in -> the same rows plus label and probability; a row with no text is reported
    source = tmp_path / "new.csv"
    source.write_text(
        "id,message\n1,My package never arrived\n2,\n3,The app crashes on start\n",
        encoding="utf-8",
    )
    assert main(["predict", str(run), str(source), "--text-column", "message"]) == 0
    captured = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(captured.out)))
    assert [r["id"] for r in rows] == ["1", "3"]
    assert [r["label"] for r in rows] == ["delivery", "technical"]
    assert all(0 < float(r["probability"]) <= 1 for r in rows)
    assert "new.csv:line 3" in captured.err

    assert main(["evaluate", str(run), str(EN), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n"] == 36 and metrics["overlap_with_training"]["train"] > 0


def test_missing_column_lists_the_columns(tmp_path, capsys):
    source = tmp_path / "x.csv"
    source.write_text("review,stars\ngood,5\nbad,1\n", encoding="utf-8")
    assert main(["train", str(source), "--output", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "review" in err and "stars" in err


def test_fine_tune_saves_and_reloads_identically(tmp_path):
    data = load_text(EN)
    train, val, test = data.split(0.6, 0.2, 0.2, seed=0)
    clf = TextClassifier(backbone="minilm-l6", strategy="fine-tune", epochs=2, verbose=False)
    clf.fit(train, val)
    assert clf.fit_info_["head_init"]["kept"] in ("trained", "probe")
    assert clf.fit_info_["epochs_run"] >= 1
    clf.save(tmp_path / "run")
    again = load_classifier(tmp_path / "run")
    texts = [item.text for item in test.items]
    np.testing.assert_allclose(clf.predict_proba(texts), again.predict_proba(texts), atol=1e-5)
    assert clf.score(test) >= 0.8


def test_long_texts_are_windowed_and_logits_averaged():
    """A text many windows long: prediction = mean of the per-window logits (nothing cut)."""
    from modeltailor.training.inference import predict_logits

    clf = TextClassifier(strategy="linear-probe", verbose=False).fit(load_text(EN))
    encoder = clf.model_.net
    long = " ".join(["The invoice charged me twice."] * 60 + ["The app crashes."] * 60)
    (wins,) = encoder.encode([long])
    assert len(wins) > 2
    with_windows = np.stack(
        [clf.model_(encoder.collate([w])).detach().numpy()[0] for w in wins]
    ).mean(0)
    logits, bad = predict_logits(clf.model_, [long], clf.preprocessing_)
    assert not bad
    np.testing.assert_allclose(logits[0], with_windows, atol=1e-4)


def test_baseline_is_tfidf_and_saved_without_pickle(tmp_path):
    data = load_text(EN)
    clf = TextClassifier(strategy="baseline", verbose=False).fit(data)
    assert clf.spec_.name == "tfidf" and clf.fit_info_["features"]["analyzer"] == "word"
    run = clf.save(tmp_path / "run").path
    assets = json.loads((run / "text_model" / "tfidf.json").read_text(encoding="utf-8"))
    assert "refund" in assets["terms"] and len(assets["idf"]) == len(assets["terms"])
    again = load_classifier(run)
    assert again.predict(["Please refund the double charge on my card"]) == ["billing"]
    np.testing.assert_allclose(
        clf.predict_proba(data.texts), again.predict_proba(data.texts), atol=1e-6
    )
    ja = TextClassifier(strategy="baseline", verbose=False).fit(load_text(JA))
    assert ja.fit_info_["features"]["analyzer"] == "char"  # Japanese has no spaces


def test_backbone_that_cannot_do_a_strategy_names_those_that_can():
    with pytest.raises(BackboneError, match="tfidf"):
        TextClassifier(backbone="minilm-l6", strategy="baseline").fit(load_text(EN))


def test_same_seed_same_metrics(tmp_path):
    data = load_text(EN)
    train, val, test = data.split(0.6, 0.2, 0.2, seed=1)
    scores = [
        TextClassifier(strategy="linear-probe", seed=3, verbose=False)
        .fit(train, val)
        .evaluate(test)
        for _ in range(2)
    ]
    assert scores[0]["log_loss"] == scores[1]["log_loss"]


def test_lora_trains_adapters_only_and_saves_a_small_run(tmp_path):
    data = load_text(EN)
    train, val, test = data.split(0.6, 0.2, 0.2, seed=0)
    clf = TextClassifier(backbone="minilm-l6", strategy="lora", epochs=2, verbose=False)
    clf.fit(train, val)
    adapters = clf.fit_info_["adapters"]
    assert adapters["method"] == "LoRA (peft)" and adapters["trainable_parameters"] < 100_000
    run = clf.save(tmp_path / "run").path
    assert (run / "model.safetensors").stat().st_size < 1_000_000  # the body is not in the run
    again = load_classifier(run)
    texts = [item.text for item in test.items]
    np.testing.assert_allclose(clf.predict_proba(texts), again.predict_proba(texts), atol=1e-5)


def test_few_shot_contrastive_with_eight_examples_per_class(tmp_path):
    """8 texts per class, no validation split: every pair of the 24 texts tunes the body in
    one step, the head is SetFit's fixed logistic regression (config says so, and that no
    TF-IDF features were tried); the model must not collapse to one class."""
    data = load_text(EN)
    labels = np.asarray(data.labels)
    picked = [int(i) for c in range(3) for i in np.flatnonzero(labels == c)[:8]]
    held_out = [i for i in range(len(data)) if i not in picked]
    clf = TextClassifier(strategy="few-shot", verbose=False).fit(data.subset(picked))
    tuned = clf.fit_info_["contrastive"]
    assert tuned["texts_per_step"] == 24 and tuned["pairs_per_step"] == 24 * 23 // 2
    assert tuned["steps"] == tuned["epochs"] == 16  # one step a pass: all 24 fit in one
    assert tuned["final_train_loss"] < 0.1
    assert clf.fit_info_["selected_by"].startswith("fixed") and clf.fit_info_["C"] == 1.0
    assert "tfidf_side" not in clf.fit_info_
    predicted = clf.predict([data.items[i].text for i in held_out])
    truth = [data.class_names[labels[i]] for i in held_out]
    assert len(set(predicted)) == 3  # no collapse onto one class
    assert np.mean([p == t for p, t in zip(predicted, truth, strict=True)]) >= 0.75
    again = load_classifier(clf.save(tmp_path / "run").path)
    assert again.predict(["I was charged twice"]) == clf.predict(["I was charged twice"])
    # the per-pass pair loss is the run's history, drawn as its learning curve
    with (tmp_path / "run" / "history.csv").open(encoding="utf-8") as f:
        losses = [float(row["train_loss"]) for row in csv.DictReader(f)]
    assert len(losses) == 16 and losses[-1] < losses[0]
    from modeltailor.report import write_report

    assert "no history.csv" not in write_report(tmp_path / "run").read_text(encoding="utf-8")
    assert (tmp_path / "run" / "report" / "learning_curves.png").is_file()


def test_all_pairs_loss_is_zero_only_for_separated_classes():
    from modeltailor.training.contrastive import all_pairs_loss

    labels = torch.tensor([0, 0, 1, 1])
    separated = torch.tensor([[1.0, 0], [2.0, 0], [0, 1.0], [0, 3.0]])  # cos 1 within, 0 across
    assert all_pairs_loss(separated, labels).item() == pytest.approx(0.0, abs=1e-6)
    mixed = torch.tensor([[1.0, 0], [0, 1.0], [1.0, 0], [0, 1.0]])  # each pair of a class apart
    # same-class pairs: cos 0 -> error 1; different-class pairs: two at cos 1 of four -> 0.5
    assert all_pairs_loss(mixed, labels).item() == pytest.approx((1.0 + 0.5) / 2)
    assert all_pairs_loss(separated[[0, 2]], labels[[0, 2]]).item() == pytest.approx(0.0)


def test_bigger_text_models_tune_fewer_texts_per_step():
    from modeltailor.training.contrastive import texts_per_step

    assert texts_per_step(32, 256, 384, 6) == 32  # minilm-l6, the reference
    assert texts_per_step(32, 512, 384, 12) == 8  # e5-small
    assert texts_per_step(32, 384, 768, 12) == 4  # mpnet-base: OOM-killed at 32 pairs on 24 GB
    assert texts_per_step(32, 4096, 4096, 48) == 2  # never fewer than one pair


def test_training_loop_takes_part_of_a_big_step_at_once_and_accumulates():
    """fine-tune/full/lora share the few-shot rule: a step bigger than the reference load
    (32 MiniLM windows) runs in micro-batches whose gradients add up to the step asked for."""
    from modeltailor.training.inputs import REFERENCE_TEXT_LOAD, rows_at_once

    minilm = 256 * 384 * 6
    assert REFERENCE_TEXT_LOAD == 32 * minilm
    assert rows_at_once(32, minilm) == 32  # the default batch of MiniLM: one pass
    assert rows_at_once(32, 384 * 768 * 12) == 4  # mpnet-base: 4 at once, 8 accumulated
    assert rows_at_once(27, 384 * 768 * 12) == 3  # a divisor, so micro-batches make the step
    data = load_text(EN)
    train, val, _ = data.split(0.6, 0.2, 0.2, seed=0)
    clf = TextClassifier(
        backbone="minilm-l6", strategy="full", epochs=1, batch_size=64, verbose=False
    ).fit(train, val)
    assert clf.fit_info_["examples_per_step"] == 64
    assert clf.fit_info_["examples_at_once"] == 32


def test_compare_baseline_against_probe_on_text(tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(
        ["compare", str(EN), "--strategies", "baseline,linear-probe", "--output", str(out)]
        + ["--test-fraction", "0.25"]
    )
    assert code == 0
    doc = json.loads((out / "compare.json").read_text(encoding="utf-8"))
    rows = {(r["strategy"], r["backbone"]): r for r in doc["rows"]}
    assert set(rows) == {("baseline", "auto"), ("linear-probe", "auto")}
    assert all(r["failed"] == 0 for r in rows.values())
    assert "examples" in doc["scored_on"]


def test_tfidf_side_features_are_kept_only_when_they_win(tmp_path):
    """Two cues: half the tickets say their class by topic (the embedding reads it), half only
    by a product code among made-up words (only TF-IDF sees it): cross-validation keeps the
    combined head; with combine_tfidf=False config records no side features."""
    import random

    tickets = load_text(EN)
    rng = random.Random(0)
    rows = [(t, "ab"[y]) for t, y in zip(tickets.texts, tickets.labels, strict=True) if y < 2]
    for i in range(24):
        words = ["".join(rng.choice("bcdfghklmnprstvz") for _ in range(7)) for _ in range(20)]
        words.insert(rng.randrange(21), ("zq7x", "zq9x")[i % 2])
        rows.append((" ".join(words), "ab"[i % 2]))
    source = tmp_path / "codes.csv"
    with source.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    data = load_text(source)
    train, val, test = data.split(0.6, 0.2, 0.2, seed=0)
    clf = TextClassifier(strategy="linear-probe", verbose=False).fit(train, val)
    side = clf.fit_info_["tfidf_side"]
    assert side["kept"] == "embeddings + TF-IDF", clf.fit_info_["selection"]["best_per_candidate"]
    assert clf.score(test) >= 0.95
    again = load_classifier(clf.save(tmp_path / "run").path)
    assert (tmp_path / "run" / "tfidf_side" / "tfidf.json").is_file()
    np.testing.assert_allclose(
        clf.predict_proba(test.texts), again.predict_proba(test.texts), atol=1e-5
    )
    plain = TextClassifier(strategy="linear-probe", combine_tfidf=False, verbose=False)
    assert "tfidf_side" not in plain.fit(train, val).fit_info_
    # Fine-tune: whichever network LP-FT keeps, the side features join it when they win.
    tuned = TextClassifier(strategy="fine-tune", epochs=1, verbose=False).fit(train, val)
    side = tuned.fit_info_["tfidf_side"]
    assert side["kept"] in ("embeddings + TF-IDF", "TF-IDF baseline alone"), side
    kept = tuned.fit_info_["head_init"]["kept"]
    if kept == "trained":  # the trained network's side features are judged on validation
        validation = tuned.fit_info_["head_init"]["validation"][kept]
        assert side["plain"]["accuracy"] == validation["accuracy"]
    else:  # the probe was chosen by CV, and so are its side features
        assert tuned.fit_info_["selection"]["chosen"] == side["kept"]
    assert tuned.score(test) >= 0.95
    again = load_classifier(tuned.save(tmp_path / "tuned").path)
    np.testing.assert_allclose(
        tuned.predict_proba(test.texts), again.predict_proba(test.texts), atol=1e-5
    )


def test_use_multilingual_probe_separates_japanese_and_refuses_training(tmp_path):
    """The frozen numpy USE encoder: a linear-probe backbone with a clear error otherwise."""
    from modeltailor.errors import BackboneError as _BackboneError

    train, _, test = load_text(JA).split(0.8, 0.0, 0.2, seed=0)
    assert _separation("use-multilingual", load_text(JA)) >= 0.95
    clf = TextClassifier("use-multilingual", verbose=False).fit(train)
    clf.save(tmp_path / "run")
    again = load_classifier(tmp_path / "run")
    assert np.allclose(again.predict_proba(test.items), clf.predict_proba(test.items), atol=1e-5)
    with pytest.raises(_BackboneError, match="cannot do fine-tune; backbones that can"):
        TextClassifier("use-multilingual", "fine-tune", verbose=False).fit(train)


def test_a_transformers_text_folder_on_disk_is_a_backbone(tmp_path):
    """`save_pretrained` output of any BERT-family encoder works as --backbone DIR."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from modeltailor.backbones.text import minilm_folder

    folder = tmp_path / "my-encoder"
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(minilm_folder())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    spec = get_backbone(str(folder))
    assert spec.modality == "text" and spec.preprocessing.max_length == 128
    train, val, test = load_text(EN).split(0.7, 0.15, seed=0)
    clf = TextClassifier(str(folder), "fine-tune", epochs=1, verbose=False).fit(train, val)
    clf.save(tmp_path / "run")
    again = load_classifier(tmp_path / "run")
    assert np.allclose(again.predict_proba(test.items), clf.predict_proba(test.items), atol=1e-5)
