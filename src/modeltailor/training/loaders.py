"""torch Datasets/DataLoaders over the dataset contract (decoding happens in workers)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from modeltailor.backbones.catalogue import Preprocessing
from modeltailor.data.images import ImageReadError
from modeltailor.data.transforms import eval_transform, load_for_model


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


def decoded_batches(
    items: list, pre: Preprocessing, batch_size: int, num_workers: int, bad: dict
) -> Iterator[tuple[torch.Tensor, list[int], int]]:
    """Inference batches of the items that decode: (channels-last pixels, their indices into
    `items`, how many items the batch covered). Failures are added to `bad` (item -> reason)."""
    data = ImageTensors(items, None, eval_transform(pre), pre, tolerant=True)
    for x, idx, errors in make_loader(data, batch_size, num_workers=num_workers):
        ok = [k for k, e in enumerate(errors) if not e]
        for k, e in enumerate(errors):
            if e:
                bad[items[int(idx[k])]] = e
        pixels = x[ok].contiguous(memory_format=torch.channels_last)
        yield pixels, [int(idx[k]) for k in ok], len(errors)
