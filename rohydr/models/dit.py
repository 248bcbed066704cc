"""A 1-D DiT (Peebles & Xie, adaLN-Zero) that predicts the noise of one modality's feature sequence.

Tokens are the T time steps of a (B, T, d) sequence: linear embedding d -> hidden plus a learned
positional embedding. The conditioning vector is the timestep embedding plus a linear embedding of the
time-mean of the condition sequence. Unlike the reference, the output layer emits d channels directly
(no learned-sigma half that is thrown away, no extra hidden -> d projection).

Attention, LayerNorm + modulation and GELU are the ops of rohydr.kernels.ops, which choose their fast
path (the fused CPU kernels for inference, PyTorch's kernels elsewhere).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from rohydr.kernels import ops


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x (B, T, C) * (1 + scale) + shift, with shift and scale (B, 1, C), in one kernel."""
    return torch.addcmul(shift, x, 1 + scale)


class TimestepEmbedder(nn.Module):
    """Integer diffusion timesteps (B,) -> (B, hidden): sinusoidal features, then a SiLU MLP."""

    def __init__(self, hidden: int, frequency_dim: int = 256):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    @staticmethod
    def sinusoid(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        angles = t.float()[:, None] * freqs[None]
        embedding = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
        if dim % 2:
            embedding = F.pad(embedding, (0, 1))
        return embedding

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.sinusoid(t, self.frequency_dim))


class SelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"DiT hidden size {hidden} is not divisible by its {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, hidden)
        q, k, v = self.qkv(x).chunk(3, dim=2)
        return self.proj(ops.attention(q, k, v, self.heads))


class Mlp(nn.Module):
    def __init__(self, hidden: int, mlp_hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(hidden, mlp_hidden)
        self.fc2 = nn.Linear(mlp_hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(ops.gelu_tanh(self.fc1(x)))


class DiTBlock(nn.Module):
    """Pre-norm transformer block whose LayerNorms (no affine) are modulated (shift, scale) and gated by c."""

    eps = 1e-6

    def __init__(self, hidden: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.attn = SelfAttention(hidden, heads)
        self.mlp = Mlp(hidden, int(hidden * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:  # x (B, T, hidden), c (B, hidden)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = torch.addcmul(x, gate_msa[:, None], self.attn(ops.layernorm_modulate(x, shift_msa, scale_msa, self.eps)))
        return torch.addcmul(x, gate_mlp[:, None], self.mlp(ops.layernorm_modulate(x, shift_mlp, scale_mlp, self.eps)))


class FinalLayer(nn.Module):
    def __init__(self, hidden: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))
        self.linear = nn.Linear(hidden, out_channels)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).unsqueeze(1).chunk(2, dim=2)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class DiT1d(nn.Module):
    """forward(x_t (B, T, d), t (B,), cond (B, T, d)) -> predicted noise (B, T, d)."""

    def __init__(self, d: int, length: int, hidden: int = 64, depth: int = 6, heads: int = 16,
                 mlp_ratio: float = 4.0):
        super().__init__()
        self.x_embedder = nn.Linear(d, hidden)
        self.pos_embed = nn.Parameter(torch.zeros(1, length, hidden))
        self.t_embedder = TimestepEmbedder(hidden)
        self.y_embedder = nn.Linear(d, hidden)
        self.blocks = nn.ModuleList(DiTBlock(hidden, heads, mlp_ratio) for _ in range(depth))
        self.final_layer = FinalLayer(hidden, d)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.pos_embed, std=1.0)  # the reference draws its learned embedding from N(0, 1)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        # adaLN-Zero: every block starts as the identity and the output as zero.
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        for layer in (self.final_layer.adaLN_modulation[-1], self.final_layer.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def embed_condition(self, cond: torch.Tensor) -> torch.Tensor:
        """Condition sequence (B, T, d) -> (B, hidden); constant over a sampling chain, so computed once."""
        return self.y_embedder(cond.mean(dim=1))

    def denoise(self, x: torch.Tensor, t: torch.Tensor, cond_embedding: torch.Tensor) -> torch.Tensor:
        """Predicted noise from an already embedded condition (see embed_condition)."""
        c = self.t_embedder(t) + cond_embedding  # (B, hidden)
        h = self.x_embedder(x) + self.pos_embed  # (B, T, hidden)
        for block in self.blocks:
            h = block(h, c)
        return self.final_layer(h, c)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.denoise(x, t, self.embed_condition(cond))
