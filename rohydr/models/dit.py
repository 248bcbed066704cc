"""A 1-D DiT (Peebles & Xie, adaLN-Zero) that predicts the noise of one modality's feature sequence.

Tokens are the T time steps of a (B, T, d) sequence: linear embedding d -> hidden plus a learned
positional embedding. The conditioning vector is the timestep embedding plus a linear embedding of the
time-mean of the condition sequence. Unlike the reference, the output layer emits d channels directly
(no learned-sigma half that is thrown away, no extra hidden -> d projection).

Without autograd on a CPU, the blocks run on the fused kernels of rohydr.models.cpu_kernels (the
same functions, far faster for heads of four channels); elsewhere on PyTorch's kernels.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from rohydr.models import cpu_kernels


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        kernels = cpu_kernels.for_tensor(x)
        if kernels is not None:
            q, k, v = self.qkv(x).chunk(3, dim=2)
            return self.proj(kernels.attention(q, k, v, self.heads, False))
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        if x.device.type == "cpu" and not torch.is_grad_enabled() and not cpu_kernels.stock_only():
            y = small_head_attention(q, k, v)
        else:
            y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2)  # (B, T, heads, C/heads)
        return self.proj(y.reshape(B, T, C))


def small_head_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention without grad, (B, heads, T, c) -> (B, T, heads, c), for heads of a few channels:
    the eager path of CPUs without the fused kernels.

    The same function as scaled_dot_product_attention, but with 16 heads of width 4 its CPU kernel
    issues thousands of tiny matrix products per call; two batched products (the second one
    transposed so that its inner dimension is T, not c) are about 1.6x faster here. Autograd keeps
    scaled_dot_product_attention: it stores no (B, heads, T, T) probabilities for backward.
    """
    probabilities = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-1, -2)).softmax(dim=-1)  # (B, heads, T, T)
    return torch.matmul(v.transpose(-1, -2), probabilities.transpose(-1, -2)).permute(0, 3, 1, 2)


class DiTBlock(nn.Module):
    """Pre-norm transformer block whose LayerNorms are modulated (shift, scale) and gated by c."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: float):
        super().__init__()
        mlp_hidden = int(hidden * mlp_ratio)
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(hidden, heads)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(hidden, mlp_hidden), nn.GELU(approximate="tanh"),
                                 nn.Linear(mlp_hidden, hidden))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        modulation = self.adaLN_modulation(c)  # (B, 6 * hidden)
        kernels = cpu_kernels.for_tensor(x)
        if kernels is not None:
            return self._fused_forward(kernels, x, modulation.chunk(6, dim=1))
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = modulation.unsqueeze(1).chunk(6, dim=2)
        x = torch.addcmul(x, gate_msa, self.attn(modulate(self.norm1(x), shift_msa, scale_msa)))
        return torch.addcmul(x, gate_mlp, self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp)))

    def _fused_forward(self, kernels, x: torch.Tensor, modulation: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The same block on the fused CPU kernels."""
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = modulation  # each (B, hidden)
        x = torch.addcmul(x, gate_msa[:, None], self.attn(kernels.layernorm_modulate(x, shift_msa, scale_msa,
                                                                                      self.norm1.eps)))
        h = kernels.gelu_tanh_(self.mlp[0](kernels.layernorm_modulate(x, shift_mlp, scale_mlp, self.norm2.eps)))
        return torch.addcmul(x, gate_mlp[:, None], self.mlp[2](h))


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
