"""torch Datasets/DataLoaders over the dataset contract (decoding happens in workers)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

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


def start_epoch(seed: int, epoch: int) -> torch.Generator:
    """Make an epoch's randomness a function of (seed, epoch) alone; returns its shuffle
    generator.

    torch, numpy and `random` are reseeded too, so augmentation draws and dropout follow.
    Lightning's checkpoint restores weights, optimiser, schedule and callbacks but not random
    state: without this a run resumed after epoch k replayed other orders and augmentations
    than the uninterrupted run. Called where an epoch's data starts to be drawn (a training
    sampler's `__iter__`). Holds in the main process (`num_workers=0`, the default);
    persistent loader workers keep the generators of the epoch they started in.
    """
    state = np.random.SeedSequence([seed, epoch]).generate_state(2, np.uint64)
    value = int(state[0] >> 1)
    torch.manual_seed(value)
    np.random.seed(value % 2**32)
    random.seed(value)
    return torch.Generator().manual_seed(int(state[1] >> 1))


class EpochShuffle(Sampler[int]):
    """A fresh permutation every epoch, drawn from (seed, epoch) (`start_epoch`).

    Lightning calls `set_epoch` before each epoch (so a resumed run picks up the right one);
    without it, each pass over the sampler counts as the next epoch.
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        generator = start_epoch(self.seed, epoch)
        yield from torch.randperm(self.size, generator=generator).tolist()


def make_loader(
    data: Dataset,
    batch_size: int,
    shuffle: bool = False,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """Batches of `data`; shuffled ones in a fresh order per epoch from (seed, epoch)."""
    return DataLoader(
        data,
        batch_size=batch_size,
        sampler=EpochShuffle(len(data), seed) if shuffle else None,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(seed),
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
