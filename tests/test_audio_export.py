"""Audio runs ship as a graph of 16-kHz samples, the log-mel front end inside (issue 18).

The decisive check reads nothing but the export folder: soundfile on 16-kHz files, the window
rule as preprocessing.json states it (written again here, independently of clip_windows),
onnxruntime on model.onnx: the probabilities must be `predict_proba`'s.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import soundfile as sf
import torch

from modeltailor import AudioClassifier, load_audio_folder, load_classifier
from modeltailor.backbones.audio import LogMel
from modeltailor.cli import main
from modeltailor.data.audio import decode_audio
from modeltailor.export import export_onnx
from modeltailor.export.audio import RealPowerMel
from modeltailor.export.base import ExportError

DIGITS = Path(__file__).parents[1] / "src" / "modeltailor" / "examples" / "audio" / "digits"
SPEAKER = r"_([a-z]+)_"


@pytest.fixture(scope="module")
def digits_split():
    data = load_audio_folder(DIGITS, group_by=SPEAKER)
    return data.split(0.7, 0.15, 0.15, seed=0)


@pytest.fixture(scope="module")
def whisper_export(tmp_path_factory, digits_split) -> tuple[Path, AudioClassifier]:
    """A Whisper tiny.en linear probe on the digits, exported with int8."""
    train, val, _ = digits_split
    run = tmp_path_factory.mktemp("audio-export") / "whisper"
    AudioClassifier("whisper-tiny-en-encoder", verbose=False).fit(train, val).save(run)
    export_onnx(run, quantize="int8")
    return run, load_classifier(run)


def _waves() -> list[np.ndarray]:
    return [decode_audio(p, 16000) for p in sorted((DIGITS / "two").glob("*.wav"))[:6]]


def _fin(power: torch.Tensor) -> torch.Tensor:
    log = power.clamp_min(1e-10).log10()
    return (torch.maximum(log, log.amax(dim=(-2, -1), keepdim=True) - 8.0) + 4.0) / 4.0


def test_real_valued_front_end_equals_logmel():
    """Conv framing + cos/sin DFT matrices + mel as a 1x1 conv give LogMel's numbers."""
    waves = _waves()
    x = torch.zeros(len(waves) + 2, 16000)
    for i, w in enumerate(waves):
        x[i, : min(16000, len(w))] = torch.from_numpy(w[:16000])
    x[-2], x[-1] = x[0] * 1e-3, x[1] * 4.0
    for n_mels in (80, 64):
        logmel = LogMel(n_mels)
        with torch.inference_mode():
            want, got = logmel(x), _fin(RealPowerMel(logmel)(x))
        assert got.shape == want.shape
        assert (got - want).abs().max() <= 1e-4, n_mels


def _app_windows(wave: np.ndarray, doc: dict) -> tuple[np.ndarray, np.ndarray]:
    """preprocessing.json's window rule, as an app would write it."""
    size, step = doc["window_samples"], doc["window_step_samples"]
    if len(wave) <= size:
        starts = [0]
    else:
        starts = list(range(0, len(wave) - size + 1, step))
        if starts[-1] + size < len(wave):
            starts.append(len(wave) - size)
    samples = np.zeros((len(starts), size), np.float32)
    mask = np.zeros((len(starts), size), np.float32)
    for row, start in enumerate(starts):
        part = wave[start : start + size]
        samples[row, : len(part)] = part
        mask[row, : len(part)] = 1.0
    return samples, mask


def _app_proba(export: Path, files: list[Path], model: str = "model.onnx") -> np.ndarray:
    doc = json.loads((export / "preprocessing.json").read_text(encoding="utf-8"))
    session = ort.InferenceSession(str(export / model), providers=["CPUExecutionProvider"])
    out = []
    for f in files:
        wave, rate = sf.read(f, dtype="float32", always_2d=True)
        assert rate == doc["sample_rate"]
        samples, mask = _app_windows(wave.mean(1), doc)
        logits = session.run(None, {"samples": samples, "mask": mask})[0].mean(0)
        e = np.exp(logits - logits.max())
        out.append(e / e.sum())
    return np.stack(out)


