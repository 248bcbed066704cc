"""Recovered-branch predictions over a split under given availability masks, with seeded sampler noise.

The DDIM start noise of sample i under availability pattern p is drawn from a generator seeded by
(seed, p) over the whole split, so a sample's prediction under a pattern does not depend on the batch
it sits in, on the other samples' patterns, or on which condition asked for it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rohydr.core.runtime import Runtime, derived_seed
from rohydr.core.vocabulary import MODALITIES, pattern_codes


def feature_shape(model) -> tuple[int, int]:
    """(T, d) of the extracted sequences the generators produce."""
    return model.length - model.config.extractor_kernel + 1, model.config.d


def pattern_noise(seed: int, code: int, n: int, shape: tuple[int, int]) -> torch.Tensor:
    generator = torch.Generator().manual_seed(derived_seed(seed, "sampler-noise", int(code)))
    return torch.randn(n, len(MODALITIES), *shape, generator=generator)


def split_noise(seed: int, avail: np.ndarray, shape: tuple[int, int]) -> torch.Tensor:
    """(N, 3, T, d) start noise: row i takes the noise of its own pattern."""
    codes = pattern_codes(avail)
    noise = torch.empty(len(codes), len(MODALITIES), *shape)
    for code in np.unique(codes):
        rows = torch.from_numpy(np.flatnonzero(codes == code))
        noise[rows] = pattern_noise(seed, code, len(codes), shape)[rows]
    return noise


@dataclass
class Predictions:
    y_rec: np.ndarray  # (N,) recovered-branch prediction
    rec_mse: np.ndarray  # (N, 3) MSE of recovered vs true extracted features; NaN where available
    rec_cos: np.ndarray  # (N, 3) cosine similarity centred on the training mean, same layout
    fusion_l1: np.ndarray  # (N,) L1 of the recovered fused vector (after MR) vs the true one; NaN if complete
    fused_truth: torch.Tensor | None = None  # (N, 6d) f_gt: the true features fused, the same under every pattern


@torch.no_grad()
def predict(model, split, avail: np.ndarray, seed: int, batch_size: int, runtime: Runtime,
            noise: torch.Tensor | None = None,
            fused_truth: torch.Tensor | None = None) -> Predictions:
    """The model's recovered-branch output for every row of `split` under `avail` (N, 3).

    `noise`: the split's start noise when the caller already drew it (`split_noise(seed, avail, ...)`).
    `fused_truth`: the split's f_gt from an earlier call (`Predictions.fused_truth`), so that the true
    features are not fused again.
    """
    model.eval()
    if noise is None:
        noise = split_noise(seed, avail, feature_shape(model))
    avail_t = torch.from_numpy(np.asarray(avail, dtype=bool))
    n = len(split)
    y_rec = np.empty(n, dtype=np.float32)
    rec_mse = np.full((n, 3), np.nan, dtype=np.float32)
    rec_cos = np.full((n, 3), np.nan, dtype=np.float32)
    fusion_l1 = np.full(n, np.nan, dtype=np.float32)
    truth_batches = []
    device = runtime.device
    for start in range(0, n, batch_size):
        index = torch.arange(start, min(start + batch_size, n))
        (text, audio, vision), _ = split.batch(index)
        truth = fused_truth[index].to(device) if fused_truth is not None else None
        with runtime.autocast():
            out = model(text.to(device), audio.to(device), vision.to(device), avail_t[index].to(device),
                        noise=noise[index].to(device), with_losses=False, fused_truth=truth)
        if fused_truth is None:
            truth_batches.append(out.f_gt.float().cpu())
        y_rec[index.numpy()] = out.y_rec.float().cpu().numpy()
        l1 = (out.f_rec_mr.float() - out.f_gt.float()).abs().mean(dim=1)
        missing = out.missing_rows.cpu().numpy()
        fusion_l1[index.numpy()[missing]] = l1.cpu().numpy()[missing]
        for m, (rows, recovered) in out.recovery.recovered.items():
            slot = MODALITIES.index(m)
            true = out.feats[slot][rows].float()
            recovered = recovered.float()
            mse = (recovered - true).pow(2).mean(dim=(1, 2))
            # centred on the training mean: an uncentred cosine credits a recovery for the mean it shares with
            # every row, so a generator that ignores its condition would score as recovering
            centre = model.statistics.sequence_mean[slot].float()
            cos = torch.nn.functional.cosine_similarity((recovered - centre).flatten(1), (true - centre).flatten(1),
                                                        dim=1)
            rows_np = index[rows.cpu()].numpy()
            rec_mse[rows_np, slot] = mse.cpu().numpy()
            rec_cos[rows_np, slot] = cos.cpu().numpy()
    if fused_truth is None:  # the caller's, else gathered here
        width = 2 * len(MODALITIES) * model.config.d
        fused_truth = torch.cat(truth_batches) if truth_batches else torch.empty(0, width)
    return Predictions(y_rec, rec_mse, rec_cos, fusion_l1, fused_truth)


def complete_prediction(model, text, audio, vision) -> torch.Tensor:
    return model.predict_head(model.fuse(model.extract(text, audio, vision)))


@torch.no_grad()
def complete_predictions(model, split, batch_size, runtime: Runtime) -> np.ndarray:
    """(N,) predictions of the backbone on complete inputs, eval mode."""
    model.eval()
    predictions, device = [], runtime.device
    for start in range(0, len(split), batch_size):
        (text, audio, vision), _ = split.batch(torch.arange(start, min(start + batch_size, len(split))))
        with runtime.autocast():
            y = complete_prediction(model, text.to(device), audio.to(device), vision.to(device))
        predictions.append(y.float().cpu())
    return torch.cat(predictions).numpy()
