"""Pinned npm packages for the browser exports, installed once into a cache folder.

The web page needs JavaScript that Python does not ship (onnxruntime-web, a tokenizer for text
models). Each is pinned to one version and installed with `npm` from the registry the first
time an export needs it, into `$MODELTAILOR_NPM_CACHE` (else `<modeltailor cache>/npm`), one
folder per package and version, and reused by every later export: only the first export needs
Node.js and registry access.

npm installs into a staging folder that is renamed into place, so an interrupted or concurrent
install never leaves a half-installed package that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from modeltailor.export.base import ExportError

NPM_TIMEOUT_S = 600


def npm_cache_root() -> Path:
    """$MODELTAILOR_NPM_CACHE, else <modeltailor cache>/npm: npm packages kept between exports."""
    if os.environ.get("MODELTAILOR_NPM_CACHE"):
        return Path(os.environ["MODELTAILOR_NPM_CACHE"])
    from modeltailor.training.features import cache_root

    return cache_root() / "npm"


def install_command(target: Path, name: str, version: str) -> list[str]:
    """The npm command that installs `name@version` under `target` (also shown to users)."""
    return [
        "npm", "install", "--prefix", str(target), f"{name}@{version}",
        "--no-audit", "--no-fund", "--ignore-scripts", "--fetch-retries=1",
        "--fetch-timeout=60000",
    ]  # fmt: skip


def _folder_name(name: str, version: str) -> str:
    """`@scope/pkg` -> `scope-pkg-<version>`: one flat cache folder per package and version."""
    return f"{name.lstrip('@').replace('/', '-')}-{version}"


def _package_ok(package: Path, version: str, files: Sequence[str]) -> bool:
    """The install is complete and is the pinned version (an interrupted install is not)."""
    try:
        meta = json.loads((package / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return meta.get("version") == version and all((package / f).is_file() for f in files)


def npm_package(
    name: str, version: str, files: Sequence[str], what: str, root: Path | None = None
) -> Path:
    """The folder of npm package `name@version` (node_modules/<name>), installed if needed.

    `files` (relative to the package folder) must all exist for an install to count as
    complete; `what` says in error messages which export needs the package.
    """
    target = (root or npm_cache_root()) / _folder_name(name, version)
    package = target / "node_modules" / name
    if _package_ok(package, version, files):
        return package
    manual = " ".join(install_command(target, name, version))
    if not shutil.which("npm"):
        raise ExportError(
            f"{what} needs {name} from the npm registry, and npm is not installed: install "
            f"Node.js (it ships npm), or on another machine run `{manual}` and copy {target} here"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        _npm_install(staging, name, version, manual)
        if not _package_ok(staging / package.relative_to(target), version, files):
            raise ExportError(f"npm installed {name}@{version} without {', '.join(files)}")
        _move_into_place(staging, target, package, version, files)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return package


def _move_into_place(
    staging: Path, target: Path, package: Path, version: str, files: Sequence[str]
) -> None:
    """Rename the fresh install into place, unless a concurrent export got there first."""
    if _package_ok(package, version, files):
        return
    shutil.rmtree(target, ignore_errors=True)  # an incomplete earlier install
    try:
        staging.rename(target)
    except OSError:
        if not _package_ok(package, version, files):
            raise


def _npm_install(prefix: Path, name: str, version: str, manual: str) -> None:
    try:
        done = subprocess.run(
            install_command(prefix, name, version),
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ExportError(f"npm install of {name} failed ({exc}); run: {manual}") from exc
    if done.returncode:
        tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise ExportError(
            f"npm could not install {name}@{version} (is the npm registry reachable?): "
            f"{tail}. With network access, run: {manual}"
        )
