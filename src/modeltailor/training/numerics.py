"""Which numbers a frozen backbone embeds in: fp32, or bf16 autocast where the hardware is fast.

Why: on a CPU with AMX, bf16 autocast runs EfficientNet-Lite0 about 1.4x faster than fp32
(DESIGN.md, speed facts), and a GPU has bf16 tensor cores; a CPU without them emulates bf16 and
gets slower. Machines here differ from session to session, so the hardware is detected, never
assumed, and `auto` keeps bf16 only after checking it on this machine: on validation items, the
bf16 forward pass must be clearly faster and the probe's validation accuracy on bf16 embeddings
within the accuracy rule (`MAX_ACCURACY_DROP`, the one `tailor export` applies to int8) of its
accuracy on fp32 embeddings. That check costs one extra fp32 pass over the validation items, so
it is made once per backbone, preprocessing and machine, and the decision is cached beside the
embeddings. bf16 and fp32 embeddings live in different cache folders (`EmbeddingCache`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from modeltailor.defaults import MAX_ACCURACY_DROP
from modeltailor.errors import ModelTailorError

#: What `--embed-precision` accepts: decide (auto) or force one numeric path.
SETTINGS = ("auto", "fp32", "bf16")
#: `auto` keeps bf16 only when its forward pass is at least this much faster than fp32's.
BF16_MIN_SPEEDUP = 1.1
#: A "bf16 is not faster" verdict is final only after this many checks on separate fits
#: agree (load from other processes on a shared machine can hide bf16's gain once); an
#: accuracy verdict, or bf16 found faster, is final at once.
SPEED_CHECKS = 3
#: Fewer check items than this decide nothing: the timing and the accuracy would be noise.
MIN_CHECK_ITEMS = 64
#: Without validation data, this many training items are the check set.
CHECK_ITEMS_FROM_TRAIN = 256
#: CPU flags under which oneDNN runs bf16 natively (anything else emulates it).
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags: /proc/cpuinfo on Linux, else what torch's own probes say."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    probes = {"amx_bf16": "_is_amx_tile_supported", "avx512_bf16": "_is_avx512_bf16_supported"}
    found = set()
    for flag, probe in probes.items():
        with contextlib.suppress(Exception):
            if getattr(torch.cpu, probe)():
                found.add(flag)
    return frozenset(found)


def cpu_model() -> str:
    """The CPU's model name (part of what a cached decision is keyed by)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    import platform

    return platform.processor() or platform.machine()


def bf16_hardware(device: str, flags: frozenset[str] | None = None) -> str | None:
    """What makes bf16 fast on `device`: 'cuda', a CPU flag from BF16_CPU_FLAGS (AMX first),
    or None, in which case `auto` keeps fp32 without trying bf16."""
    if device == "cuda":
        return "cuda" if torch.cuda.is_bf16_supported() else None
    flags = cpu_flags() if flags is None else flags
    return next((f for f in BF16_CPU_FLAGS if f in flags), None)


def extraction_device(accelerator: str = "auto") -> str:
    """'cuda' when a GPU is there and the settings allow it, else 'cpu'."""
    wants_gpu = accelerator in ("auto", "gpu", "cuda")
    return "cuda" if wants_gpu and torch.cuda.is_available() else "cpu"


@contextlib.contextmanager
def autocast(path: str, device: str) -> Iterator[None]:
    """bf16 autocast for the bf16 path; nothing at all for fp32 (today's numbers, exactly)."""
    if path == "bf16":
        with torch.autocast(device_type=device, dtype=torch.bfloat16):
            yield
    else:
        yield


@dataclass
class NumericPlan:
    """The numeric path one fit embeds with, and why."""

    setting: str
    #: "fp32" or "bf16": the path to embed with (with `check`, the candidate to check).
    path: str
    device: str
    hardware: str | None
    reason: str
    #: auto with bf16 hardware and no decision yet: this fit checks bf16 and records the result.
    check: bool = False

    def record(self) -> dict[str, Any]:
        """What config.json says (fit.embeddings)."""
        return {
            "numeric_path": self.path,
            "setting": self.setting,
            "device": self.device,
            "bf16_hardware": self.hardware,
            "reason": self.reason,
        }


