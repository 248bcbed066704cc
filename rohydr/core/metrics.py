"""Regression metrics of sentiment scores with the MMSA definitions (MOSI/MOSEI).

Accuracies and F1 scores are fractions in [0, 1]. The binary metrics come in two flavours:
"has-0" keeps every sample and splits at label >= 0 / prediction >= 0; "non-0" drops samples whose
label is exactly 0 and splits at > 0. Acc-5 and Acc-7 clip both sides to [-2, 2] / [-3, 3] and
round to the nearest integer (NumPy rounding: halves go to the even integer, as in MMSA).
"""
from __future__ import annotations

import numpy as np

from rohydr.core.errors import NonFiniteError

METRICS = ("acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc5", "acc7", "mae", "corr")
# Where each metric's values lie: the accuracies and F1 scores are fractions, MAE a mean absolute error.
RANGES = {**dict.fromkeys(METRICS[:6], (0.0, 1.0)), "mae": (0.0, float("inf")), "corr": (-1.0, 1.0)}
LABELS = {
    "acc2_has0": "Acc-2 (has-0)",
    "f1_has0": "F1 (has-0)",
    "acc2_non0": "Acc-2 (non-0)",
    "f1_non0": "F1 (non-0)",
    "acc5": "Acc-5",
    "acc7": "Acc-7",
    "mae": "MAE",
    "corr": "Corr",
}


def _as_vector(values) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor
        values = values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=np.float64).reshape(-1)


def accuracy(y_pred: np.ndarray, y_true: np.ndarray) -> float:
    return float(np.mean(y_pred == y_true)) if len(y_true) else float("nan")


def weighted_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """F1 per class, averaged with weights = class support in y_true (sklearn's average='weighted').

    A class with no predicted or no true samples scores 0 (sklearn's zero_division default);
    classes that only occur in y_pred carry weight 0.
    """
    if len(y_true) == 0:
        return float("nan")
    total = 0.0
    for cls in np.union1d(y_true, y_pred):
        true_c, pred_c = y_true == cls, y_pred == cls
        hits = np.sum(true_c & pred_c)
        denominator = np.sum(true_c) + np.sum(pred_c)  # F1 = 2 TP / (2 TP + FP + FN)
        f1 = 2.0 * hits / denominator if denominator else 0.0
        total += f1 * np.sum(true_c)
    return float(total / len(y_true))


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; 0.0 where it is undefined (fewer than 2 samples or a constant input)."""
    if len(x) < 2:
        return 0.0
    dx, dy = x - x.mean(), y - y.mean()
    norm = np.sqrt(np.sum(dx * dx) * np.sum(dy * dy))
    if not np.isfinite(norm) or norm == 0.0:
        return 0.0
    return float(np.clip(np.sum(dx * dy) / norm, -1.0, 1.0))


def multiclass_accuracy(y_pred: np.ndarray, y_true: np.ndarray, bound: float) -> float:
    return accuracy(np.round(np.clip(y_pred, -bound, bound)), np.round(np.clip(y_true, -bound, bound)))


def score(y_pred, y_true) -> dict[str, float]:
    """All METRICS of predictions against labels (numpy arrays or torch tensors, any shape of N values)."""
    y_pred, y_true = _as_vector(y_pred), _as_vector(y_true)
    if y_pred.shape != y_true.shape:
        raise ValueError(f"score: {y_pred.size} predictions for {y_true.size} labels")
    bad = int((~np.isfinite(y_pred)).sum())
    if bad:
        raise NonFiniteError(f"{bad} of {y_pred.size} predictions are not finite (NaN or inf): not scored")
    non_zero = y_true != 0
    pred_has0, true_has0 = y_pred >= 0, y_true >= 0
    pred_non0, true_non0 = y_pred[non_zero] > 0, y_true[non_zero] > 0
    return {
        "acc2_has0": accuracy(pred_has0, true_has0),
        "f1_has0": weighted_f1(true_has0, pred_has0),
        "acc2_non0": accuracy(pred_non0, true_non0),
        "f1_non0": weighted_f1(true_non0, pred_non0),
        "acc5": multiclass_accuracy(y_pred, y_true, 2.0),
        "acc7": multiclass_accuracy(y_pred, y_true, 3.0),
        "mae": float(np.mean(np.abs(y_pred - y_true))) if len(y_true) else float("nan"),
        "corr": pearson(y_pred, y_true),
    }
