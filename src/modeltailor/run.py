"""The run directory: the one artefact every step reads and writes.

    runs/<name>/config.json      every setting, resolved (seed, versions, skipped files)
                labels.json      class names in output order
                model.safetensors the whole model (never pickle)
                metrics.json     test metrics (or validation, clearly labelled)
                history.csv      per-epoch training curves
                splits.json      which files (by content hash) were in which split
                checkpoints/     per-epoch Lightning checkpoints, for --resume
Every write goes to a temporary file first and is renamed into place, so a crash never leaves
a half-written file that loads.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from modeltailor.errors import RunError

MODEL_FILE = "model.safetensors"
FORMAT_VERSION = 1


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once: os.umask() is process-wide and racy across threads


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file + rename: a crash never leaves half a file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes 0600 files; give them the permissions any other new file would get
        # (a web export served by another user, a shared run folder).
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, ensure_ascii=False).encode("utf-8"))


def auto_run_name(source: str, backbone: str, strategy: str, runs_dir: Path) -> Path:
    """runs/<data>-<strategy>-<timestamp>, never an existing folder."""
    stem = re.sub(r"[^\w.-]+", "-", Path(source.rstrip("/")).name or "data").strip("-") or "data"
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = runs_dir / f"{stem}-{strategy}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = Path(f"{base}-{n}")
    return path


class RunDir:
    """Read and write the files of one run."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_json(self.path / name, obj)

    def read_json(self, name: str) -> Any:
        p = self.path / name
        if not p.is_file():
            raise RunError(f"{self.path}: not a complete run ({name} is missing)")
        return json.loads(p.read_text(encoding="utf-8"))

    def has(self, name: str) -> bool:
        return (self.path / name).is_file()

    def save_model(self, state: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
        from safetensors.torch import save

        tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
        atomic_write_bytes(self.path / MODEL_FILE, save(tensors, metadata=metadata))

    def load_model_state(self) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        p = self.path / MODEL_FILE
        if not p.is_file():
            raise RunError(f"{self.path}: no {MODEL_FILE} here (is this a finished run?)")
        return load_file(str(p))

    def write_history(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        fields: list[str] = []
        for row in rows:
            fields.extend(k for k in row if k not in fields)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_bytes(self.path / "history.csv", buf.getvalue().encode("utf-8"))

    def last_checkpoint(self) -> Path | None:
        p = self.checkpoints / "last.ckpt"
        return p if p.is_file() else None