def _clips(tmp_path: Path, size: int) -> list[Path]:
    """16-kHz files: 0.3 s, exactly one window, over 3 windows, a plain clip, and a stereo one
    whose channels differ (mono is their mean)."""
    waves = _waves()
    joined = np.concatenate(waves * 4)
    clips = {
        "short.wav": waves[0][:4800],
        "window.wav": np.resize(waves[1], size),
        "long.wav": joined[: 3 * size + size // 4],
        "plain.wav": waves[2],
        "stereo.wav": np.stack([waves[4][:8000], 0.3 * waves[5][:8000]], 1),
    }
    for name, wave in clips.items():
        sf.write(tmp_path / name, wave.astype(np.float32), 16000, subtype="FLOAT")
    return [tmp_path / name for name in clips]


def test_the_export_folder_alone_gives_predict_proba(whisper_export, tmp_path):
    run, clf = whisper_export
    export = run / "export"
    doc = json.loads((export / "preprocessing.json").read_text(encoding="utf-8"))
    files = _clips(tmp_path, doc["window_samples"])
    long, _ = sf.read(files[2], dtype="float32")
    assert len(_app_windows(long, doc)[0]) >= 3
    want = clf.predict_proba(files)
    assert np.allclose(_app_proba(export, files), want, atol=1e-4)
    int8 = _app_proba(export, files, "model.int8.onnx")
    assert np.abs(int8 - want).max() < 0.5  # int8 is judged by accuracy, not parity


def test_a_calibrated_fine_tune_run_exports_with_its_temperature(digits_split, tmp_path):
    """The default backbone of trained strategies; the temperature lives in the graph."""
    train, val, _ = digits_split
    clf = AudioClassifier(strategy="fine-tune", epochs=1, verbose=False).fit(train, val)
    clf.calibrate()
    assert clf.spec_.name == "whisper-tiny-en-encoder" and clf.temperature_ != 1.0
    run = clf.save(tmp_path / "run").path
    manifest = export_onnx(run)
    assert manifest["calibration"]["in_graph"]
    assert manifest["onnx"]["parity_vs_pytorch"]["max_abs_logit_diff"] <= 1e-3
    files = _clips(tmp_path, clf.preprocessing_.window_samples)
    assert np.allclose(_app_proba(run / "export", files), clf.predict_proba(files), atol=1e-4)


@pytest.mark.slow
def test_a_lora_run_exports_with_int8(digits_split, tmp_path):
    train, val, _ = digits_split
    clf = AudioClassifier(strategy="lora", epochs=1, verbose=False).fit(train, val)
    run = clf.save(tmp_path / "run").path
    manifest = export_onnx(run, quantize="int8")
    assert manifest["onnx"]["parity_vs_pytorch"]["max_abs_logit_diff"] <= 1e-3
    assert manifest["int8"]["accuracy_drop"] <= 0.01
    files = _clips(tmp_path, clf.preprocessing_.window_samples)
    assert np.allclose(_app_proba(run / "export", files), clf.predict_proba(files), atol=1e-4)


def test_a_batch_of_a_quiet_and_a_loud_clip_equals_each_alone(whisper_export):
    run, _ = whisper_export
    doc = json.loads((run / "export" / "preprocessing.json").read_text(encoding="utf-8"))
    session = ort.InferenceSession(str(run / "export" / "model.onnx"))
    wave = _waves()[3]
    rows = [_app_windows(wave * gain, doc) for gain in (1e-3, 4.0)]
    batch = session.run(
        None, {"samples": np.concatenate([r[0] for r in rows]),
               "mask": np.concatenate([r[1] for r in rows])},
    )[0]  # fmt: skip
    alone = np.concatenate([session.run(None, {"samples": s, "mask": m})[0] for s, m in rows])
    assert np.allclose(batch, alone, atol=1e-5)


def test_manifest_records_parity_and_the_int8_accuracy_rule(whisper_export):
    run, clf = whisper_export
    export = run / "export"
    manifest = json.loads((export / "manifest.json").read_text(encoding="utf-8"))
    doc = json.loads((export / "preprocessing.json").read_text(encoding="utf-8"))
    check = manifest["onnx"]["parity_vs_pytorch"]
    assert check["max_abs_logit_diff"] <= 1e-3 and check["top1_agreement"] == 1.0
    int8 = manifest["int8"]
    assert int8["accuracy_drop"] <= 0.01 and int8["size_ratio"] <= 0.30  # issue 18's target
    # the stem convolutions are stored int8, the front end's DFT and mel constants stay fp32
    weights = {
        t.name: t.data_type for t in onnx.load(str(export / "model.int8.onnx")).graph.initializer
    }
    assert weights["model.net.encoder.conv2.weight_int8"] == onnx.TensorProto.INT8
    front = [dtype for name, dtype in weights.items() if name.startswith("model.net.frontend.")]
    assert front and set(front) == {onnx.TensorProto.FLOAT}
    assert [i["name"] for i in manifest["onnx"]["input"]] == ["samples", "mask"]
    assert doc["sample_rate"] == 16000 and doc["window_samples"] == 16000
    assert doc["network"] == "whisper" and "mean" in doc["channels"]
    assert json.loads((export / "labels.json").read_text(encoding="utf-8")) == clf.classes_


@pytest.mark.parametrize("strategy", ["baseline", "scratch"])
def test_mfcc_and_mel_cnn_export_but_refuse_int8_in_one_line(
    strategy, digits_split, tmp_path, capsys
):
    train, val, _ = digits_split
    run = tmp_path / strategy
    AudioClassifier(strategy=strategy, epochs=1, verbose=False).fit(train, val).save(run)
    with pytest.raises(ExportError, match="no MatMul weights"):
        export_onnx(run, quantize="int8")
    assert not (run / "export" / "model.onnx").exists()  # nothing written
    manifest = export_onnx(run)
    assert manifest["onnx"]["parity_vs_pytorch"]["max_abs_logit_diff"] <= 1e-3
    assert main(["export", str(run), "--quantize", "int8"]) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "no MatMul weights" in err


def test_a_speech_embedding_run_exports_as_its_own_graph_chained(digits_split, tmp_path, capsys):
    """The default audio probe: Google's ONNX graph runs per window inside a Loop (the samples
    where the mask is 1, centred in 2 s), pooled and followed by the head; an app gets
    `predict_proba` from the folder alone, stereo and long clips included."""
    train, val, _ = digits_split
    clf = AudioClassifier("speech-embedding", verbose=False).fit(train, val)
    run = clf.save(tmp_path / "se").path
    manifest = export_onnx(run)
    check = manifest["onnx"]["parity_vs_pytorch"]
    assert check["max_abs_logit_diff"] <= 1e-3 and check["top1_agreement"] == 1.0
    doc = json.loads((run / "export" / "preprocessing.json").read_text(encoding="utf-8"))
    assert doc["network"] == "speech-embedding" and "Loop" in doc["in_graph"]
    files = _clips(tmp_path, clf.preprocessing_.window_samples)
    assert np.allclose(_app_proba(run / "export", files), clf.predict_proba(files), atol=1e-4)
    # its graph is convolutions: int8 dynamic quantisation has nothing to do, said in one line
    assert main(["export", str(run), "--quantize", "int8"]) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "no MatMul weights" in err
