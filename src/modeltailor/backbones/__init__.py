"""Backbone catalogue: one record per pretrained model, looked up by name (like timm's registry)."""

from modeltailor.backbones import audio as _audio  # noqa: F401  (registers the audio entries)
from modeltailor.backbones import audio_hf as _audio_hf  # noqa: F401  (HF audio model folders)
from modeltailor.backbones import text as _text  # noqa: F401  (registers the text entries)
from modeltailor.backbones import tfidf as _tfidf  # noqa: F401  (the text baseline)
from modeltailor.backbones import use as _use  # noqa: F401  (USE multilingual, probe only)
from modeltailor.backbones import vision as _vision  # noqa: F401  (registers the image entries)
from modeltailor.backbones.catalogue import (
    BackboneSpec,
    Preprocessing,
    TextPreprocessing,
    get_backbone,
    list_backbones,
    register_backbone,
)

__all__ = [
    "BackboneSpec",
    "Preprocessing",
    "TextPreprocessing",
    "get_backbone",
    "list_backbones",
    "register_backbone",
]
