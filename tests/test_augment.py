"""`--augment none|light|default|strong`: each level changes the training inputs as each
modality documents it (`Modality.augmentation`), and `none` not at all."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from modeltailor import load_text
from modeltailor.backbones import get_backbone
from modeltailor.backbones.audio import spec_masks
from modeltailor.backbones.catalogue import AudioPreprocessing
from modeltailor.cli import main
from modeltailor.data import load_image_folder
from modeltailor.data.transforms import eval_transform, train_transform
from modeltailor.errors import ModelTailorError
from modeltailor.modalities import get_modality, list_modalities
from modeltailor.modalities.base import AUGMENT_LEVELS, augment_level
from modeltailor.training.inputs import AUDIO_AUGMENT, AudioClips, ImagePipeline, clip_windows

DIGITS = Path(__file__).parents[1] / "src" / "modeltailor" / "examples" / "audio" / "digits"
RED, BLUE = (200, 30, 30), (30, 30, 200)
DRAWS = 8


def test_every_modality_documents_every_level():
    for name in ("image", "text", "audio"):
        modality = get_modality(name)
        assert list(modality.augmentation) == list(AUGMENT_LEVELS), name
        assert "augment" in modality.options


def test_help_lists_what_each_level_does(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for modality in list_modalities():
        for level, does in modality.augmentation.items():
            assert f"{modality.noun} {level}: {' '.join(does.split())}" in out


def test_levels_and_the_old_boolean():
    assert [augment_level(v) for v in (True, None, False, "strong")] == [
        "default",
        "default",
        "none",
        "strong",
    ]
    with pytest.raises(ModelTailorError, match="one of none, light, default, strong"):
        augment_level("heavy")


# -- images ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_colour_folder(tmp_path_factory) -> Path:
    """Red left half, blue right half: crops and flips keep exactly those two colours."""
    root = tmp_path_factory.mktemp("two-colour")
    for label in ("a", "b"):
        (root / label).mkdir()
        for k in range(2):
            pixels = np.zeros((160, 200, 3), np.uint8)
            pixels[:, :100], pixels[:, 100:] = RED, BLUE
            Image.fromarray(pixels).save(root / label / f"{k}.png")
    return root


@pytest.fixture(scope="module")
def image_pre():
    return get_backbone("efficientnet_lite0").inference_preprocessing()


def _pure_share(x: torch.Tensor, pre) -> float:
    """Share of pixels exactly red or exactly blue (after normalisation)."""
    mean, std = torch.tensor(pre.mean)[:, None, None], torch.tensor(pre.std)[:, None, None]
    share = 0.0
    for colour in (RED, BLUE):
        ref = (torch.tensor(colour, dtype=torch.float32)[:, None, None] / 255 - mean) / std
        share += float(((x - ref).abs() < 1e-5).all(0).float().mean())
    return share


def _zeroed_share(x: torch.Tensor) -> float:
    """Share of pixels set to 0 in every channel (an erased patch)."""
    return float((x == 0).all(0).float().mean())


def test_image_none_is_the_inference_view_every_epoch(two_colour_folder, image_pre):
    data = load_image_folder(two_colour_folder)
    train_loader, _ = ImagePipeline(image_pre).training_loaders(data, data, 4, 0, 0, "none")
    want = torch.stack([eval_transform(image_pre)(Image.open(p)) for p in data.items])
    for _epoch in range(2):
        x, _ = next(iter(train_loader))
        assert len(x) == len(want)
        for row in x:  # shuffled: match rows by content
            assert any(torch.equal(row, w) for w in want)


def test_image_levels_change_what_they_document(two_colour_folder, image_pre):
    image = Image.open(next(two_colour_folder.rglob("*.png"))).convert("RGB")
    torch.manual_seed(0)
    draws = {
        level: [train_transform(image_pre, level)(image) for _ in range(40)]
        for level in AUGMENT_LEVELS
    }
    reference = eval_transform(image_pre)(image)
    assert all(torch.equal(x, reference) for x in draws["none"])
    # light: crop and flip only, so the colours stay exact; the views differ
    assert all(_pure_share(x, image_pre) > 0.9 for x in draws["light"])
    assert len({x.sum().item() for x in draws["light"][:DRAWS]}) > 1
    # default: colour jitter moves the colours on (nearly) every draw
    assert sum(_pure_share(x, image_pre) < 0.5 for x in draws["default"]) >= 36
    # strong: a random erased patch on about a quarter of the images; the milder levels never
    assert sum(_zeroed_share(x) > 0.005 for x in draws["strong"]) >= 3
    milder = [x for level in ("light", "default") for x in draws[level]]
    assert not any(_zeroed_share(x) > 0.005 for x in milder)


# -- text --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def text_setup(tmp_path_factory):
    """Two long texts (several windows each) and two short ones, and MiniLM's pipeline."""
    path = tmp_path_factory.mktemp("texts") / "long.csv"
    long = " ".join(f"sentence number {k} talks about invoices and refunds." for k in range(200))
    rows = ["text,label", f'"{long}",billing', f'"{long} again",billing', "app crashes,bug"]
    rows.append("the app freezes,bug")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    data = load_text(path)
    net = get_backbone("minilm-l6").build(2)
    return data, net, net.input_pipeline()


def _train_set(text_setup, level):
    data, _, pipeline = text_setup
    loader, _ = pipeline.training_loaders(data, data, 4, 0, 0, level)
    return loader.dataset


