"""tailor doctor: problems injected into small copies of the bundled examples are found, listed
in exclude.txt, and `tailor train --exclude` leaves them out."""

from __future__ import annotations

import csv
import html
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modeltailor import doctor
from modeltailor.cli import example_folder, main
from modeltailor.data.exclude import exclude_items, read_exclude
from modeltailor.doctor.duplicates import near_groups, normalise, similar_pairs
from modeltailor.doctor.labels import find_label_issues
from modeltailor.errors import DataError
from tests.conftest import copy_classes

EXAMPLES = example_folder().parent
FLIPS = [("trouser", "bag", 5), ("sneaker", "dress", 7), ("bag", "pullover", 9),
         ("dress", "sneaker", 11)]  # fmt: skip


@pytest.fixture(scope="module")
def sick_images(tmp_path_factory) -> Path:
    """5 classes x 20 images, plus: a bag copied into dress (exact duplicate, conflicting
    label), a trouser re-encoded as a 2x JPEG (near duplicate), 4 flipped labels, a class of
    3 sandals (too small to split) and a file that is not an image."""
    dst = tmp_path_factory.mktemp("sick") / "clothes"
    src = example_folder()
    for c in ("trouser", "bag", "sneaker", "dress", "pullover"):
        (dst / c).mkdir(parents=True)
        for f in sorted((src / c).iterdir())[:20]:
            shutil.copy(f, dst / c / f.name)
    (dst / "sandal").mkdir()
    for f in sorted((src / "sandal").iterdir())[:3]:
        shutil.copy(f, dst / "sandal" / f.name)
    bag = sorted((dst / "bag").iterdir())[0]
    shutil.copy(bag, dst / "dress" / f"dup-{bag.name}")
    trouser = sorted((dst / "trouser").iterdir())[1]
    with Image.open(trouser) as im:
        big = im.convert("RGB").resize((56, 56), Image.BICUBIC)
        big.save(dst / "trouser" / "big-copy.jpg", quality=90)
    (dst / "pullover" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    for a, b, k in FLIPS:
        f = sorted((dst / a).iterdir())[k]
        f.rename(dst / b / f"flip-{f.name}")
    return dst


@pytest.fixture(scope="module")
def image_doctor(sick_images, tmp_path_factory):
    out = tmp_path_factory.mktemp("doctor") / "d"
    assert main(["doctor", str(sick_images), "--output", str(out), "--quiet"]) == 0
    return out, json.loads((out / "doctor.json").read_text(encoding="utf-8"))


def _names(group) -> set[str]:
    return {Path(m["item"]).name for m in group["items"]}


def test_image_duplicates_conflicts_and_leakage(image_doctor):
    _, doc = image_doctor
    exact = [g for g in doc["exact_duplicates"] if any("dup-" in m["item"] for m in g["items"])]
    assert len(exact) == 1 and exact[0]["conflicting_labels"]
    assert exact[0]["labels"] == ["bag", "dress"]
    near = [g for g in doc["near_duplicates"] if "big-copy.jpg" in _names(g)]
    assert len(near) == 1 and len(near[0]["items"]) == 2
    assert near[0]["similarity"]  # which signal linked them, and how strongly
    # no other near duplicates among distinct Fashion-MNIST images at the chosen thresholds
    assert len(doc["near_duplicates"]) == 1
    assert doc["leakage"]["split"].startswith("the split `tailor train` makes")
    for leak in doc["leakage"]["groups"]:
        assert len(leak["splits"]) > 1


def test_doctor_html_shows_the_duplicates_side_by_side(image_doctor):
    """doctor.html: self-contained (pictures inline, nothing fetched), the conflicting pair
    shown together with both labels, the flagged items with their suggested label."""
    out, doc = image_doctor
    page = (out / "doctor.html").read_text(encoding="utf-8")
    assert "src='data:image/" in page and "http" not in page.replace("http-equiv", "")
    assert "labels disagree: bag, dress" in page
    assert "big-copy.jpg" in page and "dup-" in page
    for entry in doc["label_issues"]["items"]:
        assert Path(entry["item"]).name in page


def test_image_label_errors_balance_unreadable(image_doctor, sick_images):
    _, doc = image_doctor
    flagged = {Path(e["item"]).name for e in doc["label_issues"]["items"]}
    flipped = {f.name for f in sick_images.glob("*/flip-*")}
    assert len(flipped) == len(FLIPS)
    assert len(flagged & flipped) >= 3, (flagged, flipped)
    ranks = [e["rank"] for e in doc["label_issues"]["items"]]
    confidences = [e["self_confidence"] for e in doc["label_issues"]["items"]]
    assert ranks == sorted(ranks) and confidences == sorted(confidences)
    balance = doc["class_balance"]
    assert balance["too_small_to_split"] == ["sandal"] and balance["counts"]["sandal"] == 3
    assert [Path(u["item"]).name for u in doc["unreadable"]] == ["broken.jpg"]


def test_exclude_txt_lists_the_removals_and_train_drops_them(image_doctor, sick_images,
                                                             tmp_path, capsys):
    out, doc = image_doctor
    lines = read_exclude(out / "exclude.txt")
    assert lines == [r["path"] for r in doc["suggested_removals"]]
    names = {Path(line).name for line in lines}
    assert len(names & {"dup-bag-00018.png", "bag-00018.png"}) == 1  # one copy kept
    assert len(names & {"big-copy.jpg", "trouser-00003.png"}) == 1
    assert all(Path(line).is_file() for line in lines)  # suggested, never deleted
    capsys.readouterr()
    run = tmp_path / "run"
    argv = ["train", str(sick_images), "--exclude", str(out / "exclude.txt"),
            "--output", str(run), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    assert f"excluded {len(lines)} of" in capsys.readouterr().out
    cfg = json.loads((run / "config.json").read_text(encoding="utf-8"))
    assert len(cfg["fit"]["excluded"]["removed"]) == len(lines)
    trained = json.dumps(cfg["data"]) + json.dumps(json.loads((run / "splits.json").read_text()))
    for line in lines:
        assert Path(line).name not in trained


def test_exclude_matches_relative_paths_and_reports_unknown_lines(sick_images, tmp_path):
    from modeltailor.data import load_image_folder

    data = load_image_folder(sick_images)
    first = data.items[0]
    listing = sick_images.parent / "list.txt"  # beside the data: relative lines start there
    rel = Path(first).relative_to(sick_images.parent)
    listing.write_text(f"# comment\n\n{rel}\nnot/there.png\n", encoding="utf-8")
    kept, removed, unmatched = exclude_items(data, read_exclude(listing), listing)
    assert removed == [str(first)] and unmatched == ["not/there.png"]
    assert len(kept) == len(data) - 1 and first not in kept.items


@pytest.fixture(scope="module")
def sick_texts(tmp_path_factory) -> Path:
    """tickets_en.csv plus: a row copied with another label (exact, conflicting), a row in
    upper case with doubled spaces (near), and 2 flipped labels."""
    rows = list(csv.DictReader((EXAMPLES / "text" / "tickets_en.csv").open(encoding="utf-8")))
    rows[3]["label"] = "delivery" if rows[3]["label"] != "delivery" else "billing"
    rows[20]["label"] = "billing" if rows[20]["label"] != "billing" else "technical"
    extra = [
        {"text": rows[0]["text"], "label": "technical"},
        {"text": "  " + rows[10]["text"].upper().replace(" ", "  "), "label": rows[10]["label"]},
    ]
    path = tmp_path_factory.mktemp("texts") / "tickets.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, ["text", "label"])
        w.writeheader()
        w.writerows(rows + extra)
    return path


def test_text_duplicates_and_exclude(sick_texts, tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["doctor", str(sick_texts), "--output", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "exact duplicate groups" in printed and "suggested removal" in printed
    doc = json.loads((out / "doctor.json").read_text(encoding="utf-8"))
    exact = doc["exact_duplicates"]
    assert len(exact) == 1 and exact[0]["conflicting_labels"]
    assert {m["item"].rsplit(":line ", 1)[1] for m in exact[0]["items"]} == {"2", "38"}
    near = doc["near_duplicates"]
    assert len(near) == 1
    assert {m["item"].rsplit(":line ", 1)[1] for m in near[0]["items"]} == {"12", "39"}
    assert near[0]["similarity"]["embedding"] >= 0.95
    assert all("text" in m for m in near[0]["items"])
    lines = read_exclude(out / "exclude.txt")
    assert all(":line " in line for line in lines) and len(lines) >= 2
    run = tmp_path / "run"
    argv = ["train", str(sick_texts), "--exclude", str(out / "exclude.txt"),
            "--output", str(run), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    assert f"excluded {len(lines)} of 38 texts" in capsys.readouterr().out


def test_audio_gain_changed_clip_is_a_near_duplicate(tmp_path):
    import soundfile as sf

    dst = tmp_path / "digits"
    shutil.copytree(EXAMPLES / "audio" / "digits", dst)
    clip = dst / "one" / "1_george_10.wav"
    wave, rate = sf.read(clip)
    sf.write(dst / "one" / "1_theo_99.wav", wave * 0.5, rate)  # another "speaker"
    report = doctor(dst, output=tmp_path / "d", group_by="_([a-z]+)_", verbose=False)
    near = [g for g in report.near_duplicates if len(g["items"]) == 2]
    assert any({Path(m["item"]).name for m in g["items"]} == {"1_george_10.wav",
               "1_theo_99.wav"} for g in near)  # fmt: skip
    assert "grouped" in report.leakage["split"]
    assert (tmp_path / "d" / "exclude.txt").is_file()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "nothing-here", "not a folder"),
        (lambda p: _one_class(p), "at least 2 classes"),
        (lambda p: _bad_csv(p), "no column 'text'"),
        (lambda p: _binary_csv(p), "tickets.csv"),
    ],
)
def test_bad_input_is_one_line_as_for_train(tmp_path, capsys, make, message):
    """Doctor stops on bad data with the very line `tailor train` prints, before any work;
    `modeltailor.doctor()` raises the same DataError."""
    path = make(tmp_path)
    said = {}
    for command in ("train", "doctor"):
        assert main([command, str(path), "--output", str(tmp_path / command)]) == 2
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]
        said[command] = lines[0]
    assert said["doctor"] == said["train"]
    with pytest.raises(DataError, match=re.escape(said["train"].removeprefix("error: "))):
        doctor(path, verbose=False)


def _one_class(p: Path) -> Path:
    (p / "data" / "only").mkdir(parents=True)
    src = sorted((example_folder() / "bag").iterdir())[:3]
    for f in src:
        shutil.copy(f, p / "data" / "only" / f.name)
    return p / "data"


def _bad_csv(p: Path) -> Path:
    path = p / "tickets.csv"
    path.write_text("words,category\nhello,a\n", encoding="utf-8")
    return path


def _binary_csv(p: Path) -> Path:
    path = p / "tickets.csv"
    path.write_bytes(b"\xff\xfe\x00\x9c binary, not a table")
    return path


def test_exclude_list_missing_is_one_line(small_dir, tmp_path, capsys):
    argv = ["train", str(small_dir), "--exclude", str(tmp_path / "no.txt"),
            "--output", str(tmp_path / "r")]  # fmt: skip
    assert main(argv) == 2
    assert "no such exclude list" in capsys.readouterr().err


# -- the parts, on synthetic data ----------------------------------------------------------
def test_blocked_search_equals_the_full_matrix():
    rng = np.random.default_rng(0)
    x = normalise(rng.normal(size=(300, 16)))
    x[200] = x[10]  # an identical row
    x[201] = normalise(x[20:21] + 0.05 * rng.normal(size=(1, 16)))[0]
    full = x @ x.T
    want = {(i, j) for i, j in zip(*np.nonzero(np.triu(full, 1) >= 0.9), strict=True)}
    ii, jj, ss = similar_pairs(x, 0.9, block=64)
    assert set(zip(ii.tolist(), jj.tolist(), strict=True)) == want
    assert np.allclose(ss, full[ii, jj], atol=1e-5)
    groups, _ = near_groups([("e", x, 0.9)], [str(i) for i in range(300)])
    assert [10, 200] in groups and [20, 201] in groups


def test_confident_learning_agrees_with_cleanlab():
    """Same probabilities, our numpy confident learning vs cleanlab's find_label_issues
    (default: prune_by_noise_rate) flag the same examples, and recover most injected flips."""
    cleanlab = pytest.importorskip("cleanlab.filter")
    rng = np.random.default_rng(1)
    n, k = 600, 4
    true = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 3.0 * np.eye(k)[true]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    given = true.copy()
    flipped = rng.choice(n, 40, replace=False)
    given[flipped] = (true[flipped] + rng.integers(1, k, 40)) % k
    ours = find_label_issues(given, proba)
    theirs = cleanlab.find_label_issues(given, proba)
    assert np.array_equal(ours, theirs)
    assert ours[flipped].mean() >= 0.6 and ours[flipped].sum() / ours.sum() >= 0.9


def test_train_warns_about_duplicates_across_splits_and_labels(small_dir, tmp_path, capsys):
    """The cheap checks run on every `tailor train`: the same photo under two labels, which
    also lands in two splits, and a class of four photos are reported in the terminal, in
    config.json and in a warnings section of report.html."""
    data = tmp_path / "data"
    shutil.copytree(small_dir, data)
    classes = sorted(d for d in data.iterdir() if d.is_dir())
    photos = sorted(classes[0].iterdir())
    for k, photo in enumerate(photos[:4]):  # the same photos, also filed under another class
        shutil.copy(photo, classes[1] / f"copy-{k}{photo.suffix}")
    copy_classes(example_folder(), data, {"bag": "bag"}, 4)  # too small to learn or judge
    run = tmp_path / "run"
    args = ["train", str(data), "--output", str(run), "--quiet", "--test-fraction", "0.3"]
    assert main([*args, "--val-fraction", "0.3"]) == 0
    checks = json.loads((run / "config.json").read_text())["fit"]["data_checks"]
    assert checks["exact_duplicate_groups"] == 4
    assert checks["duplicates_with_conflicting_labels"] == 4
    tiny = {t["class"]: t["train"] for t in checks["tiny_classes"]}
    assert tiny["bag"] == 2 and "trouser" not in tiny  # trouser: 12 + 4 copies, 6 in train
    err = " ".join(capsys.readouterr().err.split())
    assert "carry different labels" in err and "'bag' has" in err
    if checks["duplicates_across_splits"]:
        assert "appear in more than one split" in err
    page = html.unescape((run / "report.html").read_text(encoding="utf-8"))
    section = page.split('<section id="data-checks">')[1].split("</section>")[0]
    assert section.count('class="note warn"') == len(checks["warnings"])
    assert all(w in " ".join(section.split()) for w in checks["warnings"])


def test_text_fingerprint_sees_through_case_spacing_and_a_signature():
    """A long text copied in upper case, with doubled spaces and a signature line, keeps its
    word-bigram fingerprint above the text threshold; distinct texts stay far below it."""
    from modeltailor.modalities import get_modality

    text = get_modality("text")
    rows = list(csv.DictReader((EXAMPLES / "text" / "tickets_en.csv").open(encoding="utf-8")))
    long = " ".join(r["text"] for r in rows[:8])
    copy = long.upper().replace(" ", "  ") + "\n\n-- \nSent from my phone. Please excuse typos."
    fp = [text.fingerprint(t) for t in (long, copy, rows[8]["text"], rows[9]["text"])]
    assert float(fp[0] @ fp[1]) >= text.fingerprint_threshold
    assert float(fp[2] @ fp[3]) < 0.5 and float(fp[0] @ fp[2]) < 0.5
    ja, ja_copy = (
        "返品の手続きを教えてください。注文番号は1234です。",
        "返品の手続きを 教えてください。注文番号は１２３４です。",
    )
    assert float(text.fingerprint(ja) @ text.fingerprint(ja_copy)) >= text.fingerprint_threshold
