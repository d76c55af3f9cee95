"""Batch inference over files: probabilities from a trained model."""

from __future__ import annotations

import numpy as np
import torch

from modeltailor._progress import progress_bar
from modeltailor.backbones.catalogue import Preprocessing
from modeltailor.backbones.model import TailoredModel
from modeltailor.training.loaders import decoded_batches


@torch.inference_mode()
def predict_logits(
    model: TailoredModel,
    items: list,
    pre: Preprocessing,
    batch_size: int = 32,
    num_workers: int = 0,
    verbose: bool = False,
) -> tuple[np.ndarray, dict]:
    """Logits for every decodable item, and {item: reason} for those that failed."""
    model.eval().to(memory_format=torch.channels_last)
    out: list[np.ndarray] = []
    bad: dict = {}
    with progress_bar(len(items), "predicting", verbose) as bar:
        for pixels, kept, covered in decoded_batches(items, pre, batch_size, num_workers, bad):
            if kept:
                out.append(model(pixels).float().numpy())
            bar.advance(covered)
    n_classes = model.classifier().out_features
    return (np.concatenate(out) if out else np.empty((0, n_classes), np.float32)), bad


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
