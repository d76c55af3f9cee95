"""Data in: readers per modality that all produce one dataset contract (items, labels, classes)."""

from modeltailor.data.dataset import LabeledDataset, Skipped, stratified_split
from modeltailor.data.images import (
    IMAGE_EXTENSIONS,
    ImageDataset,
    find_images,
    load_image_folder,
    open_image,
)
from modeltailor.data.text import (
    TextDataset,
    TextItem,
    TextRows,
    decode_file,
    load_text,
    read_text_rows,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageDataset",
    "LabeledDataset",
    "Skipped",
    "TextDataset",
    "TextItem",
    "TextRows",
    "decode_file",
    "find_images",
    "load_image_folder",
    "load_text",
    "open_image",
    "read_text_rows",
    "stratified_split",
]
