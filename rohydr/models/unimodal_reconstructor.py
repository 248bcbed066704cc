"""Unimodal reconstructor (UR): a 1-D RCAN (residual channel attention network) that refines a sample.

Conv1d(d -> 2d, k1), a residual group of RCABs (conv3-ReLU-conv3, channel attention, residual), a
conv3 closing the group, the group's long residual, then Conv1d(2d -> d, k1).
"""
from __future__ import annotations

import torch
import torch.nn as nn


class ChannelAttention(nn.Module):
    """Rescales each channel by a gate computed from its time-average (squeeze-and-excitation)."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        squeezed = max(channels // reduction, 1)
        self.gate = nn.Sequential(nn.Conv1d(channels, squeezed, 1), nn.ReLU(inplace=True),
                                  nn.Conv1d(squeezed, channels, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T)
        return x * self.gate(x.mean(dim=2, keepdim=True))


class RCAB(nn.Module):
    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv1d(channels, channels, 3, padding=1), ChannelAttention(channels, reduction))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResidualGroup(nn.Module):
    def __init__(self, channels: int, blocks: int, reduction: int):
        super().__init__()
        self.body = nn.Sequential(*(RCAB(channels, reduction) for _ in range(blocks)),
                                  nn.Conv1d(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class UnimodalReconstructor(nn.Module):
    """(B, T, d) -> (B, T, d)."""

    def __init__(self, d: int, blocks: int = 20, reduction: int = 16):
        super().__init__()
        self.head = nn.Conv1d(d, 2 * d, 1)
        self.group = ResidualGroup(2 * d, blocks, reduction)
        self.tail = nn.Conv1d(2 * d, d, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.group(self.head(x.transpose(1, 2)))).transpose(1, 2)
