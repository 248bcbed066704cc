"""Through Snakemake: wrong types in the workflow config fail when it is parsed, and a killed run
resumes with one documented command, never from a run on other data, never racing a job that a
killed Snakemake left behind."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers import REPO, snakemake, tool_env

CONFIG = REPO / "config" / "config.yaml"
TARGET = "results/synthetic/rohydr/all_patterns/seed1/eval.csv"
RESUME_STATE = "results/synthetic/rohydr/all_patterns/seed1/train_log.csv.resume.pt"
TRAIN_LOG = "results/synthetic/logs/train/rohydr/all_patterns/seed1.log"


@pytest.mark.parametrize("variants, fragment", [
    ({"no_diffusion": {"model": {"use_diffusion": "false"}}},
     "dataset 'synthetic', run 'no_diffusion': model.use_diffusion = 'false': Input should be a valid boolean"),
    ({"rohydr": {"train": {"lr": "0.002"}}}, "run 'rohydr': train.lr = '0.002': Input should be a valid number"),
    ({"rohydr": {"model": {"attn_dropout": 1.5}}}, "model.attn_dropout = 1.5: Input should be less than 1"),
    ({"rohydr": {"train": {"max_epochs": 0}}}, "train.max_epochs = 0"),
])
def test_wrongly_typed_values_fail_when_the_workflow_is_parsed(tmp_path, variants, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"variants": variants}))
    result = snakemake("-n", "--cores", 1, "--configfile", CONFIG, path, cwd=tmp_path, check=False)
    assert result.returncode != 0 and fragment in result.stdout + result.stderr


def test_an_unknown_device_fails_when_the_workflow_is_parsed(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"device": "gpu"}))
    result = snakemake("-n", "--cores", 1, "--configfile", CONFIG, path, cwd=tmp_path, check=False)
    assert result.returncode != 0 and "'gpu' does not match" in result.stdout + result.stderr


def run_config(folder: Path, data_seed: int) -> Path:
    """One variant, one seed, a training long enough to be killed in the middle."""
    path = folder / f"run{data_seed}.yaml"
    path.write_text(yaml.safe_dump({
        "datasets": {"synthetic": {"synthetic": {"like": "mosi", "seed": data_seed, "sizes": [96, 32, 48],
                                                 "length": 12},
                                   "preset": "tiny", "literature": "none",
                                   "overrides": {"train": {"max_epochs": 12, "early_stop": 12}}}},
        "seeds": [1], "variants": {"rohydr": {}}, "baselines": {}, "ablation": ["rohydr"], "comparison": ["rohydr"],
        "protocols": {"all_patterns": {"runs": ["rohydr"]}, "per_mr": {"runs": []}},
    }))
    return path


def run(folder: Path, data_seed: int, *extra, **kwargs):
    return snakemake(TARGET, "--cores", 1, "--configfile", CONFIG, run_config(folder, data_seed), *extra,
                     cwd=folder, **kwargs)


def start(folder: Path, data_seed: int, *extra, new_session: bool = False) -> subprocess.Popen:
    """`run` in the background."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", REPO / "Snakefile", "--directory", folder,
               TARGET, "--cores", 1, "--configfile", CONFIG, run_config(folder, data_seed), *extra]
    return subprocess.Popen(list(map(str, command)), env=tool_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=new_session)


def start_and_kill_during_training(folder: Path, data_seed: int, whole_group: bool) -> int:
    """Start the run, SIGKILL it once training has saved a resume state: Snakemake and its jobs, or
    Snakemake alone (its training job then runs on, orphaned). Returns the run's process group."""
    process = start(folder, data_seed, new_session=True)
    deadline = time.time() + 600
    while not (folder / RESUME_STATE).exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    if whole_group:
        os.killpg(process.pid, signal.SIGKILL)
    else:
        process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL and (folder / RESUME_STATE).exists(), "killed too late"
    return process.pid


def recover(folder: Path, data_seed: int):
    """The README's documented line after a killed run."""
    snakemake("--unlock", "--configfile", CONFIG, run_config(folder, data_seed), cwd=folder)
    return run(folder, data_seed, "--rerun-incomplete")


def waiting_in(log: Path) -> bool:
    return log.exists() and "waiting for process" in log.read_text()


def outputs(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes()
            for name in (TARGET, "results/synthetic/rohydr/all_patterns/seed1/predictions.csv.gz")}


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clean")
    run(folder, data_seed=4)
    return outputs(folder)


def test_a_killed_run_on_changed_data_does_not_resume_from_the_old_data(tmp_path, clean_run):
    start_and_kill_during_training(tmp_path, data_seed=0, whole_group=True)
    recover(tmp_path, data_seed=4)  # same dims and sizes, other content
    assert "ignoring and removing" in (tmp_path / TRAIN_LOG).read_text()
    assert not (tmp_path / RESUME_STATE).exists()
    assert outputs(tmp_path) == clean_run


def test_a_job_left_running_by_a_killed_snakemake_does_not_race_the_rerun(tmp_path, clean_run):
    orphans = start_and_kill_during_training(tmp_path, data_seed=4, whole_group=False)
    # The job left behind is held mid-training until the rerun's job has met it: on a slow machine the
    # rerun's two Snakemake start-ups could otherwise outlast the rest of its training.
    os.killpg(orphans, signal.SIGSTOP)
    try:
        snakemake("--unlock", "--configfile", CONFIG, run_config(tmp_path, 4), cwd=tmp_path)
        rerun = start(tmp_path, 4, "--rerun-incomplete")
        deadline = time.time() + 600
        while rerun.poll() is None and time.time() < deadline and not waiting_in(tmp_path / TRAIN_LOG):
            time.sleep(0.1)
    finally:
        os.killpg(orphans, signal.SIGCONT)
    assert rerun.wait(timeout=600) == 0
    assert waiting_in(tmp_path / TRAIN_LOG)
    assert outputs(tmp_path) == clean_run
