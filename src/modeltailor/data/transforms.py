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


def train_transform(pre: Preprocessing) -> T.Compose:
    """Augmentation defaults for a few hundred images: crop/scale, flip, mild colour jitter.

    Milder than ImageNet recipes (scale 0.35-1 instead of 0.08-1): with little data an
    aggressive crop often cuts the object out of the picture.
    """
    return T.Compose(
        [
            T.PILToTensor(),
            T.RandomResizedCrop(
                pre.train_size or pre.input_size,
                scale=(0.35, 1.0),
                interpolation=_INTERPOLATION[pre.interpolation],
                antialias=True,
            ),
            T.RandomHorizontalFlip(),
            T.ColorJitter(0.2, 0.2, 0.2),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(pre.mean, pre.std),
        ]
    )


def draft_size(pre: Preprocessing) -> int:
    """The smallest decode size (JPEG DCT scaling) that loses nothing at the model's input."""
    return int(math.ceil(pre.input_size / pre.crop_pct))


def load_for_model(path, pre: Preprocessing) -> Image.Image:
    from modeltailor.data.images import open_image

    return open_image(path, draft_size=draft_size(pre))
