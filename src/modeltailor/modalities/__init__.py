"""The modality registry: one `Modality` per kind of example, looked up by name or by path.

    get_modality("text")            the text modality
    modality_for_path("mail.csv")   whichever modality recognises a dataset path
    register_modality(MyModality()) a fourth modality, from any module (no package file changes)
"""

from __future__ import annotations

from pathlib import Path

from modeltailor.errors import ModelTailorError
from modeltailor.modalities.base import ExportSpec, Modality, TfliteSpec

_MODALITIES: dict[str, Modality] = {}


def register_modality(modality: Modality) -> Modality:
    """Add (or replace, e.g. in a test) the modality registered under `modality.name`."""
    if not modality.name:
        raise ValueError("a modality needs a name")
    _MODALITIES[modality.name] = modality
    return modality


def unregister_modality(name: str) -> None:
    _MODALITIES.pop(name, None)


def list_modalities() -> list[Modality]:
    """Registered modalities, in the order they are asked to recognise a path."""
    return sorted(_MODALITIES.values(), key=lambda m: m.priority)


def get_modality(name: str | None) -> Modality:
    """The modality called `name`; runs saved before the field existed are images."""
    key = name or "image"
    if key not in _MODALITIES:
        known = ", ".join(_MODALITIES)
        raise ModelTailorError(f"unknown modality '{key}' (this version knows {known})")
    return _MODALITIES[key]


def modality_for_path(path: str | Path) -> Modality:
    """The first modality (by priority) that recognises `path` as its kind of dataset."""
    for modality in list_modalities():
        if modality.recognises(path):
            return modality
    raise ModelTailorError(
        f"{path}: not a dataset any modality recognises (expected a folder with one sub-folder "
        "per class, or a .csv/.tsv/.jsonl file of texts)"
    )


from modeltailor.modalities import audio, image, text  # noqa: E402,F401  (each registers itself)

__all__ = [
    "ExportSpec",
    "Modality",
    "TfliteSpec",
    "get_modality",
    "list_modalities",
    "modality_for_path",
    "register_modality",
    "unregister_modality",
]
