"""The Snakemake workflow: dry runs of the DAG and the profiles, config validation, and one real run
of the whole pipeline on the fast configuration (tiny synthetic data, tiny preset, two seeds)."""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers import REPO, snakemake, tool_env
from rohydr.reporting.render import NOT_CONVERGED

CONFIG = REPO / "config" / "config.yaml"
FAST = REPO / "config" / "fast.yaml"
MMSA = REPO / "config" / "mmsa.yaml"
ABLATIONS = REPO / "config" / "ablations.yaml"


def job_counts(output: str) -> dict[str, int]:
    table = output.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def scheduled_jobs(output: str) -> list[tuple[str, dict]]:
    """(rule, wildcards) of every job a dry run lists."""
    jobs = []
    for block in re.split(r"\n(?=\[.*\]\n(?:local)?rule )", output):
        rule = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        if rule:
            wildcards = re.search(r"wildcards: (.*)", block)
            pairs = dict(item.split("=", 1) for item in wildcards.group(1).split(", ")) if wildcards else {}
            resources = re.search(r"resources: (.*)", block)
            pairs["_resources"] = resources.group(1) if resources else ""
            jobs.append((rule.group(1), pairs))
    return jobs


def merged(*paths: Path) -> dict:
    """The workflow config of these configfiles, merged as Snakemake merges them."""
    def merge(base, extra):
        for key, value in extra.items():
            base[key] = merge(base.get(key, {}), value) if isinstance(value, dict) and isinstance(base.get(key), dict) \
                else value
        return base
    config = {}
    for path in paths:
        config = merge(config, yaml.safe_load(path.read_text()))
    return config


@pytest.mark.parametrize("configfiles", [(CONFIG,), (CONFIG, FAST), (CONFIG, ABLATIONS)])
def test_dry_run_lists_every_protocol_of_every_run(tmp_path, configfiles):
    result = snakemake("-n", "--cores", 2, "--configfile", *configfiles, cwd=tmp_path)
    counts = job_counts(result.stdout)
    config = merged(*configfiles)
    seeds, protocols = len(config["seeds"]), config["protocols"]
    trainings = len(protocols["all_patterns"]["runs"]) + len(protocols["per_mr"]["runs"]) * len(protocols["per_mr"]["rates"])
    sequential = [run for run in protocols["all_patterns"]["runs"] if run == "sequential_stages"] + [
        run for run in protocols["per_mr"]["runs"] for _ in protocols["per_mr"]["rates"] if run == "sequential_stages"]
    assert counts["pretrain"] == seeds
    assert counts["train"] == trainings * seeds
    assert counts.get("train_stage", 0) == 2 * len(sequential) * seeds  # stages 1 and 2 before the final one
    # + the runs fed zeros, the floor and the complete baseline
    assert counts["evaluate"] == (trainings + len(config["fed_zeros"]) + 2) * seeds
    assert counts["masks"] == seeds and counts["convert_hdf5"] == 1 and counts["aggregate"] == 1
    jobs = scheduled_jobs(result.stdout)
    per_mr = {(job["variant"], job["protocol"]) for rule, job in jobs if rule == "train" and job["protocol"] != "all_patterns"}
    assert per_mr == {(run, f"mr{rate:.1f}") for run in protocols["per_mr"]["runs"] for rate in protocols["per_mr"]["rates"]}


def test_peer_targets_train_every_seed_under_the_configured_protocols(tmp_path):
    result = snakemake("imder", "rohydr_sde", "-n", "--cores", 2, "--configfile", CONFIG, MMSA, "--config",
                       "run_datasets=[synthetic]", cwd=tmp_path)
    jobs = scheduled_jobs(result.stdout)
    config = merged(CONFIG, MMSA)
    protocols = ["all_patterns", *(f"mr{rate:.1f}" for rate in config["protocols"]["per_mr"]["rates"])]
    for run in ("imder", "rohydr_sde"):
        trained = {(job["protocol"], job["seed"]) for rule, job in jobs if rule == "train" and job["variant"] == run}
        assert trained == {(p, str(seed)) for p in protocols for seed in config["seeds"]}, run
    result = snakemake("comparison", "-n", "--cores", 2, "--configfile", CONFIG, cwd=tmp_path)
    jobs = scheduled_jobs(result.stdout)
    assert {"aggregate", "plots"} <= {rule for rule, _ in jobs}
    assert {job["variant"] for rule, job in jobs if rule == "train"} >= set(merged(CONFIG)["comparison"])


