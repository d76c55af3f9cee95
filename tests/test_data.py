"""Data in: formats, colour modes, EXIF, bad files, validation, splits, Japanese names."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from modeltailor import DataError, load_image_folder
from modeltailor.data import images as images_module
from modeltailor.data import open_image, stratified_split


def _photo(w: int = 40, h: int = 30) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize(
    "name,mode,fmt",
    [
        ("a.jpg", "RGB", "JPEG"),
        ("b.png", "RGBA", "PNG"),
        ("c.gif", "P", "GIF"),
        ("d.webp", "RGB", "WEBP"),
        ("e.bmp", "L", "BMP"),
        ("f.tiff", "CMYK", "TIFF"),
        ("g.png", "LA", "PNG"),
        ("h.png", "I;16", "PNG"),
    ],
)
def test_every_format_and_mode_becomes_rgb(tmp_path, name, mode, fmt):
    path = tmp_path / name
    img = _photo()
    img = img.convert("L").convert(mode) if mode == "I;16" else img.convert(mode)
    img.save(path, format=fmt)
    out = open_image(path)
    assert out.mode == "RGB" and out.size == (40, 30)


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    _photo(40, 30).save(path, exif=exif)
    assert open_image(path).size == (30, 40)


def test_transparent_pixels_become_white(tmp_path):
    path = tmp_path / "t.png"
    Image.new("RGBA", (4, 4), (255, 0, 0, 0)).save(path)
    assert open_image(path).getpixel((0, 0)) == (255, 255, 255)


def _class_tree(root, counts: dict[str, int]):
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            _photo().save(root / cls / f"{i}.png")
    return root


def test_bad_files_are_reported_by_path_and_skipped(tmp_path):
    root = _class_tree(tmp_path, {"cats": 3, "dogs": 3})
    (root / "cats" / "notes.txt").write_text("not an image")
    good = root / "dogs" / "0.png"
    truncated = root / "dogs" / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    data = load_image_folder(root)
    paths = {s.path: s.reason for s in data.skipped}
    assert str(root / "cats" / "notes.txt") in paths
    # a truncated body passes the header check and is caught when decoded
    verified = data.verify()
    assert str(truncated) in {s.path for s in verified.skipped}
    assert len(verified) == 6


def test_decompression_bomb_guard(tmp_path, monkeypatch):
    root = _class_tree(tmp_path, {"a": 2, "b": 2})
    Image.new("RGB", (200, 200)).save(root / "a" / "huge.png")
    monkeypatch.setattr(images_module, "MAX_PIXELS", 100 * 100)
    data = load_image_folder(root)
    reasons = [s.reason for s in data.skipped]
    assert any("decompression-bomb" in r for r in reasons)
    with pytest.raises(images_module.ImageReadError, match="decompression-bomb"):
        open_image(root / "a" / "huge.png")


@pytest.mark.parametrize(
    "counts,message",
    [
        ({"only": 5}, "at least 2 classes"),
        ({"a": 5, "b": 1}, "'b' has 1"),
        ({"a": 0, "b": 0}, "no usable files"),
    ],
)
def test_untrainable_data_stops_before_compute(tmp_path, counts, message):
    data = load_image_folder(_class_tree(tmp_path, counts))
    with pytest.raises(DataError, match=message) as exc:
        data.validate()
    assert str(tmp_path) in str(exc.value) and "\n" not in str(exc.value)


def test_images_without_class_folders_say_so(tmp_path):
    _photo().save(tmp_path / "x.png")
    with pytest.raises(DataError, match="own sub-folder"):
        load_image_folder(tmp_path)


def test_split_is_stratified_seeded_and_disjoint(fashion_dir):
    data = load_image_folder(fashion_dir)
    train, val, test = data.split(0.8, 0.1, seed=3)
    again = data.split(0.8, 0.1, seed=3)
    assert [len(train), len(val), len(test)] == [320, 40, 40]
    assert set(map(str, train.items)).isdisjoint(map(str, test.items))
    assert all(n == 4 for n in test.class_counts().values())
    assert test.items == again[2].items
    assert data.split(0.8, 0.1, seed=4)[2].items != test.items


def test_small_classes_keep_a_training_example():
    parts = stratified_split([0, 0, 1, 1, 1, 1, 1, 1, 1, 1], (0.8, 0.1, 0.1), seed=0)
    train_labels = {[0, 0, 1, 1, 1, 1, 1, 1, 1, 1][i] for i in parts[0]}
    assert train_labels == {0, 1}


def test_predefined_train_val_test_folders_are_used_as_given(tmp_path):
    for split, n in (("train", 4), ("val", 2), ("test", 2)):
        _class_tree(tmp_path / split, {"ants": n, "bees": n})
    data = load_image_folder(tmp_path)
    train, val, test = data.split(0.5, 0.25, seed=0)
    assert (len(train), len(val), len(test)) == (8, 4, 4)
    assert train.class_names == ["ants", "bees"]


def test_japanese_class_and_file_names(tmp_path):
    for cls in ("犬", "猫"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            _photo().save(tmp_path / cls / f"写真{i}.png")
    data = load_image_folder(tmp_path)
    data.validate()
    assert data.class_names == ["犬", "猫"] and len(data.verify()) == 4


def _write_clip(path) -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.sin(np.linspace(0, 200, 4000)).astype(np.float32), 8000)


def _write_image(path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _photo().save(path)


@pytest.mark.parametrize(
    "write,suffix,noun",
    [(_write_image, ".png", "images"), (_write_clip, ".wav", "clips")],
)
def test_folder_readers_share_layout_rules_and_messages(tmp_path, write, suffix, noun):
    """Images and audio read folders through one reader (data/folders.py): same layouts,
    same errors, each naming the folder and what its files are."""
    from modeltailor import load_audio_folder

    load = load_image_folder if noun == "images" else load_audio_folder
    with pytest.raises(DataError, match=f"{tmp_path / 'missing'}: not a folder .*{noun}"):
        load(tmp_path / "missing")
    loose = tmp_path / "loose"
    write(loose / f"x{suffix}")
    with pytest.raises(DataError, match=f"{noun} lie directly in it"):
        load(loose)
    tree = tmp_path / "tree"
    for split, n in (("train", 3), ("validation", 1)):
        for cls in ("猫", "dog"):
            for i in range(n):
                write(tree / split / cls / f"{i}{suffix}")
    (tree / "train" / "dog" / f"broken{suffix}").write_bytes(b"not really")
    data = load(tree)
    train, val, test = data.split(0.8, 0.1, 0.1, seed=0)
    assert (len(train), len(val), test) == (6, 2, None)
    assert [s.path for s in data.skipped] == [str(tree / "train" / "dog" / f"broken{suffix}")]
    assert data.class_names == ["dog", "猫"]
    with pytest.raises(DataError, match=r"folders \['猫'\] are not classes of this model"):
        load(tree / "train", class_names=["dog", "cat"])


def _thin_png(path, size=(1, 100_000)):
    """A 1x100,000 PNG: a few hundred bytes on disk, 25.6 GB once resized for a model."""
    Image.new("L", size).save(path)
    return path


def test_too_elongated_images_are_refused_before_decoding(tmp_path):
    """One rule (images.MAX_ASPECT) in the readers every entry point uses: training skips and
    reports the file, predict/evaluate get an ImageReadError per file."""
    root = _class_tree(tmp_path, {"a": 2, "b": 2})
    thin = _thin_png(root / "a" / "thin.png")
    assert thin.stat().st_size < 2000
    _thin_png(root / "b" / "wide.png", (21, 1))  # just over 20:1, lying on its side
    Image.new("RGB", (20, 1)).save(root / "b" / "edge.png")  # exactly 20:1 is fine
    with pytest.raises(images_module.ImageReadError, match=r"1x100000 pixels: more than 20:1"):
        open_image(thin)
    data = load_image_folder(root)
    reasons = {s.path: s.reason for s in data.skipped}
    assert set(reasons) == {str(thin), str(root / "b" / "wide.png")}
    assert "too elongated" in reasons[str(thin)] and "crop it first" in reasons[str(thin)]
    assert len(data.verify()) == 5
    assert images_module.MAX_ASPECT == 20


def test_thin_image_on_the_predict_path_fails_within_a_memory_cap(tmp_path):
    """Decode + eval transform (what `tailor predict` runs per file) in a child process whose
    address space is capped at 4 GB: before the guard it tried to allocate 25.6 GB."""
    import os
    import subprocess
    import sys

    thin = _thin_png(tmp_path / "thin.png")
    code = f"""
