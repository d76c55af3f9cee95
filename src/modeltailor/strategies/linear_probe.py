"""linear-probe (feature extraction): the backbone stays frozen; its embeddings are computed
once, cached on disk, and a regularised linear head is fitted on them in seconds."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from modeltailor.strategies.base import FitContext, FitResult, Strategy, register_strategy
from modeltailor.training.distributed import ONE_PROCESS, Shard, extraction_shard
from modeltailor.training.features import EmbeddingCache, extract_with
from modeltailor.training.heads import C_GRID, fit_logreg_head, selection_record, stack_groups
from modeltailor.training.numerics import (
    CHECK_ITEMS_FROM_TRAIN,
    MAX_CHECK_ITEMS,
    MIN_CHECK_ITEMS,
    MIN_SPEEDUP,
    NumericPlan,
    accuracy_decision,
    extraction_device,
    load_decision,
    plan_numerics,
    save_decision,
    speed_decision,
)
from modeltailor.training.onnx_embed import OnnxEmbedUnavailable


@dataclass(frozen=True)
class LinearProbe(Strategy):
    def fit(self, model, train, val, context: FitContext) -> FitResult:
        return probe_head(model, train, val, context)


def probe_head(model, train, val, context: FitContext) -> FitResult:
    """Embed (cached, in the numeric path `numerics.py` picks), choose the regularisation by
    stratified k-fold cross-validation over the train + validation embeddings (grouped when
    the data carry groups), fit the head on the training data. The result holds the datasets
    minus files that failed to decode.
    """
    settings = context.settings
    shard = extraction_shard(settings)
    device = extraction_device(settings.accelerator)
    plan = plan_numerics(settings.embed_precision, context.spec, context.pre, model, device)
    if plan.check and shard.world_size > 1:  # the check compares paths in one process
        why = "several processes embed: paths are checked by a one-process run first; fp32"
        plan = replace(plan, path="fp32", check=False, reason=why)
    started = time.perf_counter()
    if plan.check:
        probe = _checked_probe(model, train, val, context, plan)
    else:
        probe = _probe(model, train, val, context, plan, shard)
    if probe is None:  # another process than rank 0: its part of the cache is written
        return FitResult(is_main_process=False)
    probe.embeddings["seconds"] = round(time.perf_counter() - started, 3)
    if shard.world_size > 1:
        probe.embeddings["processes"] = shard.world_size
    return _result(probe)


@dataclass
class _Probe:
    """A fitted probe: its embeddings, data, head choice and the embedding record."""

    x_train: np.ndarray
    x_val: np.ndarray | None
    train: Any
    val: Any
    fitted: dict[str, Any]
    cache: EmbeddingCache
    embeddings: dict[str, Any] = field(default_factory=dict)


def _probe(
    model, train, val, context: FitContext, plan: NumericPlan, shard: Shard = ONE_PROCESS
) -> _Probe | None:
    """Embed train and val in `plan.path` (cached; this process's share of them), fit the
    head (rank 0 only: None on the other processes)."""
    pre, s = context.pre, context.settings
    cache = EmbeddingCache(context.spec, pre, numerics=plan.path, device=plan.device)
    args = (s.batch_size, s.num_workers, s.verbose, shard)
    try:
        (x_train,), bad, timing = extract_with(model, train, pre, [cache], *args)
    except OnnxEmbedUnavailable as exc:  # decided or forced onnx, and it fails here now
        fp32 = replace(plan, path="fp32", reason=f"ONNX Runtime: {exc}; fp32")
        return _probe(model, train, val, context, fp32, shard)
    train = train.without(bad) if bad else train
    x_val = None
    if val is not None:
        (x_val,), bad_val, val_timing = extract_with(model, val, pre, [cache], *args)
        val = val.without(bad_val) if bad_val else val
        timing = _add_timing(timing, val_timing)
    if not shard.is_main:
        return None
    fitted = _fit(model, x_train, train, x_val, val, context)
    record = {**plan.record(), **_speed(timing, plan.path)}
    return _Probe(x_train, x_val, train, val, fitted, cache, record)


def _checked_probe(model, train, val, context: FitContext, plan: NumericPlan) -> _Probe:
    """auto's first fit of this backbone on this machine: embed the check items (validation,
    else some training items) in fp32 and every candidate path at once; keep the fastest
    candidate whose forward pass is at least MIN_SPEEDUP x fp32's and with whose embeddings
    the probe's accuracy stays within the accuracy rule of its accuracy on fp32 ones; record
    the decision for later fits."""
    check = _val_sample(val) if val is not None and len(val) else _train_sample(train)
    if len(check) < MIN_CHECK_ITEMS:
        why = f"{len(check)} check items are too few to judge other paths by "
        why += f"(< {MIN_CHECK_ITEMS}); fp32"
        return _probe(model, train, val, context, replace(plan, path="fp32", reason=why))
    pre, s = context.pre, context.settings
    paths = ["fp32", *plan.candidates]
    args = (s.batch_size, s.num_workers, s.verbose)
    figures: dict[str, Any] = {}

    def embed_check_items():
        caches = [EmbeddingCache(context.spec, pre, numerics=p, device=plan.device) for p in paths]
        return extract_with(model, check, pre, caches, *args)

    try:
        rows, bad, timing = embed_check_items()
    except OnnxEmbedUnavailable as exc:  # raised before any row is written: check without it
        figures["onnx"] = str(exc)
        paths.remove("onnx")
        rows, bad, timing = embed_check_items()
    check = check.without(bad) if bad else check
    figures["check_items"] = len(check)
    speed = {p: speed_decision(timing["batch_seconds"], p)[1] for p in paths[1:]}
    figures |= {f"{p}_speedup": x for p, x in speed.items()}
    fast = sorted((p for p in speed if speed[p] >= MIN_SPEEDUP), key=speed.get, reverse=True)
    if not fast:
        earlier = load_decision(context.spec, pre, plan.device, plan.hardware, plan.candidates)
        figures["slower_checks"] = (earlier or {}).get("slower_checks", 0) + 1
        said = ", ".join(f"{p} {x}x" for p, x in speed.items()) or "no other path ran"
        why = f"no path was >= {MIN_SPEEDUP}x fp32's forward speed here ({said})"
        return _decided(model, train, val, context, plan, "fp32", why, figures)
    y = np.asarray(check.labels)
    moved = []
    for path in fast:  # fit in the fastest; the head must judge its check items alike
        probe = _probe(model, train, val, context, replace(plan, path=path, check=False))
        acc32 = _head_accuracy(model, rows[0], y)
        acc = _head_accuracy(model, rows[paths.index(path)], y)
        figures |= {"accuracy_fp32_embeddings": acc32, f"accuracy_{path}_embeddings": acc}
        if accuracy_decision(acc32, acc):
            why = f"{path} {speed[path]}x fp32's speed, probe accuracy {acc32:.4f} (fp32) "
            why += f"vs {acc:.4f}"
            save_decision(plan, context.spec, pre, {"numeric_path": path, "why": why, **figures})
            probe.embeddings |= {"reason": f"checked now: {why}", "check": figures}
            return probe
        moved.append(f"{path} embeddings moved the probe's accuracy {acc32:.4f} -> {acc:.4f}")
    return _decided(model, train, val, context, plan, "fp32", "; ".join(moved), figures)


def _decided(model, train, val, context, plan, path: str, why: str, figures) -> _Probe:
    """Record the decision for this machine, then fit in `path`."""
    decided = {"numeric_path": path, "why": why, **figures}
    save_decision(plan, context.spec, context.pre, decided)
    chosen = replace(plan, path=path, check=False, reason=f"checked now: {why}")
    probe = _probe(model, train, val, context, chosen)
    probe.embeddings["check"] = figures
    return probe


def _val_sample(val):
    """The validation items, or a seeded sample of MAX_CHECK_ITEMS of them."""
    if len(val) <= MAX_CHECK_ITEMS:
        return val
    keep = np.sort(np.random.default_rng(0).choice(len(val), MAX_CHECK_ITEMS, replace=False))
    return val.subset(keep, f"{val.source} [check]")


def _train_sample(train):
    """Without validation data, the check runs on the first training items."""
    n = min(len(train), CHECK_ITEMS_FROM_TRAIN)
    return train.subset(np.arange(n), f"{train.source} [check]") if n < len(train) else train


def _head_accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    with torch.inference_mode():
        pred = model.classifier()(torch.from_numpy(x)).argmax(1).numpy()
    return round(float((pred == y).mean()), 6)


def _add_timing(a: dict, b: dict) -> dict:
    def merged(key: str) -> dict:
        return {k: a[key].get(k, 0) + b[key].get(k, 0) for k in {*a[key], *b[key]}}

    return {
        "items": a["items"] + b["items"],
        "wall_seconds": a["wall_seconds"] + b["wall_seconds"],
        "forward_seconds": merged("forward_seconds"),
        "rows": merged("rows"),
        "batch_seconds": {},
    }


def _speed(timing: dict, path: str) -> dict[str, Any]:
    """The measured speed config.json records: items embedded now and per second (decode
    included), and the forward pass alone in rows per second."""
    out: dict[str, Any] = {"items_embedded": timing["items"]}
    if timing["items"] and timing["wall_seconds"]:
        out["items_per_second"] = round(timing["items"] / timing["wall_seconds"], 2)
    seconds, rows = timing["forward_seconds"].get(path), timing["rows"].get(path)
    if seconds and rows:
        out["forward_rows_per_second"] = round(rows / seconds, 2)
    return out


def _fit(model, x_train, train, x_val, val, context: FitContext) -> dict[str, Any]:
    y_val = np.asarray(val.labels) if val is not None and len(val) else None
    n_val = 0 if y_val is None else len(y_val)
    return fit_logreg_head(
        model,
        x_train,
        np.asarray(train.labels),
        x_val,
        y_val,
        len(train.class_names),
        context.settings,
        C_GRID,
        scale=True,
        cv=True,
        groups=stack_groups(train, val, len(train), n_val),
    )


def _result(probe: _Probe) -> FitResult:
    fitted = probe.fitted
    info = {
        "head": "logistic regression (L2) on standardised embeddings, folded into the linear head",
        "C": fitted["C"],
        "selected_by": fitted["selected_by"],
        "embedding_cache": str(probe.cache.dir),
        "embedded_items": len(probe.cache),
        "embeddings": probe.embeddings,
        "class_weights": "balanced" if fitted["balanced"] else None,
        "selection": selection_record(fitted, "embeddings"),
    }
    features = (probe.x_train, probe.x_val)
    return FitResult(
        fitted["rows"],
        info,
        features=features,
        head_choice=fitted,
        train=probe.train,
        val=probe.val,
    )


LINEAR_PROBE = register_strategy(
    LinearProbe(
        name="linear-probe",
        requires=frozenset({"pretrained", "embeddings"}),
        description="frozen backbone, cached embeddings, logistic-regression head (seconds)",
        uses_feature_cache=True,
        epochs=0,
    )
)
