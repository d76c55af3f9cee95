"""Exclude lists: items to leave out of training, one per line (what `tailor doctor` suggests
in exclude.txt and `tailor train --exclude FILE` honours).

A line names an item as the dataset shows it: a file path (images, audio, .txt texts) or a
table row's origin (`tickets.csv:line 12`). Relative paths are taken from the folder the
list is in first, then from the working directory; doctor writes absolute paths. Blank lines
and lines starting with `#` are ignored. The user's files are never touched: excluded items
are only left out of the dataset in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modeltailor.data.dataset import LabeledDataset
from modeltailor.errors import DataError

_LINE = ":line "


def item_key(item: Any, base: Path | None = None) -> str:
    """A canonical name for an item or an exclude line: the resolved path (plus the row for
    table rows), so `a/b.jpg`, `./a/b.jpg` and `/abs/a/b.jpg` are the same item."""
    name = str(getattr(item, "origin", item))
    path, sep, row = name.rpartition(_LINE)
    if not sep:
        path, row = name, ""
    p = Path(path)
    if base is not None and not p.is_absolute():
        p = base / p
    try:
        resolved = str(p.resolve())
    except (OSError, RuntimeError):
        resolved = str(p)
    return f"{resolved}{_LINE}{row}" if sep else resolved


def item_name(item: Any) -> str:
    """How exclude.txt names an item: absolute, so the list works from any folder."""
    return item_key(item)


def read_exclude(path: str | Path) -> list[str]:
    """The lines of an exclude list (comments and blanks dropped); a clear error if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such exclude list")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the exclude list ({exc})") from exc
    return [s for line in text.splitlines() if (s := line.strip()) and not s.startswith("#")]


def exclude_items(
    data: LabeledDataset, lines: list[str], list_path: str | Path | None = None
) -> tuple[LabeledDataset, list[str], list[str]]:
    """`data` without the items the lines name; also (removed item names, lines that named no
    item). Splits laid out on disk stay laid out, each without its excluded items."""
    base = Path(list_path).resolve().parent if list_path else None
    wanted: dict[str, str] = {}
    for line in lines:
        wanted.setdefault(item_key(line, base), line)
        wanted.setdefault(item_key(line), line)  # relative to the working directory
    keys = [item_key(item) for item in data.items]
    drop = {i for i, k in enumerate(keys) if k in wanted}
    matched = {wanted[keys[i]] for i in drop}
    unmatched = [line for line in lines if line not in matched]
    removed = [str(data.items[i]) for i in sorted(drop)]
    if not drop:
        return data, removed, unmatched
    return _without_indices(data, drop), removed, unmatched


def _without_indices(data: LabeledDataset, drop: set[int]) -> LabeledDataset:
    keep = [i for i in range(len(data)) if i not in drop]
    out = data.subset(keep)
    out.skipped = list(data.skipped)
    if data.predefined:
        dropped = {data.items[i] for i in drop}
        parts = {}
        for name, part in data.predefined.items():
            kept = part.subset([i for i, item in enumerate(part.items) if item not in dropped])
            kept.skipped = list(part.skipped)
            parts[name] = kept
        out.predefined = parts
    return out
