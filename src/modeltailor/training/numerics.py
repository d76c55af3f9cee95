"""Which numbers a frozen backbone embeds in: torch fp32, bf16 autocast where the hardware is
fast, or fp32 in ONNX Runtime (`onnx_embed.py`) where the modality's backbone traces.

Why: on a CPU with AMX, bf16 autocast runs EfficientNet-Lite0 about 1.4x faster than fp32
(DESIGN.md, speed facts), and a GPU has bf16 tensor cores; a CPU without them emulates bf16 and
gets slower. Machines here differ from session to session, so the hardware is detected, never
assumed, and `auto` keeps bf16 only after checking it on this machine: on validation items, the
bf16 forward pass must be clearly faster and the probe's validation accuracy on bf16 embeddings
within the accuracy rule (`MAX_ACCURACY_DROP`, the one `tailor export` applies to int8) of its
accuracy on fp32 embeddings. That check costs one extra fp32 pass over the validation items, so
it is made once per backbone, preprocessing and machine, and the decision is cached beside the
embeddings. Each path's embeddings live in their own cache folder (`EmbeddingCache`).

ONNX Runtime's path is checked the same way, beside bf16, when the modality offers an input to
trace (`Modality.embedding_example`): it needs no special hardware, so it is also the fast path
on CPUs without AMX or AVX-512 BF16; on a GPU it is not offered.
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
SETTINGS = ("auto", "fp32", "bf16", "onnx")
#: The numeric paths: torch fp32 (the reference), torch bf16 autocast, fp32 in ONNX Runtime.
PATHS = ("fp32", "bf16", "onnx")
#: `auto` keeps another path only when its forward pass is at least this much faster than fp32's.
MIN_SPEEDUP = 1.1
#: A "bf16 is not faster" verdict is final only after this many checks on separate fits
#: agree (load from other processes on a shared machine can hide bf16's gain once); an
#: accuracy verdict, or bf16 found faster, is final at once.
SPEED_CHECKS = 3
#: Fewer check items than this decide nothing: the timing and the accuracy would be noise.
MIN_CHECK_ITEMS = 64
#: Without validation data, this many training items are the check set.
CHECK_ITEMS_FROM_TRAIN = 256
#: At most this many validation items are the check set: every candidate path embeds them
#: beside fp32, so on 5,000 validation images an uncapped check would embed 15,000 extra.
MAX_CHECK_ITEMS = 1024
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
    """bf16 autocast for the bf16 path; nothing at all for the others (fp32 in torch: today's
    numbers, exactly; ONNX Runtime runs its own graph)."""
    if path == "bf16":
        with torch.autocast(device_type=device, dtype=torch.bfloat16):
            yield
    else:
        yield


@dataclass
class NumericPlan:
    """The numeric path one fit embeds with, and why."""

    setting: str
    #: One of PATHS: the path to embed with (with `check`, the first candidate).
    path: str
    device: str
    hardware: str | None
    reason: str
    #: auto with no decision yet: this fit checks `candidates` and records the result.
    check: bool = False
    #: The paths auto may take instead of fp32 here (bf16 with its hardware, onnx).
    candidates: tuple[str, ...] = ()

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


def onnx_applies(pre: Any, device: str) -> str | None:
    """Why ONNX Runtime extraction does not apply here, or None when it does."""
    from modeltailor.modalities import get_modality
    from modeltailor.training.onnx_embed import onnxruntime_version

    if device != "cpu":
        return "ONNX Runtime extraction runs on the CPU only"
    if onnxruntime_version() is None:
        return "onnxruntime is not installed"
    if get_modality(pre.modality).embedding_example(pre) is None:
        return f"{get_modality(pre.modality).noun} backbones are not traced to ONNX Runtime"
    return None


def plan_numerics(setting: str, spec: Any, pre: Any, model: Any, device: str) -> NumericPlan:
    """The plan for `setting` (SETTINGS) on this machine; auto reads a cached decision."""
    if setting not in SETTINGS:
        raise ModelTailorError(f"embed_precision={setting!r}: one of {', '.join(SETTINGS)}")
    hardware = bf16_hardware(device)

    def plan(path: str, reason: str, check: bool = False, candidates=()) -> NumericPlan:
        return NumericPlan(setting, path, device, hardware, reason, check, tuple(candidates))

    if setting == "fp32":
        return plan("fp32", "forced (embed_precision=fp32)")
    if not _is_torch_graph(model):
        return plan("fp32", "the backbone is not a torch graph: bf16 autocast does not apply")
    if setting == "bf16":
        slow = "" if hardware else "; no bf16 hardware found, so it runs emulated (slow)"
        return plan("bf16", f"forced (embed_precision=bf16){slow}")
    no_onnx = onnx_applies(pre, device)
    if setting == "onnx":
        if no_onnx:
            return plan("fp32", f"embed_precision=onnx asked, but {no_onnx}: fp32")
        return plan("onnx", "forced (embed_precision=onnx)")
    candidates = [p for p, ok in (("onnx", not no_onnx), ("bf16", hardware)) if ok]
    if not candidates:
        no_bf16 = f"no bf16 hardware ({' / '.join(BF16_CPU_FLAGS)} / GPU) found"
        return plan("fp32", f"{no_bf16}, and {no_onnx}")
    named = " and ".join(candidates)
    decided = load_decision(spec, pre, device, hardware, candidates)
    if decided is not None and decided.get("slower_checks", SPEED_CHECKS) < SPEED_CHECKS:
        # measured slower, perhaps only because the machine was busy: check again
        again = f"checking {named} on this machine again"
        return plan(candidates[0], again, check=True, candidates=candidates)
    if decided is not None:
        return plan(decided["numeric_path"], f"decided on this machine: {decided['why']}")
    return plan(candidates[0], f"checking {named} on this machine", True, candidates)


# -- cached decisions ---------------------------------------------------------------------------


def decision_file(
    spec: Any, pre: Any, device: str, hardware: str | None, candidates: list[str]
) -> Path:
    """Where auto's decision for this backbone, preprocessing, machine and set of candidate
    paths is kept (a new candidate, or a new onnxruntime, is checked afresh)."""
    from modeltailor.training.features import cache_root
    from modeltailor.training.onnx_embed import onnxruntime_version

    key = {
        "architecture": spec.architecture,
        "weights": spec.weights_identity(),
        "preprocessing": pre.to_dict(),
        "device": device,
        "hardware": hardware,
        "cpu": cpu_model(),
        "torch": torch.__version__.split("+")[0],
        "candidates": list(candidates),
    }
    if "onnx" in candidates:
        key["onnxruntime"] = onnxruntime_version()
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_root() / "numerics" / f"{spec.name.replace('/', '_')}-{digest}.json"


def load_decision(
    spec: Any, pre: Any, device: str, hardware: str | None, candidates: list[str]
) -> dict | None:
    path = decision_file(spec, pre, device, hardware, candidates)
    try:
        decided = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(decided, dict) and decided.get("numeric_path") in PATHS
    return decided if ok and "why" in decided else None


def save_decision(plan: NumericPlan, spec: Any, pre: Any, decided: dict) -> None:
    from modeltailor.run import atomic_write_bytes

    path = decision_file(spec, pre, plan.device, plan.hardware, list(plan.candidates))
    path.parent.mkdir(parents=True, exist_ok=True)
    decided = {**decided, "decided": datetime.now(UTC).isoformat(timespec="seconds")}
    atomic_write_bytes(path, json.dumps(decided, indent=1).encode())


def speed_decision(
    batch_seconds: dict[str, list[float]], path: str = "bf16"
) -> tuple[bool, float]:
    """(`path` fast enough to keep checking, its speed-up over fp32) from the forward seconds
    of the same batches in both paths, run one after the other: the median of the per-batch
    ratios, so a burst of load from other processes on a shared machine moves it little."""
    pairs = list(zip(batch_seconds.get("fp32", []), batch_seconds.get(path, []), strict=False))
    if not pairs:
        return False, 0.0
    speedup = statistics.median(f32 / max(other, 1e-9) for f32, other in pairs)
    return speedup >= MIN_SPEEDUP, round(speedup, 3)


def accuracy_decision(acc_fp32: float, acc_other: float) -> bool:
    """The accuracy rule: another path's embeddings within MAX_ACCURACY_DROP of fp32 ones,
    either way (a probe fitted on them is later run on fp32 ones by every export)."""
    return abs(acc_fp32 - acc_other) <= MAX_ACCURACY_DROP + 1e-9
