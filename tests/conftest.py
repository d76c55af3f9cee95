"""Shared fixtures: real pretrained weights, the bundled example photos, small copies of them."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Every test run gets its own embedding cache (never the user's ~/.cache).
os.environ.setdefault("MODELTAILOR_CACHE", tempfile.mkdtemp(prefix="modeltailor-test-cache-"))

from modeltailor.cli import example_folder, main  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    return example_folder()


def copy_classes(src: Path, dst: Path, classes: dict[str, str], per_class: int) -> Path:
    """dst/<new name>/ with the first `per_class` images of src/<class>."""
    for new, old in classes.items():
        (dst / new).mkdir(parents=True, exist_ok=True)
        for f in sorted((src / old).iterdir())[:per_class]:
            shutil.copy(f, dst / new / f.name)
    return dst


@pytest.fixture(scope="session")
def small_dir(tmp_path_factory, fashion_dir) -> Path:
    """2 classes x 12 images: enough for quick training-loop tests."""
    return copy_classes(
        fashion_dir,
        tmp_path_factory.mktemp("small"),
        {"sneaker": "sneaker", "trouser": "trouser"},
        12,
    )


@pytest.fixture(scope="session")
def probe_run(tmp_path_factory, fashion_dir) -> Path:
    """A linear-probe run on the bundled examples, trained once through the CLI."""
    run = tmp_path_factory.mktemp("runs") / "probe"
    assert main(["train", str(fashion_dir), "--output", str(run), "--quiet"]) == 0
    return run


def hymenoptera() -> Path:
    path = SHARED_DATA / "hymenoptera_data"
    if not path.is_dir():
        pytest.skip(f"real data not available at {path}")
    return path
