"""Distributed extraction (issue 21): `--devices 2 --distributed ddp` on a linear probe starts
two gloo processes on the CPU; each embeds half the items into the shared content-keyed cache
and rank 0 fits the head. The cache rows and the head must be the one-process run's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

EN = Path(__file__).parents[1] / "src" / "modeltailor" / "examples" / "text" / "tickets_en.csv"
SRC = Path(__file__).parents[1] / "src"


def _train(tmp_path: Path, name: str, *extra: str) -> tuple[Path, Path]:
    cache, run = tmp_path / f"cache-{name}", tmp_path / f"run-{name}"
    env = {**os.environ, "MODELTAILOR_CACHE": str(cache)}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC.resolve()), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "modeltailor.cli", "train", str(EN), "--quiet", "--backbone",
           "minilm-l6", "--embed-precision", "fp32", "--output", str(run), *extra]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return cache, run


def _rows(cache: Path) -> dict[str, np.ndarray]:
    """digest -> embedding row, over every shard of the (one) cache folder."""
    (folder,) = list((cache / "embeddings").iterdir())
    rows = {}
    for keys in folder.glob("*.keys.json"):
        data = np.load(folder / keys.name.replace(".keys.json", ".npy"))
        rows.update(zip(json.loads(keys.read_text()), data, strict=True))
    return rows


@pytest.mark.slow
def test_two_gloo_processes_make_the_one_process_cache_and_head(tmp_path):
    cache1, run1 = _train(tmp_path, "one")
    cache2, run2 = _train(tmp_path, "two", "--devices", "2", "--distributed", "ddp")
    one, two = _rows(cache1), _rows(cache2)
    assert one.keys() == two.keys() and len(one) > 30
    shards = list((next((cache2 / "embeddings").iterdir())).glob("*.keys.json"))
    assert len(shards) >= 2  # both processes wrote their share
    for digest, row in one.items():
        assert np.allclose(row, two[digest], atol=1e-5), digest
    head1, head2 = load_file(run1 / "model.safetensors"), load_file(run2 / "model.safetensors")
    assert head1.keys() == head2.keys()
    for key in head1:
        assert np.allclose(head1[key], head2[key], atol=1e-4), key
    fit = json.loads((run2 / "config.json").read_text(encoding="utf-8"))["fit"]
    assert fit["embeddings"]["processes"] == 2
    assert fit["C"] == json.loads((run1 / "config.json").read_text(encoding="utf-8"))["fit"]["C"]
