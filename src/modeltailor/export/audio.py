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
#: The traced front end's constants (windowed DFT basis, Slaney mel filters): int8 leaves them
#: fp32, since 8-bit cos/sin rows would add noise ~48 dB down, inside log-mel's 80 dB range.
FRONT_END_WEIGHTS = ("model.net.frontend.",)


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
    from modeltailor.backbones.audio import LogMel, SpeechEmbeddingAudio

    if isinstance(model.net, SpeechEmbeddingAudio):  # an ONNX graph already: chained, not traced
        return SpeechEmbeddingGraph(model, temperature)
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
    if kind in ("whisper", "mel-cnn", "mfcc", "speech-embedding"):
        return None
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
    "speech-embedding": "per window (an ONNX Loop): the samples where the mask is 1, centred "
    "in 2 s of silence when shorter; Google's speech-embedding graph (its own mel front end, "
    "96-d per 80 ms); mean, max and std over its frames",
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


def tflite_spec() -> Any:
    """TFLite for apps: one window of 16-kHz samples and its mask per call, float32."""
    from modeltailor.modalities.base import TfliteSpec

    def example(job: Any) -> tuple:
        size = job.preprocessing.window_samples
        return 0.1 * torch.randn(1, size), torch.ones(1, size)

    def app_input(job: Any) -> dict[str, Any]:
        pre = job.preprocessing
        return {
            "shape": [1, pre.window_samples],
            "inputs": ["samples", "mask"],
            "dtype": "float32",
            "sample_rate": pre.sample_rate,
            "padding": "one window per call: a clip shorter than the window is followed by "
            "zeros, mask 1 over the clip and 0 over the zeros; longer clips are cut into "
            "windows as preprocessing.json says",
            "channels": "mono: the mean of the channels",
            "combine": "the mean of a clip's window logits, then softmax",
        }

    return TfliteSpec(example=example, app_input=app_input)


# -- speech-embedding: the run's ONNX graph, chained -------------------------------------------

#: The opset of the chained graph: the embedding graph's own (tf2onnx wrote it at 13).
SPEECH_EMBEDDING_OPSET = 13


class SpeechEmbeddingGraph(AudioGraph):
    """A speech-embedding run as a graph with the same inputs as every audio graph.

    The network is already an ONNX graph, so nothing is traced: `write_onnx` chains it. An ONNX
    `Loop` runs each window alone, as the network does (its frames are not maskable): keep the
    samples where the mask is 1, centre them in `SPEECH_EMBEDDING_MIN_SAMPLES` of silence when
    shorter, run Google's graph, pool its 96-d frames as mean|max|std; then the head and the
    temperature. Eager calls (the parity reference) run the network as prediction does.
    """

    def write_onnx(self, path: Path) -> int:
        """Write the chained graph to `path`; the opset it uses."""
        import onnx

        net = self.model.net
        embedding = onnx.load(str(net.onnx_path))
        weight = net.head.weight.detach().double().numpy() / self.temperature
        bias = net.head.bias.detach().double().numpy() / self.temperature
        graph = _speech_embedding_graph(embedding, weight, bias)
        model = onnx.helper.make_model(
            graph,
            opset_imports=list(embedding.opset_import),
            producer_name="modeltailor",
        )
        model.ir_version = embedding.ir_version
        onnx.checker.check_model(model)
        onnx.save(model, str(path))
        return SPEECH_EMBEDDING_OPSET


