"""Any Hugging Face audio encoder folder on disk as an audio backbone (`--backbone DIR`).

Waveform models (wav2vec2, HuBERT, WavLM, data2vec-audio...) read the 16-kHz samples directly;
a Whisper folder gives its encoder, with positional embeddings sliced to the window as for
the catalogue's Whisper entries. The folder is what `save_pretrained` writes (config.json +
model.safetensors); nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from modeltailor.backbones.audio import (
    WHISPER_RECIPES,
    AudioNet,
    WhisperAudio,
    masked_mean,
    whisper_encoder,
)
from modeltailor.backbones.catalogue import (
    TRANSFORMER_AUDIO,
    AudioPreprocessing,
    BackboneSpec,
    register_resolver,
)
from modeltailor.errors import BackboneError

#: transformers model types whose encoder reads raw 16-kHz samples.
WAVEFORM_TYPES = frozenset(
    {"wav2vec2", "hubert", "wavlm", "data2vec-audio", "unispeech", "unispeech-sat", "sew", "sew-d"}
)
HF_FOLDER = "hf_config"


class WaveformAudio(AudioNet):
    """A transformers waveform encoder: normalised samples in, mean of its last hidden states
    over the frames that cover real samples out."""

    spec_augment = False

    def __init__(self, backbone: nn.Module, pre: AudioPreprocessing, num_classes: int = 0):
        super().__init__(pre, int(backbone.config.hidden_size), num_classes)
        self.backbone = backbone
        self.normalize = True

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return {
            "stem": r"^backbone\.(?:feature_extractor|feature_projection|masked_spec_embed"
            r"|encoder\.pos_conv_embed|encoder\.layer_norm)",
            "blocks": r"^backbone\.encoder\.layers\.(\d+)",
        }

    def frames(self, wave, mask):
        if self.normalize:  # zero mean, unit variance over the real samples (the extractor's)
            n = mask.sum(1, keepdim=True).clamp_min(1)
            mean = (wave * mask).sum(1, keepdim=True) / n
            var = (((wave - mean) * mask) ** 2).sum(1, keepdim=True) / n
            wave = (wave - mean) / (var + 1e-7).sqrt() * mask
        out = self.backbone(input_values=wave, attention_mask=mask.long())
        hidden = out.last_hidden_state
        fmask = self.backbone._get_feature_vector_attention_mask(hidden.shape[1], mask.long())
        return hidden, fmask

    def pool(self, frames, mask):
        return masked_mean(frames, mask)

    def describe(self) -> dict[str, Any]:
        return {"kind": "hf-waveform"}

    def save_assets(self, folder: Path) -> None:
        super().save_assets(folder)
        self.backbone.config.save_pretrained(folder / HF_FOLDER)


def _config(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "config.json").read_text(encoding="utf-8"))


def _build_whisper(folder: Path, spec: BackboneSpec, num_classes: int, pretrained: bool):
    from dataclasses import replace

    from transformers import WhisperModel

    from modeltailor.backbones.audio import positions_for

    source = WhisperModel.from_pretrained(folder).get_encoder()
    n_pos = positions_for(spec.preprocessing)
    cfg = source.config
    shape = {
        "num_mel_bins": cfg.num_mel_bins,
        "d_model": cfg.d_model,
        "encoder_layers": cfg.encoder_layers,
        "encoder_attention_heads": cfg.encoder_attention_heads,
        "encoder_ffn_dim": cfg.encoder_ffn_dim,
    }
    encoder = whisper_encoder({**shape, "max_source_positions": n_pos})
    if pretrained:
        state = source.state_dict()
        state["embed_positions.weight"] = state["embed_positions.weight"][:n_pos]
        encoder.load_state_dict(state, strict=True)
    return WhisperAudio(encoder, replace(spec.preprocessing), num_classes)


def _build_waveform(folder: Path, spec: BackboneSpec, num_classes: int, pretrained: bool):
    from transformers import AutoConfig, AutoModel

    if pretrained:
        backbone = AutoModel.from_pretrained(folder)
    else:
        backbone = AutoModel.from_config(AutoConfig.from_pretrained(folder))
    return WaveformAudio(backbone.eval(), spec.preprocessing, num_classes)


#: transformers `model_type`s this module builds from a local folder, and how.
HF_AUDIO_BUILDERS = {"whisper": _build_whisper} | {t: _build_waveform for t in WAVEFORM_TYPES}


def build_hf_audio(spec: BackboneSpec, num_classes: int, pretrained: bool = True) -> AudioNet:
    folder = Path(spec.name).expanduser()
    build = HF_AUDIO_BUILDERS[_config(folder).get("model_type")]
    return build(folder, spec, num_classes, pretrained)


def load_waveform_network(folder: Path, pre: AudioPreprocessing, num_classes: int) -> AudioNet:
    """An untrained network of a run's saved waveform-encoder architecture."""
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(folder / HF_FOLDER)
    return WaveformAudio(AutoModel.from_config(config).eval(), pre, num_classes)


def resolve_hf_audio_folder(name: str, weights: str | None) -> BackboneSpec | None:
    """A local transformers audio model folder; None for anything else."""
    folder = Path(name).expanduser()
    if not (folder / "config.json").is_file():
        return None
    try:
        kind = _config(folder).get("model_type")
    except (OSError, ValueError) as exc:
        raise BackboneError(f"{folder / 'config.json'}: unreadable ({exc})") from exc
    if kind not in HF_AUDIO_BUILDERS:
        return None
    weights_file = next(
        (
            str(folder / f)
            for f in ("model.safetensors", "pytorch_model.bin")
            if (folder / f).is_file()
        ),
        None,
    )
    if weights_file is None:
        raise BackboneError(f"{folder}: no model.safetensors or pytorch_model.bin in the folder")
    rate = 16000
    extractor = folder / "preprocessor_config.json"
    if extractor.is_file():
        rate = int(json.loads(extractor.read_text(encoding="utf-8")).get("sampling_rate", rate))
    return BackboneSpec(
        name=str(folder),
        modality="audio",
        architecture=f"hf-{kind}",
        preprocessing=AudioPreprocessing(sample_rate=rate),
        params_m=0.0,
        license="see the model's folder",
        description=f"transformers {kind} model from {folder}",
        weights_file=weights_file,
        capabilities=TRANSFORMER_AUDIO,
        recipes=WHISPER_RECIPES,
        languages="speech",
        builder=build_hf_audio,
    )


register_resolver(resolve_hf_audio_folder)
