"""Data in: readers per modality that all produce one dataset contract (items, labels, classes)."""

from modeltailor.data.dataset import LabeledDataset, Skipped, stratified_split
from modeltailor.data.images import (
    IMAGE_EXTENSIONS,
    ImageDataset,
    find_images,
    load_image_folder,
    open_image,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageDataset",
    "LabeledDataset",
    "Skipped",
    "find_images",
    "load_image_folder",
    "open_image",
    "stratified_split",
]