def _speech_embedding_graph(embedding: Any, weight: np.ndarray, bias: np.ndarray) -> Any:
    """(samples, mask) -> logits: a Loop over windows around the embedding graph's nodes."""
    from onnx import TensorProto, helper, numpy_helper

    from modeltailor.backbones.audio import SPEECH_EMBEDDING_MIN_SAMPLES

    inner_input = embedding.graph.input[0].name  # "samples:0": the body feeds it by name
    inner_output = embedding.graph.output[0].name
    const = {
        "se_zero_f": np.array(0.0, np.float32),
        "se_zero": np.array(0, np.int64),
        "se_one": np.array(1, np.int64),
        "se_two": np.array(2, np.int64),
        "se_min_len": np.array([SPEECH_EMBEDDING_MIN_SAMPLES], np.int64),
        "se_axis0": np.array([0], np.int64),
        "se_frames_shape": np.array([-1, 96], np.int64),
        "se_true": np.array(True),
        "se_weight_t": weight.T.astype(np.float32),
        "se_bias": bias.astype(np.float32),
    }
    node = helper.make_node
    body_nodes = [
        node("Gather", ["samples", "se_i"], ["se_row"], axis=0),
        node("Gather", ["mask", "se_i"], ["se_mrow"], axis=0),
        node("Greater", ["se_mrow", "se_zero_f"], ["se_real"]),
        # no real sample at all: keep the first one, as the network does (w[:1])
        node("Cast", ["se_real"], ["se_real_int"], to=TensorProto.INT64),
        node("ReduceSum", ["se_real_int"], ["se_count"], keepdims=0),
        node("Equal", ["se_count", "se_zero"], ["se_none"]),
        node("Shape", ["se_row"], ["se_row_len"]),
        node("Squeeze", ["se_row_len", "se_axis0"], ["se_row_len_s"]),
        node("Range", ["se_zero", "se_row_len_s", "se_one"], ["se_positions"]),
        node("Equal", ["se_positions", "se_zero"], ["se_first"]),
        node("And", ["se_first", "se_none"], ["se_first_if_none"]),
        node("Or", ["se_real", "se_first_if_none"], ["se_keep"]),
        node("Compress", ["se_row", "se_keep"], ["se_kept"], axis=0),
        # centred in at least SPEECH_EMBEDDING_MIN_SAMPLES
        node("Shape", ["se_kept"], ["se_len"]),
        node("Sub", ["se_min_len", "se_len"], ["se_short"]),
        node("Max", ["se_short", "se_axis0"], ["se_pad"]),
        node("Div", ["se_pad", "se_two"], ["se_left"]),
        node("Sub", ["se_pad", "se_left"], ["se_right"]),
        node("Concat", ["se_left", "se_right"], ["se_pads"], axis=0),
        node("Pad", ["se_kept", "se_pads", "se_zero_f"], ["se_padded"], mode="constant"),
        node("Unsqueeze", ["se_padded", "se_axis0"], [inner_input]),
        *embedding.graph.node,
        node("Reshape", [inner_output, "se_frames_shape"], ["se_frames"]),
        node("ReduceMean", ["se_frames"], ["se_mean"], axes=[0], keepdims=0),
        node("ReduceMax", ["se_frames"], ["se_max"], axes=[0], keepdims=0),
        node("Sub", ["se_frames", "se_mean"], ["se_centred"]),
        node("Mul", ["se_centred", "se_centred"], ["se_squares"]),
        node("ReduceMean", ["se_squares"], ["se_var"], axes=[0], keepdims=0),
        node("Sqrt", ["se_var"], ["se_std"]),
        node("Concat", ["se_mean", "se_max", "se_std"], ["se_features"], axis=0),
        node("Identity", ["se_cond"], ["se_cond_out"]),
    ]
    body = helper.make_graph(
        body_nodes,
        "window",
        [
            helper.make_tensor_value_info("se_i", TensorProto.INT64, []),
            helper.make_tensor_value_info("se_cond", TensorProto.BOOL, []),
        ],
        [
            helper.make_tensor_value_info("se_cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("se_features", TensorProto.FLOAT, [288]),
        ],
    )
    outer_nodes = [
        node("Shape", ["samples"], ["se_shape"]),
        node("Gather", ["se_shape", "se_zero"], ["se_windows"], axis=0),
        node("Loop", ["se_windows", "se_true"], ["se_all_features"], body=body),
        node("MatMul", ["se_all_features", "se_weight_t"], ["se_head"]),
        node("Add", ["se_head", "se_bias"], ["logits"]),
    ]
    initializers = [numpy_helper.from_array(v, k) for k, v in const.items()]
    graph = helper.make_graph(
        outer_nodes,
        "speech-embedding-classifier",
        [
            helper.make_tensor_value_info("samples", TensorProto.FLOAT, ["batch", "window"]),
            helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", "window"]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", weight.shape[0]])],
        initializer=[*initializers, *embedding.graph.initializer],
    )
    return graph
