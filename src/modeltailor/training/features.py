"""Embedding cache: a frozen backbone's features, computed once per file and kept on disk.

Keyed by file content (sha1) under a folder keyed by backbone weights + preprocessing + numeric
path (`numerics.py`: bf16 rows never mix with fp32 ones), so a renamed or moved file is still a
hit and a changed file is not. Embeddings are stored in
shards of a few hundred rows, each written atomically: memory does not grow with the dataset,
and an interrupted extraction resumes at the last finished shard.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from modeltailor._progress import progress_bar
from modeltailor.backbones.catalogue import BackboneSpec, Preprocessing
from modeltailor.backbones.model import TailoredModel
from modeltailor.data.dataset import LabeledDataset
from modeltailor.run import atomic_write_bytes
from modeltailor.training.distributed import ONE_PROCESS, Shard
from modeltailor.training.inputs import pipeline_for, pooled_outputs
from modeltailor.training.numerics import autocast

SHARD_ROWS = 256
CACHE_FORMAT = 1


def cache_root() -> Path:
    """$MODELTAILOR_CACHE, else ~/.cache/modeltailor (XDG_CACHE_HOME respected)."""
    if os.environ.get("MODELTAILOR_CACHE"):
        return Path(os.environ["MODELTAILOR_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "modeltailor"


def stored_result(kind: str, key: bytes, compute):
    """`compute()`'s JSON-able result, kept under `<cache>/<kind>/` by the sha1 of `key`: a
    cached rerun reads back what it would compute again from the same cached features (the
    baseline's score, the cross-validation's table). A missing or unreadable file is computed
    and written atomically; the key must hold everything the result depends on."""
    path = cache_root() / kind / f"{hashlib.sha1(key).hexdigest()}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))["result"]
    except (OSError, ValueError, KeyError):
        pass
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps({"result": result}).encode("utf-8"))
    return result


class EmbeddingCache:
    """Sharded on-disk store: content digest -> embedding row, for one numeric path.

    fp32 on the CPU keeps the key it had before numeric paths existed (caches made then stay
    valid); any other path or device is part of the key.
    """

    def __init__(
        self,
        spec: BackboneSpec,
        pre: Preprocessing,
        root: Path | None = None,
        numerics: str = "fp32",
        device: str = "cpu",
    ) -> None:
        self.numerics = numerics
        self.device = device
        self.spec = spec
        self.root = root or cache_root()
        key = {
            "format": CACHE_FORMAT,
            "architecture": spec.architecture,
            "weights": spec.weights_identity(),
            "preprocessing": pre.to_dict(),
        }
        if numerics != "fp32":
            key["numerics"] = numerics
        if device != "cpu":
            key["device"] = device
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        self.dir = self.root / "embeddings" / f"{spec.name.replace('/', '_')}-{digest}"
        self.dir.mkdir(parents=True, exist_ok=True)
        if not (self.dir / "key.json").exists():
            atomic_write_bytes(self.dir / "key.json", json.dumps(key, indent=1).encode())
        self._index: dict[str, tuple[str, int]] = {}
        self._load_index()

    def reload(self) -> None:
        """See the shards other processes wrote since this one was opened."""
        self._load_index()

    def _load_index(self) -> None:
        for keys_file in sorted(self.dir.glob("*.keys.json")):
            shard = keys_file.name.removesuffix(".keys.json")
            if not (self.dir / f"{shard}.npy").exists():
                continue
            for row, digest in enumerate(json.loads(keys_file.read_text())):
                self._index[digest] = (shard, row)

    def __contains__(self, digest: str) -> bool:
        return digest in self._index

    def __len__(self) -> int:
        return len(self._index)

    def write_shard(self, digests: list[str], rows: np.ndarray) -> None:
        """Rows first, then their keys: a shard without its keys file is never read."""
        shard = uuid.uuid4().hex
        tmp = self.dir / f".{shard}.npy.tmp"
        with open(tmp, "wb") as f:
            np.save(f, rows.astype(np.float32, copy=False))
        os.replace(tmp, self.dir / f"{shard}.npy")
        atomic_write_bytes(self.dir / f"{shard}.keys.json", json.dumps(digests).encode())
        for row, digest in enumerate(digests):
            self._index[digest] = (shard, row)

    def read(self, digests: list[str]) -> np.ndarray:
        """Rows for `digests`, in order, gathered shard by shard from memory-mapped files."""
        by_shard: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for out_row, digest in enumerate(digests):
            shard, row = self._index[digest]
            by_shard[shard].append((out_row, row))
        out: np.ndarray | None = None
        for shard, pairs in by_shard.items():
            data = np.load(self.dir / f"{shard}.npy", mmap_mode="r")
            if out is None:
                out = np.empty((len(digests), data.shape[1]), dtype=np.float32)
            dst, src = zip(*pairs, strict=True)
            out[list(dst)] = data[list(src)]
        return out if out is not None else np.empty((0, 0), dtype=np.float32)


def extract_embeddings(
    model: TailoredModel,
    dataset: LabeledDataset,
    pre: Preprocessing,
    cache: EmbeddingCache,
    batch_size: int = 32,
    num_workers: int = 0,
    verbose: bool = True,
) -> tuple[np.ndarray, dict]:
    """Embeddings of every usable item, and {item: reason} for the files that failed to decode.

    Only files whose content is not in the cache are decoded and run through the backbone,
    in the cache's numeric path.
    """
    (rows,), bad, _ = extract_with(model, dataset, pre, [cache], batch_size, num_workers, verbose)
    return rows, bad


@torch.inference_mode()
def extract_with(
    model: TailoredModel,
    dataset: LabeledDataset,
    pre: Preprocessing,
    caches: Sequence[EmbeddingCache],
    batch_size: int = 32,
    num_workers: int = 0,
    verbose: bool = True,
    shard: Shard = ONE_PROCESS,
) -> tuple[list[np.ndarray], dict, dict]:
    """Embeddings from each cache (one per numeric path), every item decoded once for all.

    With several processes (`shard`), each embeds every world_size-th missing item into the
    shared cache; after all have finished, each reads every row (rows another process could
    not decode are tried again here, which names the file and the reason).

    Returns (rows per cache, {item: reason} for files that failed to decode, timing): timing
    has how many items were embedded now and in how many seconds, and per path the forward
    seconds and rows and each batch's seconds, without the first batch (one-off kernel set-up:
    not the steady speed).
    """
    digests = dataset.digests()
    todo: dict[str, int] = {}
    for i, d in enumerate(digests):
        if d not in todo and not all(d in cache for cache in caches):
            todo[d] = i
    bad: dict = {}
    timing: dict = {
        "items": len(todo),
        "wall_seconds": 0.0,
        "forward_seconds": {},
        "rows": {},
        "batch_seconds": {},
    }
    started = time.perf_counter()
    mine = dict(list(todo.items())[shard.rank :: shard.world_size])
    if mine:
        bad = _embed_missing(
            model, dataset, pre, caches, mine, batch_size, num_workers, verbose, timing
        )
    if shard.world_size > 1:
        shard.wait()
        for cache in caches:
            cache.reload()
        left = {d: i for d, i in todo.items() if d not in mine and not _in_all(d, caches)}
        if left:  # another process could not decode them: say which and why
            bad |= _embed_missing(
                model, dataset, pre, caches, left, batch_size, num_workers, verbose, timing
            )
    timing["wall_seconds"] = time.perf_counter() - started if todo else 0.0
    good = [d for i, d in enumerate(digests) if dataset.items[i] not in bad]
    return [cache.read(good) for cache in caches], bad, timing


def _in_all(digest: str, caches: Sequence[EmbeddingCache]) -> bool:
    return all(digest in cache for cache in caches)


class _TimedEmbed:
    """The backbone's `embed` in one numeric path, on one device, timed batch by batch."""

    def __init__(self, net: TailoredModel, path: str, device: str, timing: dict, ort=None):
        self.net, self.path, self.device, self.timing = net, path, device, timing
        self.ort = ort  # the path is onnx: its OrtEmbedder
        self.batches = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        started = time.perf_counter()
        if self.ort is not None:
            out = self.ort(x)
        else:
            with autocast(self.path, self.device):
                out = self.net.embed(x.to(self.device, non_blocking=True)).float().cpu()
        self.batches += 1
        if self.batches > 1:  # the first batch sets kernels up: not the steady speed
            took = time.perf_counter() - started
            self.timing["batch_seconds"].setdefault(self.path, []).append(took)
            seconds, rows = self.timing["forward_seconds"], self.timing["rows"]
            seconds[self.path] = seconds.get(self.path, 0.0) + took
            rows[self.path] = rows.get(self.path, 0) + len(x)
        return out


