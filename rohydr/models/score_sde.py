"""The score-based generator of IMDer (and of RoHyDR's code at submission time): a VE-SDE, a U-Net
ScoreNet conditioned on the available modalities, denoising score matching, and SDE samplers.

VE-SDE (Song et al. 2021) with sigma_max `sigma`, time t in (0, 1]:

    dx = sigma^t dw,    x_t | x_0 ~ N(x_0, std(t)^2),    std(t) = sqrt((sigma^(2t) - 1) / (2 ln sigma))

ScoreNet (docs/method.md, "Score-SDE generator"): per level a convolution (stride 2 below the top), a
cross-attention of the level's features to the condition brought to the same resolution by its own
convolution, the time embedding added, GroupNorm, swish; the decoder mirrors it with transposed
convolutions and skip connections, and the output is divided by std(t). Sequences are padded at the end
to a multiple of 2^(levels - 1) and cropped back; the attention is causal, so no real step sees padding.

The sampler's randomness is a function of its start noise: the increments of a row come from a generator
seeded by the row's start noise, so a row's sample does not depend on the other rows of its batch.
"""
from __future__ import annotations

import hashlib
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from rohydr.core.runtime import random_normal, random_uniform
from rohydr.models.fusion import TransformerEncoder


class VESDE:
    """Variance-exploding SDE: the perturbation kernel's std and the diffusion coefficient g(t)."""

    def __init__(self, sigma: float):
        if sigma <= 1:
            raise ValueError(f"sigma {sigma} must exceed 1")
        self.sigma = float(sigma)

    def marginal_std(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt((self.sigma ** (2 * t) - 1) / (2 * math.log(self.sigma)))

    def diffusion_coeff(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma ** t


class GaussianFourierProjection(nn.Module):
    """t (B,) -> (B, dim): sin and cos of t times fixed random frequencies (a buffer, never trained)."""

    def __init__(self, dim: int, scale: float = 30.0):
        super().__init__()
        self.register_buffer("frequencies", torch.randn(dim // 2) * scale)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = 2 * math.pi * t[:, None] * self.frequencies[None]
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


class ConditionedLevel(nn.Module):
    """One resolution of the U-Net: h += cross-attention(h -> condition); h += time embedding; norm."""

    def __init__(self, channels: int, embed_dim: int, heads: int, layers: int, groups: int | None):
        super().__init__()
        self.attention = TransformerEncoder(channels, heads, layers, causal=True, positional=True) if layers else None
        self.time = nn.Linear(embed_dim, channels) if groups else None
        self.norm = nn.GroupNorm(groups, channels) if groups else None

    def forward(self, h: torch.Tensor, cond: torch.Tensor, embed: torch.Tensor) -> torch.Tensor:
        # h, cond: (B, C, T); embed: (B, embed_dim)
        if self.attention is not None:
            h = h + self.attention(h.transpose(1, 2), cond.transpose(1, 2)).transpose(1, 2)
        if self.norm is None:
            return h
        return swish(self.norm(h + self.time(embed)[..., None]))


class ScoreNet1d(nn.Module):
    """forward(x_t (B, T, d), t (B,) in (0, 1], cond (B, T, d)) -> score (B, T, d)."""

    def __init__(self, d: int, sde: VESDE, channels: tuple[int, ...] = (32, 64, 128, 256), embed_dim: int = 256,
                 heads: int = 8, attention_layers: int = 2):
        super().__init__()
        self.sde, self.multiple = sde, 2 ** (len(channels) - 1)
        self.time_embed = nn.Sequential(GaussianFourierProjection(embed_dim), nn.Linear(embed_dim, embed_dim))
        ins = (d, *channels[:-1])
        level = lambda c, top=False: ConditionedLevel(  # noqa: E731
            c, embed_dim, heads, attention_layers, math.gcd(4 if top else 32, c))
        self.down = nn.ModuleList(
            nn.Conv1d(c_in, c, 3, stride=1 if i == 0 else 2, padding=1, bias=False)
            for i, (c_in, c) in enumerate(zip(ins, channels)))
        # the condition at each level's resolution and width (IMDer has d = channels[0], so no top map)
        top = nn.Identity() if d == channels[0] else nn.Conv1d(d, channels[0], 1, bias=False)
        self.down_cond = nn.ModuleList([top, *(
            nn.Conv1d(c_in, c, 3, stride=2, padding=1, bias=False) for c_in, c in zip(channels[:-1], channels[1:]))])
        self.down_levels = nn.ModuleList(level(c, top=i == 0) for i, c in enumerate(channels))
        # decoder: deepest first; every input but the deepest is concatenated with its encoder skip
        self.up = nn.ModuleList(
            nn.ConvTranspose1d(c if i == 0 else 2 * c, c_out, 3, stride=2, padding=1, output_padding=1, bias=False)
            for i, (c, c_out) in enumerate(zip(channels[::-1], channels[::-1][1:])))
        self.up_cond = nn.ModuleList(
            nn.ConvTranspose1d(c, c_out, 3, stride=2, padding=1, output_padding=1, bias=False)
            for c, c_out in zip(channels[::-1], channels[::-1][1:]))
        self.up_levels = nn.ModuleList(level(c) for c in channels[::-1][1:])
        self.out = nn.ConvTranspose1d(2 * channels[0] if len(channels) > 1 else channels[0], d, 3, padding=1)
        self.out_cond = nn.ConvTranspose1d(channels[0], d, 3, padding=1)
        self.out_level = ConditionedLevel(d, embed_dim, heads, attention_layers, groups=None)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        pad = (-T) % self.multiple
        h, c = (F.pad(z.transpose(1, 2), (0, pad)) for z in (x, cond))  # (B, d, T + pad)
        embed = swish(self.time_embed(t))
        skips = []
        for conv, conv_cond, level in zip(self.down, self.down_cond, self.down_levels):
            c = conv_cond(c)
            h = level(conv(h), c, embed)
            skips.append(h)
        skips.pop()  # the deepest level feeds the decoder directly
        for i, (conv, conv_cond, level) in enumerate(zip(self.up, self.up_cond, self.up_levels)):
            c = conv_cond(c)
            h = level(conv(h if i == 0 else torch.cat([h, skips.pop()], dim=1)), c, embed)
        if skips:
            h = torch.cat([h, skips.pop()], dim=1)
        h = self.out_level(self.out(h), self.out_cond(c), embed)
        score = h[..., :T].transpose(1, 2)
        return score / self.sde.marginal_std(t)[:, None, None]


def score_matching_loss(score_model, sde: VESDE, x0: torch.Tensor, cond: torch.Tensor,
                        generator: torch.Generator | None = None, eps: float = 1e-5) -> torch.Tensor:
    """Denoising score matching, one value per row: mean over (T, d) of (std(t) score(x_t, t) + z)^2 with
    t ~ U(eps, 1), x_t = x0 + std(t) z. IMDer sums over (T, d); the mean keeps the loss's scale independent
    of the sequence size, like the DDPM loss (docs/method.md)."""
    n, x0 = x0.shape[0], x0.float()  # the target and its noise in fp32, even under autocast
    t = random_uniform(n, generator, x0.device) * (1 - eps) + eps
    z = random_normal(x0.shape, generator, x0.device)
    std = sde.marginal_std(t)[:, None, None]
    score = score_model(x0 + std * z, t, cond)
    return (score.float() * std + z.float()).pow(2).flatten(1).mean(dim=1)


def row_increments(start: torch.Tensor, count: int) -> torch.Tensor:
    """(count, n, T, d) standard normal increments; row i's come from a generator seeded by start[i]."""
    rows = start.detach().float().cpu().contiguous()
    increments = torch.empty(count, *rows.shape)
    for i, row in enumerate(rows):
        seed = int.from_bytes(hashlib.sha256(row.numpy().tobytes()).digest()[:8], "little") >> 1
        increments[:, i] = torch.randn(count, *row.shape, generator=torch.Generator().manual_seed(seed))
    return increments.to(device=start.device, dtype=start.dtype)


@torch.no_grad()
def sample(score_model, sde: VESDE, cond: torch.Tensor, start: torch.Tensor, steps: int,
           sampler: str = "euler_maruyama", snr: float = 0.16, eps: float = 1e-3) -> torch.Tensor:
    """x_0 from x_1 = std(1) * `start` (standard normal, (n, T, d)) over `steps` steps of t from 1 to eps.

    euler_maruyama: x <- x + g^2 score dt + g sqrt(dt) z, the last step without noise.
    predictor_corrector: a Langevin corrector step at signal-to-noise ratio `snr` before each predictor step.
    """
    n = start.shape[0]
    times = torch.linspace(1.0, eps, steps, device=start.device)
    dt = float(times[0] - times[1]) if steps > 1 else 1.0 - eps
    corrector = sampler == "predictor_corrector"
    noises = row_increments(start, steps * (2 if corrector else 1))
    x = start * sde.marginal_std(times[:1])
    for k, t in enumerate(times):
        t_row = t.expand(n)
        if corrector:
            x = _langevin(score_model, x, t_row, cond, noises[steps + k], snr)
        g = sde.diffusion_coeff(t)
        mean = x + g ** 2 * score_model(x, t_row, cond) * dt
        x = mean + g * dt ** 0.5 * noises[k]
    return mean


def _langevin(score_model, x, t_row, cond, z, snr: float) -> torch.Tensor:
    """One Langevin step whose size makes the score's norm snr times the noise's, per row."""
    score = score_model(x, t_row, cond)
    score_norm = score.flatten(1).norm(dim=1).clamp_min(1e-12)
    noise_norm = z[0].numel() ** 0.5  # the expected norm of a standard normal row
    step = (2 * (snr * noise_norm / score_norm) ** 2)[:, None, None]
    return x + step * score + (2 * step).sqrt() * z
