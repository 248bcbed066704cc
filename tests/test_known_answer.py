"""Known-answer test of RoHyDR's generator alone (DiT + DDPM training + DDIM sampling): a conditional
Gaussian of sequences shaped like extracted features, whose conditional mean and variance are known in
closed form. The same test with the condition zeroed must fail: it is the check that the DiT uses it.

Data: per row a latent z ~ N(0, I_d); the condition is z at every step plus white noise (the DiT sees its
time-mean m); the target is x[t] = mu0[t] + p[t] * (W m) + s * e[t], e white. So
E[x | m] = mu0 + p (W m) and Var[x | m] = s^2 per element. For such Gaussian data the Bayes-optimal noise
predictor at timestep t is known, and its expected loss is mean_t(abar_t s^2 / (abar_t s^2 + 1 - abar_t)).
"""
from __future__ import annotations

import math

import pytest
import torch

from rohydr.models.dit import DiT1d
from rohydr.models.noise_schedule import NoiseSchedule

T, D = 22, 32
NOISE_STD = 0.5  # s
STEPS, BATCH, LR = 1500, 64, 2e-3
ROWS, SAMPLES_PER_ROW = 96, 8
SAMPLER_STEPS = 50


class ConditionalGaussian:
    def __init__(self, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.weights = torch.randn(D, D, generator=generator) / math.sqrt(D)
        self.offset = 0.5 * torch.randn(T, D, generator=generator)
        self.profile = 1 + 0.5 * torch.sin(torch.arange(T) / 3.0)[:, None]

    def draw(self, n: int, generator: torch.Generator):
        """(condition (n, T, D), target (n, T, D), its conditional mean (n, T, D))."""
        z = torch.randn(n, D, generator=generator)
        condition = z[:, None, :] + 0.3 * torch.randn(n, T, D, generator=generator)
        mean = self.offset + self.profile * (condition.mean(dim=1) @ self.weights.T)[:, None, :]
        return condition, mean + NOISE_STD * torch.randn(n, T, D, generator=generator), mean


def bayes_loss(schedule: NoiseSchedule) -> float:
    abar = schedule.alphas_cumprod.double()
    return float((abar * NOISE_STD**2 / (abar * NOISE_STD**2 + 1 - abar)).mean())


def centred_cosine(estimate: torch.Tensor, truth: torch.Tensor) -> float:
    centre = truth.mean(dim=0, keepdim=True)
    a, b = (estimate - centre).flatten(), (truth - centre).flatten()
    return float(a @ b / (a.norm() * b.norm()))


def known_answer(condition_removed: bool) -> dict:
    torch.manual_seed(0)
    data, schedule = ConditionalGaussian(), NoiseSchedule(1000)
    model = DiT1d(D, T, hidden=64, depth=2, heads=4)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    decay = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LR, total_steps=STEPS, pct_start=0.1)
    given = (lambda c: torch.zeros_like(c)) if condition_removed else (lambda c: c)
    draws = torch.Generator().manual_seed(1)
    for _ in range(STEPS):
        condition, target, _ = data.draw(BATCH, draws)
        loss = schedule.ddpm_loss(model.denoise, target, model.embed_condition(given(condition)), draws)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        decay.step()
    condition, target, mean = data.draw(ROWS, torch.Generator().manual_seed(7))
    held_out = torch.Generator().manual_seed(3)
    with torch.no_grad():
        embedding = model.embed_condition(given(condition))
        loss = float(torch.stack([schedule.ddpm_loss(model.denoise, target, embedding, held_out)
                                  for _ in range(20)]).mean())
        start = torch.randn(ROWS * SAMPLES_PER_ROW, T, D, generator=held_out)
        samples = schedule.ddim_sample(model.denoise, embedding.repeat_interleave(SAMPLES_PER_ROW, 0), start,
                                       SAMPLER_STEPS).view(ROWS, SAMPLES_PER_ROW, T, D)
    return {"cosine": centred_cosine(samples.mean(dim=1), mean), "variance": float(samples.var(dim=1).mean()),
            "loss": loss, "bayes_loss": bayes_loss(schedule)}


@pytest.mark.parametrize("condition_removed", [
    False,
    pytest.param(True, marks=pytest.mark.xfail(strict=True, reason="without its condition the DiT can only learn "
                                                                   "the marginal: the mean of its samples is a constant")),
])
def test_dit_recovers_the_known_conditional_distribution(condition_removed):
    found = known_answer(condition_removed)
    print(found)
    assert found["cosine"] >= 0.9, found  # mean of 8 samples vs the conditional mean
    assert abs(found["variance"] / NOISE_STD**2 - 1) <= 0.25, found  # the samples' spread around it
    assert found["loss"] <= 1.15 * found["bayes_loss"], found  # within 15 % of the Bayes-optimal denoiser
