"""Emotion head (MulT's output block): residual two-layer projection, then a linear regressor."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from rohydr.core.runtime import full_precision


class EmotionHead(nn.Module):
    """(B, 6d) -> (B,) sentiment score."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.dropout = dropout
        self.proj1 = nn.Linear(dim, dim)
        self.proj2 = nn.Linear(dim, dim)
        self.out_layer = nn.Linear(dim, 1)

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        h = self.proj2(F.dropout(F.relu(self.proj1(fused)), self.dropout, self.training))
        with full_precision(h):  # a bf16 prediction would round MAE, Acc-7 and model selection
            return self.out_layer((h + fused).float()).squeeze(1)
