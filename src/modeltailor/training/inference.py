"""Batch inference over items (files, texts): probabilities from a trained model."""

from __future__ import annotations

import numpy as np
import torch

from modeltailor._progress import progress_bar
from modeltailor.backbones.catalogue import Preprocessing, TextPreprocessing
from modeltailor.backbones.model import TailoredModel
from modeltailor.training.inputs import pipeline_for, pooled_outputs


def predict_logits(
    model: TailoredModel,
    items: list,
    pre: Preprocessing | TextPreprocessing,
    batch_size: int = 32,
    num_workers: int = 0,
    verbose: bool = False,
) -> tuple[np.ndarray, dict]:
    """Logits for every usable item (a long text's windows averaged), and {item: reason} for
    those that failed to load."""
    pipeline = pipeline_for(model, pre)
    model.eval()
    if pipeline.channels_last:
        model.to(memory_format=torch.channels_last)
    bad: dict = {}
    with progress_bar(pipeline.units(items), "predicting", verbose) as bar:
        logits, _ = pooled_outputs(
            model, pipeline, items, batch_size, num_workers, bad, bar.advance
        )
    if logits.size == 0:
        logits = np.empty((0, model.classifier().out_features), np.float32)
    return logits, bad


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def embed_examples(model, pre, data, batch_size: int, num_workers: int, verbose: bool):
    """Per-example embeddings (windows averaged), computed afresh: after the body was tuned
    the embedding cache, which holds the frozen backbone's, does not apply."""
    model.eval()
    pipeline, items = pipeline_for(model, pre), list(data.items)
    with progress_bar(pipeline.units(items), "embedding", verbose) as bar:
        rows, _ = pooled_outputs(
            model.embed, pipeline, items, batch_size, num_workers, {}, bar.advance
        )
    return rows