import resource
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
from modeltailor.backbones.catalogue import Preprocessing
from modeltailor.data.transforms import eval_transform
from modeltailor.training.loaders import ImageTensors
pre = Preprocessing(224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
x, i, error = ImageTensors([{str(thin)!r}], None, eval_transform(pre), pre, tolerant=True)[0]
print("ERROR:", error)
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ERROR: 1x100000 pixels: more than 20:1 is too elongated" in done.stdout


@pytest.mark.parametrize(
    "write,suffix", [(_write_image, ".png"), (_write_clip, ".wav")], ids=["images", "audio"]
)
def test_links_back_into_the_dataset_are_not_followed(tmp_path, write, suffix):
    """`self -> .` at the top once became a class "self" holding every file again; links that
    lead back inside the dataset folder (or to a folder holding it) are skipped and reported,
    links to folders elsewhere are still read."""
    from modeltailor import load_audio_folder

    load = load_image_folder if suffix == ".png" else load_audio_folder
    root = tmp_path / "data"
    for cls in ("a", "b"):
        for i in range(2):
            write(root / cls / f"{i}{suffix}")
    write(tmp_path / "elsewhere" / f"extra{suffix}")
    (root / "self").symlink_to(".")  # the loop of the issue
    (root / "a" / "up").symlink_to("../..")  # a folder holding the dataset
    (root / "b" / "other_class").symlink_to("../a")  # inside: files read twice
    (root / "b" / f"dup{suffix}").symlink_to(f"../a/0{suffix}")
    (root / "b" / "more").symlink_to(tmp_path / "elsewhere")  # outside: read
    (root / "b" / "broken").symlink_to(tmp_path / "gone")
    data = load(root)
    assert data.class_names == ["a", "b"]
    assert sorted(str(p.relative_to(root)) for p in data.items) == [
        f"a/0{suffix}",
        f"a/1{suffix}",
        f"b/0{suffix}",
        f"b/1{suffix}",
        f"b/more/extra{suffix}",
    ]
    reasons = {s.path: s.reason for s in data.skipped}
    assert set(reasons) == {
        str(root / name) for name in ("self", "a/up", "b/other_class", f"b/dup{suffix}", "b/broken")
    }
    assert "leads back to the dataset folder or above it" in reasons[str(root / "self")]
    assert "not followed" in reasons[str(root / "a" / "up")]
    assert "inside the dataset folder" in reasons[str(root / "b" / "other_class")]
    assert "broken link" in reasons[str(root / "b" / "broken")]
    # train/ val/ test/ layouts: a val folder that is a link to train would leak
    split = tmp_path / "split"
    for cls in ("a", "b"):
        for i in range(2):
            write(split / "train" / cls / f"{i}{suffix}")
    (split / "val").symlink_to("train")
    data = load(split)
    assert data.split()[1] is None and [s.path for s in data.skipped] == [str(split / "val")]
