"""Images: a folder per class of files Pillow reads; pixels normalised as the backbone says."""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modeltailor.defaults import DEFAULT_IMAGE_BACKBONE
from modeltailor.modalities import register_modality
from modeltailor.modalities.base import ExportSpec, InputError, Modality


@dataclass(frozen=True)
class Preprocessing:
    """What an input must look like for the backbone (stored in every run's config)."""

    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    #: Size of training crops when it differs from the inference `input_size` (FixRes).
    train_size: int | None = None
    modality: str = "image"

    def for_inference(self, test_size: int | None) -> Preprocessing:
        """Inference at `test_size` (FixRes), training crops staying at `input_size`."""
        from dataclasses import replace

        if not test_size or test_size == self.input_size:
            return self
        return replace(self, input_size=test_size, train_size=self.input_size)

    def summary(self) -> str:
        """The input column of `tailor backbones`."""
        return str(self.input_size)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        return cls(
            input_size=int(d["input_size"]),
            mean=tuple(d["mean"]),  # type: ignore[arg-type]
            std=tuple(d["std"]),  # type: ignore[arg-type]
            interpolation=d.get("interpolation", "bicubic"),
            crop_pct=float(d.get("crop_pct", 0.875)),
            train_size=d.get("train_size"),
        )


class ImageModality(Modality):
    name = "image"
    noun = "images"
    #: Asked last: any other path goes to the image reader, whose messages explain the layout.
    priority = 90
    named_default_backbone = DEFAULT_IMAGE_BACKBONE
    options = ("augment",)
    #: What each `--augment` level does to training images (data.transforms.train_transform).
    augmentation = {
        "none": "the inference view: resize and centre-crop, nothing random",
        "light": "random crop of 60-100% of the image, horizontal flip",
        "default": "random crop of 35-100%, horizontal flip, brightness/contrast/saturation +-20%",
        "strong": "random crop of 20-100%, horizontal flip, one random TrivialAugment operation "
        "(colour, contrast, rotation, shear...), a random erased patch on a quarter of the images",
    }

    def preprocessing_from_dict(self, d):
        return Preprocessing.from_dict(d)

    def recognises(self, path: str | Path) -> bool:
        return True

    def load(self, path, options, class_names=None):
        from modeltailor.data import load_image_folder

        return load_image_folder(path, class_names=class_names)

    def find_inputs(self, paths):
        from modeltailor.data.images import find_images

        return find_images(paths)

    def prepare(self, data):
        verify = getattr(data, "verify", None)
        return verify() if verify is not None else data

    def input_pipeline(self, pre):
        from modeltailor.training.inputs import ImagePipeline

        return ImagePipeline(pre)

    def default_backbone(self, clf, train) -> str:
        return DEFAULT_IMAGE_BACKBONE

    def network_for(self, run, cfg: dict[str, Any]):
        import timm

        return timm.create_model(
            cfg["architecture"], pretrained=False, num_classes=cfg["num_classes"]
        )

    #: Re-encoded/resized copies of photos score >= 0.997, distinct photos <= 0.78
    #: (hymenoptera val); Fashion-MNIST's tiny centred objects reach 0.983 between distinct
    #: items, hence the margin (bench/bench_doctor_threshold.py).
    fingerprint_threshold = 0.985

    def fingerprint(self, item) -> np.ndarray | None:
        """16x16 grey thumbnail (box filter), mean removed: resizing and JPEG re-encoding
        barely move it, unlike the backbone's semantic embedding."""
        from PIL import Image, ImageOps

        try:
            with Image.open(item) as im:
                im.draft("L", (64, 64))
                grey = ImageOps.exif_transpose(im).convert("L").resize((16, 16), Image.BOX)
        except (OSError, ValueError, Image.DecompressionBombError):
            return None
        v = np.asarray(grey, dtype=np.float32).ravel()
        return v - v.mean()

    def embedding_example(self, pre):
        import torch

        return torch.randn(2, 3, pre.input_size, pre.input_size)

    def baseline_features(self, items: list) -> tuple[str, list[np.ndarray | None]]:
        """Colour, edge and texture histograms (`training/image_baseline.py`): seconds."""
        from modeltailor.training.image_baseline import NAME, image_features

        return NAME, [image_features(item) for item in items]

    def report_example(self, path: str) -> tuple[str, str | None]:
        from modeltailor.report.html import thumbnail

        return "thumbnail", thumbnail(path)

    # -- model card ----------------------------------------------------------------------------
    pipeline_tag = "image-classification"
    dataset_type = "imagefolder"
    card_predict_args = ("photo.jpg more-photos/",)
    card_python_example = '"photo.jpg"'

    def card_input_limits(self, pre: dict[str, Any], fit: dict[str, Any]) -> list[str]:
        if not pre.get("input_size"):
            return super().card_input_limits(pre, fit)
        size, crop = int(pre["input_size"]), float(pre.get("crop_pct") or 1.0)
        resize = int(math.floor(size / crop))
        trained = pre.get("train_size")
        extra = f" (trained on {trained}x{trained} crops)" if trained and trained != size else ""
        return [
            f"- **Input size**: images are resized so the shorter side is {resize} px "
            f"({pre.get('interpolation', '?')}) and centre-cropped to {size}x{size}{extra}; "
            "what lies outside the centre crop is not seen, and small details may be lost."
        ]

    def export_spec(self) -> ExportSpec:
        from modeltailor.export.base import NormalizedModel, pixels_for, preprocessing_doc
        from modeltailor.export.web import image_page_files

        def example(pre) -> tuple:
            import torch

            return (torch.rand(2, 3, pre.input_size, pre.input_size),)

        def inputs(items, clf):
            pixels, kept = pixels_for(items, clf.preprocessing_)
            return {"pixels": pixels}, kept

        return ExportSpec(
            input_names=["pixels"],
            wrap=lambda model, pre, t: NormalizedModel(model, pre.mean, pre.std, temperature=t),
            inputs=inputs,
            example=example,
            describe=preprocessing_doc,
            dynamic_axes={"pixels": {0: "batch"}},
            formats=("onnx", "tflite", "web"),
            noun=self.noun,
            web_page=image_page_files,
        )

    def serve_decoder(self, pre):
        return ImageDecoder(pre)


