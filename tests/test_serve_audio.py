"""`tailor serve` for audio runs (issue 18): multipart clips (WAV, FLAC, OGG, any rate and
channels), on the ONNX export and PyTorch, with the image server's error policy."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from modeltailor import AudioClassifier, load_audio_folder, load_classifier
from modeltailor.data.audio import decode_audio
from modeltailor.export import export_onnx
from modeltailor.serve import create_app

from .test_serve import assert_error, live

DIGITS = Path(__file__).parents[1] / "src" / "modeltailor" / "examples" / "audio" / "digits"
SPEAKER = r"_([a-z]+)_"


@pytest.fixture(scope="module")
def audio_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("serve-audio") / "whisper"
    train, val, _ = load_audio_folder(DIGITS, group_by=SPEAKER).split(0.7, 0.15, 0.15, seed=0)
    AudioClassifier("whisper-tiny-en-encoder", verbose=False).fit(train, val).save(run)
    export_onnx(run)
    return run


@pytest.fixture(scope="module")
def urls(audio_run):
    with live(create_app(audio_run)) as onnx_url, live(create_app(audio_run, "pytorch")) as eager:
        yield {"onnx": onnx_url, "pytorch": eager}


def _clips(tmp_path: Path) -> list[Path]:
    """A WAV as recorded, a FLAC at 44.1 kHz stereo, and a clip three times as long."""
    wavs = sorted((DIGITS / "two").glob("*.wav"))[:3]
    wave = decode_audio(wavs[1], 16000)
    flac = tmp_path / "stereo 44k.flac"
    x = np.interp(np.arange(0, len(wave), 16000 / 44100), np.arange(len(wave)), wave)
    sf.write(flac, np.stack([x, x * 0.5], 1).astype(np.float32), 44100)
    long = tmp_path / "long.wav"
    sf.write(long, np.concatenate([decode_audio(w, 16000) for w in wavs] * 3), 16000)
    return [wavs[0], flac, long]


@pytest.mark.parametrize("backend", ["onnx", "pytorch"])
def test_clips_answer_what_the_python_api_does(urls, audio_run, tmp_path, backend):
    clips = _clips(tmp_path)
    files = [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in clips]
    r = httpx.post(f"{urls[backend]}/predict", files=files, timeout=120)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["backend"] == backend
    want = load_classifier(audio_run).predict_proba(clips)
    labels = json.loads((audio_run / "labels.json").read_text())
    for row, name, p in zip(body["predictions"], [c.name for c in clips], want, strict=True):
        assert row["file"] == name and row["label"] == labels[int(p.argmax())]
        assert abs(row["probability"] - float(p.max())) < 1e-4


def test_bad_clips_name_the_problem(urls):
    url = f"{urls['onnx']}/predict"
    assert_error(httpx.post(url, json={"texts": ["one"]}), 415, "multipart/form-data")
    empty = [("files", ("empty.wav", b"", "audio/wav"))]
    assert_error(httpx.post(url, files=empty), 422, "empty")
    broken = [("files", ("broken.wav", b"RIFF\x00\x00\x00\x00WAVEfmt junk", "audio/wav"))]
    body = assert_error(httpx.post(url, files=broken), 422, "broken.wav", "cannot decode")
    assert body["files"][0]["file"] == "broken.wav"
    notes = [("files", ("notes.txt", b"not audio", "application/octet-stream"))]
    assert_error(httpx.post(url, files=notes), 422, "send audio clips")
    photo = [("files", ("cat.png", b"\x89PNG", "image/png"))]
    assert_error(httpx.post(url, files=photo), 415, "send clips")
    silence = io.BytesIO()
    sf.write(silence, np.zeros(8000, np.float32), 16000, format="WAV")
    quiet = [("files", ("silence.wav", silence.getvalue(), "audio/wav"))]
    assert httpx.post(url, files=quiet, timeout=60).status_code == 200  # silence is an input too
