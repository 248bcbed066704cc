"""No silently wrong number: damaged files, non-finite weights, predictions and losses, mismatched
masks, bad checkpoints, typed configurations, unknown devices and a full disk all stop with a clear
error naming what is wrong, and leave no partial output."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from helpers import make_features, make_masks, run_cli, write_run_config
from rohydr.core.config import build_run_config
from rohydr.core.errors import NonFiniteError, RohydrError
from rohydr.core.metrics import score
from rohydr.data.dataset import FeatureStore
from rohydr.data.masks import load_masks
from rohydr.models.checkpoint import load_checkpoint, save_checkpoint

TINY = {"pretrain": {"max_epochs": 1}, "train": {"max_epochs": 1}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("integrity")
    h5 = make_features(folder)
    masks = make_masks(folder, h5, seed=2)
    run_config = write_run_config(folder / "rc.json", "tiny", TINY)
    run_cli("pretrain", "--data", h5, "--run-config", run_config, "--seed", 2, "--out", folder / "pretrain.pt",
            "--log", folder / "pretrain.csv", "--no-progress")
    run_cli("train", "--data", h5, "--run-config", run_config, "--pretrained", folder / "pretrain.pt",
            "--masks", masks, "--seed", 2, "--out", folder / "model.pt", "--log", folder / "train.csv",
            "--no-progress")
    return {"folder": folder, "h5": h5, "masks": masks, "run_config": run_config}


def evaluate(trained, model, out: Path, data=None, masks=None, *extra):
    return run_cli("evaluate", "--data", data or trained["h5"], "--model", model, "--masks", masks or trained["masks"],
                   "--seed", 2, "--out", out / "eval.csv", "--predictions", out / "pred.csv.gz", *extra, check=False)


def assert_clean_failure(result, *fragments, outputs=()):
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr[-3000:])
    for path in outputs:
        assert not Path(path).exists(), path


def flip_byte_in(path: Path, needle: bytes) -> None:
    content = bytearray(path.read_bytes())
    at = bytes(content).find(needle)
    assert at > 0, "the bytes to damage are not in the file"
    content[at + len(needle) // 2] ^= 0x10
    path.write_bytes(content)


# ------------------------------------------------------------------------------------------ HDF5

def test_a_flipped_byte_in_the_features_fails_naming_file_and_dataset(trained, tmp_path):
    damaged = tmp_path / "features.h5"
    damaged.write_bytes(trained["h5"].read_bytes())
    with FeatureStore(trained["h5"]) as store:
        rows = store.split("valid").audio[:4].numpy().tobytes()
    flip_byte_in(damaged, rows)
    with FeatureStore(damaged) as store, pytest.raises(RohydrError, match=r"features.h5: dataset '/valid/audio'"):
        store.split("valid")
    result = run_cli("train", "--data", damaged, "--run-config", trained["run_config"], "--pretrained",
                     trained["folder"] / "pretrain.pt", "--masks", trained["masks"], "--seed", 2,
                     "--out", tmp_path / "m.pt", "--log", tmp_path / "m.csv", "--no-progress", check=False)
    assert_clean_failure(result, "features.h5: dataset '/valid/audio' cannot be read", outputs=[tmp_path / "m.pt"])
    masks = tmp_path / "masks.h5"
    masks.write_bytes(trained["masks"].read_bytes())
    with h5py.File(trained["masks"]) as h5:
        needle = h5["test/mr0.4"][()].tobytes()
    flip_byte_in(masks, needle)
    with pytest.raises(RohydrError, match=r"masks.h5: dataset '/test/mr0.4' cannot be read"):
        load_masks(masks, "test")


# ----------------------------------------------------------------------------------- checkpoints

def test_a_flipped_byte_in_a_checkpoint_is_detected(trained, tmp_path):
    model = tmp_path / "model.pt"
    model.write_bytes((trained["folder"] / "model.pt").read_bytes())
    weight = load_checkpoint(model)["state_dict"]["head.proj1.weight"]
    flip_byte_in(model, weight.numpy().tobytes()[:64])
    assert_clean_failure(evaluate(trained, model, tmp_path), "model.pt is damaged", outputs=[tmp_path / "eval.csv"])


def test_a_nan_weight_is_refused(trained, tmp_path):
    payload = load_checkpoint(trained["folder"] / "model.pt")
    payload["state_dict"]["head.proj1.weight"][0, 0] = float("nan")
    save_checkpoint(tmp_path / "nan.pt", {k: v for k, v in payload.items() if k != "format"})
    assert_clean_failure(evaluate(trained, tmp_path / "nan.pt", tmp_path), "'head.proj1.weight' holds 1 NaN",
                         outputs=[tmp_path / "eval.csv", tmp_path / "pred.csv.gz"])


def test_non_finite_predictions_are_never_scored(trained, tmp_path):
    payload = load_checkpoint(trained["folder"] / "model.pt")
    payload["state_dict"]["head.out_layer.bias"].fill_(float("inf"))
    save_checkpoint(tmp_path / "inf.pt", {k: v for k, v in payload.items() if k != "format"})
    assert_clean_failure(evaluate(trained, tmp_path / "inf.pt", tmp_path), "inf.pt", "not finite",
                         "condition 'l'", outputs=[tmp_path / "eval.csv", tmp_path / "pred.csv.gz"])
    with pytest.raises(NonFiniteError, match="1 of 3 predictions"):
        score(np.array([0.5, np.nan, -1.0]), np.array([1.0, 1.0, -1.0]))


def test_a_diverged_training_says_so(trained, tmp_path):
    run_config = write_run_config(tmp_path / "rc.json", "tiny", {"pretrain": {"max_epochs": 3, "lr": 1e30,
                                                                              "grad_clip": 1e30}})
    result = run_cli("pretrain", "--data", trained["h5"], "--run-config", run_config, "--seed", 2,
                     "--out", tmp_path / "p.pt", "--log", tmp_path / "p.csv", "--no-progress", check=False)
    assert_clean_failure(result, "diverged at epoch", outputs=[tmp_path / "p.pt"])
    assert "StopIteration" not in result.stderr


def test_checkpoints_that_are_not_ours_or_incomplete(trained, tmp_path):
    (tmp_path / "text.pt").write_text("not a checkpoint")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    save_checkpoint(tmp_path / "partial.pt", {"kind": "train", "run_config": {}, "dims": [768, 5, 20]})
    cases = {"text.pt": "is corrupt or not a rohydr checkpoint", "tensor.pt": "expected format",
             "partial.pt": "lacks key(s) ['length', 'state_dict', 'seed', 'stage', 'convergence']"}
    for name, fragment in cases.items():
        assert_clean_failure(evaluate(trained, tmp_path / name, tmp_path), name, fragment,
                             outputs=[tmp_path / "eval.csv"])


class Payload:
    def __reduce__(self):
        return os.system, ("true",)


def test_a_refused_checkpoint_names_the_global_and_never_advises_unsafe_loading(trained, tmp_path):
    torch.save({"format": "rohydr-checkpoint-2", "kind": "train", "x": Payload()}, tmp_path / "evil.pt")
    result = evaluate(trained, tmp_path / "evil.pt", tmp_path)
    assert_clean_failure(result, "evil.pt is refused", "system'", outputs=[tmp_path / "eval.csv"])
    assert "weights_only=False" not in result.stderr and "weights_only` set to `False" not in result.stderr


# ----------------------------------------------------------------------------------------- masks

def test_masks_of_another_dataset_are_refused(trained, tmp_path):
    other = make_features(tmp_path, seed=9)  # same sizes, other content
    other_masks = make_masks(tmp_path, other, seed=2)
    result = evaluate(trained, trained["folder"] / "model.pt", tmp_path / "a", masks=other_masks)
    assert_clean_failure(result, "were drawn for another feature file", outputs=[tmp_path / "a" / "eval.csv"])
    smaller = make_features(tmp_path / "small", sizes=(64, 24, 16))
    smaller_masks = make_masks(tmp_path / "small", smaller, seed=2)
    result = evaluate(trained, trained["folder"] / "model.pt", tmp_path / "b", masks=smaller_masks)
    assert_clean_failure(result, "split 'test' has 16 rows", "has 32 samples", outputs=[tmp_path / "b" / "eval.csv"])
    result = run_cli("train", "--data", trained["h5"], "--run-config", trained["run_config"], "--pretrained",
                     trained["folder"] / "pretrain.pt", "--masks", other_masks, "--seed", 2, "--out", tmp_path / "m.pt",
                     "--log", tmp_path / "m.csv", "--no-progress", check=False)
    assert_clean_failure(result, "were drawn for another feature file", outputs=[tmp_path / "m.pt"])


# ---------------------------------------------------------------------------------------- config

@pytest.mark.parametrize("override, fragment", [
    ({"model": {"use_diffusion": "false"}}, "model.use_diffusion = 'false': Input should be a valid boolean"),
    ({"train": {"lr": "0.002"}}, "train.lr = '0.002': Input should be a valid number"),
    ({"model": {"attn_dropout": 1.5}}, "model.attn_dropout = 1.5: Input should be less than 1"),
    ({"train": {"max_epochs": 0}}, "train.max_epochs = 0: Input should be greater than or equal to 1"),
    ({"pretrain": {"max_epochs": -3}}, "pretrain.max_epochs = -3"),
    ({"train": {"early_stop": 2.0}}, "train.early_stop = 2.0: Input should be a valid integer"),
    ({"train": {"lr": 0}}, "train.lr = 0: Input should be greater than 0"),
    ({"train": {"train_mr": 0.35}}, "train_mr = 0.35; expected one of 0.1"),
    ({"model": {"dit": {"heads": 5}}}, "model.dit: hidden 32 is not divisible by heads 5"),
    ({"model": {"use_diffuson": False}}, "model.use_diffuson: unknown key"),
])
def test_run_configurations_are_typed_and_range_checked(override, fragment):
    with pytest.raises(ValueError) as caught:
        build_run_config("small", override)
    assert fragment in str(caught.value)


def test_a_run_configuration_file_with_zero_epochs_is_a_clear_error(trained, tmp_path):
    values = build_run_config("tiny").to_dict()
    values["pretrain"]["max_epochs"] = 0
    (tmp_path / "rc.json").write_text(json.dumps(values))
    result = run_cli("pretrain", "--data", trained["h5"], "--run-config", tmp_path / "rc.json", "--seed", 2,
                     "--out", tmp_path / "p.pt", "--log", tmp_path / "p.csv", "--no-progress", check=False)
    assert_clean_failure(result, "rc.json", "pretrain.max_epochs = 0", outputs=[tmp_path / "p.pt"])


@pytest.mark.parametrize("device", ["gpu", "tpu:0", "cuda:x"])
def test_an_unknown_device_is_a_clear_error(trained, tmp_path, device):
    result = evaluate(trained, trained["folder"] / "model.pt", tmp_path, None, None, "--device", device)
    assert_clean_failure(result, f"--device {device}", "expected auto, cpu, cuda or cuda:N",
                         outputs=[tmp_path / "eval.csv"])


# ------------------------------------------------------------------------------------ full disk

@pytest.fixture
def full_disk(tmp_path):
    """A 2 MiB tmpfs, mounted here (root in a sandbox that allows it), nearly filled."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (mount / "filler").write_bytes(b"\0" * (2 * 1024 * 1024 - 4 * 1024))
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_names_the_file_and_leaves_nothing(trained, full_disk):
    out = full_disk / "out"
    steps = {
        "convert": ["convert", trained["folder"] / "data.pkl", out / "features.h5"],
        "pretrain": ["pretrain", "--data", trained["h5"], "--run-config", trained["run_config"], "--seed", 2,
                     "--out", out / "pretrain.pt", "--log", out / "pretrain.csv", "--no-progress"],
        "evaluate": ["evaluate", "--data", trained["h5"], "--model", trained["folder"] / "model.pt", "--masks",
                     trained["masks"], "--seed", 2, "--out", out / "eval.csv", "--predictions", out / "pred.csv.gz"],
    }
    for name, args in steps.items():
        result = run_cli(*args, check=False)
        assert result.returncode == 2, (name, result.returncode, result.stderr[-2000:])
        assert "No space left on device" in result.stderr and str(out) in result.stderr, (name, result.stderr[-2000:])
        assert "Traceback" not in result.stderr
        leftovers = [p.name for p in out.iterdir() if not p.name.startswith(".") or p.name.endswith(".part")]
        assert not [p for p in leftovers if p.endswith((".h5", ".pt", ".csv", ".gz", ".part"))], (name, leftovers)
