"""The frozen backbone's embeddings of a dataset, through the same cache `tailor train` uses.

The backbone is resolved as the linear probe resolves it (`Modality.default_backbone`,
`specialise`: the audio window from the clips), so a doctor run and a linear-probe run on the
same files share cached embeddings when the probe embeds in fp32 (PyTorch, or ONNX Runtime):
whichever comes second computes none.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modeltailor.data.dataset import LabeledDataset
from modeltailor.errors import BackboneError
from modeltailor.modalities import Modality
from modeltailor.training.onnx_embed import OnnxEmbedUnavailable


def embed_dataset(
    data: LabeledDataset,
    modality: Modality,
    backbone: str | None,
    batch_size: int = 32,
    verbose: bool = True,
) -> tuple[np.ndarray, dict[Any, str], str]:
    """(embeddings of the readable items in order, {item: why unreadable}, backbone name)."""
    from modeltailor.api import classifier_class
    from modeltailor.backbones import get_backbone
    from modeltailor.backbones.model import TailoredModel
    from modeltailor.training.features import EmbeddingCache, extract_embeddings

    clf = classifier_class(modality.name)(backbone=backbone, strategy="linear-probe")
    name = backbone or modality.default_backbone(clf, data)
    spec = get_backbone(name)
    if spec.modality != modality.name:
        raise BackboneError(f"'{spec.name}' is a {spec.modality} backbone, not {modality.name}")
    if not spec.supports("linear-probe"):
        raise BackboneError(
            f"backbone '{spec.name}' gives no embeddings to examine data with; choose one "
            "that can do linear-probe (see `tailor backbones`)"
        )
    spec = modality.specialise(clf, spec, data)
    pre = spec.inference_preprocessing()
    model = TailoredModel(spec.build(max(len(data.class_names), 2), pretrained=True))
    cache = EmbeddingCache(spec, pre, numerics=fp32_path(spec, pre, model))
    try:
        x, bad = extract_embeddings(model, data, pre, cache, batch_size, 0, verbose)
    except OnnxEmbedUnavailable:
        cache = EmbeddingCache(spec, pre)
        x, bad = extract_embeddings(model, data, pre, cache, batch_size, 0, verbose)
    return x, bad, spec.name


def fp32_path(spec: Any, pre: Any, model: Any) -> str:
    """The fp32 path to embed in: ONNX Runtime where `tailor train` decided on it on this
    machine (its embeddings are within 1e-5 of PyTorch's, and the two then share the cache),
    else PyTorch fp32. Never bf16: the near-duplicate thresholds were measured in fp32."""
    from modeltailor.training.numerics import plan_numerics

    plan = plan_numerics("auto", spec, pre, model, "cpu")
    return "onnx" if plan.path == "onnx" and not plan.check else "fp32"
