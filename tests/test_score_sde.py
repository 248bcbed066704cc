"""The score-SDE generator (IMDer's and RoHyDR's early code): its loss and samplers on a Gaussian target whose
score is known in closed form, the ScoreNet's shapes, and per-row determinism of the sampler noise."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rohydr.core.config import build_run_config
from rohydr.models.rohydr import RoHyDR
from rohydr.models.score_sde import ScoreNet1d, VESDE, row_increments, sample, score_matching_loss

MEAN, STD = 1.5, 0.7  # the Gaussian target, per element
SDE = VESDE(25.0)


def exact_score(x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
    """The score of N(MEAN, STD^2) perturbed by the VE kernel at t: -(x - MEAN) / (STD^2 + std(t)^2)."""
    variance = STD ** 2 + SDE.marginal_std(t) ** 2
    return -(x - MEAN) / variance[:, None, None]


def test_score_matching_loss_of_the_exact_score_has_its_closed_form():
    torch.manual_seed(0)
    x0 = MEAN + STD * torch.randn(20_000, 4, 3)
    generator = torch.Generator().manual_seed(1)
    loss = score_matching_loss(exact_score, SDE, x0, None, generator).mean().item()
    # E over t ~ U(eps, 1) of STD^2 / (STD^2 + std(t)^2): the irreducible part of denoising score matching
    t = torch.linspace(1e-5, 1.0, 100_001, dtype=torch.float64)
    expected = (STD ** 2 / (STD ** 2 + SDE.marginal_std(t) ** 2)).mean().item()
    assert loss == pytest.approx(expected, rel=0.03)
    worse = lambda x, t, c: 0.8 * exact_score(x, t, c)  # noqa: E731
    assert score_matching_loss(worse, SDE, x0, None, torch.Generator().manual_seed(1)).mean().item() > loss * 1.05


@pytest.mark.parametrize("sampler", ["euler_maruyama", "predictor_corrector"])
def test_samplers_with_the_exact_score_draw_the_target(sampler):
    start = torch.randn(1000, 22, 16, generator=torch.Generator().manual_seed(2))  # rows of the default's size
    drawn = sample(exact_score, SDE, None, start, 100, sampler)
    assert drawn.mean().item() == pytest.approx(MEAN, abs=0.02)
    assert drawn.std().item() == pytest.approx(STD, rel=0.05)
    assert sample(exact_score, SDE, None, start, 5, sampler).std().item() != pytest.approx(STD, rel=0.05)


def test_sampler_rows_depend_on_their_own_start_noise_only():
    start = torch.randn(6, 5, 3, generator=torch.Generator().manual_seed(3))
    whole = sample(exact_score, SDE, None, start, 8)
    part = sample(exact_score, SDE, None, start[[4, 1]], 8)
    torch.testing.assert_close(part, whole[[4, 1]])
    increments = row_increments(start, 3)
    assert increments.shape == (3, 6, 5, 3)
    assert not torch.equal(increments[:, 0], increments[:, 1]) and not torch.equal(increments[0], increments[1])


@pytest.mark.parametrize("length, channels", [(22, (16, 32, 64)), (48, (32, 64, 128, 256)), (7, (8,))])
def test_scorenet_keeps_the_shape_and_scales_by_the_kernel_std(length, channels):
    net = ScoreNet1d(8, SDE, channels, embed_dim=16, heads=4 if channels[0] > 8 else 2, attention_layers=1)
    x, cond = torch.randn(3, length, 8), torch.randn(3, length, 8)
    t = torch.tensor([0.01, 0.5, 1.0])
    with torch.no_grad():
        score = net(x, t, cond)
    assert score.shape == x.shape and torch.isfinite(score).all()
    unscaled = score * SDE.marginal_std(t)[:, None, None]
    assert unscaled[0].abs().mean() / score[0].abs().mean() == pytest.approx(SDE.marginal_std(t[:1]).item(), rel=1e-4)
    assert unscaled.abs().mean() > 0


def test_scorenet_attention_is_causal_so_padding_never_reaches_a_real_step():
    net = ScoreNet1d(8, SDE, (8, 16), embed_dim=16, heads=2, attention_layers=1).eval()
    x, cond, t = torch.randn(2, 6, 8), torch.randn(2, 6, 8), torch.tensor([0.3, 0.7])
    changed = cond.clone()
    changed[:, -1] += 5.0  # the last step of the condition: later than every other step
    with torch.no_grad():
        before, after = net(x, t, cond), net(x, t, changed)
    assert not torch.allclose(before[:, -1], after[:, -1])
    assert torch.isfinite(after).all()


def test_a_few_steps_of_score_matching_lower_the_loss_on_gaussian_data():
    torch.manual_seed(0)
    net = ScoreNet1d(4, SDE, (8, 16), embed_dim=16, heads=2, attention_layers=0)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    x0 = MEAN + STD * torch.randn(256, 8, 4)
    cond = torch.zeros_like(x0)

    def loss_now():
        with torch.no_grad():
            return score_matching_loss(net, SDE, x0, cond, torch.Generator().manual_seed(9)).mean().item()

    before = loss_now()
    for step in range(60):
        optimizer.zero_grad()
        score_matching_loss(net, SDE, x0, cond, torch.Generator().manual_seed(step)).mean().backward()
        optimizer.step()
    assert loss_now() < 0.8 * before


def test_model_with_the_score_sde_generator_predicts_a_row_the_same_in_any_batch():
    config = build_run_config("tiny", {"model": {"generator": "score_sde"}}).model
    torch.manual_seed(0)
    model = RoHyDR(config, (7, 3, 5), 10).eval()
    inputs = [torch.randn(7, 10, dim) for dim in (7, 3, 5)]
    avail = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1]])
    noise = torch.randn(7, 3, model.seq_len, config.d)
    with torch.no_grad():
        whole = model(*inputs, avail, noise=noise, with_losses=False)
        rows = [5, 0, 3]
        part = model(*(x[rows] for x in inputs), avail[rows], noise=noise[rows], with_losses=False)
        again = model(*inputs, avail, noise=noise, with_losses=False)
    torch.testing.assert_close(part.y_rec, whole.y_rec[rows])
    assert torch.equal(again.y_rec, whole.y_rec)
    recovered = whole.recovery.recovered["l"][1]
    assert np.isfinite(recovered.numpy()).all()


def test_score_sde_configuration_is_checked():
    with pytest.raises(ValueError, match="grad_through_sampler"):
        build_run_config("tiny", {"model": {"generator": "score_sde", "grad_through_sampler": True}})
    with pytest.raises(ValueError, match="sigma"):
        build_run_config("tiny", {"model": {"score": {"sigma": 1.0}}})
    with pytest.raises(ValueError, match="not divisible by heads 3"):
        build_run_config("tiny", {"model": {"score": {"heads": 3}}})
