"""Folder-per-class datasets, shared by the file modalities (images, audio).

The layout rules and their error messages live here once: `root/<class>/<files>` or
`root/{train,val,test}/<class>/<files>`, hidden files ignored, a trained run's class names
enforced. A modality only says which file names are its own (`is_member`, for finding files
to predict on and for the "files lie directly in it" hint) and how to check one file cheaply
(`problem`: a reason to skip it, or None), as torchvision's `ImageFolder` takes a loader and
an extension list.

Symbolic links are followed when they lead out of the dataset folder (a class folder kept on
another disk), never when they lead back into it or to a folder holding it: `self -> .` would
otherwise become a class holding every file again, and a link to another class or split reads
its files twice. Such links, and broken ones, are skipped and reported (`link_problem`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from modeltailor.data.dataset import LabeledDataset, Skipped
from modeltailor.errors import DataError

SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}

D = TypeVar("D", bound=LabeledDataset)


def visible_subfolders(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def link_problem(path: Path, dataset_root: Path) -> str | None:
    """Why a symbolic link is not followed, or None (not a link, or one leading elsewhere)."""
    if not path.is_symlink():
        return None
    try:
        target = path.resolve(strict=True)
        home = dataset_root.resolve(strict=True)
    except RuntimeError:
        return "a symbolic link loop: not followed"
    except OSError:
        return f"a broken link (to {os.readlink(path)}): nothing there"
    if target == home or target in home.parents:
        return (
            f"a link to {target}, which leads back to the dataset folder or above it (a "
            "loop): not followed"
        )
    if home in target.parents:
        return (
            f"a link to {target}, inside the dataset folder already: not followed (its files "
            "would be read twice)"
        )
    return None


def subfolders(
    folder: Path, dataset_root: Path, skipped: list[Skipped] | None = None
) -> list[Path]:
    """Visible sub-folders of `folder`; links that `link_problem` refuses are left out (and
    added to `skipped` when given)."""
    out = []
    for d in visible_subfolders(folder):
        problem = link_problem(d, dataset_root)
        if problem is None:
            out.append(d)
        elif skipped is not None:
            skipped.append(Skipped(str(d), problem))
    for f in folder.iterdir():  # a broken link is no folder: report it where one was expected
        if skipped is not None and not f.name.startswith(".") and f.is_symlink():
            if not f.exists():
                skipped.append(Skipped(str(f), link_problem(f, dataset_root) or "a broken link"))
    return out


def walk_files(folder: Path, dataset_root: Path, skipped: list[Skipped]) -> list[Path]:
    """Visible files under `folder` at any depth, sorted. Links are followed as `link_problem`
    says; the ones it refuses are added to `skipped`, and a folder reached twice (a loop
    outside the dataset) is read once."""
    found: list[Path] = []
    seen: set[Path] = set()

    def visit(d: Path) -> None:
        real = d.resolve()
        if real in seen:
            skipped.append(Skipped(str(d), "a folder already read through another link"))
            return
        seen.add(real)
        with os.scandir(d) as entries:
            for entry in entries:
                path = d / entry.name
                hidden = entry.name.startswith(".")
                problem = link_problem(path, dataset_root) if entry.is_symlink() else None
                if problem:
                    if not hidden:
                        skipped.append(Skipped(str(path), problem))
                elif entry.is_dir():
                    visit(path)
                elif entry.is_file() and not hidden:
                    found.append(path)

    visit(folder)
    return sorted(found)


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
    load_classes: Callable[[Path, list[str] | None, Path], D],
    dataset_type: type[D],
    class_names: list[str] | None,
    noun: str,
) -> D:
    """Read `root/<class>/...`, or the user's own train/val/test folders when there are any
    (`split()` then returns those as given). `load_classes(folder, names, root)` reads one
    level, `root` being the whole dataset's folder (for `link_problem`)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (expected one sub-folder of {noun} per class)")
    refused: list[Skipped] = []
    split_dirs = {
        SPLIT_NAMES[d.name.lower()]: d
        for d in visible_subfolders(root)
        if d.name.lower() in SPLIT_NAMES and not _refused_link(d, root, refused)
    }
    if "train" not in split_dirs:
        return load_classes(root, class_names, root)
    names = class_names or sorted(
        {d.name for sd in split_dirs.values() for d in subfolders(sd, root)}
    )
    parts = {split: load_classes(d, names, root) for split, d in split_dirs.items()}
    data = dataset_type.from_splits(parts, names, str(root), noun=noun)
    data.skipped = refused + data.skipped
    return data


def _refused_link(path: Path, dataset_root: Path, skipped: list[Skipped]) -> bool:
    problem = link_problem(path, dataset_root)
    if problem:
        skipped.append(Skipped(str(path), problem))
    return problem is not None


def read_class_folders(
    root: Path,
    class_names: list[str] | None,
    noun: str,
    is_member: Callable[[Path], bool],
    problem: Callable[[Path], str | None],
    dataset_root: Path | None = None,
) -> tuple[list[Path], list[int], list[str], list[Skipped]]:
    """(files, labels, class names, skipped) of `root/<class>/**`: every visible file is
    checked with `problem`, and one that has a problem is skipped with that reason. Links are
    followed only out of `dataset_root` (default `root`): see `link_problem`."""
    dataset_root = dataset_root or root
    skipped: list[Skipped] = []
    class_dirs = subfolders(root, dataset_root, skipped)
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
    for d in class_dirs:
        label = names.index(d.name)
        for f in walk_files(d, dataset_root, skipped):
            reason = problem(f)
            if reason:
                skipped.append(Skipped(str(f), reason))
            else:
                items.append(f)
                labels.append(label)
    return items, labels, names, skipped
