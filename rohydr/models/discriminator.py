"""Discriminator (D): tells true fused vectors from recovered ones. Emits logits (use BCE-with-logits)."""
from __future__ import annotations

import torch
import torch.nn as nn

from rohydr.models.multimodal_reconstructor import BatchNorm1dAnySize


class Discriminator(nn.Module):
    """(B, 6d) -> (B,) logits."""

    def __init__(self, dim: int, hidden1: int, hidden2: int):
        super().__init__()
        self.net = nn.Sequential(
            BatchNorm1dAnySize(dim),
            nn.Linear(dim, hidden1), nn.LeakyReLU(0.2),
            nn.Linear(hidden1, hidden2), nn.Tanh(),
            nn.Linear(hidden2, 1),
        )

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        return self.net(fused).squeeze(1)
