"""torch Datasets/DataLoaders over the dataset contract (decoding happens in workers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from modeltailor.backbones.catalogue import Preprocessing
from modeltailor.data.images import ImageReadError
from modeltailor.data.transforms import load_for_model


class ImageTensors(Dataset):
    """(tensor, label) per item; with `tolerant`, (tensor, index, error) so bad files are kept
    out of a batch instead of crashing a long extraction."""

    def __init__(
        self,
        items: list[Any],
        labels: list[int] | None,
        transform: Callable,
        pre: Preprocessing,
        tolerant: bool = False,
    ) -> None:
        self.items = items
        self.labels = labels
        self.transform = transform
        self.pre = pre
        self.tolerant = tolerant

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        if not self.tolerant:
            x = self.transform(load_for_model(self.items[i], self.pre))
            return x, (self.labels[i] if self.labels is not None else -1)
        try:
            return self.transform(load_for_model(self.items[i], self.pre)), i, ""
        except ImageReadError as exc:
            size = self.pre.input_size
            return torch.zeros(3, size, size), i, str(exc)


def make_loader(
    data: Dataset,
    batch_size: int,
    shuffle: bool = False,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        data,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        generator=generator,
        drop_last=drop_last,
    )
