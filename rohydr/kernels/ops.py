"""The operations whose fast paths this project owns, each chosen in one place: a model module calls
one op per operation and reads the same on every device.

- attention: the fused CPU kernel (rohydr.kernels.cpu) without autograd; attention-weight dropout
  under autograd through DroppedAttention (memory-lean backward); without grad on a CPU without the
  kernels, small_head_attention for unmasked attention; else PyTorch's scaled_dot_product_attention.
- layernorm_modulate, gelu_tanh: the fused CPU kernels without autograd, else PyTorch's.
- relu_dropout: ReLU then dropout, keeping only the output for backward under autograd.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from rohydr.kernels import cpu


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, causal: bool = False,
              dropout: float = 0.0, training: bool = False) -> torch.Tensor:
    """Softmax attention of `heads` heads: q (B, T, C), k and v (B, S, C) -> (B, T, C). `causal`: query i
    sees keys j <= i + |S - T| (future_mask); `dropout` on the attention weights in training."""
    dropping = training and dropout > 0
    fused = None if dropping else cpu.for_tensor(q)
    if fused is not None:
        return fused.attention(q, k, v, heads, causal)
    B, T, C = q.shape
    q, k, v = (_split_heads(x, heads) for x in (q, k, v))  # (B, heads, T or S, C / heads)
    allowed = future_mask(T, k.shape[2], q.device) if causal else None
    if dropping and torch.is_grad_enabled():
        y = DroppedAttention.apply(q, k, v, allowed, dropout)
    elif not dropping and allowed is None and _small_heads_apply(q):
        return small_head_attention(q, k, v).reshape(B, T, C)
    else:
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    return y.transpose(1, 2).reshape(B, T, C)


def layernorm_modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float) -> torch.Tensor:
    """LayerNorm without affine of x (B, T, C), then * (1 + scale) + shift, with shift and scale (B, C)."""
    fused = cpu.for_tensor(x)
    if fused is not None:
        return fused.layernorm_modulate(x, shift, scale, eps)
    return torch.addcmul(shift[:, None], F.layer_norm(x, x.shape[-1:], eps=eps), 1 + scale[:, None])


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GELU, tanh approximation (in place on the fused path: x must be a fresh intermediate)."""
    fused = cpu.for_tensor(x)
    return fused.gelu_tanh_(x) if fused is not None else F.gelu(x, approximate="tanh")


def relu_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    if training and p > 0 and torch.is_grad_enabled():
        return ReLUDropout.apply(x, p)
    return F.dropout(F.relu(x), p, training)


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:  # (B, T, C) -> (B, heads, T, C / heads)
    B, T, C = x.shape
    return x.view(B, T, heads, C // heads).transpose(1, 2)


def _small_heads_apply(q: torch.Tensor) -> bool:
    return q.device.type == "cpu" and not torch.is_grad_enabled() and not cpu.stock_only()


def future_mask(query_len: int, key_len: int, device: torch.device) -> torch.Tensor | None:
    """Boolean (query_len, key_len), True = may attend: query i sees keys j <= i + |key_len - query_len|."""
    offset = abs(key_len - query_len)
    rows = torch.arange(query_len, device=device)[:, None]
    cols = torch.arange(key_len, device=device)[None]
    return cols <= rows + offset


def small_head_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention without grad, (B, heads, T, c) -> (B, T, heads, c), for heads of a few channels:
    the eager path of CPUs without the fused kernels.

    The same function as scaled_dot_product_attention, but with 16 heads of width 4 its CPU kernel
    issues thousands of tiny matrix products per call; two batched products (the second one
    transposed so that its inner dimension is T, not c) are faster. Autograd keeps
    scaled_dot_product_attention: it stores no (B, heads, T, T) probabilities for backward.
    """
    probabilities = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-1, -2)).softmax(dim=-1)  # (B, heads, T, T)
    return torch.matmul(v.transpose(-1, -2), probabilities.transpose(-1, -2)).permute(0, 3, 1, 2)


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
        scores = _masked_scores(q, k, scale, allowed)  # (B, heads, T, S), fp32 under autocast too
        log_norm = torch.logsumexp(scores, dim=-1, keepdim=True)
        keep = _keep_mask(scores, dropout)
        weights = scores.sub_(log_norm).exp_().mul_(keep).mul_(1 / (1 - dropout))
        ctx.save_for_backward(q, k, v, keep, log_norm, allowed)
        ctx.scale, ctx.dropout = scale, dropout
        return torch.matmul(weights.to(v.dtype), v)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_out):
        q, k, v, keep, log_norm, allowed = ctx.saved_tensors
        keep_scale = 1 / (1 - ctx.dropout)
        probabilities = _masked_scores(q, k, ctx.scale, allowed).sub_(log_norm).exp_()
        weights = (probabilities * keep * keep_scale).to(grad_out.dtype)
        grad_v = torch.matmul(weights.transpose(-1, -2), grad_out)
        grad_p = torch.matmul(grad_out, v.transpose(-1, -2)).mul_(keep).mul_(keep_scale)
        grad_scores = probabilities.mul_(grad_p - (grad_p * probabilities).sum(dim=-1, keepdim=True)).to(q.dtype)
        grad_q = torch.matmul(grad_scores, k).mul_(ctx.scale)
        grad_k = torch.matmul(grad_scores.transpose(-1, -2), q).mul_(ctx.scale)
        return grad_q, grad_k, grad_v, None, None


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
    """Attention scores in fp32: under bf16 autocast the product is bf16, and a softmax of bf16 scores keeps
    about two significant digits of each weight."""
    scores = torch.matmul(q * scale, k.transpose(-1, -2))
    scores = scores.to(torch.promote_types(scores.dtype, torch.float32))
    return scores if allowed is None else scores.masked_fill_(~allowed, float("-inf"))


