"""The diffusion condition: the available modalities' sequences, mixed into one (B, T, d) sequence."""
from __future__ import annotations

import torch
import torch.nn as nn

PAIRS = ("la", "lv", "av")  # one mixer per pair of available modalities, letters in (l, a, v) order


class PairMixer(nn.Module):
    """Two available sequences (B, T, d) each -> one: channel concat, then a pointwise Conv1d(2d -> d)."""

    def __init__(self, d: int):
        super().__init__()
        self.conv = nn.Conv1d(2 * d, d, kernel_size=1)

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        both = torch.cat([first, second], dim=2).transpose(1, 2)  # (B, 2d, T)
        return self.conv(both).transpose(1, 2)


def make_mixers(d: int) -> nn.ModuleDict:
    return nn.ModuleDict({pair: PairMixer(d) for pair in PAIRS})


def condition(mixers: nn.ModuleDict, available: dict[str, torch.Tensor]) -> torch.Tensor:
    """The condition from the available modalities' sequences (letter -> (N, T, d)), one or two of them.

    One modality conditions with its sequence as is; two are mixed by their pair's mixer.
    """
    letters = "".join(m for m in "lav" if m in available)
    if len(letters) == 1:
        return available[letters]
    if letters in mixers:
        return mixers[letters](available[letters[0]], available[letters[1]])
    raise ValueError(f"a condition needs one or two available modalities, got {sorted(available)}")
