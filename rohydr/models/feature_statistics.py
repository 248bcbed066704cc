"""Training-split statistics of the extracted features, stored with the model.

They serve the generators (per-channel standardisation, the sampler's x0 clip, the per-modality
loss weights) and the mean-fill baseline. Measured once when training starts, in eval mode, with the
(frozen) extractor of the starting checkpoint.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from rohydr.core.vocabulary import MODALITIES

EPS = 1e-6


class FeatureStatistics(nn.Module):
    def __init__(self, seq_len: int, d: int):
        super().__init__()
        M = len(MODALITIES)
        self.register_buffer("channel_mean", torch.zeros(M, d))  # over samples and steps
        self.register_buffer("channel_std", torch.ones(M, d))
        self.register_buffer("sequence_mean", torch.zeros(M, seq_len, d))  # over samples, per step
        self.register_buffer("variance", torch.ones(M))  # mean squared deviation from channel_mean
        # max |feature| per modality, raw and standardised (the sampler's x0 clip); inf: not measured
        self.register_buffer("raw_range", torch.full((M,), float("inf")))
        self.register_buffer("standardized_range", torch.full((M,), float("inf")))

    @torch.no_grad()
    def measure(self, feats) -> None:
        """Set every statistic from the (l, a, v) extracted features of a split, each (N, T, d)."""
        for slot, x in enumerate(f.double() for f in feats):
            mean = x.mean(dim=(0, 1))
            std = x.std(dim=(0, 1), correction=0).clamp_min(EPS)
            self.channel_mean[slot] = mean.float()
            self.channel_std[slot] = std.float()
            self.sequence_mean[slot] = x.mean(dim=0).float()
            self.variance[slot] = (x - mean).pow(2).mean().clamp_min(EPS).float()
            self.raw_range[slot] = x.abs().amax().float()
            self.standardized_range[slot] = ((x - mean) / std).abs().amax().float()

    def standardize(self, m: str, x: torch.Tensor) -> torch.Tensor:
        slot = MODALITIES.index(m)
        return (x - self.channel_mean[slot].to(x.dtype)) / self.channel_std[slot].to(x.dtype)

    def destandardize(self, m: str, x: torch.Tensor) -> torch.Tensor:
        slot = MODALITIES.index(m)
        return x * self.channel_std[slot].to(x.dtype) + self.channel_mean[slot].to(x.dtype)
