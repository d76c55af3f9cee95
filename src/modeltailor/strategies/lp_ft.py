"""LP-FT (Kumar et al. 2022): fit the head as a linear probe, train the network from there, and
keep whichever of the two is better on validation data.

With little data a few optimizer steps can throw a good probe away; model selection on
validation data catches that, and config.json says which one was kept.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from modeltailor.strategies.base import FitContext, FitResult, Strategy
from modeltailor.strategies.linear_probe import probe_head
from modeltailor.training.inference import predict_logits, softmax


def fit_from_probe(strategy: Strategy, model, train, val, context: FitContext) -> FitResult:
    """Probe, then train; accuracy on validation data decides (pooled per example, the way
    predictions are made), a tie keeping the trained model. Text side features may then join
    the kept one."""
    probe = probe_head(model, train, val, context)
    train, val = probe.train, probe.val
    pinned = set(getattr(model.net, "always_frozen", ()))
    saved = {
        k: v.detach().clone()
        for k, v in model.state_dict().items()
        if k.removeprefix("net.") not in pinned
    }
    y_val = np.asarray(val.labels)
    # The probe's validation embeddings are already computed: its logits need no model pass.
    with torch.inference_mode():
        probe_logits = model.classifier()(torch.from_numpy(probe.features[1])).numpy()
    probe_scores = validation_scores(probe_logits, y_val)
    result = context.train(model, strategy, train, val)
    s = context.settings
    logits, _ = predict_logits(model, list(val.items), context.pre, s.batch_size, s.num_workers)
    tuned = validation_scores(logits, y_val)
    # Accuracy decides, and a tie keeps the trained model the user asked for: label
    # smoothing keeps its probabilities below 1, so a log-loss tie-break would always
    # favour the probe (FSDD standard split: both 0.9963 on validation).
    better = tuned["accuracy"] >= probe_scores["accuracy"]
    if not better:
        model.load_state_dict(saved, strict=False)
        # The probe's embeddings and head choice stand, so side features can still join it.
        result.features, result.head_choice = probe.features, probe.head_choice
        if "selection" in probe.info:  # chosen by CV: side features are judged the same way
            result.info["selection"] = probe.info["selection"]
    result.info["head_init"] = {
        "method": "linear probe (LP-FT)",
        "C": probe.info["C"],
        "validation": {"probe": probe_scores, "trained": tuned},
        "kept": "trained" if better else "probe",
    }
    result.train, result.val = train, val
    return result


def validation_scores(logits: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Accuracy and log loss of pooled per-example logits."""
    proba = softmax(logits)
    loss = float(-np.log(np.clip(proba[np.arange(len(y)), y], 1e-12, 1)).mean())
    return {"accuracy": round(float((proba.argmax(1) == y).mean()), 6), "log_loss": round(loss, 6)}
