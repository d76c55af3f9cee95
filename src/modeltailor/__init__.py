"""modeltailor: tailor a pretrained model to your own labelled data, offline.

Four lines, Model Maker style::

    from modeltailor import ImageClassifier, load_image_folder
    train, val, test = load_image_folder("photos/").split(0.8, 0.1, seed=0)
    clf = ImageClassifier(strategy="fine-tune").fit(train, val)
    clf.evaluate(test); clf.save("runs/pets")
"""

import logging

from modeltailor._runtime import tune_malloc

tune_malloc()  # before torch allocates anything: 3-4x faster CNN training here (DESIGN.md)

# torch 2.14 logs a deprecation line per Enum that transformers registers with its pytree
# module, on every command that loads a transformer: noise for users, not their problem.
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)

from modeltailor.errors import DataError, ModelTailorError  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "AudioClassifier",
    "DataError",
    "ImageClassifier",
    "ImageDataset",
    "ModelTailorError",
    "TextClassifier",
    "doctor",
    "load_audio_folder",
    "load_classifier",
    "load_image_folder",
    "load_text",
]

# Imported on first use (PEP 562): the command line starts in a fraction of a second instead of
# loading torch, timm and Lightning for `tailor --help` or `tailor report`.
_LAZY = {
    "AudioClassifier": "modeltailor.api",
    "load_audio_folder": "modeltailor.data.audio",
    "ImageClassifier": "modeltailor.api",
    "ImageDataset": "modeltailor.data",
    "load_image_folder": "modeltailor.data",
    "TextClassifier": "modeltailor.api",
    "load_classifier": "modeltailor.api",
    # a callable package: modeltailor.doctor(DATA, ...) runs doctor.doctor
    "doctor": "modeltailor.doctor",
    "load_text": "modeltailor.data.text",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'modeltailor' has no attribute {name!r}")
