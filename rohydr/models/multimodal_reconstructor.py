"""Multimodal reconstructor (MR): an MLP that maps a recovered fused vector towards the true one."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class BatchNorm1dAnySize(nn.BatchNorm1d):
    """BatchNorm1d that also accepts a single row in train mode (batch statistics are undefined there):
    such a batch is normalised with the running statistics, which it leaves unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


class MultimodalReconstructor(nn.Module):
    """(B, 6d) -> (B, 6d) in (-1, 1); layer order as in the reference (dropout before each activation)."""

    def __init__(self, dim: int, hidden1: int, hidden2: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden1), nn.Dropout(dropout), nn.LeakyReLU(0.2),
            nn.Linear(hidden1, hidden2), nn.Dropout(dropout), BatchNorm1dAnySize(hidden2), nn.LeakyReLU(0.2),
            nn.Linear(hidden2, dim), nn.Tanh(),
        )

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        return self.net(fused)
