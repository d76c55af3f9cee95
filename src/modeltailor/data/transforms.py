"""Image transforms derived from a backbone's preprocessing record (one source of truth)."""

from __future__ import annotations

import math

import torch
from PIL import Image
from torchvision.transforms import v2 as T

from modeltailor.modalities.image import Preprocessing

_INTERPOLATION = {
    "bicubic": T.InterpolationMode.BICUBIC,
    "bilinear": T.InterpolationMode.BILINEAR,
    "nearest": T.InterpolationMode.NEAREST,
}


def eval_transform(pre: Preprocessing) -> T.Compose:
    """Resize the short side to size/crop_pct, centre-crop, normalise (timm's eval recipe)."""
    resize = int(math.floor(pre.input_size / pre.crop_pct))
    return T.Compose(
        [
            T.PILToTensor(),
            T.Resize(resize, interpolation=_INTERPOLATION[pre.interpolation], antialias=True),
            T.CenterCrop(pre.input_size),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(pre.mean, pre.std),
        ]
    )


#: Smallest share of the image a random crop keeps, per level.
_CROP_SCALE = {"light": 0.6, "default": 0.35, "strong": 0.2}


def train_transform(pre: Preprocessing, level: str = "default") -> T.Compose:
    """Training-time augmentation at one of IMAGE_AUGMENTATION's levels.

    "default" is milder than ImageNet recipes (crop scale 0.35-1 instead of 0.08-1): with
    little data an aggressive crop often cuts the object out of the picture. "none" is exactly
    the evaluation transform, so a run trained without augmentation sees what it predicts on.
    """
    if level == "none":
        return eval_transform(pre)
    steps: list = [
        T.PILToTensor(),
        T.RandomResizedCrop(
            pre.train_size or pre.input_size,
            scale=(_CROP_SCALE[level], 1.0),
            interpolation=_INTERPOLATION[pre.interpolation],
            antialias=True,
        ),
        T.RandomHorizontalFlip(),
    ]
    if level == "default":
        steps.append(T.ColorJitter(0.2, 0.2, 0.2))
    if level == "strong":
        # rotations and shears of a tensor support bilinear at most
        steps.append(T.TrivialAugmentWide(interpolation=T.InterpolationMode.BILINEAR))
    steps += [T.ToDtype(torch.float32, scale=True), T.Normalize(pre.mean, pre.std)]
    if level == "strong":
        steps.append(T.RandomErasing(p=0.25))
    return T.Compose(steps)


def draft_size(pre: Preprocessing) -> int:
    """The smallest decode size (JPEG DCT scaling) that loses nothing at the model's input."""
    return int(math.ceil(pre.input_size / pre.crop_pct))


def load_for_model(path, pre: Preprocessing) -> Image.Image:
    from modeltailor.data.images import open_image

    return open_image(path, draft_size=draft_size(pre))
