"""The CUDA path without a GPU: pretrain, train and evaluate of every generator and schedule, in fp32 and under
bf16 autocast, on an emulated CUDA device (tests/emulated_cuda: tensors that report cuda:0 over CPU data, CUDA's
device rules and its autocast kernels; a C++ shim built here with g++ against the installed torch)."""
from __future__ import annotations

import csv
import gzip
import itertools
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import make_features, make_masks, tool_env, write_run_config

sys.path.insert(0, str(Path(__file__).parent / "emulated_cuda"))
from run import build_shim  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the emulated-CUDA shim needs g++")

RUNNER = Path(__file__).parent / "emulated_cuda" / "run.py"
GENERATORS = ("dit", "score_sde")
SCHEDULES = ("multistage", "joint", "sequential")
PRECISIONS = ("fp32", "bf16")
ONE_EPOCH = {"pretrain": {"max_epochs": 1}, "train": {"max_epochs": 1, "batch_size": 16}}


def emulated(shim: Path, commands: list[list], folder: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run rohydr commands in one process on the emulated CUDA device."""
    listing = folder / f"commands{len(list(folder.glob('commands*.json')))}.json"
    listing.write_text(json.dumps([[str(arg) for arg in command] for command in commands]))
    env = {**tool_env(), "ROHYDR_GPU_LOCK_DIR": str(folder / "gpu-slots")}
    return subprocess.run([sys.executable, str(RUNNER), str(shim), str(listing)], capture_output=True, text=True,
                          env=env, timeout=timeout)


def run_commands(ws: dict, out: Path, generator: str, schedule: str, precision: str, device: str) -> list[list]:
    """Train (each stage, for the sequential schedule) and evaluate one run into `out`."""
    out.mkdir(parents=True)
    run_config = write_run_config(out / "run_config.json", "tiny", ONE_EPOCH,
                                  {"model": {"generator": generator}, "train": {"schedule": schedule}})
    flags = ["--device", device, "--no-progress", *(["--bf16"] if precision == "bf16" else [])]
    stages = ("1", "2", "3") if schedule == "sequential" else ("all",)
    commands, start = [], ws[f"pretrained_{precision}_{device}"]
    for stage in stages:
        model = out / f"model_{stage}.pt"
        commands.append(["train", "--data", ws["h5"], "--run-config", run_config, "--pretrained", start,
                         "--masks", ws["masks"], "--seed", 1, "--stage", stage, "--out", model,
                         "--log", out / f"train_log_{stage}.csv", *flags])
        start = model
    commands.append(["evaluate", "--data", ws["h5"], "--model", start, "--masks", ws["masks"], "--seed", 1,
                     "--out", out / "eval.csv", "--predictions", out / "predictions.csv.gz", *flags])
    return commands


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every generator x schedule x precision on cuda, and the fp32 DiT run on the CPU beside it, in one process."""
    folder = tmp_path_factory.mktemp("emulated_cuda")
    ws = {"folder": folder, "shim": build_shim(folder)}
    ws["h5"] = make_features(folder, sizes=(32, 16, 48), length=6)
    ws["masks"] = make_masks(folder, ws["h5"])
    pretrain_config = write_run_config(folder / "pretrain_config.json", "tiny", ONE_EPOCH)
    cases = [(g, s, p, "cuda") for g, s, p in itertools.product(GENERATORS, SCHEDULES, PRECISIONS)]
    cases.append(("dit", "multistage", "fp32", "cpu"))
    commands = []
    for precision, device in sorted({(p, d) for _, _, p, d in cases}):
        ws[f"pretrained_{precision}_{device}"] = folder / f"pretrain_{precision}_{device}.pt"
        commands.append(["pretrain", "--data", ws["h5"], "--run-config", pretrain_config, "--seed", 1,
                         "--out", ws[f"pretrained_{precision}_{device}"], "--log", folder / f"pretrain_{precision}.csv",
                         "--device", "auto" if (precision, device) == ("bf16", "cuda") else device, "--no-progress",
                         *(["--bf16"] if precision == "bf16" else [])])
    commands.append(["gpus"])  # this process holds the one GPU's slot (the pretraining on --device auto took it)
    for case in cases:
        commands += run_commands(ws, folder / "_".join(case), *case)
    commands.append(["bench", "--preset", "tiny", "--data", ws["h5"], "--batches", 2, "--eval-samples", 8,
                     "--device", "cuda", "--bf16", "--json", folder / "bench.json", "--no-progress"])
    ws["result"] = emulated(ws["shim"], commands, folder)
    return ws


def read_eval(path: Path) -> dict[tuple[str, str], float]:
    with open(path) as handle:
        return {(row["condition"], row["metric"]): float(row["value"]) for row in csv.DictReader(handle)}


def predictions(path: Path) -> list[float]:
    with gzip.open(path, "rt") as handle:
        return [float(row["prediction"]) for row in csv.DictReader(handle)]


def test_every_generator_and_schedule_trains_and_evaluates_on_cuda(runs):
    result = runs["result"]
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    assert "device: cuda:0 (a GPU slot of its own; Emulated CUDA device)" in result.stdout  # --device auto took it
    assert "  cuda:0  Emulated CUDA device  gpu-emulated-cuda-0  held by pid " in result.stdout
    assert "every GPU is held: a job on --device auto waits for one" in result.stdout
    for generator, schedule, precision in itertools.product(GENERATORS, SCHEDULES, PRECISIONS):
        scores = read_eval(runs["folder"] / f"{generator}_{schedule}_{precision}_cuda" / "eval.csv")
        assert len(scores) > 50 and all(math.isfinite(value) for value in scores.values())


@pytest.mark.parametrize("generator", GENERATORS)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_bf16_keeps_predictions_and_losses_in_fp32(runs, generator, schedule):
    """Under bf16 autocast the predictions are fp32 (a bf16 head would round each to 8 significant bits) and
    autocast did act (the losses differ from the fp32 run's). The file's 6 decimals keep a bf16 number within
    5e-7 of itself, which tells it from an fp32 one where bf16's spacing is wide: at |prediction| >= 0.05."""
    bf16 = runs["folder"] / f"{generator}_{schedule}_bf16_cuda"
    values = torch.tensor(predictions(bf16 / "predictions.csv.gz"), dtype=torch.float64)
    values = values[values.abs() >= 0.05]
    assert len(values) >= 60
    rounded = ((values - values.bfloat16().double()).abs() <= 5e-7).double().mean().item()
    assert rounded < 0.05, f"{rounded:.0%} of the bf16 run's predictions are bf16 numbers"
    fp32 = runs["folder"] / f"{generator}_{schedule}_fp32_cuda"
    last = "3" if schedule == "sequential" else "all"
    assert (bf16 / f"train_log_{last}.csv").read_text() != (fp32 / f"train_log_{last}.csv").read_text()


def test_bench_times_and_measures_memory_on_cuda(runs):
    result = json.loads((runs["folder"] / "bench.json").read_text())
    assert result["device"] == "cuda" and result["bf16"] is True
    assert 0 < result["train_peak_memory_mb"] <= result["peak_memory_mb"]  # the emulated device's bytes
    assert result["seconds_per_batch"]["total"] > 0 and result["eval_seconds"] > 0


def test_fp32_on_cuda_computes_what_the_cpu_computes(runs):
    on_cuda = read_eval(runs["folder"] / "dit_multistage_fp32_cuda" / "eval.csv")
    on_cpu = read_eval(runs["folder"] / "dit_multistage_fp32_cpu" / "eval.csv")
    assert on_cuda.keys() == on_cpu.keys()
    assert max(abs(on_cuda[key] - on_cpu[key]) for key in on_cpu) < 1e-4


RULES = """
import torch, device
with device.emulated_cuda():
    x = torch.ones(3, device="cuda")
    for name, bad in (("mixed", lambda: x + torch.ones(3)), ("generator", lambda: torch.randn(3, device="cuda",
                      generator=torch.Generator())), ("numpy", lambda: x.numpy())):
        try:
            bad()
            print(name, "allowed")
        except (RuntimeError, TypeError) as error:
            print(name, "refused:", error)
    print("allowed:", (x * torch.tensor(2.0)).device, x[torch.tensor([0, 2])].device, x.cpu().numpy().sum())
"""


def test_the_emulated_device_enforces_cuda_rules(tmp_path):
    """The harness is only as strict as its rules: what a real device refuses is refused, what it allows runs."""
    script = tmp_path / "rules.py"
    script.write_text(f"import ctypes, sys\nctypes.CDLL(sys.argv[1], mode=ctypes.RTLD_GLOBAL)\n"
                      f"sys.path.insert(0, {str(RUNNER.parent)!r})\n{RULES}")
    result = subprocess.run([sys.executable, str(script), str(build_shim(tmp_path))], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mixed refused: Expected all tensors to be on the same device" in result.stdout
    assert "generator refused: Expected a 'cuda' device type for generator but found 'cpu'" in result.stdout
    assert "numpy refused: can't convert cuda:0 device type tensor to numpy" in result.stdout
    assert "allowed: cuda:0 cuda:0 3.0" in result.stdout