# -- serving: an upload -> the pixels the exported graph takes ---------------------------------

class ImageDecoder:
    """Images: any format Pillow reads, preprocessed as the run's config.json says."""

    def __init__(self, pre: Any) -> None:
        from modeltailor.data.transforms import eval_transform

        self.pre = pre
        self._transform = eval_transform(pre)

    def accepts(self, content_type: str | None) -> bool:
        """image/*, or a type that says nothing (clients send octet-stream for unknown names)."""
        mime = (content_type or "").split(";")[0].strip().lower()
        return mime in ("", "application/octet-stream") or mime.startswith("image/")

    def decode(self, data: bytes, name: str) -> dict[str, np.ndarray]:
        from modeltailor.export.base import unnormalize

        pixels = image_tensor(data, name, self.pre, self._transform)
        return {"pixels": unnormalize(pixels[None], self.pre)[0]}


def image_tensor(data: bytes, name: str, pre: Any, transform) -> Any:
    """Normalised CHW pixels of one encoded image: the same steps as `decoded_batches`
    (the reader refuses images too elongated to resize: `data.images.MAX_ASPECT`)."""
    from modeltailor.data.images import ImageReadError
    from modeltailor.data.transforms import load_for_model

    try:
        img = load_for_model(_Upload(data, name), pre)
    except ImageReadError as exc:
        raise InputError(str(exc)) from exc
    return transform(img)


class _Upload(io.BytesIO):
    """In-memory file whose repr is its name, so Pillow's messages name the upload."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self.name = name

    def __repr__(self) -> str:
        return repr(self.name)


IMAGE = register_modality(ImageModality())
