"""The imputation baselines: a missing modality's extracted features filled without a generator.

- zero_fill: zeros (with the extractor's bias-free convolution, the same as zero input features);
- mean_fill: the training mean of the modality's extracted features, per step and channel;
- ridge_fill: per availability pattern, a linear regression from the available modalities' whole
  extracted sequences (flattened, l-a-v order) to the missing one's, fitted in closed form on the
  training split with a ridge penalty chosen on the validation split.
"""
from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn as nn

from rohydr.core.vocabulary import MODALITIES

# the ridge penalty, as a multiple of the mean eigenvalue of the centred Gram matrix
RIDGE_GRID = tuple(10.0 ** k for k in range(-5, 3))


def ridge_pairs() -> list[tuple[str, str]]:
    """(available letters, missing letter) of every regression a missing pattern needs."""
    pairs = []
    for k in (1, 2):
        for available in itertools.combinations(MODALITIES, k):
            pairs += [("".join(available), m) for m in MODALITIES if m not in available]
    return pairs


class RidgeFill(nn.Module):
    def __init__(self, seq_len: int, d: int):
        super().__init__()
        width = seq_len * d
        self.shape = (seq_len, d)
        for available, m in ridge_pairs():
            self.register_buffer(f"{available}_to_{m}_weight", torch.zeros(len(available) * width, width))
            self.register_buffer(f"{available}_to_{m}_bias", torch.zeros(width))
        self.register_buffer("penalty", torch.zeros(len(ridge_pairs())))  # the chosen one per regression

    def forward(self, available: dict[str, torch.Tensor], m: str) -> torch.Tensor:
        """Modality m's features from the available ones (letter -> (N, T, d)); (N, T, d)."""
        letters = "".join(x for x in MODALITIES if x in available)
        inputs = torch.cat([available[x].flatten(1) for x in letters], dim=1)
        weight, bias = getattr(self, f"{letters}_to_{m}_weight"), getattr(self, f"{letters}_to_{m}_bias")
        return (inputs @ weight.to(inputs.dtype) + bias.to(inputs.dtype)).view(-1, *self.shape)

    @torch.no_grad()
    def fit(self, train: tuple[torch.Tensor, ...], valid: tuple[torch.Tensor, ...]) -> dict[str, float]:
        """Fit every regression on `train` (l, a, v) features (N, T, d), each penalty chosen by the
        validation MSE; returns the validation MSE per regression."""
        flat_train = {m: x.flatten(1).double().cpu().numpy() for m, x in zip(MODALITIES, train)}
        flat_valid = {m: x.flatten(1).double().cpu().numpy() for m, x in zip(MODALITIES, valid)}
        scores = {}
        for index, (available, m) in enumerate(ridge_pairs()):
            x = np.concatenate([flat_train[a] for a in available], axis=1)
            x_valid = np.concatenate([flat_valid[a] for a in available], axis=1)
            weight, bias, penalty, mse = _ridge(x, flat_train[m], x_valid, flat_valid[m])
            getattr(self, f"{available}_to_{m}_weight").copy_(torch.from_numpy(weight))
            getattr(self, f"{available}_to_{m}_bias").copy_(torch.from_numpy(bias))
            self.penalty[index] = penalty
            scores[f"{available}_to_{m}"] = mse
        return scores


def _ridge(x: np.ndarray, y: np.ndarray, x_valid: np.ndarray, y_valid: np.ndarray):
    """Closed-form ridge regression y ~ x W + b over the penalty grid; the one with the lowest validation
    MSE: (W, b, penalty, validation MSE)."""
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - x_mean, y - y_mean
    eigenvalues, vectors = np.linalg.eigh(xc.T @ xc)
    projected = vectors.T @ (xc.T @ yc)  # (p, q)
    scale = max(float(eigenvalues.clip(min=0).mean()), 1e-12)
    best = None
    for factor in RIDGE_GRID:
        penalty = factor * scale
        weight = vectors @ (projected / (eigenvalues.clip(min=0) + penalty)[:, None])
        mse = float(np.mean(((x_valid - x_mean) @ weight + y_mean - y_valid) ** 2))
        if best is None or mse < best[3]:
            best = (weight, y_mean - x_mean @ weight, penalty, mse)
    weight, bias, penalty, mse = best
    return weight.astype(np.float32), bias.astype(np.float32), penalty, mse
