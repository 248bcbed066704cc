"""Fusion network: MulT-style cross-modal transformers (Tsai et al. 2019), batch-first.

For each target modality m: two cross-modal encoders (m <- each other modality, width d), their outputs
concatenated (2d) and passed through a self-attention "memory" encoder; the last time step of each
target's sequence is kept and the three are concatenated into the fused vector (B, 6d).

Encoder layers are pre-LayerNorm: attention (attention-weight dropout) + residual dropout, then a ReLU
FFN d -> 4d -> d (ReLU dropout) + residual dropout; a final LayerNorm closes the encoder. Inputs are
scaled by sqrt(width) and pass through embedding dropout. In a cross-modal layer the source sequence is
normalised by the same LayerNorm as the query, as in MulT.

Positional embedding: the encoder the reference actually imports (subNets_adv) defaults to none and
the reference never turns it on, so `positional=False` is the faithful setting; `positional=True` adds
MulT's sinusoidal embedding (positions 1..T) after the sqrt(width) scaling.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from rohydr import MODALITIES
from rohydr.models import cpu_kernels


def sinusoidal_positions(length: int, dim: int, device: torch.device) -> torch.Tensor:
    """(length, dim): sin half then cos half, positions 1..length (0 is MulT's padding index)."""
    half = dim // 2
    rate = math.log(10000.0) / max(half - 1, 1)
    freqs = torch.exp(torch.arange(half, device=device, dtype=torch.float32) * -rate)
    angles = torch.arange(1, length + 1, device=device, dtype=torch.float32)[:, None] * freqs[None]
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    return F.pad(table, (0, dim % 2))


def future_mask(query_len: int, key_len: int, device: torch.device) -> torch.Tensor | None:
    """Boolean (query_len, key_len), True = may attend: query i sees keys j <= i + |key_len - query_len|."""
    offset = abs(key_len - query_len)
    rows = torch.arange(query_len, device=device)[:, None]
    cols = torch.arange(key_len, device=device)[None]
    return cols <= rows + offset


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

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, heads, T, D/heads)
        B, T, _ = x.shape
        return x.view(B, T, self.heads, self.dim // self.heads).transpose(1, 2)

    def forward(self, query: torch.Tensor, source: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        D = self.dim
        if source is None:
            q, k, v = F.linear(query, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        else:
            q = F.linear(query, self.in_proj_weight[:D], self.in_proj_bias[:D])
            k, v = F.linear(source, self.in_proj_weight[D:], self.in_proj_bias[D:]).chunk(2, dim=-1)
        kernels = None if self.training and self.attn_dropout > 0 else cpu_kernels.for_tensor(query)
        if kernels is not None:
            return self.out_proj(kernels.attention(q, k, v, self.heads, causal))
        q, k, v = self._split(q), self._split(k), self._split(v)
        q_len, k_len = q.shape[2], k.shape[2]
        allowed = future_mask(q_len, k_len, query.device) if causal else None
        if self.training and self.attn_dropout > 0 and torch.is_grad_enabled():
            y = DroppedAttention.apply(q, k, v, allowed, self.attn_dropout)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        B, _, T, _ = y.shape
        return self.out_proj(y.transpose(1, 2).reshape(B, T, D))


class DroppedAttention(torch.autograd.Function):
    """softmax(q k^T / sqrt(c)) with dropout on the attention weights, times v: (B, heads, T, c) -> same.

    What scaled_dot_product_attention computes with dropout_p, but it keeps for backward only q, k, v,
    the boolean keep-mask and each row's log-sum-exp, and recomputes the probabilities in backward.
    The fused CPU kernels do not take dropout, and the unfused path stores three (B, heads, T, S) float
    tensors per layer: half of the activations a training batch keeps at the MOSI preset.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(ctx, q, k, v, allowed, dropout: float):
        scale = q.shape[-1] ** -0.5
        scores = _masked_scores(q, k, scale, allowed)  # (B, heads, T, S)
        log_norm = torch.logsumexp(scores, dim=-1, keepdim=True)
        keep = _keep_mask(scores, dropout)
        weights = scores.sub_(log_norm).exp_().mul_(keep).mul_(1 / (1 - dropout))
        ctx.save_for_backward(q, k, v, keep, log_norm, allowed)
        ctx.scale, ctx.dropout = scale, dropout
        return torch.matmul(weights, v)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_out):
        q, k, v, keep, log_norm, allowed = ctx.saved_tensors
        keep_scale = 1 / (1 - ctx.dropout)
        probabilities = _masked_scores(q, k, ctx.scale, allowed).sub_(log_norm).exp_()
        weights = probabilities * keep * keep_scale
        grad_v = torch.matmul(weights.transpose(-1, -2), grad_out)
        grad_p = torch.matmul(grad_out, v.transpose(-1, -2)).mul_(keep).mul_(keep_scale)
        grad_scores = probabilities.mul_(grad_p - (grad_p * probabilities).sum(dim=-1, keepdim=True))
        grad_q = torch.matmul(grad_scores, k).mul_(ctx.scale)
        grad_k = torch.matmul(grad_scores.transpose(-1, -2), q).mul_(ctx.scale)
        return grad_q, grad_k, grad_v, None, None


def relu_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    if training and p > 0 and torch.is_grad_enabled():
        return ReLUDropout.apply(x, p)
    return F.dropout(F.relu(x), p, training)


class ReLUDropout(torch.autograd.Function):
    """dropout(relu(x)), keeping only its output for backward: the output is positive exactly where
    the gradient passes (x > 0 and kept), and the next layer keeps that same tensor anyway."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(ctx, x, p: float):
        out = F.relu(x).mul_(_keep_mask(x, p)).mul_(1 / (1 - p))
        ctx.save_for_backward(out)
        ctx.p = p
        return out

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_out):
        (out,) = ctx.saved_tensors
        return grad_out * (out > 0) * (1 / (1 - ctx.p)), None


def _keep_mask(like: torch.Tensor, p: float) -> torch.Tensor:
    """Bool mask shaped like `like`, True with probability 1 - p (the global generator's draw)."""
    return torch.rand(like.shape, device=like.device) >= p


def _masked_scores(q, k, scale: float, allowed: torch.Tensor | None) -> torch.Tensor:
    scores = torch.matmul(q * scale, k.transpose(-1, -2))
    return scores if allowed is None else scores.masked_fill_(~allowed, float("-inf"))


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
        h = relu_dropout(self.fc1(self.norm_ffn(x)), self.relu_dropout, self.training)
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
                 relu_dropout: float, res_dropout: float, embed_dropout: float, causal: bool,
                 positional: bool = False):
        super().__init__()
        common = dict(relu_dropout=relu_dropout, res_dropout=res_dropout, embed_dropout=embed_dropout,
                      causal=causal, positional=positional)
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
