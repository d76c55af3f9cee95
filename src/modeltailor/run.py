"""The run directory: the one artefact every step reads and writes, and how a classifier is
saved into it and loaded back (`save_run`, `load_run`).

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
from datetime import UTC, datetime
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
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:  # truncated, empty, not UTF-8
            raise RunError(f"{p}: damaged, not readable JSON ({exc})") from exc

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
        try:
            return load_file(str(p))
        except Exception as exc:  # noqa: BLE001 - SafetensorError: truncated, not safetensors
            raise RunError(f"{p}: damaged, not a readable safetensors file ({exc})") from exc

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


# -- a classifier in a run folder ---------------------------------------------------------------


def run_config(clf) -> dict[str, Any]:
    """Everything config.json records about a fitted classifier: resolved backbone and
    strategy, preprocessing, every setting, the data, the fit, calibration and versions."""
    clf._check_fitted()
    spec = clf.spec_
    return {
        "format_version": FORMAT_VERSION,
        "modality": clf.modality,
        "backbone": spec.name,
        "architecture": spec.architecture,
        "weights": spec.weights_identity(),
        "backbone_license": spec.license,
        "strategy": clf.strategy,
        "num_classes": len(clf.classes_),
        "preprocessing": clf.preprocessing_.to_dict(),
        "settings": clf._settings().to_dict(),
        # Every constructor setting, as given: `load` rebuilds the estimator from these.
        "params": _saved_params(clf),
        "data": clf.data_,
        "fit": clf.fit_info_,
        "calibration": getattr(clf, "calibration_", None),
        # A run with adapters stores only them + the head: the body comes from here on load.
        "adapters": getattr(clf, "adapters_", None),
        "base_weights": spec.weights_identity() if getattr(clf, "adapters_", None) else None,
        "versions": _versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def save_run(clf, path: str | Path, metrics: dict[str, Any] | None = None) -> RunDir:
    """Write the run directory (atomic files; checkpoints already there are kept)."""
    run = RunDir(path)
    cfg = run_config(clf)
    run.write_json("config.json", cfg)
    run.write_json("labels.json", clf.classes_)
    run.write_json("splits.json", clf.splits_)
    run.write_history(clf.history_)
    clf.modality_.save_assets(clf, run)
    state = clf.model_.trained_state()
    run.save_model(state, {"modality": clf.modality, "architecture": cfg["architecture"]})
    if metrics is not None or clf.metrics_:
        run.write_json("metrics.json", metrics if metrics is not None else clf.metrics_)
    return run


def _saved_params(clf) -> dict[str, Any]:
    """Constructor settings a run keeps (where this process wrote checkpoints does not
    belong to the model; `backbone` is the one the run resolved and used)."""
    params = clf.get_params()
    for transient in ("output", "resume", "verbose"):
        params.pop(transient)
    params["backbone"] = clf.spec_.name
    return params


def load_run(cls, path: str | Path, verbose: bool = False):
    """A trained classifier of class `cls` from its run folder; needs no weights package, no
    network (a LoRA run re-reads its body from the installed package)."""
    from modeltailor.backbones.catalogue import preprocessing_from_dict
    from modeltailor.backbones.model import TailoredModel

    run = RunDir(path)
    if not run.path.is_dir():
        raise RunError(f"{run.path}: no such run folder")
    cfg = run.read_json("config.json")
    missing = [k for k in ("backbone", "strategy", "num_classes", "preprocessing") if k not in cfg]
    if not isinstance(cfg, dict) or missing:
        raise RunError(f"{run.path / 'config.json'}: damaged, lacks {missing or 'everything'}")
    if cfg.get("modality", "image") != cls.modality:
        raise RunError(f"{run.path}: a {cfg.get('modality')} run, not {cls.modality}")
    labels = run.read_json("labels.json")
    if not (isinstance(labels, list) and all(isinstance(c, str) for c in labels)):
        raise RunError(f"{run.path / 'labels.json'}: damaged, not a list of class names")
    if len(labels) != cfg["num_classes"]:
        raise RunError(
            f"{run.path / 'labels.json'}: {len(labels)} class names for a model with "
            f"{cfg['num_classes']} outputs (config.json); the run folder is damaged"
        )
    clf = cls(**_params_of(cfg), verbose=verbose)
    modality = clf.modality_
    pre = preprocessing_from_dict(cfg["preprocessing"])
    if cfg.get("adapters"):  # only adapters were saved: the body is the package's
        net = _pretrained_body(run, cfg, pre)
    else:
        net = modality.network_for(run, cfg)
    model = TailoredModel(net)
    if cfg.get("adapters"):
        model.add_adapters(cfg["adapters"])
    _load_weights(model, run, partial=bool(cfg.get("adapters")))
    clf.model_ = model.eval()
    clf.spec_ = None
    clf.preprocessing_ = pre
    clf.classes_ = list(labels)
    clf.history_ = []
    clf.fit_info_ = cfg.get("fit", {})
    clf.data_ = cfg.get("data", {})
    clf.splits_ = run.read_json("splits.json") if run.has("splits.json") else {}
    clf.metrics_ = run.read_json("metrics.json") if run.has("metrics.json") else {}
    clf.calibration_ = cfg.get("calibration")
    clf.temperature_ = float((clf.calibration_ or {}).get("temperature", 1.0))
    clf.is_main_process_ = True
    clf.adapters_ = cfg.get("adapters")
    clf.config_ = cfg
    modality.load_assets(clf, run)
    return clf


def _params_of(cfg: dict[str, Any]) -> dict[str, Any]:
    """The constructor settings a run was trained with. Runs saved before config.json kept
    them all ("params") give back what they recorded: backbone, strategy, batch size, seed."""
    if "params" in cfg:
        return dict(cfg["params"])
    settings = cfg.get("settings", {})
    return {
        "backbone": cfg["backbone"],
        "strategy": cfg["strategy"],
        "batch_size": settings.get("batch_size", 32),
        "seed": settings.get("seed", 0),
    }


def _pretrained_body(run: RunDir, cfg: dict[str, Any], pre: Any = None) -> Any:
    """The catalogue backbone an adapter run was trained on, exactly those weights; `pre`
    replaces the catalogue's preprocessing when the run specialised it (audio windows)."""
    from dataclasses import replace

    from modeltailor.backbones import get_backbone

    spec = get_backbone(cfg["backbone"])
    if pre is not None:
        spec = replace(spec, preprocessing=pre)
    if spec.weights_identity() != cfg.get("base_weights"):
        raise RunError(
            f"{run.path}: trained with adapters on {cfg.get('base_weights')}, but the installed "
            f"weights are {spec.weights_identity()} ({spec.install_hint})"
        )
    return spec.build(cfg["num_classes"], pretrained=True)


