"""Pretraining and multi-stage training on a small synthetic dataset: real steps, real checkpoints."""
from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

from helpers import pretrained_workspace, run_cli, tool_env, write_run_config
from rohydr.core.config import build_run_config
from rohydr.core.runtime import Runtime
from rohydr.core.vocabulary import GROUPS, TRAIN_LOG_COLUMNS
from rohydr.data.dataset import FeatureStore
from rohydr.models.checkpoint import build_model, load_checkpoint
from rohydr.training.loop import EpochLoop
from rohydr.training.train import StageRunner

FAST = {"pretrain": {"max_epochs": 2}, "train": {"max_epochs": 2, "batch_size": 16}}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return pretrained_workspace(tmp_path_factory.mktemp("training"), FAST)


def read_log(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def train_args(ws, out, log, run_config=None, stage="all"):
    return ["train", "--data", ws["h5"], "--run-config", run_config or ws["run_config"], "--pretrained",
            ws["pretrained"], "--masks", ws["masks"], "--seed", 1, "--stage", stage, "--out", out, "--log", log,
            "--no-progress", "--device", "cpu"]


def test_pretrain_writes_checkpoint_and_log(workspace):
    rows = read_log(workspace["folder"] / "pretrain_log.csv")
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert all(float(row["val_l1"]) > 0 for row in rows)
    payload = load_checkpoint(workspace["pretrained"])
    assert payload["kind"] == "pretrain" and payload["dims"] == [768, 5, 20]


def test_train_log_has_every_column(workspace, tmp_path):
    run_cli(*train_args(workspace, tmp_path / "model.pt", tmp_path / "log.csv"))
    rows = read_log(tmp_path / "log.csv")
    assert list(rows[0]) == TRAIN_LOG_COLUMNS
    assert len(rows) == 2
    for column in ("stage1_loss", "disc_loss", "stage2_loss", "stage3_loss", "val_l1", "val_acc2",
                   "gradnorm_stage1_diffusion", "gradnorm_stage2_discriminator", "gradnorm_stage3_head"):
        assert all(row[column] != "" for row in rows), column
    assert all(row["gradnorm_stage1_head"] == "" for row in rows)  # the head is not reached in stage 1
    assert load_checkpoint(tmp_path / "model.pt")["kind"] == "train"
    assert not (tmp_path / "log.csv.resume.pt").exists()


def _snapshot(model):
    return {name: [p.detach().clone() for p in params] for name, params in model.parameter_groups().items()}


def _changed(model, before):
    return {name for name, params in model.parameter_groups().items()
            if any(not torch.equal(p, q) for p, q in zip(params, before[name]))}


@pytest.mark.parametrize("faithful", [True, False])
def test_each_stage_updates_its_parameter_groups(workspace, faithful):
    run_config = build_run_config("tiny", faithful=faithful)
    with FeatureStore(workspace["h5"]) as store:
        split = store.split("train")
        model = build_model(run_config, store.dims, store.length)
    runner = StageRunner(model, run_config, Runtime(), stage="all")
    batch = split.batch(torch.arange(16))
    avail = torch.tensor([[True, False, False], [False, True, True]] * 8)
    model.train()
    through_sampler = {"diffusion"} if faithful else set()  # the default takes no gradient through the chain
    expected = {
        "stage1": {"diffusion", "unimodal_reconstructor"},
        "stage2": {"discriminator", "multimodal_reconstructor", "fusion", "unimodal_reconstructor"} | through_sampler,
        "stage3": {"head", "multimodal_reconstructor", "fusion", "unimodal_reconstructor"} | through_sampler,
    }
    for stage, groups in expected.items():
        before = _snapshot(model)
        runner.one_stage(batch, avail, stage)
        assert _changed(model, before) == groups, stage
    assert "extractor" in GROUPS and not any(p.requires_grad for p in model.extractor.parameters())


def test_shared_forward_applies_every_stage(workspace):
    """The default one-forward path steps the same parameter groups as the three stages together."""
    run_config = build_run_config("tiny")
    with FeatureStore(workspace["h5"]) as store:
        split = store.split("train")
        model = build_model(run_config, store.dims, store.length)
    runner = StageRunner(model, run_config, Runtime(), stage="all")
    before = _snapshot(model)
    model.train()
    runner.batch(split.batch(torch.arange(16)), torch.tensor([[True, False, True]] * 16), has_missing=True)
    assert _changed(model, before) == {"diffusion", "unimodal_reconstructor", "discriminator",
                                       "multimodal_reconstructor", "fusion", "head"}
    means = runner.epoch_means()
    assert {"stage1_loss", "stage2_loss", "stage3_loss", "disc_loss"} <= set(means)
    assert means["generator_steps"] == 1  # the budget sweep's count: one step had stage 1's loss


def test_killed_and_resumed_run_equals_uninterrupted(workspace, tmp_path):
    run_config = write_run_config(tmp_path / "rc.json", "tiny", {"train": {
        "max_epochs": 4, "early_stop": 10, "batch_size": 4, "generator_epochs": 1}})  # resumed across the phases
    run_cli(*train_args(workspace, tmp_path / "full.pt", tmp_path / "full.csv", run_config))

    log = tmp_path / "killed.csv"
    process = subprocess.Popen([sys.executable, "-m", "rohydr.cli",
                                *map(str, train_args(workspace, tmp_path / "killed.pt", log, run_config))],
                               env=tool_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if log.exists() and len(read_log(log)) >= 1:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (tmp_path / "killed.pt").exists()
    assert (tmp_path / "killed.csv.resume.pt").exists()

    resumed = run_cli(*train_args(workspace, tmp_path / "killed.pt", log, run_config))
    assert "resuming after epoch" in resumed.stdout
    full, again = load_checkpoint(tmp_path / "full.pt"), load_checkpoint(tmp_path / "killed.pt")
    for key, value in full["state_dict"].items():
        assert torch.equal(value, again["state_dict"][key]), key
    strip = lambda rows: [{k: v for k, v in row.items() if k != "wall_s"} for row in rows]  # noqa: E731
    assert strip(read_log(tmp_path / "full.csv")) == strip(read_log(log))


def test_same_seed_same_result_on_cpu(workspace, tmp_path):
    for name in ("a", "b"):
        run_cli(*train_args(workspace, tmp_path / f"{name}.pt", tmp_path / f"{name}.csv"))
    a, b = load_checkpoint(tmp_path / "a.pt"), load_checkpoint(tmp_path / "b.pt")
    assert all(torch.equal(v, b["state_dict"][k]) for k, v in a["state_dict"].items())


@pytest.mark.parametrize("schedule", ["joint", "sequential"])
def test_other_schedules_train(workspace, tmp_path, schedule):
    run_config = write_run_config(tmp_path / "rc.json", "tiny", FAST, {"train": {"schedule": schedule}})
    if schedule == "joint":
        run_cli(*train_args(workspace, tmp_path / "model.pt", tmp_path / "log.csv", run_config))
        rows = read_log(tmp_path / "log.csv")
        assert rows[0]["joint_loss"] != "" and rows[0]["stage1_loss"] == ""
        return
    start = workspace["pretrained"]
    for stage in ("1", "2", "3"):
        args = train_args(workspace, tmp_path / f"stage{stage}.pt", tmp_path / f"stage{stage}.csv", run_config, stage)
        args[args.index("--pretrained") + 1] = start
        run_cli(*args)
        start = tmp_path / f"stage{stage}.pt"
    rows = {stage: read_log(tmp_path / f"stage{stage}.csv")[0] for stage in "123"}
    assert rows["1"]["stage1_loss"] != "" and rows["1"]["stage3_loss"] == ""
    assert rows["2"]["stage2_loss"] != "" and rows["2"]["stage1_loss"] == ""
    assert rows["3"]["stage3_loss"] != "" and rows["3"]["stage2_loss"] == ""


def test_corrupt_checkpoint_is_reported(workspace, tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    args = train_args(workspace, tmp_path / "model.pt", tmp_path / "log.csv")
    args[args.index("--pretrained") + 1] = corrupt
    result = run_cli(*args, check=False)
    assert result.returncode == 2
    assert "corrupt" in result.stderr and str(corrupt) in result.stderr
    assert not (tmp_path / "model.pt").exists()


def test_mismatched_checkpoint_is_reported(workspace, tmp_path):
    other = write_run_config(tmp_path / "small.json", "small", FAST)
    result = run_cli(*train_args(workspace, tmp_path / "model.pt", tmp_path / "log.csv", other), check=False)
    assert result.returncode == 2
    assert "does not match" in result.stderr or "shape" in result.stderr


def test_stage_must_fit_schedule(workspace, tmp_path):
    result = run_cli(*train_args(workspace, tmp_path / "m.pt", tmp_path / "l.csv", stage="2"), check=False)
    assert result.returncode == 2 and "sequential" in result.stderr


def test_training_masks_follow_the_rate(workspace):
    from rohydr.training.train import training_masks

    cfg = build_run_config("tiny").train
    rng = np.random.default_rng(0)
    avail = training_masks(cfg, 100, rng, torch.randperm(100))
    assert (avail.sum(axis=1) == 1).sum() == 100  # MR 0.7: every sample keeps one modality


def test_bench_reports_every_figure(workspace, tmp_path):
    import json

    out = tmp_path / "bench.json"
    result = run_cli("bench", "--preset", "tiny", "--data", workspace["h5"], "--batches", 1, "--eval-samples", 8,
                     "--json", out, "--device", "cpu")
    figures = json.loads(out.read_text())
    assert set(figures["seconds_per_batch"]) == {"shared_forward", "total"}
    assert figures["eval_samples"] == 8 and figures["peak_memory_mb"] > 0 and figures["warmup_batches"] == 0
    assert figures["reference_eval_seconds"] > figures["reference_text_encoder_seconds"] > 0
    assert figures["eval_ratio_to_reference"] > 0 and figures["eval_ratio_to_reference_same_kernels"] > 0
    assert "train epoch" in result.stdout


def test_bench_covers_the_score_sde_generator_and_imder_joint_step(workspace, tmp_path):
    import json

    out = tmp_path / "bench.json"
    imder = '{"model": {"generator": "score_sde", "use_multimodal_reconstructor": false}, "train": {"schedule": "joint"}}'
    run_cli("bench", "--preset", "tiny", "--data", workspace["h5"], "--batches", 1, "--eval-samples", 8,
            "--override", imder, "--json", out, "--device", "cpu")
    figures = json.loads(out.read_text())
    assert figures["overrides"][0]["model"]["generator"] == "score_sde"
    assert set(figures["seconds_per_batch"]) == {"joint", "total"} and figures["eval_seconds"] > 0


def test_generator_stage_ends_on_its_criterion_before_the_stages(workspace, tmp_path):
    run_config = write_run_config(tmp_path / "rc.json", "tiny", FAST,
                                  {"train": {"generator_epochs": 6, "generator_early_stop": 1}})
    run_cli(*train_args(workspace, tmp_path / "model.pt", tmp_path / "log.csv", run_config))
    rows = read_log(tmp_path / "log.csv")
    phases = [row["phase"] for row in rows]
    stage_epochs = phases.count("generators")
    assert 1 <= stage_epochs <= 6 and phases == ["generators"] * stage_epochs + ["stages"] * 2
    for name in ("val_generator_diffusion", "val_generator_reconstruction"):  # ended by patience 1: neither better
        losses = [float(row[name]) for row in rows[:stage_epochs]]
        assert stage_epochs == 6 or losses[-1] >= min(losses[:-1]), name
    assert all(row["stage1_loss"] != "" and row["stage3_loss"] == "" for row in rows[:stage_epochs])
    assert all(row["stage3_loss"] != "" and row["val_l1"] != "" for row in rows[stage_epochs:])
    record = load_checkpoint(tmp_path / "model.pt")["convergence"][-1]
    assert record["generator_stage_epochs"] == stage_epochs and record["epochs"] == stage_epochs + 2
    assert record["converged"] is False and rows[-1]["converged"] == "0"  # 2 epochs: still improving


def scripted_loop(tmp_path, values, max_epochs, early_stop):
    """An EpochLoop whose validation returns `values` in turn (a real loop, log and checkpoint state)."""
    model = torch.nn.Linear(2, 1)
    returned = iter(values)
    return EpochLoop(model=model, optimizers={"main": torch.optim.SGD(model.parameters(), lr=0.1)}, scheduler=None,
                     train_epoch=lambda epoch: {}, validate=lambda: {"val_l1": next(returned)}, monitor="val_l1",
                     max_epochs=max_epochs, early_stop=early_stop, seed=1, log_path=tmp_path / "log.csv",
                     columns=["epoch", "phase", "val_l1", "converged"], progress=False, fingerprint={})


@pytest.mark.parametrize("values, converged, epochs", [
    ([1.0, 0.9, 0.95, 0.97, 0.99, 0.8], True, 4),  # stops at epoch 4: two epochs without a better value
    ([1.0, 0.9, 0.8, 0.7, 0.6, 0.5], False, 6),  # still improving at max_epochs
    ([1.0, 0.9, 0.8, 0.7, 0.6, 0.6], False, 6),  # best at 5, max_epochs at 6: patience not used up
])
def test_convergence_is_early_stopping_not_max_epochs(tmp_path, capsys, values, converged, epochs):
    loop = scripted_loop(tmp_path, values, max_epochs=6, early_stop=2)
    loop.run()
    assert loop.convergence["converged"] is converged and loop.convergence["epochs"] == epochs
    rows = read_log(tmp_path / "log.csv")
    assert [row["converged"] for row in rows] == [""] * (epochs - 1) + [str(int(converged))]
    assert ("not converged: reached max_epochs" in capsys.readouterr().out) is not converged


@pytest.mark.parametrize("generator", ["dit", "score_sde"])
def test_compiled_generators_train_the_default_step(workspace, generator):
    """torch.compile with its default backend (the CPU inductor here, as on CUDA) through the default training
    step: one shared forward whose graph each of the three stages differentiates (retain_graph). Only text is
    missing: the three modalities' denoisers are one graph (every extracted feature has width d), so one is
    compiled, at a third of the cost."""
    run_config = build_run_config("tiny", FAST, {"model": {"generator": generator}})
    with FeatureStore(workspace["h5"]) as store:
        split = store.split("train")
        model = build_model(run_config, store.dims, store.length)
    model.compile_denoisers()
    runner = StageRunner(model, run_config, Runtime(torch.device("cpu")), stage="all")
    before = [p.detach().clone() for p in model.diffusion.parameters()]
    patterns = torch.tensor([[0, 1, 1], [1, 1, 1]], dtype=torch.bool)
    graphs = []
    for start, rows in ((0, [8, 8]), (16, [11, 5])):
        avail = patterns.repeat_interleave(torch.tensor(rows), dim=0)
        runner.batch(split.batch(torch.arange(start, start + 16)), avail, has_missing=True)
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs[0] == graphs[1], "other row counts recompiled"  # the first compilation serves every size
    means = runner.epoch_means()
    assert all(np.isfinite(means[key]) for key in ("stage1_loss", "stage2_loss", "stage3_loss")), means
    assert any(not torch.equal(p, q) for p, q in zip(model.diffusion.parameters(), before))