def test_redundancy_sweep_is_a_target_of_its_own(tmp_path):
    result = snakemake("redundancy_sweep", "-n", "--cores", 2, "--configfile", CONFIG, FAST, cwd=tmp_path)
    jobs = scheduled_jobs(result.stdout)
    values = merged(CONFIG, FAST)["redundancy_sweep"]["values"]
    synthesized = {job["dataset"] for rule, job in jobs if rule == "synthesize"}
    assert synthesized == {f"synthetic_r{value}" for value in values}
    assert {rule for rule, _ in jobs} >= {"aggregate", "sweep_plot"} and "plots" not in {rule for rule, _ in jobs}
    plain = snakemake("-n", "--cores", 2, "--configfile", CONFIG, FAST, cwd=tmp_path)
    assert "sweep_plot" not in plain.stdout and "synthetic_r" not in plain.stdout
    assert "_gen" not in plain.stdout and "budget_plot" not in plain.stdout  # nor is the budget sweep


def test_budget_sweep_trains_a_copy_per_budget_and_reuses_the_run_where_the_budget_changes_nothing(tmp_path):
    result = snakemake("budget_sweep", "-n", "--cores", 2, "--configfile", CONFIG, cwd=tmp_path)
    jobs = scheduled_jobs(result.stdout)
    sweep = merged(CONFIG)["budget_sweep"]
    datasets = {"synthetic", *(f"synthetic_r{value}" for value in sweep["redundancy"])}
    trained = {(job["dataset"], job["variant"]) for rule, job in jobs if rule == "train"}
    for dataset in datasets:
        for run in sweep["runs"]:
            for epochs in sweep["generator_epochs"]:
                # no generator stage is the run as configured: its own model, not a copy
                assert (dataset, run if epochs == 0 else f"{run}_gen{epochs}") in trained, (dataset, run, epochs)
        assert {(dataset, run) for run in sweep["references"]} <= trained
    assert not any(variant.endswith("_gen0") for _, variant in trained)
    assert {job["seed"] for rule, job in jobs if rule == "train"} == set(map(str, sweep["seeds"]))
    assert {rule for rule, _ in jobs} >= {"budget_manifest", "budget_plot"} and "aggregate" not in result.stdout
    snakemake("--cores", 1, "results/synthetic/rohydr_gen24/all_patterns/run_config.json", "--configfile", CONFIG,
              cwd=tmp_path)
    train = json.loads((tmp_path / "results/synthetic/rohydr_gen24/all_patterns/run_config.json").read_text())["train"]
    assert (train["generator_epochs"], train["generator_early_stop"]) == (24, sweep["generator_early_stop"])


def mosi_config(tmp_path: Path, **extra) -> Path:
    pickle = tmp_path / "aligned_50.pkl"
    pickle.write_bytes(b"")
    path = tmp_path / "mosi.yaml"
    path.write_text(yaml.safe_dump({"datasets": {"mosi": {"path": str(pickle), "preset": "mosi",
                                                          "literature": "MOSI"}},
                                    "run_datasets": ["mosi"], **extra}))
    return path


PARTITIONS = {"ROHYDR_SLURM_ACCOUNT": "acct42", "ROHYDR_CPU_PARTITION": "cpuq", "ROHYDR_GPU_PARTITION": "gpuq"}
SLURM_PROFILE = REPO / "workflow/profiles/slurm"


