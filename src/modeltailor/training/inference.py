"""Batch inference over files: probabilities from a trained model."""

from __future__ import annotations

import numpy as np
import torch

from modeltailor._progress import progress_bar
from modeltailor.backbones.catalogue import Preprocessing
from modeltailor.backbones.model import TailoredModel
from modeltailor.data.transforms import eval_transform
from modeltailor.training.loaders import ImageTensors, make_loader


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
    data = ImageTensors(items, None, eval_transform(pre), pre, tolerant=True)
    loader = make_loader(data, batch_size, num_workers=num_workers)
    model.eval()
    model.to(memory_format=torch.channels_last)
    out: list[np.ndarray] = []
    bad: dict = {}
    with progress_bar(len(items), "predicting", verbose) as bar:
        for x, idx, errors in loader:
            ok = [k for k, e in enumerate(errors) if not e]
            for k, e in enumerate(errors):
                if e:
                    bad[items[int(idx[k])]] = e
            if ok:
                logits = model(x[ok].contiguous(memory_format=torch.channels_last))
                out.append(logits.float().numpy())
            bar.advance(len(errors))
    n_classes = model.classifier().out_features
    return (np.concatenate(out) if out else np.empty((0, n_classes), np.float32)), bad


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