def _load_weights(model: Any, run: RunDir, partial: bool) -> None:
    """Load model.safetensors; with adapters it holds only adapters + head, and every one of
    those (and nothing else) must match."""
    state = run.load_model_state()
    try:
        missing, unexpected = model.load_state_dict(state, strict=not partial)
    except RuntimeError as exc:
        raise RunError(f"{run.path}: model.safetensors does not match config.json ({exc})") from exc
    expected = set(model.trained_state()) if partial else set()
    if partial and (unexpected or set(state) != expected):
        raise RunError(
            f"{run.path}: model.safetensors does not hold this run's adapters and head "
            f"(unexpected: {unexpected[:3]}, absent: {sorted(expected - set(state))[:3]})"
        )


def split_record(data: Any, keep_texts: bool = False) -> dict[str, list]:
    """Which files (path, label, content hash) a split held: for overlap checks, exports
    that verify on validation data, and reports that show mistakes.

    Texts have no file of their own to go back to (an item is a line of a table), so with
    `keep_texts` the texts themselves are kept too: the validation split's, which `tailor
    export` verifies every exported graph on."""
    record = {
        "items": [str(i) for i in data.items],
        "labels": [data.class_names[lab] for lab in data.labels],
        "sha1": data.digests(),
    }
    if keep_texts and data.items and hasattr(data.items[0], "text"):
        record["texts"] = [item.text for item in data.items]
    return record


def describe_data(data: Any) -> dict[str, Any]:
    return {"source": data.source, "n": len(data), "class_counts": data.class_counts()}


def _versions() -> dict[str, str]:
    import platform

    import lightning
    import sklearn
    import timm

    from modeltailor import __version__

    return {
        "modeltailor": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "lightning": lightning.__version__,
        "scikit-learn": sklearn.__version__,
    }


# -- resuming the same run ---------------------------------------------------------------------


#: checkpoints/ file naming the run its checkpoints belong to (written when training starts).
IDENTITY_FILE = "run.json"


def check_same_run(run: RunDir, identity: dict[str, Any]) -> None:
    """`--resume` continues only the training that wrote the folder: same modality, backbone,
    strategy, classes and training data. Otherwise say what differs and touch nothing."""
    path = run.checkpoints / IDENTITY_FILE
    if path.is_file():
        try:
            before = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise RunError(f"{path}: unreadable ({exc}); cannot tell what it resumes") from exc
    elif run.has("config.json"):  # a finished run saved before checkpoints named their run
        cfg = run.read_json("config.json")
        before = {k: cfg.get(k) for k in ("modality", "backbone", "strategy")}
        if run.has("labels.json"):
            before["classes"] = run.read_json("labels.json")
        if run.has("splits.json") and "train" in run.read_json("splits.json"):
            before["training_data_sha1"] = _digest_of(run.read_json("splits.json")["train"]["sha1"])
    else:
        return  # checkpoints from a version that did not record their run: nothing to compare
    differs = [
        _difference(key, before[key], identity[key])
        for key in identity
        if key in before and before[key] != identity[key]
    ]
    if differs:
        shown = "; ".join(d if len(d) < 160 else d[:157] + "..." for d in differs)
        raise RunError(
            f"{run.path}: --resume would continue a different run ({shown}); choose another "
            "--output, or resume with the same data and settings"
        )


def _difference(key: str, there: Any, now: Any) -> str:
    if key == "training_data_sha1":
        return "training data: other files (by content) than the run was trained on"
    if key == "classes":
        return f"classes: {', '.join(map(str, there))} there, {', '.join(map(str, now))} now"
    return f"{key}: {there} there, {now} now"


def run_identity(modality: str, backbone: str | None, strategy: str, train: Any) -> dict[str, Any]:
    """What a training is: `--resume` continues only the one that wrote a folder (`backbone`
    None: not known yet, so not compared)."""
    identity = {
        "modality": modality,
        "backbone": backbone,
        "strategy": strategy,
        "classes": list(train.class_names),
        "training_data_sha1": _digest_of(train.digests()),
    }
    return {k: v for k, v in identity.items() if v is not None}


def _digest_of(digests: list[str]) -> str:
    import hashlib

    return hashlib.sha1("\n".join(sorted(digests)).encode("ascii")).hexdigest()
