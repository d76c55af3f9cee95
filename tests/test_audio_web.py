"""Web export of audio runs: the page in headless Chromium gives `tailor predict`'s answers.

A Whisper tiny.en probe trained on the bundled digits is exported with
`tailor export RUN --format web`. Under node, audio_dsp.js must make Python's numbers: the
resampling (scipy's resample_poly), the downmix, the windows, and the sample rate read from
file headers. In Chromium, real FSDD clips (8 kHz, plus a stereo one, one over four windows,
a FLAC, an Ogg Vorbis and a 44.1 kHz one) chosen through the file input must get
`tailor predict --json`'s top-1 and `predict_proba`'s probabilities within 1e-3 (1e-2 for the
Ogg, whose end Chromium does not decode, as the page says), from file://
(and http:// with `make test-slow`); the Record button, with Chromium's fake microphone
playing a real FSDD clip, must give that clip's label. Needs node, npm
(once, for onnxruntime-web), Debian's chromium and playwright: skipped with the reason
otherwise.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from modeltailor import load_classifier
from modeltailor.cli import main
from modeltailor.data.audio import decode_audio, resample
from modeltailor.export import ExportError
from modeltailor.export import audio as export_audio
from modeltailor.export import web as web_export
from modeltailor.modalities.audio import AudioPreprocessing
from modeltailor.training.inputs import clip_windows

from .conftest import SHARED_DATA
from .test_text_web import Page, _serve, _url
from .test_web import CHROMIUM, CHROMIUM_ARGS, browser  # noqa: F401  (the fixture)

EXAMPLES = Path(__file__).parents[1] / "src" / "modeltailor" / "examples" / "audio"
DIGITS = EXAMPLES / "digits"
TEMPLATE = Path(web_export.__file__).parent / "web_template"
DSP_RUNNER = Path(__file__).parent / "node" / "audio_dsp.cjs"
FSDD = SHARED_DATA / "fsdd"
NAMES = {"0": "zero", "1": "one", "2": "two"}


def _fsdd_clips() -> list[Path]:
    """Two clips per digit 0-9 from different speakers (digits the run never learnt give
    unsaturated probabilities, a harder check); the bundled FSDD digits when shared data is
    absent."""
    if FSDD.is_dir():
        speakers = ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]
        return [FSDD / d / f"{d}_{speakers[(int(d) + k) % 6]}_{k + 5}.wav"
                for d in "0123456789" for k in range(2)]  # fmt: skip
    return sorted(DIGITS.glob("*/*.wav"))[::3]


def _made_clips(tmp_path: Path, sources: list[Path]) -> list[Path]:
    """Real clips in other shapes: stereo with different channels (mono is their mean),
    several joined into over four windows (FLAC), Ogg Vorbis, 44.1 kHz float WAV."""
    waves = [sf.read(p, dtype="float32")[0] for p in sources[:4]]
    rate = sf.info(sources[0]).samplerate
    n = min(len(waves[0]), len(waves[1]))
    made = {
        "stereo.wav": (np.stack([waves[0][:n], 0.3 * waves[1][:n]], 1), rate, "PCM_16"),
        "joined.flac": (np.concatenate(waves * 3), rate, "PCM_16"),
        "vorbis.ogg": (waves[2], rate, "VORBIS"),
        "hi-rate.wav": (resample(waves[3], rate, 44100), 44100, "FLOAT"),
    }
    out = []
    for name, (wave, r, subtype) in made.items():
        sf.write(tmp_path / name, wave, r, subtype=subtype)
        out.append(tmp_path / name)
    return out


# -- audio_dsp.js under node -------------------------------------------------------------------
@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    if not found:
        pytest.skip("node is not installed: the page's JavaScript cannot be checked")
    return found


def test_audio_dsp_js_makes_pythons_samples_and_windows(node, tmp_path):
    clip = sorted((DIGITS / "two").glob("*.wav"))[0]
    wave, rate = sf.read(clip, dtype="float32")
    rates = [[rate, 16000], [44100, 16000], [48000, 16000], [22050, 16000], [11025, 16000],
             [16000, 16000], [16000, 8000]]  # fmt: skip
    rng = np.random.default_rng(0)
    stereo = rng.uniform(-1, 1, (2, 999)).astype(np.float32)
    pre = AudioPreprocessing(sample_rate=1000, window_seconds=1.0, window_overlap=0.5)
    doc = export_audio.describe(pre)
    lengths = [300, 1000, 1001, 1499, 1500, 2000, len(wave)]
    files = {}
    for name, r, subtype in [("a.wav", 8000, "PCM_16"), ("b.wav", 44100, "FLOAT"),
                             ("c.flac", 22050, "PCM_24"), ("d.ogg", 48000, "VORBIS"),
                             ("e.aiff", 11025, "PCM_16"), ("f.wav", 96000, "PCM_32")]:  # fmt: skip
        sf.write(tmp_path / name, wave, r, subtype=subtype)
        files[str(tmp_path / name)] = r
    ints = sf.read(clip, dtype="int16")[0].astype(np.float64)
    chromium = np.where(ints > 0, ints / 32767, ints / 32768).astype(np.float32)  # its 16-bit
    int16 = [chromium, wave, stereo[0]]  # Chromium's scaling is undone; the others are kept
    job = {"wave": wave.tolist(), "rates": rates, "stereo": stereo.tolist(), "lengths": lengths,
           "size": doc["window_samples"], "step": doc["window_step_samples"],
           "files": list(files), "int16": [c.tolist() for c in int16]}  # fmt: skip
    (tmp_path / "job.json").write_text(json.dumps(job), encoding="utf-8")
    done = subprocess.run(
        [node, str(DSP_RUNNER), str(TEMPLATE / "audio_dsp.js"), str(tmp_path / "job.json")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout)
    for a, b in rates:
        want = resample(wave, a, b)
        js = np.asarray(got["resampled"][f"{a}>{b}"], np.float32)
        assert js.shape == want.shape, (a, b)
        assert np.abs(js - want).max() <= 1e-6, (a, b)  # float32 rounding, not another filter
    assert np.array_equal(np.asarray(got["downmix"], np.float32), stereo.T.mean(axis=1))
    for n, js in zip(lengths, got["windows"], strict=True):
        rows = np.stack(clip_windows(wave[:n], pre))
        size = doc["window_samples"]
        assert np.array_equal(np.asarray(js["samples"], np.float32).reshape(-1, size), rows[:, 0])
        assert np.array_equal(np.asarray(js["mask"], np.float32).reshape(-1, size), rows[:, 1])
    assert got["rates"] == list(files.values())
    ogg = [sf.info(f).frames if f.endswith(".ogg") else None for f in files]
    assert got["oggSamples"] == ogg
    assert [g["changed"] for g in got["int16"]] == [True, False, False]
    for g, want in zip(got["int16"], [wave, wave, stereo[0]], strict=True):
        assert np.array_equal(np.asarray(g["samples"], np.float32), want)


# -- the exported page in Chromium -------------------------------------------------------------
@pytest.fixture(scope="module")
def audio_run(tmp_path_factory) -> Path:
    """The default audio run on the bundled digits (Whisper tiny.en probe), exported to web
    through the CLI."""
    try:
        web_export.onnxruntime_web_dist()
    except ExportError as exc:
        pytest.skip(f"onnxruntime-web could not be installed from npm: {exc}")
    run = tmp_path_factory.mktemp("audio-web") / "数字-digits"
    train = ["train", str(DIGITS), "--output", str(run), "--quiet"]
    assert main([*train, "--backbone", "whisper-tiny-en-encoder"]) == 0
    assert main(["export", str(run), "--format", "web"]) == 0
    return run


def test_audio_web_folder_embeds_the_verified_model(audio_run):
    export = audio_run / "export"
    web = export / "web"
    manifest = json.loads((export / "manifest.json").read_text(encoding="utf-8"))
    section = manifest["web"]
    assert manifest["onnx"]["parity_vs_pytorch"]["top1_agreement"] == 1.0
    assert sorted(p.name for p in web.iterdir()) == sorted(section["files"])
    assert not list(web.glob("*.wasm")) and not list(web.glob("*.mjs"))
    assert {"page_common.js", "audio_dsp.js", "model.js"} <= set(section["files"])
    model = b"".join(
        base64.b64decode(f.read_text(encoding="ascii").split('"')[1])
        for f in [web / name.removeprefix("web/") for name in section["model"]["files"]]
    )
    assert model == (export / "model.onnx").read_bytes()
    app = (web / "app-data.js").read_text(encoding="ascii")
    assert '"window_step_samples": 8000' in app and '"sample_rate": 16000' in app


def _predict_json(run: Path, files: list[Path], capsys) -> tuple[list[dict], list[str]]:
    """`tailor predict --json`: its predictions, and the names of the files it skipped."""
    capsys.readouterr()
    assert main(["predict", str(run), *map(str, files), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    return doc["predictions"], [Path(s["path"]).name for s in doc["skipped"]]


def _choose_files(page: Page, files: list[Path]) -> list[dict]:
    """All files through the file input at once; every result the page computed."""
    before = page.page.get_attribute("#status", "data-run") or "0"
    page.page.set_input_files("#file", [str(f) for f in files])
    page._wait_run(int(before) + 1)
    return page.page.evaluate(
        "window.MODELTAILOR_RESULTS.map(r => ({name: r.name, error: r.error || null,"
        " probabilities: r.probabilities, top: r.top, windows: r.windows, notes: r.notes}))"
    )


@pytest.mark.parametrize("scheme", ["file", pytest.param("http", marks=pytest.mark.slow)])
def test_audio_page_matches_tailor_predict(scheme, audio_run, browser, tmp_path, capsys):  # noqa: F811
    sources = _fsdd_clips()
    files = [*sources, *_made_clips(tmp_path, sources)]
    assert len(files) >= 20
    clf = load_classifier(audio_run)
    want = clf.predict_proba(files)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x10\x00\x00\x00WAVEnot audio at all")
    rows, skipped = _predict_json(audio_run, [*files, broken], capsys)
    assert skipped == [broken.name]  # the page must skip it too, and go on
    web = audio_run / "export" / "web"
    with _serve(web) as server:
        page = Page(browser, _url(web, scheme, server))
        got = _choose_files(page, [*files[:3], broken, *files[3:]])
        shown = page.page.eval_on_selector_all(
            "#rows tbody tr",
            "els => els.map(e => [e.dataset.label, Number(e.dataset.probability)])",
        )
        with page.page.expect_download() as info:
            page.page.click("#download")
        table = Path(info.value.path()).read_bytes()
        page.page.screenshot(path=str(tmp_path / f"audio-web-{scheme}.png"), full_page=True)
        page.close(server)
    assert got[3]["name"] == broken.name and got[3]["error"], got[3]
    del got[3], shown[3]
    assert [g["name"] for g in got] == [f.name for f in files]
    assert all(g["error"] is None for g in got), [g for g in got if g["error"]]
    assert got[files.index(tmp_path / "joined.flac")]["windows"] >= 4
    for f, g, p, row in zip(files, got, want, rows, strict=True):
        assert g["top"][0]["label"] == row["label"], f.name
        # Chromium's Ogg Vorbis decoder drops the clip's last partial block (the page says so)
        ogg = f.suffix == ".ogg"
        assert bool(g["notes"]) == ogg and all("Ogg" in n for n in g["notes"]), (f.name, g["notes"])
        assert np.abs(np.asarray(g["probabilities"]) - p).max() <= (1e-2 if ogg else 1e-3), f.name
    assert shown == [[g["top"][0]["label"], g["top"][0]["probability"]] for g in got]
    assert table.startswith(b"\xef\xbb\xbf")
    csv_rows = list(csv.DictReader(io.StringIO(table[3:].decode("utf-8"))))
    assert [r["file"] for r in csv_rows] == [f.name for f in files]
    assert [r["label"] for r in csv_rows] == [r["label"] for r in rows]
    assert all(abs(float(r["p_" + c]) - p[i]) <= 1e-3 for r, p in zip(csv_rows, want, strict=True)
               for i, c in enumerate(clf.classes_))  # fmt: skip


@pytest.fixture
def fake_microphone_clip(audio_run) -> tuple[Path, str]:
    """The FSDD clip of a digit the run knows that Python classifies most confidently."""
    folder = FSDD if FSDD.is_dir() else None
    candidates = (
        [folder / d / f"{d}_theo_{k}.wav" for d in NAMES for k in range(3)]
        if folder
        else sorted(DIGITS.glob("*/*.wav"))[::8]
    )
    clf = load_classifier(audio_run)
    proba = clf.predict_proba(candidates)
    truth = [NAMES.get(p.parent.name, p.parent.name) for p in candidates]
    scores = [proba[i, clf.classes_.index(t)] for i, t in enumerate(truth)]
    best = int(np.argmax(scores))
    return candidates[best], truth[best]


def test_record_button_classifies_the_microphone(audio_run, fake_microphone_clip, browser):  # noqa: F811
    """Chromium's fake microphone loops a real FSDD clip; over one window of it is recorded.
    (A second Chromium, with the fake device, from the same playwright as `browser`.)"""
    clip, label = fake_microphone_clip
    assert decode_audio(clip, 16000).size  # a real clip that decodes
    args = [
        *CHROMIUM_ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-audio-capture={clip}", "--autoplay-policy=no-user-gesture-required",
    ]  # fmt: skip
    web = audio_run / "export" / "web"
    with_microphone = browser.browser_type.launch(executable_path=str(CHROMIUM), args=args)
    try:
        page = Page(with_microphone, (web / "index.html").as_uri())
        page.page.click("#record")
        page.page.wait_for_function(
            "ModeltailorAudioApp.recordedSeconds() >= 1.2"
            " || document.body.dataset.state === 'error'",
            timeout=60_000,
        )
        assert page.state == "busy", page.page.inner_text("#status")
        page.page.click("#record")  # Stop
        page._wait_run(1)
        result = page.page.evaluate(
            "(({name, seconds, top}) => ({name, seconds, top}))(window.MODELTAILOR_RESULTS[0])"
        )
        shown = page.page.get_attribute("#predictions .prediction", "data-label")
        page.close("file://")
    finally:
        with_microphone.close()
    assert result["name"] == "recording 1" and result["seconds"] >= 1.2
    assert result["top"][0]["label"] == label == shown, (clip.name, result["top"])


# the page is the same for every exportable network; their graphs use other onnxruntime ops
@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["baseline", "scratch"], ids=["mfcc", "mel-cnn"])
def test_mfcc_and_mel_cnn_pages_match_predict_proba(strategy, browser, tmp_path):  # noqa: F811
    run = tmp_path / strategy
    train = ["train", str(DIGITS), "--output", str(run), "--quiet", "--strategy", strategy]
    assert main([*train, "--epochs", "2"]) == 0
    assert main(["export", str(run), "--format", "web"]) == 0
    sources = _fsdd_clips()[::3]
    files = [*sources, *[f for f in _made_clips(tmp_path, sources) if f.suffix != ".ogg"]]
    want = load_classifier(run).predict_proba(files)
    page = Page(browser, (run / "export" / "web" / "index.html").as_uri())
    got = _choose_files(page, files)
    page.close("file://")
    for f, g, p in zip(files, got, want, strict=True):
        assert np.abs(np.asarray(g["probabilities"]) - p).max() <= 1e-3, f.name


def test_the_default_audio_run_speech_embedding_gets_a_page(browser, tmp_path):  # noqa: F811
    """A plain `tailor train clips/` probes speech-embedding, an ONNX graph the export chains
    in a Loop: onnxruntime-web runs that graph and the page gives predict_proba."""
    run = tmp_path / "default"
    assert main(["train", str(DIGITS), "--output", str(run), "--quiet"]) == 0
    assert json.loads((run / "config.json").read_text(encoding="utf-8"))["backbone"] == (
        "speech-embedding"
    )
    assert main(["export", str(run), "--format", "web"]) == 0
    files = _fsdd_clips()[:6]
    want = load_classifier(run).predict_proba(files)
    page = Page(browser, (run / "export" / "web" / "index.html").as_uri())
    got = _choose_files(page, files)
    page.close("file://")
    for f, g, p in zip(files, got, want, strict=True):
        assert np.abs(np.asarray(g["probabilities"]) - p).max() <= 1e-3, f.name
