"""The RoHyDR model: shapes, the diffusion maths, no leakage of missing modalities, batch-composition
invariance, which parameters each stage's loss trains, the ablation switches, parameter counts."""
from __future__ import annotations

import json

import pytest
import torch

from rohydr.cli import main as cli_main
from rohydr.core.config import build_run_config
from rohydr.core.vocabulary import GROUPS, MODALITIES
from rohydr.kernels import cpu as cpu_kernels
from rohydr.kernels.ops import DroppedAttention, future_mask, relu_dropout
from rohydr.models import RoHyDR
from rohydr.models.describe import REFERENCE_COUNTS, parameter_counts
from rohydr.models.dit import DiT1d
from rohydr.models.noise_schedule import NoiseSchedule
from rohydr.models.objectives import discriminator_loss, stage1_loss, stage2_generator_loss, stage3_loss

MOSI_DIMS, MOSEI_DIMS, ODD_DIMS = (768, 5, 20), (768, 74, 35), (7, 3, 11)
ALL_PATTERNS = [(l, a, v) for l in (1, 0) for a in (1, 0) for v in (1, 0) if l or a or v]  # 7, complete first


# ------------------------------------------------------------------------------------------------ fixtures
def make_model(dims=ODD_DIMS, length=9, preset="tiny", seed=0, **model_overrides) -> RoHyDR:
    torch.manual_seed(seed)
    return RoHyDR(build_run_config(preset, {"model": model_overrides}).model, dims, length)


def make_inputs(dims=ODD_DIMS, length=9, batch=14, seed=1) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, length, dim, generator=generator) for dim in dims]


def pattern_avail(batch: int) -> torch.Tensor:
    """(batch, 3) bool cycling through the 7 availability patterns."""
    return torch.tensor([ALL_PATTERNS[i % 7] for i in range(batch)], dtype=torch.bool)


def start_noise(model: RoHyDR, batch: int, seed: int = 2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, model.seq_len, model.config.d, generator=generator)


@pytest.fixture
def tiny_model() -> RoHyDR:
    return make_model()


# ------------------------------------------------------------------------------------------------ shapes
@pytest.mark.parametrize("dims, length", [(MOSI_DIMS, 50), (MOSEI_DIMS, 50), (ODD_DIMS, 9), ((1, 2, 1), 3)])
@pytest.mark.parametrize("training", [True, False])
def test_output_shapes(dims, length, training):
    model = make_model(dims, length).train(training)
    batch = 9
    avail = pattern_avail(batch)
    out = model(*make_inputs(dims, length, batch), avail)
    T, d = length - 2, model.config.d
    assert model.seq_len == T
    for feats in (out.feats, out.recovery.feats):
        assert [tuple(f.shape) for f in feats] == [(batch, T, d)] * 3
    for fused in (out.f_gt, out.f_rec, out.f_rec_mr):
        assert fused.shape == (batch, 6 * d)
    assert out.y_gt.shape == out.y_rec.shape == (batch,)
    assert out.missing_rows.tolist() == (~avail.all(dim=1)).tolist()
    for slot, m in enumerate(MODALITIES):
        rows, values = out.recovery.recovered[m]
        assert sorted(rows.tolist()) == torch.nonzero(~avail[:, slot]).squeeze(1).tolist()
        assert values.shape == (len(rows), T, d)
    for loss in (out.recovery.diffusion_loss, out.recovery.reconstruction_loss):
        assert loss.dim() == 0 and torch.isfinite(loss) and loss > 0


def test_rejects_rows_without_any_modality_and_wrong_shapes(tiny_model):
    inputs = make_inputs(batch=2)
    with pytest.raises(ValueError, match="no available modality"):
        tiny_model(*inputs, torch.tensor([[True, False, False], [False, False, False]]))
    with pytest.raises(ValueError, match="expected \\(B, 9, 3\\)"):
        tiny_model(inputs[0], inputs[1][:, :, :2], inputs[2], pattern_avail(2))
    with pytest.raises(ValueError, match="noise has shape"):
        tiny_model(*inputs, pattern_avail(2), noise=torch.zeros(2, 3, 1, 1))


