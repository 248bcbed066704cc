"""The Snakemake workflow: dry runs of the DAG and the profiles, config validation, and one real run
of the whole pipeline on the fast configuration (tiny synthetic data, tiny preset, two seeds)."""
from __future__ import annotations

import base64
import json
import re

import pandas as pd
import pytest
import yaml

from helpers import REPO, snakemake

CONFIG = REPO / "config" / "config.yaml"
FAST = REPO / "config" / "fast.yaml"


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


def test_default_dry_run_lists_the_whole_pipeline(tmp_path):
    result = snakemake("-n", "--cores", 2, cwd=tmp_path)
    counts = job_counts(result.stdout)
    config = yaml.safe_load(CONFIG.read_text())
    seeds, variants = len(config["seeds"]), len(config["variants"])
    trained = variants + len(config["baselines"])
    assert counts["pretrain"] == seeds
    assert counts["train"] == trained * seeds
    assert counts["train_stage"] == 2 * seeds  # sequential_stages: stages 1 and 2 before the final one
    assert counts["evaluate"] == (trained + 1) * seeds  # + the complete baseline
    assert counts["masks"] == seeds and counts["convert_hdf5"] == 1 and counts["aggregate"] == 1


def test_slurm_profile_dry_run_for_mosi(tmp_path):
    pickle = tmp_path / "aligned_50.pkl"
    pickle.write_bytes(b"")
    extra = tmp_path / "mosi.yaml"
    extra.write_text(yaml.safe_dump({"datasets": {"mosi": {"path": str(pickle), "preset": "mosi",
                                                           "literature": "MOSI"}},
                                     "run_datasets": ["mosi"]}))
    env = {"ROHYDR_SLURM_ACCOUNT": "acct42", "ROHYDR_CPU_PARTITION": "cpuq", "ROHYDR_GPU_PARTITION": "gpuq"}
    result = snakemake("-n", "--workflow-profile", REPO / "workflow/profiles/slurm", "--configfile", CONFIG, extra,
                       cwd=tmp_path, env_extra=env)
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
    assert "--threads 4" in result.stdout
    assert "--resources" not in (REPO / "workflow/profiles/slurm/config.yaml").read_text().split("#")[0]


@pytest.mark.parametrize("extra, message", [
    ({"ablation": ["rohydr", "no_such_variant"]}, "no_such_variant"),
    ({"seeds": ["one"]}, "'one' is not of type 'integer'"),
    ({"datasets": {"synthetic": {"preset": "huge"}}}, "'huge' is not one of"),
    ({"variants": {"typo": {"model": {"use_difusion": False}}}}, "use_difusion"),
    ({"variants": {"bad": {"train": {"schedule": "parallel"}}}}, "parallel"),
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


def test_fast_pipeline_produces_tables_and_figures(full_run):
    tables = full_run / "results/synthetic/tables"
    for name in ("missing_patterns", "missing_rates", "ablation"):
        for ext in ("html", "md", "tex", "csv"):
            assert (tables / f"{name}.{ext}").stat().st_size > 0
    ablation = (tables / "ablation.md").read_text()
    config = yaml.safe_load(CONFIG.read_text())
    for row in [*config["ablation"], "zero_fill", "complete"]:
        assert f"| {config['display_names'].get(row, row)} |" in ablation, row
    for name in ("mr_curves", "training_curves", "recovery_quality"):
        assert (full_run / f"results/synthetic/figures/{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert (full_run / f"results/synthetic/figures/{name}.pdf").read_bytes()[:4] == b"%PDF"
    scores = pd.read_csv(full_run / "results/synthetic/rohydr/seed1/eval.csv")
    assert {"l", "a", "v", "la", "lv", "av", "complete", "mr0.7"} <= set(scores.condition)
    assert (full_run / "results/synthetic/logs/pretrain/seed1.log").stat().st_size > 0


def test_finished_run_has_nothing_to_do(full_run):
    result = snakemake("-n", "--cores", 2, "--configfile", CONFIG, FAST, cwd=full_run)
    assert "Nothing to be done" in result.stdout + result.stderr


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
    extra.write_text(yaml.safe_dump({"variants": {"no_adversarial": {"model": {"use_adversarial": False},
                                                                     "train": {"lambda_c": 0.5}}}}))
    result = snakemake("-n", "--cores", 2, "--configfile", CONFIG, FAST, extra, cwd=full_run)
    trained = {job["variant"] for rule, job in scheduled_jobs(result.stdout) if rule == "train"}
    assert trained == {"no_adversarial"}


def report_entries(html: str) -> dict:
    """The results a Snakemake report embeds: path -> name, labels, caption and data URI."""
    return json.loads(re.search(r"var results = (\{.*?\});\n", html, re.S).group(1))


def test_report_shows_every_table_and_figure_with_captions(full_run):
    result = snakemake("--report", "results/report.html", "--configfile", CONFIG, FAST, cwd=full_run)
    assert "Missing metadata" not in result.stdout + result.stderr
    html = (full_run / "results/report.html").read_text()
    entries = report_entries(html)
    tables = [f"results/synthetic/tables/{name}.html" for name in ("missing_patterns", "missing_rates", "ablation")]
    figures = [f"results/synthetic/figures/{name}.png" for name in ("mr_curves", "recovery_quality", "training_curves")]
    assert sorted(entries) == sorted(tables + figures)  # each once: no md / tex / csv duplicates
    config = yaml.safe_load(CONFIG.read_text())
    main = config["display_names"][config["main_variant"]]
    for path in tables:
        page = base64.b64decode(entries[path]["data_uri"].split("base64,", 1)[1]).decode()
        assert page.count("<tr") >= len(config["variants"]) + 2 and "<caption>" in page, path
        assert f"<td>{main}</td>" in page and (full_run / path).read_text() == page
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
        assert "--main-variant no_diffusion --baselines zero_fill complete" in command
        assert "'no_diffusion=Ours (no DiT)'" in command and "rohydr=RoHyDR" in command
    extra.write_text(yaml.safe_dump({"display_names": {"no_such_run": "X"}}))
    result = snakemake("-n", "--cores", 1, "--configfile", CONFIG, FAST, extra, cwd=tmp_path, check=False)
    assert result.returncode != 0 and "no_such_run" in result.stdout + result.stderr
