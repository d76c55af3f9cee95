"""Audio reader: a folder per class of clips (optionally inside train/ val/ test/).

Any format libsndfile reads (WAV, FLAC, OGG/Vorbis, and MP3 where libsndfile has it), any
sample rate, int or float PCM, mono or multi-channel. A clip is decoded to mono float32 and
resampled with a polyphase anti-aliasing filter (scipy's `resample_poly`) to the rate the
backbone expects. Unreadable, empty and zero-length files are reported by path and skipped, and
so are silent clips (loudest sample under `SILENT_PEAK`) when training data is verified.

A grouping key taken from the file name (`group_by`, e.g. the speaker in FSDD's
`7_nicolas_3.wav`) makes the split keep each group on one side, so no speaker is both trained
and tested on.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import ClassVar

import numpy as np

from modeltailor.data.dataset import LabeledDataset, Skipped
from modeltailor.data.folders import find_files, load_class_tree, read_class_folders
from modeltailor.errors import DataError

AUDIO_EXTENSIONS = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif"})
#: Decoded clips kept in memory (bytes): training reads every clip once per epoch.
WAVEFORM_CACHE_BYTES = 1 << 30
#: A clip longer than this is refused (an hour-long recording is not a labelled clip).
MAX_SECONDS = 600.0
#: A clip whose loudest sample is below this (full scale 1.0; -80 dBFS) is silence: skipped
#: when training data is verified. 16-bit PCM's smallest step is 3e-5, so only digital
#: silence or near-silence falls under it, never a quiet recording.
SILENT_PEAK = 1e-4


class AudioReadError(Exception):
    """One file could not be decoded; the message says why."""


@dataclass(frozen=True)
class ClipInfo:
    seconds: float
    sample_rate: int
    channels: int


def clip_info(path: str | Path) -> ClipInfo:
    """Header facts of one file (no samples decoded); AudioReadError when it is no clip."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as exc:
        raise AudioReadError(f"not an audio file libsndfile can read ({exc})") from exc
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioReadError("empty clip (zero samples)")
    seconds = info.frames / info.samplerate
    if seconds > MAX_SECONDS:
        raise AudioReadError(f"{seconds:.0f} s is over the {MAX_SECONDS:.0f}-s clip limit")
    return ClipInfo(seconds, int(info.samplerate), int(info.channels))