def test_text_dropout_only_in_train_mode(tiny_model):
    inputs = make_inputs(batch=4)
    tiny_model.extractor.text_dropout = 0.9
    tiny_model.eval()
    assert torch.equal(tiny_model.extract(*inputs)[0], tiny_model.extract(*inputs)[0])
    tiny_model.train()
    assert not torch.equal(tiny_model.extract(*inputs)[0], tiny_model.extract(*inputs)[0])
    assert torch.equal(tiny_model.extract(*inputs)[1], tiny_model.extract(*inputs)[1])  # audio: no dropout


# ------------------------------------------------------------------------------------------------ diffusion maths
def exact_predictor(schedule: NoiseSchedule, x0: torch.Tensor):
    """The noise that makes x_t from x0 at t: a perfect epsilon model for data that is exactly x0."""
    def eps_model(x_t, t, cond):
        abar = schedule.alphas_cumprod.double()[t].view(-1, 1, 1)
        return ((x_t.double() - abar.sqrt() * x0.double()) / (1 - abar).sqrt()).float()
    return eps_model


@pytest.mark.parametrize("steps", [1, 7, 50])
def test_ddim_with_exact_noise_predictor_returns_x0(steps):
    schedule = NoiseSchedule(1000, 1e-4, 0.02)
    x0 = 3 * torch.randn(4, 6, 5, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(4, 6, 5, generator=torch.Generator().manual_seed(1))
    sample = schedule.ddim_sample(exact_predictor(schedule, x0), None, noise, steps=steps)
    assert torch.allclose(sample, x0, atol=1e-4)
    clipped = schedule.ddim_sample(exact_predictor(schedule, x0), None, noise, steps=steps, clip_x0=1.0)
    assert clipped.abs().max() <= 1.0 + 1e-5 and not torch.allclose(clipped, x0, atol=1e-2)


def test_ddim_timesteps_span_the_training_schedule():
    schedule = NoiseSchedule(1000)
    timesteps = schedule.ddim_timesteps(50)
    assert len(timesteps) == 50 and timesteps[0] == 999 and timesteps[-1] == 0
    assert all(a > b for a, b in zip(timesteps, timesteps[1:]))
    assert schedule.ddim_timesteps(1) == [999] and schedule.ddim_timesteps(1000) == list(range(999, -1, -1))
    with pytest.raises(ValueError):
        schedule.ddim_timesteps(1001)


def test_ddpm_loss_is_zero_for_the_true_noise_and_positive_otherwise():
    schedule = NoiseSchedule(1000)
    x0 = torch.randn(8, 5, 3)
    generator = torch.Generator().manual_seed(0)
    assert schedule.ddpm_loss(exact_predictor(schedule, x0), x0, None, generator) < 1e-8
    wrong = schedule.ddpm_loss(lambda x_t, t, c: torch.zeros_like(x_t), x0, None, generator)
    assert wrong > 0.5
    per_row = schedule.ddpm_loss(lambda x_t, t, c: torch.zeros_like(x_t), x0, None, generator, reduction="none")
    assert per_row.shape == (8,)


def test_sampler_is_differentiable_with_grad_and_builds_no_graph_without():
    schedule = NoiseSchedule(1000)
    net = torch.nn.Linear(3, 3)
    eps_model = lambda x_t, t, cond: net(x_t)  # noqa: E731
    noise = torch.randn(2, 4, 3)
    with torch.no_grad():
        assert schedule.ddim_sample(eps_model, None, noise, steps=5).grad_fn is None
    sample = schedule.ddim_sample(eps_model, None, noise, steps=5)
    sample.sum().backward()
    assert net.weight.grad is not None and net.weight.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------------ memory- and time-saving kernels
def explicit_dropped_attention(q, k, v, allowed, dropout):
    """The textbook formula, differentiated by autograd; the keep-mask drawn as DroppedAttention draws it."""
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    keep = torch.rand(scores.shape) >= dropout
    return (scores.softmax(dim=-1) * keep / (1 - dropout)) @ v


@pytest.mark.parametrize("causal, lengths", [(False, (7, 9)), (True, (6, 6)), (True, (5, 8))])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_dropped_attention_equals_the_formula_and_its_gradients(causal, lengths, dropout):
    T, S = lengths
    q, k, v = (torch.randn(3, 2, n, 4, dtype=torch.float64, requires_grad=True) for n in (T, S, S))
    allowed = future_mask(T, S, q.device) if causal else None
    grad_out = torch.randn(3, 2, T, 4, dtype=torch.float64)
    results = []
    for attention in (DroppedAttention.apply, explicit_dropped_attention):
        torch.manual_seed(1)
        y = attention(q, k, v, allowed, dropout)
        results.append((y, *torch.autograd.grad(y, (q, k, v), grad_out)))
    for ours, explicit in zip(*results):
        torch.testing.assert_close(ours, explicit)
    if dropout:  # the mask really drops weights: the output differs from undropped attention
        assert not torch.allclose(results[0][0], explicit_dropped_attention(q, k, v, allowed, 0.0))


def test_relu_dropout_equals_the_formula_and_its_gradient():
    x = torch.randn(4, 5, 6, dtype=torch.float64, requires_grad=True)
    grad_out = torch.randn_like(x)
    torch.manual_seed(3)
    ours = relu_dropout(x, 0.4, training=True)
    torch.manual_seed(3)
    explicit = torch.relu(x) * (torch.rand(x.shape) >= 0.4) / 0.6
    torch.testing.assert_close(ours, explicit)
    torch.testing.assert_close(torch.autograd.grad(ours, x, grad_out)[0], torch.autograd.grad(explicit, x, grad_out)[0])
    assert torch.equal(relu_dropout(x, 0.4, training=False), torch.relu(x))


def test_fusion_training_keeps_no_attention_weights_for_backward():
    """Per attention layer only q, k, v, the boolean keep-mask and the row log-sum-exp are kept: no
    (B, heads, T, T) float tensor, which is what made MulT's dropout path memory-heavy."""
    fusion = make_model(preset="small").fusion.train()
    T = 6
    feats = tuple(torch.randn(5, T, fusion.memory["l"].dim // 2, requires_grad=True) for _ in MODALITIES)
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
        fused = fusion(feats)
    square_float = [t for t in kept if t.dtype == torch.float32 and t.dim() == 4 and t.shape[-2:] == (T, T)]
    assert square_float == [] and any(t.dtype == torch.bool and t.dim() == 4 for t in kept)
    fused.sum().backward()
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in feats)


def test_dit_batched_inference_attention_equals_scaled_dot_product_attention(monkeypatch):
    monkeypatch.setenv(cpu_kernels.ENV_SWITCH, "0")  # the eager path of CPUs without the fused kernels
    torch.manual_seed(0)
    dit = DiT1d(d=6, length=10, hidden=32, depth=2, heads=8).eval()
    for p in dit.parameters():
        torch.nn.init.normal_(p, std=0.1)  # adaLN-Zero starts as the identity: make every block matter
    x, cond, t = torch.randn(4, 10, 6), torch.randn(4, 10, 6), torch.tensor([0, 10, 500, 999])
    with torch.enable_grad():
        sdpa = dit(x, t, cond).detach()  # grad enabled: scaled_dot_product_attention
    with torch.no_grad():
        batched = dit(x, t, cond)  # small_head_attention
    torch.testing.assert_close(batched, sdpa, rtol=1e-5, atol=1e-5)
    assert sdpa.abs().max() > 0.1


def test_compiled_denoisers_trace_as_one_graph_and_give_the_same_recovery(tiny_model):
    """fullgraph: a graph break would raise. The eager backend checks the capture without compiling C++."""
    inputs, avail = make_inputs(), pattern_avail(14)
    noise = start_noise(tiny_model, 14)
    tiny_model.eval()
    with torch.no_grad():
        eager = tiny_model(*inputs, avail, noise=noise, with_losses=False).y_rec
        tiny_model.compile_denoisers(backend="eager", fullgraph=True)
        compiled = tiny_model(*inputs, avail, noise=noise, with_losses=False).y_rec
    torch.testing.assert_close(compiled, eager)
    tiny_model.train()
    out = tiny_model(*inputs, avail, generator=torch.Generator().manual_seed(0))
    stage1_loss(out, 1.0).backward()
    assert all(p.grad is not None for p in tiny_model.diffusion.parameters() if p.requires_grad)


# ------------------------------------------------------------------------------------------------ recovery semantics
def test_missing_modality_never_reaches_the_recovered_branch(tiny_model):
    tiny_model.eval()
    batch = 14
    avail, noise = pattern_avail(batch), start_noise(tiny_model, batch)
    inputs = make_inputs(batch=batch)
    row = ALL_PATTERNS.index((1, 0, 0))  # text only: audio and vision are missing
    with torch.no_grad():
        base = tiny_model(*inputs, avail, noise=noise)
        changed_missing = [x.clone() for x in inputs]
        changed_missing[1][row] += 5.0
        changed_missing[2][row] -= 5.0
        after_missing = tiny_model(*changed_missing, avail, noise=noise)
        changed_available = [x.clone() for x in inputs]
        changed_available[0][row] += 5.0
        after_available = tiny_model(*changed_available, avail, noise=noise)
    assert torch.allclose(after_missing.y_rec, base.y_rec, atol=1e-6)
    assert torch.allclose(after_missing.f_rec_mr, base.f_rec_mr, atol=1e-6)
    assert not torch.allclose(after_missing.y_gt[row], base.y_gt[row])  # the ground-truth branch does see it
    assert not torch.allclose(after_available.y_rec[row], base.y_rec[row])
    others = torch.arange(batch) != row
    assert torch.allclose(after_available.y_rec[others], base.y_rec[others], atol=1e-6)


def test_mixed_pattern_batch_equals_each_pattern_group_alone(tiny_model):
    tiny_model.eval()
    batch = 21
    avail, noise, inputs = pattern_avail(batch), start_noise(tiny_model, batch), make_inputs(batch=batch)
    with torch.no_grad():
        mixed = tiny_model(*inputs, avail, noise=noise)
        for pattern in ALL_PATTERNS:
            rows = torch.nonzero((avail == torch.tensor(pattern, dtype=torch.bool)).all(dim=1)).squeeze(1)
            alone = tiny_model(*(x[rows] for x in inputs), avail[rows], noise=noise[rows])
            assert torch.allclose(alone.y_rec, mixed.y_rec[rows], atol=1e-5)
            assert torch.allclose(alone.f_rec_mr, mixed.f_rec_mr[rows], atol=1e-5)
            for slot in range(3):
                assert torch.allclose(alone.recovery.feats[slot], mixed.recovery.feats[slot][rows], atol=1e-5)


def test_recovered_features_replace_only_missing_modalities(tiny_model):
    tiny_model.eval()
    avail = pattern_avail(7)
    with torch.no_grad():
        out = tiny_model(*make_inputs(batch=7), avail, noise=start_noise(tiny_model, 7))
    for slot, m in enumerate(MODALITIES):
        rows, values = out.recovery.recovered[m]
        assert torch.equal(out.recovery.feats[slot][rows], values)
        kept = avail[:, slot]
        assert torch.equal(out.recovery.feats[slot][kept], out.feats[slot][kept])
    complete = ~out.missing_rows
    assert torch.equal(out.f_rec[complete], out.f_gt[complete]) and torch.equal(out.y_rec[complete], out.y_gt[complete])


def test_complete_batch_has_no_recovery_and_zero_losses(tiny_model):
    out = tiny_model(*make_inputs(batch=3), torch.ones(3, 3, dtype=torch.bool))
    assert out.recovery.recovered == {} and not out.missing_rows.any()
    assert out.recovery.diffusion_loss == 0 and out.recovery.reconstruction_loss == 0
    assert torch.equal(out.y_rec, out.y_gt)


def test_same_generator_seed_same_output_and_no_graph_under_no_grad(tiny_model):
    tiny_model.eval()
    inputs, avail = make_inputs(batch=7), pattern_avail(7)
    with torch.no_grad():
        first = tiny_model(*inputs, avail, generator=torch.Generator().manual_seed(3))
        second = tiny_model(*inputs, avail, generator=torch.Generator().manual_seed(3))
        third = tiny_model(*inputs, avail, generator=torch.Generator().manual_seed(4))
    assert torch.equal(first.y_rec, second.y_rec) and not torch.equal(first.y_rec, third.y_rec)
    assert first.y_rec.grad_fn is None and first.recovery.recovered["l"][1].grad_fn is None


def test_sampler_steps_follow_mode_and_argument():
    model = make_model(diffusion={"sampler_steps": 3, "train_sampler_steps": 5})
    calls = []
    model.diffusion["a"].final_layer.register_forward_hook(lambda *args: calls.append(1))
    inputs, avail = make_inputs(batch=1), torch.tensor([[True, False, True]])
    for training, kwargs, expected in [(False, {}, 3), (True, {}, 5), (False, {"sampler_steps": 2}, 2)]:
        calls.clear()
        model.train(training)
        with torch.no_grad():
            model(*inputs, avail, with_losses=False, **kwargs)
        assert len(calls) == expected
    calls.clear()
    model.train()(*inputs, avail, with_losses=True)  # one more DiT call for the DDPM loss
    assert len(calls) == 5 + 1


@pytest.mark.parametrize("generator", ["dit", "score_sde"])
def test_bf16_autocast_keeps_predictions_targets_and_losses_in_fp32(generator, monkeypatch):
    """The same autocast regions run on CUDA; CPU autocast exercises them here, with PyTorch's kernels
    (the fused CPU kernels take fp32 only, and never run on CUDA)."""
    monkeypatch.setenv("ROHYDR_CPU_KERNELS", "0")
    model = make_model(generator=generator).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(*make_inputs(batch=14), pattern_avail(14))
    assert out.y_gt.dtype == out.y_rec.dtype == torch.float32
    assert not torch.equal(out.y_rec, out.y_rec.bfloat16().float())  # not bf16-rounded
    assert all(f.dtype == torch.float32 for f in out.feats)  # the recovery losses' targets
    for loss in (out.recovery.diffusion_loss, out.recovery.reconstruction_loss):
        assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_attention_softmax_stays_fp32_under_bf16_autocast():
    q, k, v = (torch.randn(2, 4, 9, 8, requires_grad=True) for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = DroppedAttention.apply(q.bfloat16(), k.bfloat16(), v.bfloat16(), None, 0.1)
    log_norm = out.grad_fn.saved_tensors[4]  # each row's log-sum-exp, from which backward recomputes the weights
    assert out.dtype == torch.bfloat16 and log_norm.dtype == torch.float32
    out.float().sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_single_incomplete_row_trains_without_batchnorm_errors(tiny_model):
    out = tiny_model(*make_inputs(batch=3), torch.tensor([[1, 1, 1], [1, 1, 1], [0, 1, 0]], dtype=torch.bool))
    discriminator_loss(tiny_model, out).backward()
    stage2_generator_loss(tiny_model, out, 0.5)[0].backward()


# ------------------------------------------------------------------------------------------------ switches
def test_zero_fill_baseline_runs_no_generator():
    model = make_model(recovery="zero_fill")
    out = model(*make_inputs(batch=7), pattern_avail(7))
    for slot, m in enumerate(MODALITIES):
        rows, values = out.recovery.recovered[m]
        assert torch.equal(values, torch.zeros_like(values))
        assert torch.equal(out.recovery.feats[slot][rows], torch.zeros_like(values))
    assert out.recovery.diffusion_loss == 0 and out.recovery.reconstruction_loss == 0


def test_without_diffusion_the_reconstructor_maps_the_condition():
    model = make_model(use_diffusion=False)
    out = model(*make_inputs(batch=7), pattern_avail(7))
    assert out.recovery.diffusion_loss == 0 and out.recovery.reconstruction_loss > 0
    stage1_loss(out, 1.0).backward()
    assert all(p.grad is None for p in model.diffusion.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.mixers.parameters())


def test_without_unimodal_reconstructor_the_sample_is_the_recovery():
    model = make_model(use_unimodal_reconstructor=False).eval()
    avail, noise, inputs = pattern_avail(7), start_noise(make_model(), 7), make_inputs(batch=7)
    out = model(*inputs, avail, noise=noise)
    assert out.recovery.reconstruction_loss == 0 and out.recovery.diffusion_loss > 0
    rows, values = out.recovery.recovered["l"]
    # Zero-initialised DiT predicts eps = 0, so DDIM scales x_T by sqrt(1 / abar_999).
    scale = model.schedule.alphas_cumprod[999].rsqrt()
    assert torch.allclose(values, noise[rows, 0] * scale, rtol=1e-4)


def test_with_losses_false_gives_zero_losses(tiny_model):
    out = tiny_model(*make_inputs(batch=7), pattern_avail(7), with_losses=False)
    assert out.recovery.diffusion_loss == 0 and out.recovery.reconstruction_loss == 0


# ------------------------------------------------------------------------------------------------ gradient routing
def groups_reached(model: RoHyDR, loss: torch.Tensor) -> set[str]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {name for name, params in model.parameter_groups().items()
            if any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)}


def stage_losses(model: RoHyDR) -> dict[str, set[str]]:
    """Which parameter groups each stage's loss reaches, each stage on its own forward (as in training)."""
    model.train()
    inputs, avail, labels = make_inputs(batch=14), pattern_avail(14), torch.randn(14)
    reached = {}
    out = model(*inputs, avail)
    reached["stage1"] = groups_reached(model, stage1_loss(out, 1.0))
    out = model(*inputs, avail, with_losses=False)
    reached["discriminator"] = groups_reached(model, discriminator_loss(model, out))
    reached["stage2"] = groups_reached(model, stage2_generator_loss(model, out, 0.5)[0])
    out = model(*inputs, avail, with_losses=False)
    reached["stage3"] = groups_reached(model, stage3_loss(out, labels, 0.4))
    return reached


RECOVERY = {"diffusion", "unimodal_reconstructor"}


def leave_zero_init(model: RoHyDR) -> None:
    """Give the DiTs' zero-initialised layers small random weights, as after the first optimizer steps:
    at init a DiT's output ignores its condition, which would hide the condition's gradient path."""
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in model.diffusion.named_parameters():
            if "adaLN_modulation" in name or "final_layer.linear" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))