def _embed_missing(
    model, dataset, pre, caches, todo, batch_size, num_workers, verbose, timing
) -> dict:
    """Embed the items not yet cached, a shard at a time (an interruption loses one shard)."""
    order = list(todo.values())
    digest_of = list(todo.keys())
    pipeline = pipeline_for(model, pre)
    device = caches[0].device
    net = model.eval().to(device)
    orts = {id(c): _ort_embedder(net, c, pre) for c in caches if c.numerics == "onnx"}
    if pipeline.channels_last:
        net = net.to(memory_format=torch.channels_last)
    embeds = [_TimedEmbed(net, c.numerics, device, timing, orts.get(id(c))) for c in caches]

    def embed(x: torch.Tensor) -> torch.Tensor:
        outs = [e(x) for e in embeds]
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)

    bad: dict = {}
    from modeltailor.modalities import get_modality

    noun = get_modality(pre.modality).noun
    try:
        with progress_bar(len(order), f"embedding {noun}", verbose) as bar:
            for start in range(0, len(order), SHARD_ROWS):
                chunk = order[start : start + SHARD_ROWS]
                items = [dataset.items[i] for i in chunk]
                rows, kept = pooled_outputs(
                    embed, pipeline, items, batch_size, num_workers, bad, bar.advance
                )
                _write_shards(caches, [digest_of[start + k] for k in kept], rows)
    finally:
        model.to("cpu")
    return bad


def _ort_embedder(net: TailoredModel, cache: EmbeddingCache, pre: Preprocessing):
    """The ONNX Runtime embedder of the onnx path (traced once, checked against `net`)."""
    from modeltailor.modalities import get_modality
    from modeltailor.training.onnx_embed import OnnxEmbedUnavailable, OrtEmbedder

    example = get_modality(pre.modality).embedding_example(pre)
    if example is None:
        raise OnnxEmbedUnavailable(f"{pre.modality} backbones are not traced to ONNX Runtime")
    return OrtEmbedder(net, cache.spec, example, cache.root)


def _write_shards(caches: Sequence[EmbeddingCache], digests: list[str], rows: np.ndarray) -> None:
    """Each cache gets its own columns of `rows`, for the digests it lacks."""
    if not digests:
        return
    width = rows.shape[1] // len(caches)
    for k, cache in enumerate(caches):
        missing = [r for r, d in enumerate(digests) if d not in cache]
        if missing:
            part = rows[missing, k * width : (k + 1) * width]
            cache.write_shard([digests[r] for r in missing], part)
