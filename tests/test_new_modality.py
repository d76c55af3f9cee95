"""A fourth modality costs one module: defined here, in the test suite, with no package file
changed, and driven through the real command line (train, evaluate, predict, report, export).

The modality is numeric vectors: one `.npy` file per example in a folder per class, read by
the package's shared folder rules, with a two-layer MLP as its backbone.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from modeltailor.backbones import catalogue
from modeltailor.backbones.catalogue import BackboneSpec, register_backbone
from modeltailor.cli import main
from modeltailor.data.dataset import LabeledDataset
from modeltailor.data.folders import find_files, load_class_tree, read_class_folders
from modeltailor.modalities import (
    ExportSpec,
    Modality,
    get_modality,
    register_modality,
    unregister_modality,
)
from modeltailor.training.loaders import make_loader

DIM = 8
CLASSES = ("circle", "square", "三角")  # a Japanese class name too


# -- the modality ------------------------------------------------------------------------------
@dataclass(frozen=True)
class VectorPreprocessing:
    dim: int
    modality: str = "vectors"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VectorPreprocessing:
        return cls(dim=int(d["dim"]))

    def for_inference(self, test_size: int | None) -> VectorPreprocessing:
        return self

    def summary(self) -> str:
        return f"{self.dim} floats"


@dataclass
class VectorDataset(LabeledDataset):
    modality: ClassVar[str] = "vectors"


def is_vector_file(path: Path) -> bool:
    return path.suffix == ".npy" and not path.name.startswith(".")


def read_vector(path: Path, dim: int) -> np.ndarray:
    x = np.load(path, allow_pickle=False).astype(np.float32)
    if x.shape != (dim,):
        raise ValueError(f"expected {dim} numbers, found shape {x.shape}")
    return x


class Vectors(Dataset):
    def __init__(self, items: list, labels: list[int], dim: int) -> None:
        self.items, self.labels, self.dim = items, labels, dim

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return torch.from_numpy(read_vector(self.items[i], self.dim)), self.labels[i]


class VectorPipeline:
    channels_last = False

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def units(self, items) -> int:
        return len(items)

    def inference_batches(self, items, batch_size, num_workers, bad):
        for start in range(0, len(items), batch_size):
            rows, owners = [], []
            for i, item in enumerate(items[start : start + batch_size], start):
                try:
                    rows.append(read_vector(item, self.dim))
                    owners.append(i)
                except (OSError, ValueError) as exc:
                    bad[item] = str(exc)
            x = torch.from_numpy(np.stack(rows)) if rows else torch.empty(0, self.dim)
            yield x, owners, len(items[start : start + batch_size])

    def rows_at_once(self, batch_size: int) -> int:
        return batch_size

    def training_loaders(self, train, val, batch_size, num_workers, seed, augment):
        return (
            make_loader(Vectors(train.items, train.labels, self.dim), batch_size, True, 0, seed),
            make_loader(Vectors(val.items, val.labels, self.dim), batch_size),
        )


class TinyMlp(nn.Module):
    """timm's small contract: features, head, classifier, layer groups."""

    def __init__(self, dim: int, num_classes: int, width: int = 16) -> None:
        super().__init__()
        self.dim, self.num_features = dim, width
        self.body = nn.Sequential(nn.Linear(dim, width), nn.ReLU(), nn.Linear(width, width))
        self.head = nn.Linear(width, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return {"body": r"^body\.(\d+)", "head": r"^head"}

    def input_pipeline(self) -> VectorPipeline:
        return VectorPipeline(self.dim)


class WithTemperature(nn.Module):
    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        self.model, self.temperature = model, float(temperature)

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.model(vectors) / self.temperature


class VectorModality(Modality):
    name = "vectors"
    noun = "vectors"
    priority = 5

    def recognises(self, path) -> bool:
        path = Path(path)
        return path.is_dir() and any(is_vector_file(f) for f in path.rglob("*.npy"))

    def load(self, path, options, class_names=None):
        def load_classes(root: Path, names, dataset_root: Path | None = None):
            def problem(p: Path) -> str | None:
                try:
                    read_vector(p, DIM)
                except (OSError, ValueError) as exc:
                    return str(exc)
                return None

            items, labels, found, skipped = read_class_folders(
                root, names, "vectors", is_vector_file, problem, dataset_root
            )
            return VectorDataset(items, labels, found, source=str(root), skipped=skipped)

        return load_class_tree(path, load_classes, VectorDataset, class_names, noun="vectors")

    def find_inputs(self, paths):
        return find_files(paths, is_vector_file)

    def preprocessing_from_dict(self, d):
        return VectorPreprocessing.from_dict(d)

    def default_backbone(self, clf, train) -> str:
        return "tiny-mlp"

    def network_for(self, run, cfg):
        return TinyMlp(cfg["preprocessing"]["dim"], cfg["num_classes"])

    def export_spec(self) -> ExportSpec:
        def inputs(items, clf):
            rows, kept = [], []
            for i, item in enumerate(items):
                try:
                    rows.append(read_vector(Path(item), clf.preprocessing_.dim))
                    kept.append(i)
                except (OSError, ValueError):
                    continue
            return {"vectors": np.stack(rows)}, kept

        return ExportSpec(
            input_names=["vectors"],
            wrap=lambda model, pre, t: WithTemperature(model, t),
            inputs=inputs,
            example=lambda pre: (torch.rand(2, pre.dim),),
            describe=lambda pre: {"input": f"float32 vectors of {pre.dim} numbers"},
            dynamic_axes={"vectors": {0: "batch"}},
            noun=self.noun,
        )


def build_mlp(spec: BackboneSpec, num_classes: int, pretrained: bool = True) -> nn.Module:
    torch.manual_seed(0)
    return TinyMlp(spec.preprocessing.dim, num_classes)


@pytest.fixture
def vectors_modality():
    register_modality(VectorModality())
    spec = BackboneSpec(
        name="tiny-mlp",
        modality="vectors",
        architecture="tiny-mlp",
        preprocessing=VectorPreprocessing(DIM),
        params_m=0.0005,
        license="MIT (test)",
        builder=build_mlp,
    )
    register_backbone(spec)
    yield
    unregister_modality("vectors")
    catalogue._REGISTRY.pop("tiny-mlp", None)


@pytest.fixture
def vector_folder(tmp_path) -> Path:
    """Three classes x 24 vectors around different centres (seeded)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "vectors"
    for k, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        centre = np.zeros(DIM)
        centre[k] = 3.0
        for i in range(24):
            np.save(root / name / f"{name}-{i:02d}.npy", centre + rng.normal(size=DIM))
    return root


def test_a_fourth_modality_runs_the_whole_command_line(vectors_modality, vector_folder, tmp_path):
    run = tmp_path / "run"
    assert main(["train", str(vector_folder), "--output", str(run), "--quiet"]) == 0
    cfg = json.loads((run / "config.json").read_text(encoding="utf-8"))
    assert cfg["modality"] == "vectors" and cfg["backbone"] == "tiny-mlp"
    assert cfg["preprocessing"] == {"dim": DIM, "modality": "vectors"}
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["test"]["accuracy"] >= 0.8  # well-separated centres

    assert main(["evaluate", str(run), str(vector_folder), "--json"]) == 0
    assert main(["predict", str(run), str(vector_folder / "三角")]) == 0
    assert main(["report", str(run)]) == 0
    assert (run / "report.html").is_file()

    assert main(["export", str(run), "--format", "onnx"]) == 0
    manifest = json.loads((run / "export" / "manifest.json").read_text(encoding="utf-8"))
    check = manifest["onnx"]["parity_vs_pytorch"]
    assert check["top1_disagreements"] == 0 and check["max_abs_logit_diff"] < 1e-4
    assert manifest["onnx"]["input"]["name"] == "vectors"
    assert (run / "export" / "preprocessing.json").is_file()


def test_a_fourth_modality_trains_and_loads_back(vectors_modality, vector_folder, tmp_path):
    from modeltailor.api import classifier_class, load_classifier

    data = get_modality("vectors").load(vector_folder, {})
    train, val, test = data.split(0.7, 0.15, 0.15, seed=0)
    clf = classifier_class("vectors")(strategy="full", epochs=3, verbose=False).fit(train, val)
    clf.save(tmp_path / "full")
    loaded = load_classifier(tmp_path / "full")
    assert type(loaded).__name__ == "VectorsClassifier"
    files = [str(p) for p in test.items]
    assert np.allclose(loaded.predict_proba(files), clf.predict_proba(files), atol=1e-6)
    with pytest.raises(Exception, match="augment does not apply to vectors"):
        classifier_class("vectors")(augment=False).fit(train, val)