@pytest.mark.parametrize("through_sampler, frozen_extractor", [(True, True), (False, True), (True, False)])
def test_each_stage_trains_exactly_its_parameter_groups(through_sampler, frozen_extractor):
    model = make_model(grad_through_sampler=through_sampler)
    leave_zero_init(model)
    model.extractor.requires_grad_(not frozen_extractor)
    sampler = set() if through_sampler else {"diffusion"}
    extractor = set() if frozen_extractor else {"extractor"}
    expected = {
        "stage1": RECOVERY | extractor,
        "discriminator": {"discriminator"},
        "stage2": (RECOVERY - sampler) | {"fusion", "multimodal_reconstructor", "discriminator"} | extractor,
        "stage3": (RECOVERY - sampler) | {"fusion", "multimodal_reconstructor", "head"} | extractor,
    }
    assert stage_losses(model) == expected


def test_parameter_groups_partition_the_model(tiny_model):
    groups = tiny_model.parameter_groups()
    assert tuple(groups) == GROUPS == ("extractor", "diffusion", "unimodal_reconstructor", "fusion",
                                            "multimodal_reconstructor", "discriminator", "head")
    ids = [id(p) for params in groups.values() for p in params]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in tiny_model.parameters()}
    assert not list(tiny_model.schedule.parameters())
    assert not any(key.startswith("schedule") for key in tiny_model.state_dict())


# ------------------------------------------------------------------------------------------------ counts, describe
def test_parameter_counts_match_the_reference_at_mosi():
    counts = parameter_counts(RoHyDR(build_run_config("mosi").model, MOSI_DIMS, 50))
    assert set(counts) == set(REFERENCE_COUNTS)
    for name, ours in counts.items():
        if name.startswith("diffusion."):
            assert ours == 486_432 == REFERENCE_COUNTS[name] - 4_160  # no learned-sigma half, no extra projection
        elif name == "total":
            assert ours == REFERENCE_COUNTS["total"] - 3 * 4_160
        else:
            assert ours == REFERENCE_COUNTS[name], name


def test_describe_command_prints_table_and_json(capsys):
    assert cli_main(["describe", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["components"]["total"] == {"ours": 4_163_554, "reference": 4_176_034, "difference": -12_480}
    assert cli_main(["describe", "--preset", "tiny", "--dims", "7", "3", "11", "--length", "9"]) == 0
    table = capsys.readouterr().out
    assert "diffusion.l" in table and "T = 7" in table
    assert cli_main(["describe", "--preset", "nope"]) == 2
    assert "unknown preset" in capsys.readouterr().err