def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Polyphase resampling with scipy's anti-aliasing FIR filter (not sample dropping)."""
    if rate == target:
        return wave
    from scipy.signal import resample_poly

    g = gcd(rate, target)
    return resample_poly(wave, target // g, rate // g).astype(np.float32)


def decode_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Mono float32 samples in [-1, 1] at `sample_rate`; AudioReadError with a short reason."""
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioReadError(f"cannot decode audio ({exc})") from exc
    if data.shape[0] == 0:
        raise AudioReadError("empty clip (zero samples)")
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(wave).all():
        raise AudioReadError("clip holds NaN or infinite samples")
    return np.ascontiguousarray(resample(wave, int(rate), sample_rate), dtype=np.float32)


def silence_problem(wave: np.ndarray) -> str | None:
    """Why a decoded clip is silence, not a sound to learn from (`SILENT_PEAK`), or None."""
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    if peak == 0.0:
        return "silent clip (all samples are zero): nothing to learn from; check the recording"
    if peak < SILENT_PEAK:
        return (
            f"silent clip (loudest sample {peak:.1e}, under {SILENT_PEAK:.0e} of full scale): "
            "nothing to learn from; check the recording"
        )
    return None


class _WaveformCache:
    """Decoded clips by (path, size, mtime, rate), least recently used dropped past a budget."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self.items: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, path: Path, sample_rate: int) -> np.ndarray:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns, sample_rate)
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        wave = decode_audio(path, sample_rate)
        with self.lock:
            self.items[key] = wave
            self.used += wave.nbytes
            while self.used > self.budget and len(self.items) > 1:
                _, old = self.items.popitem(last=False)
                self.used -= old.nbytes
        return wave


    def discard(self, path: Path) -> None:
        """Forget every decoding of `path` (a server's temporary upload)."""
        with self.lock:
            for key in [k for k in self.items if k[0] == str(path)]:
                self.used -= self.items.pop(key).nbytes


_CACHE = _WaveformCache(WAVEFORM_CACHE_BYTES)


def forget_waveform(path: str | Path) -> None:
    """Drop a clip from the decoded-clip cache (uploads are read once)."""
    _CACHE.discard(Path(path))


def load_waveform(path: str | Path, sample_rate: int) -> np.ndarray:
    """`decode_audio` through an in-memory cache (read-only array: copy before changing it)."""
    try:
        return _CACHE.get(Path(path), sample_rate)
    except OSError as exc:
        raise AudioReadError(f"cannot read file ({exc})") from exc


@dataclass
class AudioDataset(LabeledDataset):
    """Audio files with labels; `seconds` holds each clip's length (from its header)."""

    #: The registered modality (modalities/) that reads and models these items.
    modality: ClassVar[str] = "audio"

    def durations(self) -> list[float]:
        return [self._seconds()[str(p)] for p in self.items]

    def _seconds(self) -> dict[str, float]:
        if not hasattr(self, "_durations"):
            self._durations = {}
        missing = [p for p in self.items if str(p) not in self._durations]
        for p in missing:
            try:
                self._durations[str(p)] = clip_info(p).seconds
            except AudioReadError:
                self._durations[str(p)] = 0.0
        return self._durations

    def verify(self, sample_rate: int = 16000, workers: int = 2) -> AudioDataset:
        """Decode every clip once (kept in memory for training); bad files and silent clips
        (`silence_problem`) become skipped."""

        def check(path: Path) -> str | None:
            try:
                return silence_problem(load_waveform(path, sample_rate))
            except AudioReadError as exc:
                return str(exc)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            reasons = list(pool.map(check, self.items))
        bad = {p: r for p, r in zip(self.items, reasons, strict=True) if r}
        return self.without(bad) if bad else self

    def group_by(self, pattern: str) -> AudioDataset:
        """Groups from file names: the first capture group of `pattern`, else its whole match.

        Every file must match; the split then keeps each group within one part.
        """
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise DataError(f"--group-by {pattern!r}: not a regular expression ({exc})") from exc
        groups = []
        for p in self.items:
            m = regex.search(Path(p).name)
            if m is None:
                raise DataError(f"{p}: file name does not match --group-by {pattern!r}")
            groups.append(m.group(1) if m.groups() else m.group(0))
        out = self.subset(list(range(len(self))))
        out.skipped = list(self.skipped)
        out.groups = groups
        if self.predefined:
            # split() returns these parts as laid out: without their own groups, the probe's
            # cross-validation over train + validation could not fold by speaker.
            out.predefined = {k: p.group_by(pattern) for k, p in self.predefined.items()}
        return out


def is_audio_name(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")


def looks_like_audio_folder(root: str | Path, sample: int = 200) -> bool:
    """True when most files under `root` (a sample of them) have audio extensions."""
    root = Path(root)
    if not root.is_dir():
        return False
    files = []
    for f in root.rglob("*"):
        if f.is_file() and not f.name.startswith("."):
            files.append(f)
            if len(files) >= sample:
                break
    audio = sum(is_audio_name(f) for f in files)
    return bool(files) and audio >= 0.5 * len(files)


def find_audio(paths: list[str | Path]) -> tuple[list[Path], list[Skipped]]:
    """Files to predict on: audio files given directly, and every audio file in given folders."""
    return find_files(paths, is_audio_name)


def load_audio_folder(
    root: str | Path, class_names: list[str] | None = None, group_by: str | None = None
) -> AudioDataset:
    """Read `root/<class>/<clips>` or `root/{train,val,test}/<class>/<clips>`.

    Only headers are read here; clips are decoded (and broken sample data found) when they
    are verified or embedded. `group_by` is a regular expression on file names (see
    `AudioDataset.group_by`).
    """
    data = load_class_tree(root, _load_classes, AudioDataset, class_names, noun="clips")
    return data.group_by(group_by) if group_by else data


def _load_classes(
    root: Path, class_names: list[str] | None, dataset_root: Path | None = None
) -> AudioDataset:
    seconds: dict[str, float] = {}

    def problem(path: Path) -> str | None:  # the header gives the length, kept for windows
        try:
            seconds[str(path)] = clip_info(path).seconds
        except AudioReadError as exc:
            return str(exc)
        return None

    items, labels, names, skipped = read_class_folders(
        root, class_names, "clips", is_audio_name, problem, dataset_root
    )
    data = AudioDataset(items, labels, names, source=str(root), skipped=skipped)
    data._durations = seconds
    return data
