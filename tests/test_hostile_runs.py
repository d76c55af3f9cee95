"""Hostile inputs around run folders (issue 22): damaged files, unreadable checkpoints,
`--resume` into somebody else's run, too little data to evaluate, Excel workbooks. Each says
what is wrong in one line and keeps the user's files as they were."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest

from modeltailor.cli import main
from tests.conftest import copy_classes


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert err.startswith("error:"), err
    return " ".join(err.split())


@pytest.fixture
def damaged(probe_run, tmp_path) -> Path:
    return Path(shutil.copytree(probe_run, tmp_path / "damaged"))


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("config.json", b'{"format_version": 1, "modal', "config.json: damaged, not readable JSON"),
        ("config.json", b"", "config.json: damaged, not readable JSON"),
        ("config.json", b'{"format_version": 1}', "config.json: damaged, lacks"),
        ("labels.json", b'["only-one"]', "labels.json: 1 class names for a model with"),
        ("labels.json", b"{}", "labels.json: damaged, not a list of class names"),
        ("model.safetensors", b"\x00\x01", "model.safetensors: damaged, not a readable"),
    ],
)
def test_a_damaged_run_file_is_named_in_one_line(damaged, fashion_dir, capsys, name, content, says):
    path = damaged / name
    if name == "model.safetensors":
        content = path.read_bytes()[: len(path.read_bytes()) // 2]  # truncated
    path.write_bytes(content)
    image = next((fashion_dir / "bag").iterdir())
    assert main(["predict", str(damaged), str(image)]) == 2
    assert says in _one_line_error(capsys)


def test_an_unpicklable_checkpoint_is_refused_in_one_line(small_dir, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(pickle.dumps(Path("x")))  # not weights
    code = main(
        ["train", str(small_dir), "--strategy", "fine-tune", "--output", str(run), "--resume",
         "--quiet", "--epochs", "1"]
    )  # fmt: skip
    assert code == 2
    message = _one_line_error(capsys)
    assert "last.ckpt: cannot resume from this checkpoint" in message


def test_resume_into_a_different_run_is_refused_and_the_run_kept(
    fashion_dir, small_dir, tmp_path, capsys
):
    other = copy_classes(fashion_dir, tmp_path / "other", {"鞄": "bag", "コート": "coat"}, 12)
    run = tmp_path / "run"
    assert main(["train", str(other), "--output", str(run), "--quiet"]) == 0
    before = {f.name: f.read_bytes() for f in run.iterdir() if f.is_file()}
    capsys.readouterr()
    code = main(["train", str(small_dir), "--output", str(run), "--resume", "--quiet"])
    assert code == 2
    message = _one_line_error(capsys)
    assert "--resume would continue a different run" in message
    assert "classes: コート, 鞄 there, sneaker, trouser now" in message
    assert {f.name: f.read_bytes() for f in run.iterdir() if f.is_file()} == before


def test_too_few_examples_to_evaluate_says_so(fashion_dir, tmp_path, capsys):
    tiny = copy_classes(fashion_dir, tmp_path / "tiny", {"bag": "bag", "coat": "coat"}, 2)
    run = tmp_path / "run"
    assert main(["train", str(tiny), "--output", str(run), "--quiet"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "warning: nothing was evaluated" in err
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["test"] is None and metrics["validation"] is None
    assert metrics["note"].startswith("nothing was evaluated")


def test_an_excel_workbook_trains_like_a_csv(tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    from modeltailor.data.text import load_text

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["text", "label"])
    for i in range(6):
        sheet.append([f"配送が遅れています {i}", "配送"])
        sheet.append([f"the screen is cracked {i}", "品質"])
    sheet.append([None, None])  # a blank row is no example
    sheet.append(["no label here", "NaN"])
    path = tmp_path / "問い合わせ.xlsx"
    book.save(path)
    data = load_text(path)
    assert data.class_names == ["品質", "配送"] and len(data) == 12
    assert [s.path for s in data.skipped] == [f"{path} (sheet Sheet):line 15"]
    run = tmp_path / "run"
    assert main(["train", str(path), "--strategy", "baseline", "--output", str(run)]) == 0


def test_an_old_excel_file_gets_the_hint(tmp_path, capsys):
    path = tmp_path / "data.xls"
    path.write_bytes(b"\xd0\xcf\x11\xe0 not really")
    assert main(["train", str(path)]) == 2
    assert "save it from Excel as .xlsx, or as CSV UTF-8" in _one_line_error(capsys)


def test_a_huge_text_is_read_as_at_most_max_windows_spread_over_it(tmp_path, capsys):
    from modeltailor.backbones import get_backbone
    from modeltailor.backbones.text import spread
    from modeltailor.modalities.text import TextPreprocessing

    assert spread([[i] for i in range(10)], 4) == [[0], [3], [6], [9]]  # first and last kept
    encoder = get_backbone("minilm-l6").build(0)
    limit = encoder.pre.max_windows
    huge = " ".join(f"word{i % 50} is here" for i in range(9000))
    capped, whole = encoder.encode([huge]), encoder.encode([huge], capped=False)
    assert len(whole[0]) > limit and len(capped[0]) == limit
    assert capped[0][0] == whole[0][0] and capped[0][-1] == whole[0][-1]
    # Runs saved before the cap read back without one, so they predict as they were trained.
    assert TextPreprocessing.from_dict({"max_length": 256, "modality": "text"}).max_windows is None

    rows = ["text,label"] + [f"short note {i},a" for i in range(6)]
    rows += [f"another line {i},b" for i in range(5)] + [f"{huge},b"]
    data = tmp_path / "notes.csv"
    data.write_text("\n".join(rows), encoding="utf-8")
    run = tmp_path / "run"
    code = main(["train", str(data), "--backbone", "minilm-l6", "--output", str(run),
                 "--quiet", "--val-fraction", "0", "--test-fraction", "0"])  # fmt: skip
    assert code == 0
    assert f"longer than {limit} windows" in " ".join(capsys.readouterr().err.split())
    cfg = json.loads((run / "config.json").read_text(encoding="utf-8"))
    assert cfg["fit"]["long_texts"]["training_texts_over_max_windows"] == 1
    assert cfg["preprocessing"]["max_windows"] == limit
