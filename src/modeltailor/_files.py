"""Folders written whole: what the caches and exports share."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path


def swap_into_place(
    staging: Path, target: Path, theirs_is_usable: Callable[[Path], bool] | None = None
) -> None:
    """Rename the finished `staging` folder to `target`, replacing what is there.

    The old folder is moved aside first and deleted after, so a reader sees the old folder or
    the new one, never a mix. When another process put its own folder at `target` in between
    (the rename fails), theirs is kept if `theirs_is_usable(target)` says it may be.
    """
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    if target.exists():
        os.rename(target, old)
    try:
        os.rename(staging, target)
    except OSError:
        if theirs_is_usable is None or not theirs_is_usable(target):
            raise
    shutil.rmtree(old, ignore_errors=True)
