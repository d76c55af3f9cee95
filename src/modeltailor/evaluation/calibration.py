"""Temperature scaling (Guo et al., 2017): one scalar that makes confidences honest.

A network trained with cross-entropy is usually over-confident; dividing its logits by a
temperature fitted on validation data fixes most of that without changing any prediction
(the arg-max is the same), so accuracy is untouched and only the probabilities move.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

LOG_T_BOUNDS = (-3.0, 3.0)  # T in [0.05, 20]: wider is never needed, and keeps the fit stable


def nll(logits: np.ndarray, y: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of the true classes at a temperature."""
    logp = log_softmax(logits / temperature, axis=1)
    return float(-logp[np.arange(len(y)), y].mean())


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising validation NLL (a bounded 1-D search over log T)."""
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    result = minimize_scalar(
        lambda log_t: nll(logits, y, float(np.exp(log_t))),
        bounds=LOG_T_BOUNDS,
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(result.x))


def expected_calibration_error(proba: np.ndarray, y: np.ndarray) -> float:
    """Top-label ECE, the same figure `classification_metrics` reports as `ece`."""
    from modeltailor.evaluation.metrics import calibration

    return calibration(np.asarray(y), np.asarray(proba))[0]
