"""Folder-per-class datasets, shared by the file modalities (images, audio).

The layout rules and their error messages live here once: `root/<class>/<files>` or
`root/{train,val,test}/<class>/<files>`, hidden files ignored, a trained run's class names
enforced. A modality only says which file names are its own (`is_member`, for finding files
to predict on and for the "files lie directly in it" hint) and how to check one file cheaply
(`problem`: a reason to skip it, or None), as torchvision's `ImageFolder` takes a loader and
an extension list.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from modeltailor.data.dataset import LabeledDataset, Skipped
from modeltailor.errors import DataError

SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}

D = TypeVar("D", bound=LabeledDataset)


def visible_subfolders(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def find_files(
    paths: list[str | Path], is_member: Callable[[Path], bool]
) -> tuple[list[Path], list[Skipped]]:
    """Files to predict on: files given directly, and every member file in given folders."""
    found: list[Path] = []
    skipped: list[Skipped] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found.extend(f for f in sorted(p.rglob("*")) if f.is_file() and is_member(f))
        elif p.is_file():
            found.append(p)
        else:
            skipped.append(Skipped(str(p), "no such file or folder"))
    return found, skipped


def load_class_tree(
    root: str | Path,
    load_classes: Callable[[Path, list[str] | None], D],
    dataset_type: type[D],
    class_names: list[str] | None,
    noun: str,
) -> D:
    """Read `root/<class>/...`, or the user's own train/val/test folders when there are any
    (`split()` then returns those as given). `load_classes(folder, names)` reads one level."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (expected one sub-folder of {noun} per class)")
    split_dirs = {
        SPLIT_NAMES[d.name.lower()]: d
        for d in visible_subfolders(root)
        if d.name.lower() in SPLIT_NAMES
    }
    if "train" not in split_dirs:
        return load_classes(root, class_names)
    names = class_names or sorted(
        {d.name for sd in split_dirs.values() for d in visible_subfolders(sd)}
    )
    parts = {split: load_classes(d, names) for split, d in split_dirs.items()}
    return dataset_type.from_splits(parts, names, str(root), noun=noun)


def read_class_folders(
    root: Path,
    class_names: list[str] | None,
    noun: str,
    is_member: Callable[[Path], bool],
    problem: Callable[[Path], str | None],
) -> tuple[list[Path], list[int], list[str], list[Skipped]]:
    """(files, labels, class names, skipped) of `root/<class>/**`: every visible file is
    checked with `problem`, and one that has a problem is skipped with that reason."""
    class_dirs = visible_subfolders(root)
    if not class_dirs:
        loose = [f for f in root.iterdir() if f.is_file() and is_member(f)]
        hint = f" ({noun} lie directly in it: put each class in its own sub-folder)"
        hint = hint if loose else ""
        raise DataError(f"{root}: no class sub-folders found{hint}")
    names = class_names or [d.name for d in class_dirs]
    if class_names:
        unknown = [d.name for d in class_dirs if d.name not in class_names]
        if unknown:
            raise DataError(
                f"{root}: folders {unknown} are not classes of this model ({class_names})"
            )
    items: list[Path] = []
    labels: list[int] = []
    skipped: list[Skipped] = []
    for d in class_dirs:
        label = names.index(d.name)
        for f in sorted(d.rglob("*")):
            if not f.is_file() or f.name.startswith("."):
                continue
            reason = problem(f)
            if reason:
                skipped.append(Skipped(str(f), reason))
            else:
                items.append(f)
                labels.append(label)
    return items, labels, names, skipped