def test_slurm_profile_dry_run_for_mosi(tmp_path):
    # The config's resources are the one place for threads and memory; the profile only says where jobs go.
    extra = mosi_config(tmp_path, resources={"train_threads": 3, "convert_mem_mb": 12345})
    result = snakemake("-n", "--profile", SLURM_PROFILE, "--configfile", CONFIG, MMSA, extra, cwd=tmp_path,
                       env_extra=PARTITIONS)
    jobs = scheduled_jobs(result.stdout)
    assert {rule for rule, _ in jobs} >= {"validate_dataset", "convert_hdf5", "masks", "pretrain", "train",
                                          "train_stage", "evaluate", "aggregate", "plots"}
    for rule, job in jobs:
        assert job.get("dataset", "mosi") == "mosi"
        resources = job["_resources"]
        if rule in ("pretrain", "train", "train_stage", "evaluate"):
            assert "gpu=1" in resources and "slurm_partition=gpuq" in resources, (rule, resources)
            assert "slurm_account=acct42" in resources
        elif rule in ("validate_dataset", "convert_hdf5", "masks"):
            assert "slurm_partition=cpuq" in resources and "gpu=" not in resources, (rule, resources)
        if rule == "convert_hdf5":
            assert "mem_mb=12345," in resources
    assert "--threads 3" in result.stdout and "--threads 1" not in result.stdout
    profile = (SLURM_PROFILE / "config.yaml").read_text()
    assert not re.search(r"^\s*(mem_mb|runtime|cpus_per_gpu|gpu|resources|set-threads):", profile, re.M)


def test_slurm_overlay_drops_the_gpu_request(tmp_path):
    result = snakemake("-n", "--profile", SLURM_PROFILE, "--profile", REPO / "workflow/profiles/slurm-nogpu",
                       "--configfile", CONFIG, mosi_config(tmp_path), cwd=tmp_path, env_extra=PARTITIONS)
    gpu_jobs = [job["_resources"] for rule, job in scheduled_jobs(result.stdout) if rule in ("train", "evaluate")]
    assert gpu_jobs and all("gpu=0" in r and "slurm_partition=gpuq" in r and "slurm_account=acct42" in r
                            for r in gpu_jobs), gpu_jobs


