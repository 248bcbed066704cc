"""A careless user's inputs: names that would collide or reach a shell, outputs over inputs, values
that used to be accepted and ignored or to end in a traceback. Each gets a clear message and leaves
its inputs as they were."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from helpers import REPO, make_features, run_cli, snakemake, write_run_config
from rohydr.cli import main
from rohydr.core.io import write_text_atomic

CONFIG = REPO / "config" / "config.yaml"
FAST = REPO / "config" / "fast.yaml"


@pytest.mark.parametrize("extra, message", [
    # one namespace: a configured name that the workflow makes itself
    ("variants: {rohydr_fed_zeros: {}}\nfed_zeros: [rohydr]",
     "variant 'rohydr_fed_zeros' is also the run fed_zeros makes from 'rohydr'"),
    ("variants: {complete_zero: {}}", "complete_zero"),
    ("redundancy_sweep: {dataset: synthetic, values: [0.3, 0.9]}\n"
     "datasets: {synthetic_r0.3: {synthetic: {}, preset: tiny}}",
     "dataset 'synthetic_r0.3' is also the name redundancy_sweep (dataset 'synthetic') gives its copy"),
    # names that would reach a shell or a path
    ("datasets: {'x;touch INJECTED;y': {synthetic: {}, preset: tiny}}",
     "dataset 'x;touch INJECTED;y' is not a name: use letters, digits"),
    ("datasets: {'my data': {synthetic: {}, preset: tiny}}", "dataset 'my data' is not a name"),
    # keys YAML reads as something else, keys named twice
    ("variants: {off: {}}", "config.variants: key False is a bool, not a string"),
    ("seeds: [1]\nseeds: [2]", "line 2: key 'seeds' is named twice in one mapping"),
    ("variants:\n  rohydr: {}\n  rohydr: {model: {use_diffusion: false}}", "key 'rohydr' is named twice"),
    # accepted and ignored before
    ("ablation: [rohydr, rohydr]", "has non-unique elements"),
    ("comparison: [rohydr, imder, imder]", "has non-unique elements"),
    ("display_names: {no_diffusion: RoHyDR}", "runs 'rohydr' and 'no_diffusion' would both be shown as 'RoHyDR'"),
    ("display_names: {no_diffusion: 'w/o | diffusion'}", "'|' and control characters would break the tables"),
    ("recovery_reference: nosuch", "recovery_reference 'nosuch' is not a configured run"),
    ("main_variant: no_reconstructor", "main_variant 'no_reconstructor' is not trained"),
    ("protocols: {per_mr: {runs: [rohydr], rates: []}}", "should be non-empty"),
    # a traceback in a training job before
    ("protocols: {all_patterns: {pattern_weights: {l: .inf}}}", "train.pattern_weights.l = inf: Input should be a finite"),
])
def test_a_bad_config_is_refused_at_parse_time_with_the_clash_named(tmp_path, extra, message):
    path = tmp_path / "extra.yaml"
    path.write_text(extra + "\n")
    result = snakemake("-n", "--cores", 1, "--configfile", CONFIG, FAST, path, cwd=tmp_path, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and message in output, output[-2000:]
    assert "rule pretrain" not in result.stdout and not (tmp_path / "INJECTED").exists()


def test_paths_with_spaces_reach_the_commands_whole(tmp_path):
    folder = tmp_path / "my data"
    folder.mkdir()
    run_cli("synth", folder / "a b.pkl", "--sizes", 24, 8, 8, "--length", 6)
    extra = tmp_path / "extra.yaml"
    extra.write_text(f"datasets: {{mine: {{path: '{folder / 'a b.pkl'}', preset: tiny}}}}\n")
    snakemake("results/mine/data/features.h5", "--cores", 1, "--configfile", CONFIG, FAST, extra, cwd=tmp_path)
    assert json.loads((tmp_path / "results/mine/data/validation.json").read_text())["file"] == str(folder / "a b.pkl")
    assert (tmp_path / "results/mine/data/features.h5").stat().st_size > 0


@pytest.mark.parametrize("args, message", [
    (["synth", "x.pkl", "--seed", "-1"], "argument --seed: -1 is outside [0, 2**32 - 1]"),
    (["masks", "--data", "f.h5", "--out", "m.h5", "--seed", "99999999999999999999999"], "is outside [0, 2**32 - 1]"),
    (["synth", "x.pkl", "--redundancy", "nan"], "argument --redundancy: nan is outside [0, 1]"),
    (["describe", "--dims", "-1", "5", "20"], "argument --dims: -1 is below 1"),
    (["validate", "x.pkl", "--min-length", "-1"], "argument --min-length: -1 is below 1"),
    (["bench", "--threads", "-3"], "argument --threads: -3 is below 0"),
    (["bench", "--eval-samples", "-5"], "argument --eval-samples: -5 is below 0"),
    (["sweep-plot", "--tables", "a.csv", "b.csv", "--redundancy", "0.3", "nan", "--out", "s"],
     "argument --redundancy: nan is outside [0, 1]"),
])
def test_a_bad_argument_is_refused_by_the_command_line(capsys, args, message):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    make_features(folder, sizes=(24, 8, 8), length=6)
    write_run_config(folder / "run.json")
    (folder / "afile").write_text("a file, not a folder\n")
    (folder / "sweep.csv").write_text("row,kind\n")
    return folder


@pytest.mark.parametrize("args, message", [
    (["convert", "{dir}/data.pkl", "{dir}/data.pkl"], "OUT {dir}/data.pkl is also the input PICKLE"),
    (["validate", "{dir}/data.pkl", "--report", "{dir}/data.pkl"], "--report {dir}/data.pkl is also the input PICKLE"),
    (["masks", "--data", "{dir}/features.h5", "--out", "{dir}/features.h5"],
     "--out {dir}/features.h5 is also the input --data"),
    (["masks", "--data", "{dir}/features.h5", "--out", "{dir}/./features.h5"], "is also the input --data"),
    (["masks", "--data", "{dir}/features.h5", "--out", "{dir}/afile/m.h5"],
     "--out: cannot write in {dir}/afile: {dir}/afile is a file, not a folder"),
    (["pretrain", "--data", "{dir}/features.h5", "--run-config", "{dir}/run.json", "--out", "{dir}/m.pt",
      "--log", "{dir}/m.pt"], "--out and --log are both {dir}/m.pt"),
    (["pretrain", "--data", "{dir}/features.h5", "--run-config", "{dir}/run.json", "--out", "{dir}/run.json",
      "--log", "{dir}/log.csv"], "--out {dir}/run.json is also the input --run-config"),
    (["aggregate", "--dataset", "d", "--eval", "{dir}/run.json", "--optimum", "{dir}/nosuch.csv.gz",
      "--out-dir", "{dir}/t"], "--optimum {dir}/nosuch.csv.gz: no such file or folder"),
    (["aggregate", "--dataset", "d", "--eval", "{dir}/run.json", "--out-dir", "{dir}/afile"],
     "--out-dir {dir}/afile is a file; expected a folder"),
    (["sweep-plot", "--tables", "{dir}/sweep.csv", "--redundancy", "0.3", "--out", "{dir}/sweep"],
     "--out {dir}/sweep.csv is also the input --tables"),  # --out is a stem: sweep.png, sweep.pdf, sweep.csv
])
def test_no_command_writes_over_its_input_or_twice_to_one_path(inputs, capsys, args, message):
    before = {path: path.read_bytes() for path in inputs.iterdir() if path.is_file()}
    assert main([arg.format(dir=inputs) for arg in args]) == 2
    assert message.format(dir=inputs) in capsys.readouterr().err
    assert {path: path.read_bytes() for path in inputs.iterdir() if path.is_file()} == before


def test_a_sweep_of_tables_that_are_not_tables_is_refused(tmp_path, capsys):
    (tmp_path / "eval.csv").write_text("condition,metric,value\nl,acc2_non0,0.8\n")
    args = ["sweep-plot", "--tables", tmp_path / "eval.csv", tmp_path / "eval.csv", "--redundancy", "0.3", "0.9",
            "--out", tmp_path / "sweep"]
    assert main(list(map(str, args))) == 2
    assert "eval.csv lacks column(s) ['ci_high', 'ci_low', 'kind', 'mean', 'row']" in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["eval.csv"]


def test_a_partial_run_configuration_is_refused(inputs, tmp_path, capsys):
    (tmp_path / "empty.json").write_text("{}\n")
    args = ["pretrain", "--data", inputs / "features.h5", "--run-config", tmp_path / "empty.json",
            "--out", tmp_path / "m.pt", "--log", tmp_path / "log.csv"]
    assert main(list(map(str, args))) == 2
    assert "lacks model, pretrain, train: write it whole with `rohydr config`" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()


def test_temporary_files_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    target = tmp_path / "features.h5"
    sleeper = subprocess.Popen(["sleep", "30"])
    dead = _dead_pid()
    try:
        stale = tmp_path / f".features.h5.{dead}.x1y2.part"
        live = tmp_path / f".features.h5.{sleeper.pid}.a1b2.part"
        other = tmp_path / f".other.h5.{dead}.c3d4.part"
        for path in (stale, live, other):
            path.write_text("half written\n")
        write_text_atomic(target, "whole\n")
        assert target.read_text() == "whole\n"
        assert not stale.exists() and live.exists() and other.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def _dead_pid() -> int:
    """The pid of a process that has ended."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_the_command_line_names_a_missing_input_instead_of_a_traceback(tmp_path):
    result = run_cli("masks", "--data", tmp_path / "nosuch.h5", "--out", tmp_path / "m.h5", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"--data {tmp_path / 'nosuch.h5'}: no such file or folder" in result.stderr
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("level", ["overrides", "dataset", "run"])
def test_the_per_batch_draw_holds_under_a_missing_rate_at_every_level_it_is_set(tmp_path, level):
    per_batch = {"train": {"missing_draw": "per_batch"}}
    extra = {"overrides": {"overrides": per_batch},
             "dataset": {"datasets": {"synthetic": {"overrides": per_batch}}},
             "run": {"variants": {"rohydr": per_batch}}}[level]
    (tmp_path / "extra.json").write_text(json.dumps(extra))
    target = "results/synthetic/rohydr/mr0.7/run_config.json"
    snakemake(target, "--cores", 1, "--configfile", CONFIG, FAST, tmp_path / "extra.json", cwd=tmp_path)
    resolved = json.loads((tmp_path / target).read_text())["train"]
    assert (resolved["missing_draw"], resolved["train_mr"]) == ("per_batch", 0.7)
