"""Fusion network: MulT-style cross-modal transformers (Tsai et al. 2019), batch-first.

For each target modality m: two cross-modal encoders (m <- each other modality, width d), their outputs
concatenated (2d) and passed through a self-attention "memory" encoder; the last time step of each
target's sequence is kept and the three are concatenated into the fused vector (B, 6d).

Encoder layers are pre-LayerNorm: attention (attention-weight dropout) + residual dropout, then a ReLU
FFN d -> 4d -> d (ReLU dropout) + residual dropout; a final LayerNorm closes the encoder. Inputs are
scaled by sqrt(width) and pass through embedding dropout. In a cross-modal layer the source sequence is
normalised by the same LayerNorm as the query, as in MulT.

Positional embedding: none in the fusion network, as in the encoder the reference imports (subNets_adv).
An encoder with `positional=True` (the score-SDE generator's) adds MulT's sinusoidal embedding
(positions 1..T) after the sqrt(width) scaling.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from rohydr.core.vocabulary import MODALITIES
from rohydr.kernels import ops


def sinusoidal_positions(length: int, dim: int, device: torch.device) -> torch.Tensor:
    """(length, dim): sin half then cos half, positions 1..length (0 is MulT's padding index)."""
    half = dim // 2
    rate = math.log(10000.0) / max(half - 1, 1)
    freqs = torch.exp(torch.arange(half, device=device, dtype=torch.float32) * -rate)
    angles = torch.arange(1, length + 1, device=device, dtype=torch.float32)[:, None] * freqs[None]
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    return F.pad(table, (0, dim % 2))


class MultiheadAttention(nn.Module):
    """Multi-head attention with a packed (3D, D) input projection; key and value share one source."""

    def __init__(self, dim: int, heads: int, attn_dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by its {heads} heads")
        self.dim, self.heads, self.attn_dropout = dim, heads, attn_dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.xavier_uniform_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, query: torch.Tensor, source: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        D = self.dim
        if source is None:
            q, k, v = F.linear(query, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        else:
            q = F.linear(query, self.in_proj_weight[:D], self.in_proj_bias[:D])
            k, v = F.linear(source, self.in_proj_weight[D:], self.in_proj_bias[D:]).chunk(2, dim=-1)
        return self.out_proj(ops.attention(q, k, v, self.heads, causal, self.attn_dropout, self.training))


class EncoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, attn_dropout: float, relu_dropout: float, res_dropout: float,
                 causal: bool):
        super().__init__()
        self.causal, self.relu_dropout, self.res_dropout = causal, relu_dropout, res_dropout
        self.attn = MultiheadAttention(dim, heads, attn_dropout)
        self.norm_attn = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)
        self.norm_ffn = nn.LayerNorm(dim)
        for fc in (self.fc1, self.fc2):
            nn.init.xavier_uniform_(fc.weight)
            nn.init.zeros_(fc.bias)

    def forward(self, x: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        source = self.norm_attn(source) if source is not None else None
        h = self.attn(self.norm_attn(x), source, self.causal)
        x = x + F.dropout(h, self.res_dropout, self.training)
        h = ops.relu_dropout(self.fc1(self.norm_ffn(x)), self.relu_dropout, self.training)
        return x + F.dropout(self.fc2(h), self.res_dropout, self.training)


class TransformerEncoder(nn.Module):
    """forward(x (B, T, D), source (B, S, D) or None) -> (B, T, D); cross-modal when a source is given."""

    def __init__(self, dim: int, heads: int, layers: int, attn_dropout: float = 0.0, relu_dropout: float = 0.0,
                 res_dropout: float = 0.0, embed_dropout: float = 0.0, causal: bool = False,
                 positional: bool = False):
        super().__init__()
        self.dim, self.embed_dropout, self.positional = dim, embed_dropout, positional
        self.layers = nn.ModuleList(
            EncoderLayer(dim, heads, attn_dropout, relu_dropout, res_dropout, causal) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = math.sqrt(self.dim) * x
        if self.positional:
            x = x + sinusoidal_positions(x.shape[1], self.dim, x.device).to(x.dtype)
        return F.dropout(x, self.embed_dropout, self.training)

    def forward(self, x: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embed(x)
        source = self.embed(source) if source is not None else None
        for layer in self.layers:
            x = layer(x, source)
        return self.norm(x)


def cross_name(target: str, source: str) -> str:
    return f"{target}_from_{source}"


class FusionNetwork(nn.Module):
    """feats (l, a, v), each (B, T, d) -> fused (B, 6d)."""

    def __init__(self, d: int, heads: int, nlevels: int, memory_layers: int, attn_dropout: dict[str, float],
                 relu_dropout: float, res_dropout: float, embed_dropout: float, causal: bool):
        super().__init__()
        common = dict(relu_dropout=relu_dropout, res_dropout=res_dropout, embed_dropout=embed_dropout, causal=causal)
        # As in MulT, a cross-modal encoder's attention dropout is that of its SOURCE modality.
        self.cross = nn.ModuleDict({
            cross_name(target, source): TransformerEncoder(d, heads, nlevels, attn_dropout[source], **common)
            for target in MODALITIES for source in MODALITIES if source != target})
        # MulT (and the reference) use the text attention dropout in all three memory encoders.
        self.memory = nn.ModuleDict({
            target: TransformerEncoder(2 * d, heads, memory_layers, attn_dropout["l"], **common)
            for target in MODALITIES})

    def forward(self, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        by_letter = dict(zip(MODALITIES, feats))
        last_steps = []
        for target in MODALITIES:
            sources = [m for m in MODALITIES if m != target]
            h = torch.cat([self.cross[cross_name(target, s)](by_letter[target], by_letter[s]) for s in sources],
                          dim=2)  # (B, T, 2d)
            last_steps.append(self.memory[target](h)[:, -1])
        return torch.cat(last_steps, dim=1)
