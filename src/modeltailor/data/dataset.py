"""The one dataset contract every modality produces, its split and its checks.

A dataset is a list of items (file paths for images/audio, `TextItem`s for text), an integer label
per item and the ordered class names. Readers build it; strategies and the training loop only
ever see this contract, so a new modality adds a reader, not a new loop.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Self

import numpy as np

from modeltailor.errors import DataError


@dataclass(frozen=True)
class Skipped:
    """An input that was left out, and why (reported to the user and kept in config.json)."""

    path: str
    reason: str


@dataclass
class LabeledDataset:
    """Items with integer labels into `class_names`; `source` names where they came from."""

    items: list[Any]
    labels: list[int]
    class_names: list[str]
    source: str = ""
    skipped: list[Skipped] = field(default_factory=list)
    #: Splits the user laid out (train/ val/ test/ folders); `split()` returns them as given.
    predefined: dict[str, LabeledDataset] | None = None
    #: A group per item (e.g. the speaker): `split()` keeps each group within one part.
    groups: list[str] | None = None

    def __post_init__(self) -> None:
        if len(self.items) != len(self.labels):
            raise ValueError("items and labels differ in length")
        if self.groups is not None and len(self.groups) != len(self.items):
            raise ValueError("items and groups differ in length")
        self._digests: dict[Any, str] = {}

    def __len__(self) -> int:
        return len(self.items)

    @classmethod
    def from_splits(
        cls, parts: dict[str, Self], class_names: list[str], source: str, noun: str
    ) -> Self:
        """One dataset holding the splits the user laid out; `split()` returns them as given.

        A class present in val/test but absent from train cannot be learned, so it is refused
        here, naming the split's `source` and what its items are (`noun`: images, examples).
        """
        trained = {c for c, n in parts["train"].class_counts().items() if n}
        for part in parts.values():
            missing = [c for c, n in part.class_counts().items() if n and c not in trained]
            if missing:
                raise DataError(f"{part.source}: classes with no training {noun}: {missing}")
        return cls(
            items=[i for p in parts.values() for i in p.items],
            labels=[lab for p in parts.values() for lab in p.labels],
            class_names=class_names,
            source=source,
            skipped=[s for p in parts.values() for s in p.skipped],
            predefined=parts,  # type: ignore[arg-type]
        )

    def subset(self, indices: list[int] | np.ndarray, source: str | None = None) -> Self:
        """The same kind of dataset holding only `indices` (class names kept)."""
        indices = [int(i) for i in indices]
        sub = replace(
            self,
            items=[self.items[i] for i in indices],
            labels=[self.labels[i] for i in indices],
            source=source or self.source,
            skipped=[],
            predefined=None,
            groups=[self.groups[i] for i in indices] if self.groups is not None else None,
        )
        if hasattr(self, "_durations"):
            sub._durations = self._durations
        kept = set(sub.items)  # built once: inside the comprehension it was rebuilt per key
        sub._digests = {k: v for k, v in self._digests.items() if k in kept}
        return sub

    def without(self, bad: dict[Any, str]) -> Self:
        """Drop items found unusable (item -> reason), recording them as skipped."""
        keep = [i for i, item in enumerate(self.items) if item not in bad]
        sub = self.subset(keep)
        sub.skipped = self.skipped + [Skipped(str(k), v) for k, v in bad.items()]
        return sub

    def class_counts(self) -> dict[str, int]:
        counts = Counter(self.labels)
        return {name: counts.get(i, 0) for i, name in enumerate(self.class_names)}

    def digest(self, index: int) -> str:
        """Content hash of one item: the cache key, and how overlap between runs is found."""
        item = self.items[index]
        if item not in self._digests:
            self._digests[item] = content_digest(item)
        return self._digests[item]

    def digests(self) -> list[str]:
        return [self.digest(i) for i in range(len(self))]

    def validate(self, what: str = "dataset", min_per_class: int = 2) -> None:
        """Stop before any compute when the data cannot train a classifier."""
        where = self.source or what
        if len(self) == 0:
            raise DataError(f"{where}: no usable files found{self._skipped_hint()}")
        counts = self.class_counts()
        present = [c for c, n in counts.items() if n > 0]
        if len(present) < 2:
            raise DataError(
                f"{where}: need at least 2 classes to train a classifier, found "
                f"{len(present)} ({', '.join(present) or 'none'})"
            )
        small = {c: n for c, n in counts.items() if n < min_per_class}
        if small:
            listed = ", ".join(f"'{c}' has {n}" for c, n in small.items())
            raise DataError(
                f"{where}: every class needs at least {min_per_class} examples: {listed}"
            )

    def _skipped_hint(self) -> str:
        if not self.skipped:
            return ""
        first = self.skipped[0]
        return f" ({len(self.skipped)} skipped, first: {first.path}: {first.reason})"

    def split(
        self, train: float = 0.8, val: float = 0.1, test: float | None = None, seed: int = 0
    ) -> tuple[Self, Self | None, Self | None]:
        """Stratified (train, val, test). Splits laid out on disk are returned as they are.

        `test` defaults to what is left after train and val. A part with fraction 0 is None.
        """
        if self.predefined:
            p = self.predefined
            return p["train"], p.get("val"), p.get("test")  # type: ignore[return-value]
        test = round(1.0 - train - val, 6) if test is None else test
        if min(train, val, test) < 0 or abs(train + val + test - 1.0) > 1e-6 or train <= 0:
            raise ValueError(f"split fractions must be >= 0 and sum to 1, got {train}/{val}/{test}")
        if self.groups is not None:
            parts = group_split(self.groups, (train, val, test), seed)
        else:
            parts = stratified_split(self.labels, (train, val, test), seed)
        names = ("train", "val", "test")
        out = [
            self.subset(idx, f"{self.source} [{name}]") if len(idx) else None
            for idx, name in zip(parts, names, strict=True)
        ]
        out[0].skipped = list(self.skipped)  # the skipped files are reported once, with train
        return out[0], out[1], out[2]


def stratified_split(
    labels: list[int], fractions: tuple[float, ...], seed: int
) -> list[np.ndarray]:
    """Split indices per class with a seeded shuffle; every class keeps >= 1 training item.

    Rounding is done per class, so small classes still land in val/test when they can.
    """
    rng = np.random.default_rng(seed)
    labels_arr = np.asarray(labels)
    parts: list[list[int]] = [[] for _ in fractions]
    for cls in np.unique(labels_arr):
        idx = np.flatnonzero(labels_arr == cls)
        rng.shuffle(idx)
        n = len(idx)
        sizes = [int(round(n * f)) for f in fractions[1:]]
        while sum(sizes) > n - 1 and any(sizes):  # keep at least one for training
            k = int(np.argmax(sizes))
            sizes[k] -= 1
        bounds = np.cumsum([n - sum(sizes), *sizes])
        start = 0
        for part, end in zip(parts, bounds, strict=True):
            part.extend(idx[start:end].tolist())
            start = end
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def group_split(groups: list[str], fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Whole groups to each part (seeded order): val and test take groups until they hold
    their share of the items, training keeps the rest and at least one group."""
    rng = np.random.default_rng(seed)
    names = sorted(set(groups))
    if len(names) < 2:
        raise DataError(f"grouped split needs at least 2 groups, found {len(names)}: {names}")
    order = [names[i] for i in rng.permutation(len(names))]
    sizes = {g: 0 for g in names}
    for g in groups:
        sizes[g] += 1
    n = len(groups)
    assigned: dict[str, int] = {}
    pending = list(order)
    for part in range(len(fractions) - 1, 0, -1):  # test, then val
        target = fractions[part] * n
        held = 0
        while pending and len(pending) > 1 and held < target and fractions[part] > 0:
            g = pending.pop()
            assigned[g] = part
            held += sizes[g]
    for g in pending:
        assigned[g] = 0
    parts: list[list[int]] = [[] for _ in fractions]
    for i, g in enumerate(groups):
        parts[assigned[g]].append(i)
    return [np.asarray(p, dtype=np.int64) for p in parts]


def content_digest(item: Any) -> str:
    """sha1 of a file's bytes, of a text item's `.text`, or of a string item, hex.

    A text item hashes like the plain string of its text, so the same text read from another
    file or line (or given as a string) has the same digest: overlap is found by content.
    """
    if isinstance(item, Path):
        with open(item, "rb") as f:
            return hashlib.file_digest(f, "sha1").hexdigest()
    text = getattr(item, "text", item)
    return hashlib.sha1(str(text).encode("utf-8")).hexdigest()
