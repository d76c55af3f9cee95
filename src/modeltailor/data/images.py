"""Image reader: a folder per class (optionally inside train/ val/ test/), any format Pillow reads.

Every image comes out as RGB with its EXIF orientation applied. Files that are not images, are
truncated, are decompression bombs or are too elongated to resize (`MAX_ASPECT`) are reported by
path and skipped, never silently dropped.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from PIL import Image, ImageFile, ImageOps

from modeltailor.data.dataset import LabeledDataset, Skipped
from modeltailor.data.folders import find_files, load_class_tree, read_class_folders

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".gif", ".webp", ".bmp", ".dib", ".tif", ".tiff"}
)
#: Above this many pixels an image is refused (Pillow's bomb limit is the guard's base).
MAX_PIXELS = 89_478_485
#: Longest side over shortest side above which an image is refused. Resizing the short side to
#: the model's input would blow the long side up with it: a 1x100,000 PNG (471 bytes) would
#: become 256x25,600,000 pixels, 25.6 GB as float32. Checked from the header, before decoding,
#: for every entry point (train, evaluate, predict, report, compare, doctor, the server).
MAX_ASPECT = 20

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, not grey pixels


class ImageReadError(Exception):
    """One file could not be decoded; the message says why."""


def open_image(path: str | Path, draft_size: int | None = None) -> Image.Image:
    """Decode one file to an RGB image with EXIF orientation applied.

    `draft_size` lets JPEG decoding skip detail that a later resize would throw away (DCT
    scaling): several times faster on big photos, same result at the model's resolution.
    Raises ImageReadError with a short reason on any failure.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise ImageReadError(
                        f"{img.width}x{img.height} pixels is over the {MAX_PIXELS:,}-pixel "
                        "limit (decompression-bomb guard); resize it first"
                    )
                elongated = aspect_problem(img.width, img.height)
                if elongated:
                    raise ImageReadError(elongated)
                if draft_size and img.format == "JPEG":
                    img.draft("RGB", (draft_size, draft_size))
                img.load()
                img = ImageOps.exif_transpose(img)
                return _to_rgb(img)
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageReadError(f"decompression-bomb guard: {exc}") from exc
    except Exception as exc:  # Pillow raises many types: OSError, SyntaxError, ValueError...
        reason = str(exc) or type(exc).__name__
        raise ImageReadError(f"cannot decode image: {reason}") from exc


def aspect_problem(width: int, height: int) -> str | None:
    """Why an image of this size is too elongated to resize for a model (`MAX_ASPECT`), or
    None. The one rule every reader applies before decoding pixels."""
    short, long = sorted((width, height))
    if long > MAX_ASPECT * short:
        return (
            f"{width}x{height} pixels: more than {MAX_ASPECT}:1 is too elongated to resize "
            "for the model; crop it first"
        )
    return None


def _to_rgb(img: Image.Image) -> Image.Image:
    """Grey, CMYK, palette and alpha all become RGB; transparency is composited on white."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        img = img.point(lambda v: v / 256).convert("L")
    return img.convert("RGB") if img.mode != "RGB" else img


@dataclass
class ImageDataset(LabeledDataset):
    """Image files with labels. `verify()` decodes every file once and drops the bad ones."""

    #: The registered modality (modalities/) that reads and models these items.
    modality: ClassVar[str] = "image"

    def verify(self, workers: int = 4) -> ImageDataset:
        """Decode every image (threads: decoding releases the GIL); bad files become skipped."""
        bad = _find_unreadable(self.items, workers)
        return self.without(bad) if bad else self


def _find_unreadable(paths: list[Path], workers: int) -> dict[Path, str]:
    def check(path: Path) -> str | None:
        try:
            open_image(path, draft_size=64)
            return None
        except ImageReadError as exc:
            return str(exc)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        reasons = list(pool.map(check, paths))
    return {p: r for p, r in zip(paths, reasons, strict=True) if r}


def find_images(paths: list[str | Path]) -> tuple[list[Path], list[Skipped]]:
    """Files to predict on: image files given directly, and every image inside given folders."""
    return find_files(paths, _is_image_name)


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def load_image_folder(root: str | Path, class_names: list[str] | None = None) -> ImageDataset:
    """Read `root/<class>/<images>` or `root/{train,val,test}/<class>/<images>`.

    Only headers are read here (fast); broken pixel data is found when images are decoded
    (`verify()`, embedding extraction) and reported then. With `class_names` (a trained run's
    labels) the folders must use those names.
    """
    return load_class_tree(root, _load_classes, ImageDataset, class_names, noun="images")


def _load_classes(
    root: Path, class_names: list[str] | None, dataset_root: Path | None = None
) -> ImageDataset:
    items, labels, names, skipped = read_class_folders(
        root, class_names, "images", _is_image_name, _header_problem, dataset_root
    )
    return ImageDataset(items, labels, names, source=str(root), skipped=skipped)


def _header_problem(path: Path) -> str | None:
    """Cheap check that a file is an image Pillow can read; the reason when it is not."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > MAX_PIXELS:
                    return (
                        f"{img.width}x{img.height} pixels is over the {MAX_PIXELS:,}-pixel "
                        "limit (decompression-bomb guard)"
                    )
                elongated = aspect_problem(img.width, img.height)
                if elongated:
                    return elongated
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return f"decompression-bomb guard: {exc}"
    except Exception as exc:
        return f"not an image Pillow can read ({type(exc).__name__}: {exc})"
    return None
