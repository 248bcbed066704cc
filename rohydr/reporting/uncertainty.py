"""Intervals that account for the finite test split and for the seeds, and a check for collapsed
predictions.

A table cell is a metric averaged over seeds (and, for the averages, over conditions), all scored on
one test split. Its 95 % interval is

    mean ± z · sqrt(var_rows + var_seeds / S),   z = Φ⁻¹(0.975),

where var_rows is the variance of the seed-mean over bootstrap resamples of the test rows (the same
resamples for every seed, method and condition: the rows are shared) and var_seeds / S the squared
standard error of the mean over the S seeds (sample variance of the per-seed values). A paired
difference between two methods takes the same form on the per-seed differences, each resample
scoring both methods on the same rows. With one seed the seed term is absent.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from rohydr.core.metrics import score

REPLICATES = 1000
RESAMPLE_SEED = 20250523
Z = float(norm.ppf(0.975))
# the metrics with a resampled form; each takes the prediction vector it is scored on
BOOTSTRAPPED = ("acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "mae")


def resample_counts(n: int, replicates: int = REPLICATES, seed: int = RESAMPLE_SEED) -> np.ndarray:
    """(replicates, n): how often each test row is drawn in each bootstrap resample."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=replicates).astype(np.float64)


def _binary_f1(weights: np.ndarray, truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Weighted F1 (sklearn 'weighted', zero division 0) of two classes per row of `weights` (R, n)."""
    cells = {name: weights @ (a & b).astype(np.float64) for name, a, b in (
        ("tp", truth, predicted), ("fp", ~truth, predicted), ("fn", truth, ~predicted), ("tn", ~truth, ~predicted))}
    with np.errstate(invalid="ignore", divide="ignore"):
        f1_pos = np.nan_to_num(2 * cells["tp"] / (2 * cells["tp"] + cells["fp"] + cells["fn"]))
        f1_neg = np.nan_to_num(2 * cells["tn"] / (2 * cells["tn"] + cells["fp"] + cells["fn"]))
        positives, negatives = cells["tp"] + cells["fn"], cells["tn"] + cells["fp"]
        return (f1_pos * positives + f1_neg * negatives) / (positives + negatives)


def resampled(metric: str, y_pred: np.ndarray, y_true: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The metric on every resample of `counts` (R, n): (R,). Rows with weight 1 reproduce `score`."""
    y_pred, y_true = np.asarray(y_pred, dtype=np.float64), np.asarray(y_true, dtype=np.float64)
    if metric == "mae":
        return counts @ np.abs(y_pred - y_true) / counts.sum(axis=1)
    if metric.endswith("non0"):
        keep = y_true != 0
        counts, y_pred, y_true = counts[:, keep], y_pred[keep], y_true[keep]
        truth, predicted = y_true > 0, y_pred > 0
    elif metric.endswith("has0"):
        truth, predicted = y_true >= 0, y_pred >= 0
    else:
        raise KeyError(f"no resampled form of metric {metric!r}; known: {', '.join(BOOTSTRAPPED)}")
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric.startswith("acc2"):
            return counts @ (truth == predicted).astype(np.float64) / counts.sum(axis=1)
        return _binary_f1(counts, truth, predicted)


@dataclass
class Estimate:
    mean: float  # over seeds
    std: float  # over seeds (ddof 1); NaN for one seed
    low: float  # 95 % interval, rows and seeds
    high: float
    n: int  # seeds


def estimate(per_seed: np.ndarray, per_seed_resampled: np.ndarray) -> Estimate:
    """From the per-seed values (S,) and their resampled values (S, R)."""
    seeds = len(per_seed)
    mean = float(np.mean(per_seed))
    std = float(np.std(per_seed, ddof=1)) if seeds > 1 else float("nan")
    variance = float(np.var(per_seed_resampled.mean(axis=0), ddof=1))
    if seeds > 1:
        variance += std ** 2 / seeds
    half = Z * np.sqrt(variance)
    return Estimate(mean, std, mean - half, mean + half, seeds)


def seed_values(metric: str, predictions: list[np.ndarray], y_true: np.ndarray, counts: np.ndarray):
    """Per seed: the metric (S,) and its resampled values (S, R)."""
    point = np.array([score(p, y_true)[metric] for p in predictions])
    return point, np.stack([resampled(metric, p, y_true, counts) for p in predictions])


def collapse(y_pred: np.ndarray, y_true: np.ndarray) -> str | None:
    """Why predictions carry (almost) no information on the label, or None: (nearly) constant
    predictions, or predictions of one sign while the labels have both."""
    y_pred = np.asarray(y_pred, dtype=np.float64)
    spread, label_spread = float(np.std(y_pred)), float(np.std(y_true))
    if spread < 0.01 * max(label_spread, 1e-12):
        return f"nearly constant predictions (std {spread:.2g} against the labels' {label_spread:.2g})"
    labels_both = (np.asarray(y_true) > 0).any() and (np.asarray(y_true) < 0).any()
    positive = float(np.mean(y_pred > 0))
    if labels_both and (positive >= 0.99 or positive <= 0.01):
        return f"{100 * max(positive, 1 - positive):.1f} % of the predictions have one sign"
    return None
