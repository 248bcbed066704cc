"""Training protocols and the recovery options: what a scored condition uses has been trained, the
feature standardisation round trip, and the imputation baselines on data whose answer is known."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import pretrained_workspace, run_cli, write_run_config
from rohydr.core.config import build_run_config
from rohydr.core.vocabulary import MISSING_PATTERNS, PATTERNS
from rohydr.models.checkpoint import build_model, load_checkpoint, load_model
from rohydr.models.feature_statistics import FeatureStatistics
from rohydr.models.imputation import RidgeFill, ridge_pairs

ALL_PATTERNS = {"train": {"missing_draw": "all_patterns", "max_epochs": 2, "batch_size": 16},
                "pretrain": {"max_epochs": 2}}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return pretrained_workspace(tmp_path_factory.mktemp("protocols"), ALL_PATTERNS)


def train(ws, name: str, *overrides: dict):
    run_config = write_run_config(ws["folder"] / f"{name}.json", "tiny", ALL_PATTERNS, *overrides)
    out = ws["folder"] / f"{name}.pt"
    run_cli("train", "--data", ws["h5"], "--run-config", run_config, "--pretrained", ws["pretrained"], "--masks",
            ws["masks"], "--seed", 1, "--out", out, "--log", ws["folder"] / f"{name}.csv", "--no-progress",
            "--device", "cpu")
    return out


def initial_weights(payload: dict, *overrides: dict) -> dict:
    """The weights a training run starts from: the seeded initialisation, then the pretrained components."""
    from rohydr.core.runtime import seed_everything

    seed_everything(payload["seed"], "init")
    model = build_model(build_run_config("tiny", *overrides), payload["dims"], payload["length"])
    return {name: value.detach().clone() for name, value in model.named_parameters()}  # no buffers


IMDER = {"model": {"generator": "score_sde", "use_multimodal_reconstructor": False, "use_adversarial": False},
         "train": {"schedule": "joint", "lambda_c": 1.0, "recovery_weight": 0.2}}
USED = ("mixers.la.", "mixers.lv.", "mixers.av.", "head.", *(f"diffusion.{m}." for m in "lav"),
        *(f"unimodal_reconstructor.{m}." for m in "lav"))


@pytest.mark.parametrize("name, override, used", [
    ("all_patterns", {}, (*USED, "multimodal_reconstructor.")),
    ("rohydr_sde", {"model": {"generator": "score_sde"}}, (*USED, "multimodal_reconstructor.")),
    ("imder", IMDER, USED),
])
def test_all_pattern_training_trains_every_parameter_a_condition_uses(workspace, name, override, used):
    """After an all-pattern training, no pair mixer, multimodal reconstructor (where the run uses one),
    generator or head keeps its initial weights: every availability pattern reaches them (a single MR 0.7
    training leaves the pair mixers untouched)."""
    trained = load_checkpoint(train(workspace, name, override))["state_dict"]
    start = initial_weights({"seed": 1, "dims": [768, 5, 20], "length": 10}, ALL_PATTERNS, override)
    pretrained = load_checkpoint(workspace["pretrained"])["state_dict"]
    for prefix in used:
        names = [name for name in start if name.startswith(prefix)]
        assert names, prefix
        reference = pretrained if prefix == "head." else start
        unchanged = [name for name in names if torch.equal(trained[name], reference[name])]
        assert not unchanged, f"{prefix}: still at their initial values: {unchanged}"


def test_single_mr_training_leaves_the_pair_mixers_untrained(workspace):
    """The reference's protocol at MR 0.7 (one modality kept per row) never conditions on a pair: the
    check above can fail."""
    single = load_checkpoint(train(workspace, "mr07", {"train": {"missing_draw": "per_sample", "train_mr": 0.7}}))
    start = initial_weights({"seed": 1, "dims": [768, 5, 20], "length": 10})
    for pair in ("la", "lv", "av"):
        assert torch.equal(single["state_dict"][f"mixers.{pair}.conv.weight"], start[f"mixers.{pair}.conv.weight"])


def test_standardisation_round_trip():
    generator = torch.Generator().manual_seed(0)
    scale = torch.tensor([0.1, 1.0, 40.0])
    feats = [torch.randn(50, 7, 3, generator=generator) * scale + torch.tensor([5.0, -2.0, 0.0])
             for _ in range(3)]
    statistics = FeatureStatistics(7, 3)
    statistics.measure(feats)
    for slot, m in enumerate("lav"):
        standard = statistics.standardize(m, feats[slot])
        flat = standard.reshape(-1, 3)
        assert torch.allclose(flat.mean(0), torch.zeros(3), atol=1e-5)
        assert torch.allclose(flat.std(0, correction=0), torch.ones(3), atol=1e-4)
        assert torch.allclose(statistics.destandardize(m, standard), feats[slot], atol=1e-4)
    assert statistics.standardized_range.isfinite().all() and (statistics.standardized_range > 1).all()


def test_standardised_generators_are_saved_with_the_model(workspace):
    payload = load_checkpoint(train(workspace, "standardized", {"model": {"standardize_features": True}}))
    state = payload["state_dict"]
    assert not torch.equal(state["statistics.channel_std"], torch.ones_like(state["statistics.channel_std"]))
    model, _ = load_model(workspace["folder"] / "standardized.pt")
    assert torch.equal(model.statistics.channel_mean, state["statistics.channel_mean"])


def test_ridge_recovers_a_linear_relation():
    """Missing modality = a fixed linear map of the available ones plus small noise: the ridge fill
    recovers it (and the intercept), choosing a small penalty on the validation split."""
    generator = torch.Generator().manual_seed(1)
    T, d = 4, 3

    def draw(n):
        source = torch.randn(n, T, d, generator=generator)
        l, a = source, 0.5 * source.flip(1) + 2.0
        v = torch.tanh(source) - 1.0
        return (l, a, v)

    train, valid = draw(400), draw(200)
    ridge = RidgeFill(T, d)
    scores = ridge.fit(train, valid)
    assert set(scores) == {f"{a}_to_{m}" for a, m in ridge_pairs()}
    test = draw(100)
    recovered = ridge({"l": test[0]}, "a")  # a is an exact affine map of l
    assert torch.allclose(recovered, test[1], atol=1e-3)
    assert ridge.penalty.min() > 0
    nonlinear = ridge({"l": test[0]}, "v")  # v is not linear in l: the best linear map, not the truth
    assert not torch.allclose(nonlinear, test[2], atol=1e-2)
    assert (nonlinear - test[2]).pow(2).mean() < (test[2] - train[2].mean(0)).pow(2).mean()


def test_imputation_baselines_fill_as_documented(workspace):
    mean_path = train(workspace, "mean_fill", {"model": {"recovery": "mean_fill", "use_multimodal_reconstructor": False}})
    ridge_path = train(workspace, "ridge_fill", {"model": {"recovery": "ridge_fill", "use_multimodal_reconstructor": False}})
    from rohydr.data.dataset import FeatureStore

    with FeatureStore(workspace["h5"]) as store:
        test = store.split("test")
    for path in (mean_path, ridge_path):
        model, payload = load_model(path)
        feats = model.extracted(test.features())
        for name in MISSING_PATTERNS:
            avail = torch.tensor(PATTERNS[name]).expand(len(test), 3)
            with torch.no_grad():
                recovery = model.recover(feats, avail, with_losses=False)
            for m, (rows, values) in recovery.recovered.items():
                slot = "lav".index(m)
                if payload["run_config"]["model"]["recovery"] == "mean_fill":
                    assert torch.allclose(values, model.statistics.sequence_mean[slot].expand_as(values))
                else:
                    available = {x: feats["lav".index(x)] for x in "lav" if PATTERNS[name]["lav".index(x)]}
                    assert torch.allclose(values, model.ridge(available, m), atol=1e-5)
    with pytest.raises(ValueError, match="freeze_extractor"):
        build_run_config("tiny", {"model": {"recovery": "ridge_fill"}, "train": {"freeze_extractor": False}})
    assert np.isfinite(load_checkpoint(ridge_path)["state_dict"]["ridge.penalty"].numpy()).all()


def test_generator_stage_epochs_train_stage_one_alone_and_never_select(workspace):
    path = train(workspace, "warm_up", {"train": {"generator_epochs": 2, "max_epochs": 1}})
    import csv

    with open(workspace["folder"] / "warm_up.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["1", "2", "3"]
    assert all(row["stage1_loss"] and not row["stage3_loss"] for row in rows[:2])  # no fusion, no head
    assert rows[2]["stage3_loss"] and rows[2]["stage1_loss"]
    assert load_checkpoint(path)["best"]["epoch"] == 3  # warm-up epochs are never selected
