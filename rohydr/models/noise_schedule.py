"""DDPM noise schedule (linear betas), the epsilon-prediction training loss and a DDIM (eta 0) sampler.

Training and sampling share ONE schedule of `train_steps` steps. The DDIM sampler visits `steps` of
those training timesteps, evenly spaced from the noisiest one down to 0:

    timesteps = round(linspace(train_steps - 1, 0, steps))   # 50 of 1000: 999, 979, 958, ..., 20, 0

and its last update goes from t = 0 to alpha_cumprod_prev = 1, i.e. it returns the predicted x0.
(The reference samples with a scheduler built for 50 training steps, whose alphas do not match the
1000-step schedule its model was trained on; docs/method.md, "Departures from the reference code".)
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from rohydr.core.runtime import random_integers, random_normal

# eps_model(x_t (B, T, d), t (B,) long, cond) -> predicted noise (B, T, d); `cond` is passed through.
EpsModel = Callable[[torch.Tensor, torch.Tensor, object], torch.Tensor]


class NoiseSchedule(nn.Module):
    """Holds the schedule as non-persistent buffers (they follow .to(device), stay out of checkpoints)."""

    def __init__(self, train_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
        super().__init__()
        if train_steps < 1:
            raise ValueError(f"train_steps must be >= 1, got {train_steps}")
        self.train_steps = train_steps
        betas = torch.linspace(beta_start, beta_end, train_steps, dtype=torch.float64)
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        self._alphas_cumprod64 = alphas_cumprod  # CPU float64 copy for the sampler's Python coefficients
        self.register_buffer("betas", betas.float(), persistent=False)
        self.register_buffer("alphas_cumprod", alphas_cumprod.float(), persistent=False)
        self.register_buffer("sqrt_alphas_cumprod", alphas_cumprod.sqrt().float(), persistent=False)
        self.register_buffer("sqrt_one_minus_alphas_cumprod", (1 - alphas_cumprod).sqrt().float(), persistent=False)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise, with one timestep per row of x0."""
        shape = (-1,) + (1,) * (x0.dim() - 1)
        return (self.sqrt_alphas_cumprod[t].view(shape) * x0
                + self.sqrt_one_minus_alphas_cumprod[t].view(shape) * noise)

    def ddpm_loss(self, eps_model: EpsModel, x0: torch.Tensor, cond, generator: torch.Generator | None = None,
                  reduction: str = "mean") -> torch.Tensor:
        """Epsilon-prediction MSE at t ~ U{0, ..., train_steps - 1}; reduction "none" gives one value per row."""
        n, x0 = x0.shape[0], x0.float()  # the target and its noise in fp32, even under autocast
        t = random_integers(self.train_steps, n, generator, x0.device)
        noise = random_normal(x0.shape, generator, x0.device)
        predicted = eps_model(self.q_sample(x0, t, noise), t, cond)
        per_row = F.mse_loss(predicted.float(), noise.float(), reduction="none").flatten(1).mean(dim=1)
        if reduction == "none":
            return per_row
        if reduction == "mean":
            return per_row.mean()
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")

    def ddim_timesteps(self, steps: int) -> list[int]:
        """The training timesteps the sampler visits, noisiest first (see the module docstring)."""
        if not 1 <= steps <= self.train_steps:
            raise ValueError(f"sampler steps must be in 1..{self.train_steps}, got {steps}")
        if steps == 1:
            return [self.train_steps - 1]
        grid = torch.linspace(self.train_steps - 1, 0, steps, dtype=torch.float64).round().long()
        return grid.tolist()

    def ddim_sample(self, eps_model: EpsModel, cond, noise: torch.Tensor, steps: int = 50,
                    clip_x0: float | None = None) -> torch.Tensor:
        """Deterministic DDIM (eta 0) from x_T = `noise`; returns x0 (same shape as `noise`).

        Differentiable when grad is enabled (every step stays in the graph); under torch.no_grad it
        builds nothing. Coefficients are Python floats, so the loop never syncs with the device.
        """
        timesteps = self.ddim_timesteps(steps)
        abar = self._alphas_cumprod64
        x = noise
        for i, t in enumerate(timesteps):
            abar_t = float(abar[t])
            abar_prev = float(abar[timesteps[i + 1]]) if i + 1 < len(timesteps) else 1.0
            t_row = torch.full((noise.shape[0],), t, dtype=torch.long, device=noise.device)
            eps = eps_model(x, t_row, cond)
            if clip_x0 is None:
                # x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev) eps, x0_hat folded in.
                x_coef = (abar_prev / abar_t) ** 0.5
                eps_coef = (1 - abar_prev) ** 0.5 - (abar_prev * (1 - abar_t) / abar_t) ** 0.5
                x = x_coef * x + eps_coef * eps
            else:
                x0_hat = ((x - (1 - abar_t) ** 0.5 * eps) / abar_t ** 0.5).clamp(-clip_x0, clip_x0)
                x = abar_prev ** 0.5 * x0_hat + (1 - abar_prev) ** 0.5 * eps
        return x
