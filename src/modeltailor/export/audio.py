"""Audio models as graphs of samples: one window of 16-kHz mono PCM in, logits out.

The graph takes `samples` and `mask`, float32 (windows, window_samples), batch dynamic, the
window length fixed (Whisper's positions are sliced to it): the rows `clip_windows` makes, the
samples on one input and 1-over-real-samples / 0-over-padding on the other. The log-mel front
end is inside the graph (reflect padding, a real-valued STFT, Whisper's Slaney mel filters,
log10 clamped 8 decades below each window's own maximum), then the encoder, the masked pooling
and the head; the output is each window's logits divided by the run's calibration temperature.
Decoding, resampling to 16 kHz and the downmix to mono stay outside, as `preprocessing.json`
states; an app cuts a clip into windows and averages the windows' logits, as `tailor predict`
does.

`torch.stft(..., return_complex=True)` does not export, so the exported front end frames the
padded wave with a strided convolution whose kernels are the Hann-windowed cos and -sin rows of
the DFT (a constant (2 * 201, 1, 400) tensor), and applies the mel filters as a 1x1
convolution: Conv nodes, which int8 dynamic quantisation (MatMul only) leaves in float32.
PyTorch's own front end (torch.stft) stays what the parity check compares with.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

#: Clips made from the validation clips to verify on besides them (label -1: no accuracy).
SHORT_SECONDS = 0.3
#: Gains of the two copies of one clip verified in one batch (per-window clamp).
VOLUME_PAIR = (1e-3, 4.0)


class RealPowerMel(nn.Module):
    """`LogMel.power_mel` without complex numbers: frames by a strided convolution with the
    windowed DFT as two constant matrices (cos, -sin), power = re^2 + im^2, mel filters as a
    1x1 convolution. Same shape and numbers as torch.stft (centre, reflect padding)."""

    def __init__(self, logmel: nn.Module) -> None:
        super().__init__()
        self.n_fft, self.hop = int(logmel.n_fft), int(logmel.hop)
        n = torch.arange(self.n_fft, dtype=torch.float64)
        k = torch.arange(self.n_fft // 2 + 1, dtype=torch.float64)[:, None]
        angle = 2 * math.pi * k * n / self.n_fft
        window = logmel.window.double()
        kernels = torch.cat([torch.cos(angle) * window, -torch.sin(angle) * window])
        self.register_buffer("dft", kernels[:, None, :].float(), persistent=False)
        self.register_buffer("mel", logmel.filters[:, :, None].clone(), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        half = self.n_fft // 2
        x = nn.functional.pad(wave.float().unsqueeze(1), (half, half), mode="reflect")
        spec = nn.functional.conv1d(x, self.dft, stride=self.hop)[..., :-1]
        bins = half + 1
        power = spec[:, :bins] ** 2 + spec[:, bins:] ** 2
        return nn.functional.conv1d(power, self.mel)


class ExportLogMel(nn.Module):
    """A run's `LogMel` that becomes the real-valued front end while torch.export traces it
    (eager calls, the parity reference, keep torch.stft: what prediction computes)."""

    def __init__(self, logmel: nn.Module) -> None:
        super().__init__()
        self.logmel = logmel
        self.real = RealPowerMel(logmel)

    def power_mel(self, wave: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_exporting():
            return self.real(wave)
        return self.logmel.power_mel(wave)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        log = self.power_mel(wave).clamp_min(1e-10).log10()
        # per window (a whole-batch max would let the windows of a batch change each other)
        log = torch.maximum(log, log.amax(dim=(-2, -1), keepdim=True) - 8.0)
        return (log + 4.0) / 4.0


class AudioGraph(nn.Module):
    """(samples, mask) -> logits / temperature, the front end inside."""

    def __init__(self, model: nn.Module, temperature: float = 1.0) -> None:
        super().__init__()
        self.model = model
        self.temperature = float(temperature)

    def forward(self, samples: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = self.model(torch.stack([samples, mask], 1))
        return logits / self.temperature if self.temperature != 1.0 else logits


def wrap(model: nn.Module, pre: Any, temperature: float) -> AudioGraph:
    """The run's model (a copy: the classifier's own is left as it is) with an exportable
    front end."""
    from modeltailor.backbones.audio import LogMel

    model = copy.deepcopy(model)
    net = model.net
    if isinstance(getattr(net, "frontend", None), LogMel):
        net.frontend = ExportLogMel(net.frontend)
    return AudioGraph(model, temperature)


@dataclass(frozen=True)
class Clip:
    """An already decoded clip (mono, the run's sample rate) to verify on."""

    wave: np.ndarray
    name: str

    def __str__(self) -> str:
        return self.name


def waveform(item: Any, pre: Any) -> np.ndarray:
    """Decoded as prediction decodes it (`load_waveform`: mono mean, resampled)."""
    from modeltailor.data.audio import load_waveform

    if isinstance(item, Clip):
        return item.wave
    return load_waveform(item, pre.sample_rate)


def audio_inputs(items: list, clf: Any) -> tuple[dict[str, np.ndarray], list[int]]:
    """Every window of every clip that decodes, and the clip each window belongs to."""
    from modeltailor.data.audio import AudioReadError
    from modeltailor.training.inputs import clip_windows

    pre = clf.preprocessing_
    rows: list[np.ndarray] = []
    owners: list[int] = []
    for index, item in enumerate(items):
        try:
            wave = waveform(item, pre)
        except AudioReadError:
            continue
        for window in clip_windows(wave, pre):
            rows.append(window)
            owners.append(index)
    packed = np.stack(rows) if rows else np.zeros((0, 2, pre.window_samples), np.float32)
    return {
        "samples": np.ascontiguousarray(packed[:, 0]),
        "mask": np.ascontiguousarray(packed[:, 1]),
    }, owners


def example(pre: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """A traced batch: two windows, the second half padding."""
    size = pre.window_samples
    samples = 0.1 * torch.randn(2, size, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, size)
    samples[1, size // 2 :] = 0
    mask[1, size // 2 :] = 0
    return samples, mask


def refusal(clf: Any) -> str | None:
    """Why an audio run has no graph to export (None: it has)."""
    kind = clf.model_.net.describe().get("kind")
    if kind in ("whisper", "mel-cnn", "mfcc"):
        return None
    if kind == "speech-embedding":
        return (
            "speech-embedding runs are not exportable yet: its ONNX graph reads each "
            "window's real samples alone (any length, centred in 2 s of silence), which a "
            "fixed-window graph does not express; train on whisper-tiny-en-encoder to export"
        )
    return (
        f"{kind} audio networks are not exportable yet; train on whisper-tiny-en-encoder "
        "(or mel-cnn, mfcc) to export"
    )


def describe(pre: Any) -> dict[str, Any]:
    """preprocessing.json: how a clip becomes the graph's rows and back."""
    size = pre.window_samples
    step = max(1, size - int(size * pre.window_overlap))
    return {
        "input": "samples and mask: float32 (windows, window_samples), batch dynamic; "
        "samples are PCM in [-1, 1], mask is 1 over real samples and 0 over padding",
        "sample_rate": pre.sample_rate,
        "channels": "mono: the mean of the channels, after decoding to float in [-1, 1]",
        "resampling": f"to {pre.sample_rate} Hz before windowing (outside the graph), as "
        "scipy.signal.resample_poly(mono, up, down) does with the rate ratio reduced to lowest "
        "terms (its default Kaiser-windowed FIR, beta 5); another resampler moves the "
        "probabilities a little",
        "window_seconds": pre.window_seconds,
        "window_samples": size,
        "window_overlap": pre.window_overlap,
        "window_step_samples": step,
        "windows": "a clip of at most window_samples samples is one window: its samples "
        "followed by zeros, mask 1 over the clip and 0 over the zeros; a longer clip is "
        "cut into windows starting at 0, step, 2*step, ... while start + window_samples <= "
        "clip length, plus a last window ending at the clip's end when the others miss it "
        "(mask all ones)",
        "combine": "the mean of a clip's window logits; softmax for probabilities",
        "output": "logits per window (divided by the calibration temperature), classes in "
        "labels.json order",
    }


def validation_clips(run: Any, split: str, limit: int) -> tuple[list, list[str]]:
    """The split's files as splits.json lists them, plus clips made from them that the files
    may not have: 0.3 s, exactly one window, three windows and more, and one clip at two very
    different volumes (verified in one batch: the clamp is per window). Made clips carry no
    label (they count for parity, not for accuracy)."""
    from modeltailor.data.audio import AudioReadError
    from modeltailor.export.base import verification_items

    items, labels = verification_items(run, split, None, limit)
    pre = run_preprocessing(run)
    waves = []
    for item in items[:8]:
        try:
            waves.append(waveform(item, pre))
        except AudioReadError:
            continue
    if not waves:
        return items, labels
    size, rate = pre.window_samples, pre.sample_rate
    first = waves[0]
    joined = np.concatenate(waves)
    while len(joined) < 3 * size:
        joined = np.concatenate([joined, joined])
    made = [
        Clip(first * VOLUME_PAIR[0], "clip 1 quiet"),
        Clip(first * VOLUME_PAIR[1], "clip 1 loud"),
        Clip(first[: int(SHORT_SECONDS * rate)], f"clip 1 first {SHORT_SECONDS:g} s"),
        Clip(np.resize(first, size), "clip 1 repeated to one window"),
        Clip(joined[: 3 * size + size // 3], "clips joined, over 3 windows"),
    ]
    made = [Clip(c.wave.astype(np.float32), c.name) for c in made]
    return [*made, *items], [*([""] * len(made)), *labels]


def run_preprocessing(run: Any) -> Any:
    from modeltailor.modalities import get_modality

    cfg = run.read_json("config.json")
    return get_modality("audio").preprocessing_from_dict(cfg["preprocessing"])


#: What the graph does to a window before the network, per network kind.
FRONT_ENDS = {
    "whisper": "reflect padding, STFT (400-sample Hann window, 160-sample hop) as constant "
    "cos/sin convolutions, 80 Slaney mel filters, log10 clamped 8 decades below each "
    "window's maximum, (x + 4) / 4; Whisper's encoder; mean over frames with real samples",
    "mel-cnn": "as Whisper's log-mel with 64 filters; a 4-block CNN; mean over frames with "
    "real samples",
    "mfcc": "reflect padding, STFT as constant cos/sin convolutions, 40 Slaney mel filters, "
    "natural log (floor 1e-10), DCT-II (20 coefficients) and deltas; mean and std over "
    "frames with real samples",
}


def write_assets(job: Any, out_dir: Path) -> dict[str, Any]:
    """Nothing beside the graph: what preprocessing.json says of the graph's front end and of
    what it was verified on."""
    kind = job.classifier.model_.net.describe().get("kind")
    return {
        "network": kind,
        "in_graph": FRONT_ENDS.get(kind, ""),
        "verified_with": "the run's validation clips and, made from them: a 0.3-s clip, "
        "one of exactly one window, one of more than 3 windows, and one clip at gains "
        f"{VOLUME_PAIR[0]:g} and {VOLUME_PAIR[1]:g} in one batch",
    }
