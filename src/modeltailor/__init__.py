"""modeltailor: tailor a pretrained model to your own labelled data, offline.

Four lines, Model Maker style::

    from modeltailor import ImageClassifier, load_image_folder
    train, val, test = load_image_folder("photos/").split(0.8, 0.1, seed=0)
    clf = ImageClassifier(strategy="fine-tune").fit(train, val)
    clf.evaluate(test); clf.save("runs/pets")
"""

from modeltailor._runtime import tune_malloc

tune_malloc()  # before torch allocates anything: 3-4x faster CNN training here (DESIGN.md)

from modeltailor.api import ImageClassifier  # noqa: E402
from modeltailor.data import ImageDataset, load_image_folder  # noqa: E402
from modeltailor.errors import DataError, ModelTailorError  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "DataError",
    "ImageClassifier",
    "ImageDataset",
    "ModelTailorError",
    "load_image_folder",
]