def test_text_none_always_trains_on_the_first_window(text_setup):
    data, net, _ = text_setup
    windows = net.encode([item.text for item in data.items])
    assert len(windows[0]) > 2
    dataset = _train_set(text_setup, "none")
    for i in range(len(data)):
        assert all(dataset[i][0] == windows[i][0] for _ in range(DRAWS))


def test_text_light_and_default_draw_whole_windows(text_setup):
    data, net, _ = text_setup
    windows = net.encode([item.text for item in data.items])
    for level in ("light", "default"):
        dataset = _train_set(text_setup, level)
        torch.manual_seed(0)
        drawn = [dataset[0][0] for _ in range(30)]
        assert all(ids in windows[0] for ids in drawn)  # whole windows, tokens as written
        assert len({tuple(ids) for ids in drawn}) > 1
        assert dataset[2][0] == windows[2][0]  # a one-window text is unchanged


def test_text_strong_drops_a_tenth_of_the_word_pieces(text_setup):
    data, net, _ = text_setup
    windows = net.encode([item.text for item in data.items])
    dataset = _train_set(text_setup, "strong")
    torch.manual_seed(0)
    kept = []
    for _ in range(30):
        ids = dataset[0][0]
        source = next(w for w in windows[0] if _is_subsequence(ids, w) and len(w) >= len(ids))
        assert ids[0] == source[0] and ids[-1] == source[-1]  # [CLS] ... [SEP] kept
        kept.append((len(ids) - 2) / (len(source) - 2))
    assert 0.85 < float(np.mean(kept)) < 0.95  # about 10% dropped


def _is_subsequence(short: list[int], long: list[int]) -> bool:
    it = iter(long)
    return all(token in it for token in short)


# -- audio -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip():
    path = sorted(DIGITS.rglob("*.wav"))[0]
    wave, rate = sf.read(path, dtype="float32")
    assert rate == 8000 or rate == 16000
    return wave


def _clips(wave: np.ndarray, level: str, window: float) -> AudioClips:
    pre = AudioPreprocessing(sample_rate=8000, window_seconds=window)
    return AudioClips([wave], [0], pre, AUDIO_AUGMENT[level])


def test_audio_none_is_the_first_window_as_recorded(clip):
    long = np.concatenate([clip] * 8)
    clips = _clips(long, "none", window=0.5)
    first = clip_windows(long, clips.pre)[0]
    assert all(np.array_equal(clips[0][0].numpy(), first) for _ in range(DRAWS))


def test_audio_light_shifts_and_scales_only(clip):
    clips = _clips(clip, "light", window=2.0)
    torch.manual_seed(0)
    offsets = set()
    for _ in range(20):
        row = clips[0][0].numpy()
        real = np.flatnonzero(row[1])
        assert len(real) == len(clip)  # no speed change
        offset = int(real[0])
        assert offset <= 0.2 * clips.pre.window_samples
        offsets.add(offset)
        ratio = row[0, real] / np.where(clip == 0, np.nan, clip)
        gain = np.nanmedian(ratio)
        assert np.nanmax(np.abs(ratio - gain)) < 1e-4  # one gain, no noise
        assert 10 ** (-3 / 20) - 1e-6 <= gain <= 10 ** (3 / 20) + 1e-6
    assert len(offsets) > 1


def test_audio_default_and_strong_change_speed_by_their_ranges(clip):
    torch.manual_seed(0)
    changes = {}
    for level in ("default", "strong"):
        clips = _clips(clip, level, window=2.0)
        lengths = [int(clips[0][0][1].sum()) for _ in range(60)]
        changes[level] = [len(clip) / n - 1 for n in lengths]
    assert max(abs(c) for c in changes["default"]) <= 0.1 + 1e-3
    assert sum(abs(c) > 0.01 for c in changes["default"]) >= 50
    assert max(abs(c) for c in changes["strong"]) > 0.1


def test_spec_augment_masks_per_level():
    assert [spec_masks(level) for level in AUGMENT_LEVELS] == [(0, 0), (0, 0), (2, 2), (3, 3)]


# -- the command line and the run folder ------------------------------------------------------


def test_cli_levels_are_recorded_in_config_and_the_model_card(small_dir, tmp_path):
    common = ["--quiet", "--epochs", "1", "--batch-size", "8", "--test-fraction", "0.25"]
    runs = {}
    for name, flags in (
        ("none", ["--strategy", "fine-tune", "--no-augment"]),
        ("strong", ["--strategy", "fine-tune", "--augment", "strong"]),
        ("probe", ["--augment", "light"]),
    ):
        runs[name] = tmp_path / name
        assert main(["train", str(small_dir), "--output", str(runs[name]), *common, *flags]) == 0
    image = get_modality("image").augmentation
    for name, level, applied in (("none", "none", False), ("strong", "strong", True)):
        config = json.loads((runs[name] / "config.json").read_text())
        assert config["settings"]["augment"] == level == config["params"]["augment"]
        assert config["fit"]["augmentation"] == {
            "level": level,
            "does": image[level],
            "applied": applied,
        }
        card = (runs[name] / "README.md").read_text(encoding="utf-8")
        assert f"{level}: {image[level]}" in card
    probe = json.loads((runs["probe"] / "config.json").read_text())["fit"]["augmentation"]
    assert probe["applied"] is False  # a linear probe embeds each image once
    assert "no layers were trained" in (runs["probe"] / "README.md").read_text(encoding="utf-8")