def test_slurm_profile_stops_before_submitting_when_its_variables_are_unset(tmp_path):
    unset = {**PARTITIONS, "ROHYDR_SLURM_ACCOUNT": None, "ROHYDR_GPU_PARTITION": None}
    result = snakemake("--profile", SLURM_PROFILE, "--configfile", CONFIG, mosi_config(tmp_path), cwd=tmp_path,
                       env_extra=unset, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "environment variables that are not set" in output and "$ROHYDR_SLURM_ACCOUNT" in output, output
    assert "$ROHYDR_GPU_PARTITION" in output and "ROHYDR_CPU_PARTITION" not in output
    assert "submitted" not in output and not (tmp_path / ".snakemake/slurm_logs").exists()


@pytest.mark.parametrize("extra, message", [
    ({"ablation": ["rohydr", "no_such_variant"]}, "no_such_variant"),
    ({"comparison": ["rohydr", "joint_optimization"]}, "comparison rows ['joint_optimization'] are not in"),
    ({"variants": {"sde": {"model": {"generator": "score_sde", "score": {"heads": 5}}}}}, "not divisible by heads 5"),
    ({"variants": {"sde": {"model": {"generator": "score_sde", "score": {"channels": [16, 32]}}}}},
     "score.channels[0] = 16 is below 2 x d = 32"),
    ({"seeds": ["one"]}, "'one' is not of type 'integer'"),
    ({"datasets": {"synthetic": {"preset": "huge"}}}, "'huge' is not one of"),
    ({"variants": {"typo": {"model": {"use_difusion": False}}}}, "use_difusion"),
    ({"variants": {"bad": {"train": {"schedule": "parallel"}}}}, "parallel"),
    ({"budget_sweep": {"runs": ["rohydr", "ridge_fill"]}}, "'ridge_fill' has no generator to give steps to"),
    ({"budget_sweep": {"mse_reference": "rohydr"}}, "budget_sweep.mse_reference 'rohydr' is not one of"),
    ({"variants": {"rohydr_gen8": {}}}, "variant 'rohydr_gen8' is also the budget sweep's copy of 'rohydr'"),
])
def test_bad_config_fails_at_parse_time(tmp_path, extra, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(extra))
    result = snakemake("-n", "--cores", 1, "--configfile", CONFIG, path, cwd=tmp_path, check=False)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert "rule pretrain" not in result.stdout


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipeline")
    snakemake("--cores", 2, "--resources", "gpu=1", "--configfile", CONFIG, FAST, cwd=folder)
    return folder


TABLES = ("missing_patterns", "missing_rates", "ablation", "comparison", "gap_closed", "recovery")
FIGURES = ("mr_curves", "recovery_quality", "training_curves", "comparison")


def test_fast_pipeline_produces_tables_and_figures(full_run):
    tables = full_run / "results/synthetic/tables"
    for name in TABLES:
        for ext in ("html", "md", "tex", "csv"):
            assert (tables / f"{name}.{ext}").stat().st_size > 0
    ablation = (tables / "ablation.md").read_text()
    config = merged(CONFIG, FAST)
    names = config["display_names"]
    trained_baselines = [b for b in config["baselines"] if b in config["protocols"]["all_patterns"]["runs"]]
    for row in [*config["ablation"], "rohydr_fed_zeros", *trained_baselines, "complete_zero", "complete"]:
        assert f"| {names.get(row, row)} {NOT_CONVERGED} |" in ablation, row  # the tiny preset stops at max_epochs
    patterns = (tables / "missing_patterns.md").read_text()
    assert "| Optimum (Bayes, from the generative model) |" in patterns and "95 % interval" in patterns
    assert re.search(r"\| RoHyDR ‡ \| \S+ ± \S+ \[\S+, \S+\]", patterns)
    assert "‡ not converged: a training behind the row reached max_epochs" in patterns
    rates = (tables / "missing_rates.md").read_text()
    assert "| RoHyDR (per-MR) ‡ |" in rates and "| RoHyDR (all-pattern) ‡ |" in rates
    assert "| RoHyDR ‡ |" in (tables / "gap_closed.md").read_text()
    assert "| Ridge fill ‡ |" in (tables / "recovery.md").read_text()
    comparison = (tables / "comparison.md").read_text()
    for row in [*config["comparison"], "complete_zero"]:
        assert f"| {names.get(row, row)} {NOT_CONVERGED} |" in comparison, row
    assert "| Optimum (Bayes, from the generative model) |" in comparison
    assert re.search(r"\| IMDer ‡ \| .*\| [-+]\d+\.\d+\*? ± \S+ \[\S+, \S+\] \|", comparison)
    for name in FIGURES:
        assert (full_run / f"results/synthetic/figures/{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert (full_run / f"results/synthetic/figures/{name}.pdf").read_bytes()[:4] == b"%PDF"
    scores = pd.read_csv(full_run / "results/synthetic/rohydr/all_patterns/seed1/eval.csv")
    assert {"l", "a", "v", "la", "lv", "av", "complete", "mr0.7"} <= set(scores.condition)
    training = scores[scores.condition == "training"].set_index("metric").value
    assert training["converged"] == 0 and training["epochs"] == 2
    assert (full_run / "results/synthetic/logs/pretrain/seed1.log").stat().st_size > 0


def test_finished_run_has_nothing_to_do(full_run):
    result = snakemake("-n", "--cores", 2, "--configfile", CONFIG, FAST, cwd=full_run)
    assert "Nothing to be done" in result.stdout + result.stderr


def test_an_interrupted_forced_rerun_is_finished_by_the_recovery_line(full_run, tmp_path):
    """Snakemake removes a job's outputs before it reruns it, and does not remake a missing file while the files
    made from it exist: the default target requests every result file, so the README's recovery line finishes."""
    folder = tmp_path / "copy"
    shutil.copytree(full_run, folder, symlinks=True)
    results = sorted((folder / "results/synthetic").glob("*/*/seed*/eval.csv"))
    before = {path: path.read_bytes() for path in [*results, *(folder / "results/synthetic/tables").glob("*.csv")]}
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(folder),
               "--cores", "1", "--forcerun", "evaluate", "--configfile", str(CONFIG), str(FAST)]
    forced = subprocess.Popen(command, env=tool_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    deadline = time.monotonic() + 120
    while all(path.exists() for path in results) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(forced.pid, signal.SIGKILL)  # a lost terminal: Snakemake and its job die at once
    forced.wait()
    lost = [path for path in results if not path.exists()]
    assert lost, "the forced rerun removed no output before it was killed"
    snakemake("--unlock", "--configfile", CONFIG, FAST, cwd=folder)
    snakemake("--cores", 2, "--rerun-incomplete", "--configfile", CONFIG, FAST, cwd=folder)
    assert {path: path.read_bytes() for path in before} == before
    assert list((folder / "results").rglob("*.part")) == []


def test_job_logs_hold_plain_progress_lines(full_run):
    """Snakemake sends each job's output to a log file: progress there is plain lines, no bar."""
    logs = full_run / "results/synthetic/logs"
    for log in logs.rglob("*.log"):
        text = log.read_text()
        assert "\r" not in text and "\x1b" not in text, log
    assert re.search(r"^epochs: 2/2 \(100%\) \d+s val_l1=", (logs / "pretrain/seed1.log").read_text(), re.M)
    evaluation = (logs / "evaluate/rohydr/all_patterns/seed1.log").read_text()
    assert [int(n) for n in re.findall(r"^evaluate: availability patterns: (\d)/7 ", evaluation, re.M)] == [*range(1, 8)]


SLURM_ENV = {"ROHYDR_SLURM_ACCOUNT": os.environ.get("ROHYDR_SLURM_ACCOUNT", "rohydr"),
             "ROHYDR_CPU_PARTITION": os.environ.get("ROHYDR_CPU_PARTITION", "cpu"),
             "ROHYDR_GPU_PARTITION": os.environ.get("ROHYDR_GPU_PARTITION", "gpu")}
# The cluster profile, the overlay for a node without GPUs, and status checks every 2 s (on a cluster, the
# plugin's default of 10 s and more spares its scheduler; here they would be most of the test's time).
SLURM_ARGS = ("--profile", REPO / "workflow/profiles/slurm", "--profile", REPO / "workflow/profiles/slurm-nogpu",
              "--slurm-init-seconds-before-status-checks", 2, "--seconds-between-status-checks", 2)
needs_slurm = pytest.mark.skipif(shutil.which("sbatch") is None,
                                 reason="no SLURM here (sbatch not on PATH); .ci/run starts a one-node one")


def submitted_rules(output: str) -> set[str]:
    return set(re.findall(r"has been submitted with SLURM jobid \d+ \(log: \S*/slurm_logs/rule_(\w+)/", output))


# One seed of a one-call run and of a staged run: every rule that SLURM runs, at a fifth of the fast pipeline's jobs.
SLURM_TARGETS = ("results/synthetic/rohydr/all_patterns/seed1/eval.csv",
                 "results/synthetic/sequential_stages/all_patterns/seed1/eval.csv")


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("slurm")
    result = snakemake(*SLURM_TARGETS, *SLURM_ARGS, "--configfile", CONFIG, FAST, cwd=folder, env_extra=SLURM_ENV,
                       timeout=1200)
    return folder, result.stdout + result.stderr


@needs_slurm
def test_slurm_run_equals_the_local_run(full_run, slurm_run):
    folder, output = slurm_run
    assert submitted_rules(output) == {"synthesize", "validate_dataset", "convert_hdf5", "masks", "pretrain",
                                       "train", "train_stage", "evaluate"}
    assert [path for path in SLURM_TARGETS if (folder / path).read_bytes() != (full_run / path).read_bytes()] == []


def cancel_first_running(rule: str, wait_s: float = 240) -> str | None:
    """scancel the first RUNNING job of `rule` (the plugin names the rule in the job comment)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        listing = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k"], capture_output=True, text=True)
        for line in listing.stdout.splitlines():
            job, comment = line.split("|", 1)
            if comment.startswith(f"rule_{rule}_"):
                subprocess.run(["scancel", job], check=True)
                return job
        time.sleep(0.5)
    return None


@needs_slurm
def test_a_cancelled_slurm_job_ends_the_run_and_a_rerun_finishes(full_run, slurm_run):
    folder, _ = slurm_run
    target = SLURM_TARGETS[0]
    shutil.rmtree((folder / target).parent)  # to train and evaluate again
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(folder),
               target, *map(str, SLURM_ARGS), "--configfile", str(CONFIG), str(FAST)]
    started = time.monotonic()
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           env={**tool_env(), **SLURM_ENV})
    cancelled = cancel_first_running("train")
    output, _ = run.communicate(timeout=300)
    assert cancelled is not None, output[-3000:]
    assert run.returncode != 0, output[-3000:]
    assert f"SLURM-job '{cancelled}' failed, SLURM status is: 'CANCELLED'" in output, output[-3000:]
    assert time.monotonic() - started < 300
    rerun = snakemake(target, *SLURM_ARGS, "--configfile", CONFIG, FAST, cwd=folder, env_extra=SLURM_ENV, timeout=600)
    assert {"train", "evaluate"} <= submitted_rules(rerun.stdout + rerun.stderr)
    assert (folder / target).read_bytes() == (full_run / target).read_bytes()


def test_variant_target_reruns_that_variant_only(full_run):
    result = snakemake("no_diffusion", "-n", "--cores", 2, "--resources", "gpu=1", "--forcerun", "train",
                       "--configfile", CONFIG, FAST, cwd=full_run)
    jobs = scheduled_jobs(result.stdout)
    rules = {rule for rule, _ in jobs}
    assert rules == {"train", "evaluate", "no_diffusion"}, rules
    assert {job["variant"] for rule, job in jobs if rule == "train"} == {"no_diffusion"}
    assert {job["run"] for rule, job in jobs if rule == "evaluate"} == {"no_diffusion"}


def test_changed_variant_config_retrains_that_variant_only(full_run, tmp_path):
    extra = tmp_path / "changed.yaml"
    extra.write_text(yaml.safe_dump({"variants": {"no_diffusion": {"model": {"use_diffusion": False},
                                                                   "train": {"lambda_c": 0.5}}}}))
    result = snakemake("-n", "--cores", 2, "--configfile", CONFIG, FAST, extra, cwd=full_run)
    trained = {job["variant"] for rule, job in scheduled_jobs(result.stdout) if rule == "train"}
    assert trained == {"no_diffusion"}


def report_entries(html: str) -> dict:
    """The results a Snakemake report embeds: path -> name, labels, caption and data URI."""
    return json.loads(re.search(r"var results = (\{.*?\});\n", html, re.S).group(1))


def test_budget_sweep_counts_the_generator_steps_each_budget_adds(full_run, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(full_run, folder, symlinks=True)
    snakemake("budget_sweep", "--cores", 2, "--configfile", CONFIG, FAST, cwd=folder)
    config = merged(CONFIG, FAST)
    sweep, names = config["budget_sweep"], config["display_names"]
    points = pd.read_csv(folder / "results/sweeps/synthetic_budget.csv")
    steps = points[points.metric == "acc2_non0"].set_index(["label", "generator_epochs"]).generator_steps
    train_rows = config["datasets"]["synthetic"]["synthetic"]["sizes"][0]
    batches = -(-train_rows // 16)  # the tiny preset's batch size: every row is a generator row in the stage
    low, high = sweep["generator_epochs"]
    run = names[sweep["runs"][0]]
    assert steps[(run, high)] - steps[(run, low)] == (high - low) * batches
    log = pd.read_csv(folder / f"results/synthetic/{sweep['runs'][0]}_gen{high}/all_patterns/seed1/train_log.csv")
    assert (log[log.phase == "generators"].generator_steps == batches).all()
    assert not (folder / f"results/synthetic/{sweep['runs'][0]}_gen{low}").exists()  # the run's own model
    references = set(points[points.kind == "reference"].label)
    assert references == {names[r] for r in sweep["references"]}
    ratio = points[(points.label == names[sweep["mse_reference"]]) & (points.metric == "rec_mse_rel")]["mean"]
    assert ratio.tolist() == [1.0]
    assert set(points[points.kind == "bound"].metric) == {"acc2_non0"}
    summary = (folder / "results/sweeps/synthetic_budget.md").read_text()
    assert f"| {run} ‡ | {high} |" in summary and "the ranking" in summary
    bound = points[points.metric == "rec_cos_single_sample"]
    assert bound.label.tolist() == [names[sweep["conditional_mean"]]] and "A perfect single sample" in summary
    for ext in ("png", "pdf"):
        assert (folder / f"results/sweeps/synthetic_budget.{ext}").stat().st_size > 10_000


def test_report_shows_every_table_and_figure_with_captions(full_run):
    result = snakemake("--report", "results/report.html", "--configfile", CONFIG, FAST, cwd=full_run)
    assert "Missing metadata" not in result.stdout + result.stderr
    html = (full_run / "results/report.html").read_text()
    entries = report_entries(html)
    tables = [f"results/synthetic/tables/{name}.html" for name in TABLES]
    figures = [f"results/synthetic/figures/{name}.png" for name in FIGURES]
    assert sorted(entries) == sorted(tables + figures)  # each once: no md / tex / csv duplicates
    config = merged(CONFIG, FAST)
    main = config["display_names"][config["main_variant"]]
    for path in tables:
        page = base64.b64decode(entries[path]["data_uri"].split("base64,", 1)[1]).decode()
        assert page.count("<tr") >= len(config["protocols"]["all_patterns"]["runs"]) + 2 and "<caption>" in page, path
        assert f"<td>{main}" in page and (full_run / path).read_text() == page
    for path in tables + figures:
        assert "synthetic" in entries[path]["caption"] and len(entries[path]["caption"]) > 200, path
    assert base64.b64decode(entries[figures[0]]["data_uri"].split("base64,", 1)[1])[:4] == b"\x89PNG"
    categories = json.loads(re.search(r"var categories = (\{.*?\});\n", html).group(1))
    assert categories == {"synthetic": {"Tables": sorted(tables), "Figures": sorted(figures)}}
    # the workflow description page: what ran, on which data, with which configuration (fast.yaml's seeds)
    assert "RoHyDR under missing modalities" in html and "sizes 96 / 32 / 48" in html
    assert "Seeds: 1, 2 " in html and "use_diffusion" in html


def test_report_args_come_from_the_config(tmp_path):
    extra = tmp_path / "renamed.yaml"
    renamed = {"main_variant": "no_diffusion", "display_names": {"no_diffusion": "Ours (no DiT)"}}
    extra.write_text(yaml.safe_dump(renamed))
    result = snakemake("-n", "-p", "--cores", 1, "--configfile", CONFIG, FAST, extra, cwd=tmp_path)
    lines = [line.removeprefix("Shell command: ") for line in result.stdout.splitlines()]
    commands = [line for line in lines if line.startswith(("rohydr aggregate", "rohydr plots"))]
    assert len(commands) == 2
    for command in commands:
        assert ("--main-variant no_diffusion --baselines zero_fill mean_fill ridge_fill complete_zero complete"
                " --floor complete_zero") in command
        assert "'no_diffusion=Ours (no DiT)'" in command and "rohydr=RoHyDR" in command
    extra.write_text(yaml.safe_dump({"display_names": {"no_such_run": "X"}}))
    result = snakemake("-n", "--cores", 1, "--configfile", CONFIG, FAST, extra, cwd=tmp_path, check=False)
    assert result.returncode != 0 and "no_such_run" in result.stdout + result.stderr
