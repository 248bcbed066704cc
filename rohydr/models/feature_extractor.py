"""Feature extractor: one temporal Conv1d per modality onto a shared width d (no padding, no bias)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from rohydr.core.runtime import full_precision

Feats = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (l, a, v), each (B, T, d)


class FeatureExtractor(nn.Module):
    """(B, L, d_m) per modality -> (B, T, d) per modality with T = L - kernel + 1.

    Text dropout (train mode only) hits the text input before its convolution, as in the reference,
    so the ground-truth and the recovered branch both see the same dropped text.
    """

    def __init__(self, dims: tuple[int, int, int], d: int, kernel: int = 3, text_dropout: float = 0.0):
        super().__init__()
        self.kernel = kernel
        self.text_dropout = text_dropout
        self.convs = nn.ModuleList(nn.Conv1d(dim, d, kernel_size=kernel, padding=0, bias=False) for dim in dims)

    def forward(self, text: torch.Tensor, audio: torch.Tensor, vision: torch.Tensor) -> Feats:
        text = F.dropout(text, p=self.text_dropout, training=self.training)
        with full_precision(text):  # the recovery losses' targets and the generators' conditions
            return tuple(conv(x.float().transpose(1, 2)).transpose(1, 2)
                         for conv, x in zip(self.convs, (text, audio, vision)))