def _is_torch_graph(model: Any) -> bool:
    """Frozen-only backbones (numpy, ONNX) have no parameters besides the head: autocast
    cannot apply to them."""
    head = {id(p) for p in model.head_parameters()}
    return any(p.is_floating_point() and id(p) not in head for p in model.parameters())


def plan_numerics(setting: str, spec: Any, pre: Any, model: Any, device: str) -> NumericPlan:
    """The plan for `setting` (SETTINGS) on this machine; auto reads a cached decision."""
    if setting not in SETTINGS:
        raise ModelTailorError(f"embed_precision={setting!r}: one of {', '.join(SETTINGS)}")
    hardware = bf16_hardware(device)

    def plan(path: str, reason: str, check: bool = False) -> NumericPlan:
        return NumericPlan(setting, path, device, hardware, reason, check)

    if setting == "fp32":
        return plan("fp32", "forced (embed_precision=fp32)")
    if not _is_torch_graph(model):
        return plan("fp32", "the backbone is not a torch graph: bf16 autocast does not apply")
    if setting == "bf16":
        slow = "" if hardware else "; no bf16 hardware found, so it runs emulated (slow)"
        return plan("bf16", f"forced (embed_precision=bf16){slow}")
    if hardware is None:
        return plan("fp32", f"no bf16 hardware ({' / '.join(BF16_CPU_FLAGS)} / GPU) found")
    decided = load_decision(spec, pre, device, hardware)
    if decided is not None and decided.get("slower_checks", SPEED_CHECKS) < SPEED_CHECKS:
        # bf16 measured slower, perhaps only because the machine was busy: check again
        return plan("bf16", "checking bf16 on this machine again", check=True)
    if decided is not None:
        return plan(decided["numeric_path"], f"decided on this machine: {decided['why']}")
    return plan("bf16", "checking bf16 on this machine", check=True)


# -- cached decisions ---------------------------------------------------------------------------


def decision_file(spec: Any, pre: Any, device: str, hardware: str | None) -> Path:
    """Where auto's decision for this backbone, preprocessing and machine is kept."""
    from modeltailor.training.features import cache_root

    key = {
        "architecture": spec.architecture,
        "weights": spec.weights_identity(),
        "preprocessing": pre.to_dict(),
        "device": device,
        "hardware": hardware,
        "cpu": cpu_model(),
        "torch": torch.__version__.split("+")[0],
    }
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_root() / "numerics" / f"{spec.name.replace('/', '_')}-{digest}.json"


def load_decision(spec: Any, pre: Any, device: str, hardware: str | None) -> dict | None:
    path = decision_file(spec, pre, device, hardware)
    try:
        decided = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(decided, dict) and decided.get("numeric_path") in ("fp32", "bf16")
    return decided if ok and "why" in decided else None


def save_decision(spec: Any, pre: Any, device: str, hardware: str | None, decided: dict) -> None:
    from modeltailor.run import atomic_write_bytes

    path = decision_file(spec, pre, device, hardware)
    path.parent.mkdir(parents=True, exist_ok=True)
    decided = {**decided, "decided": datetime.now(UTC).isoformat(timespec="seconds")}
    atomic_write_bytes(path, json.dumps(decided, indent=1).encode())


def speed_decision(batch_seconds: dict[str, list[float]]) -> tuple[bool, float]:
    """(bf16 fast enough to keep checking, bf16's speed-up over fp32) from the forward seconds
    of the same batches in both paths, run one after the other: the median of the per-batch
    ratios, so a burst of load from other processes on a shared machine moves it little."""
    pairs = list(zip(batch_seconds.get("fp32", []), batch_seconds.get("bf16", []), strict=False))
    if not pairs:
        return False, 0.0
    speedup = statistics.median(f32 / max(b16, 1e-9) for f32, b16 in pairs)
    return speedup >= BF16_MIN_SPEEDUP, round(speedup, 3)


def accuracy_decision(acc_fp32: float, acc_bf16: float) -> bool:
    """The accuracy rule: bf16 embeddings within MAX_ACCURACY_DROP of fp32 ones, either way
    (a probe fitted on bf16 embeddings is later run on fp32 ones by every export)."""
    return abs(acc_fp32 - acc_bf16) <= MAX_ACCURACY_DROP + 1e-9
