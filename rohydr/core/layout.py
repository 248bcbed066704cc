"""The results layout and its names: which names a dataset or run may take, the protocol folders, the
runs built in, the names the workflow derives from configured ones, and the tables and figures.

results/{dataset}/{run}/{protocol}/seed{seed}/ holds a run's model, eval.csv and predictions;
results/{dataset}/{folder}/ for each of DATASET_FOLDERS holds what the dataset's runs share.
"""
from __future__ import annotations

import re
from pathlib import PurePath

# Datasets and runs are named in this alphabet: they become folder names, wildcard values and command
# arguments, so a name can neither reach a shell as code nor be read as a path or an option.
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
NAME_RULE = "letters, digits, '_', '-' and '.', starting with a letter or digit"

# Training protocols: one model trained on every availability pattern, or one per missing rate.
ALL_PATTERNS = "all_patterns"
PER_MR = "per_mr"  # the per-rate models taken together (a table's pseudo-protocol, never a folder)
# The protocol folder of the runs built on the pretrained backbone, trained no further.
COMPLETE_DATA = "complete_data"

# Runs built in: the complete-data model fed zeros for its missing modalities (the tables' floor) and
# the complete-data model on complete inputs only.
FLOOR, COMPLETE = "complete_zero", "complete"
BUILT_IN_RUNS = (FLOOR, COMPLETE)
FED_ZEROS_SUFFIX = "_fed_zeros"

# Folders of results/{dataset}/ that are not runs.
DATASET_FOLDERS = ("data", "masks", "pretrain", "tables", "figures", "logs")

TABLES = MISSING_PATTERNS_TABLE, MISSING_RATES_TABLE, ABLATION_TABLE, COMPARISON_TABLE, GAP_TABLE, RECOVERY_TABLE = (
    "missing_patterns", "missing_rates", "ablation", "comparison", "gap_closed", "recovery")
TABLE_FORMATS = ("html", "md", "tex", "csv")
FIGURES = MR_CURVES_FIGURE, TRAINING_CURVES_FIGURE, RECOVERY_FIGURE, COMPARISON_FIGURE = (
    "mr_curves", "training_curves", "recovery_quality", "comparison")
FIGURE_FORMATS = ("png", "pdf")


# eval.csv: one row per condition and metric; `rohydr evaluate --run --protocol` (as the workflow calls it)
# also writes which run, protocol and seed the scores are of, which the tables check against its folder.
EVAL_COLUMNS = ("condition", "metric", "value")
EVAL_IDENTITY = ("run", "protocol", "seed")


def mr_protocol(rate: float) -> str:
    """The protocol folder of the models trained at one missing rate: mr0.7."""
    return f"mr{rate:.1f}"


def rate_of(protocol: str) -> float:
    if not re.fullmatch(r"mr\d\.\d", protocol):
        raise ValueError(f"{protocol!r} is not a per-rate protocol (mr0.1 ... mr0.7)")
    return float(protocol[2:])


def fed_zeros_run(run: str) -> str:
    """The run that scores `run`'s trained model fed zeros instead of its recovery."""
    return run + FED_ZEROS_SUFFIX


def sweep_dataset(dataset: str, redundancy: float) -> str:
    """The redundancy sweep's copy of a synthetic dataset at one redundancy."""
    return f"{dataset}_r{redundancy}"


def budget_run(run: str, generator_epochs: int) -> str:
    """The budget sweep's copy of a run with a generator stage of exactly `generator_epochs` epochs."""
    return f"{run}_gen{generator_epochs}"


# results/sweeps/{dataset}_{kind}.{png,pdf,csv,...}: the sweeps over one configured dataset.
SWEEPS_FOLDER = "results/sweeps"
REDUNDANCY_SWEEP, BUDGET_SWEEP = "redundancy", "budget"


def sweep_stem(dataset: str, kind: str) -> str:
    return f"{SWEEPS_FOLDER}/{dataset}_{kind}"


def run_dir(dataset: str, run: str, protocol: str, seed: int) -> str:
    return f"results/{dataset}/{run}/{protocol}/seed{seed}"


def parse_run_dir(path) -> tuple[str, str, int]:
    """(run, protocol, seed) of a file in a run folder: .../{run}/{protocol}/seed{seed}/{file} (run_dir's inverse)."""
    parts = PurePath(path).parts
    found = re.fullmatch(r"seed(\d+)", parts[-2]) if len(parts) >= 4 else None
    if not found:
        raise ValueError(f"{path}: expected a path .../{{run}}/{{protocol}}/seed{{seed}}/{PurePath(path).name} "
                         f"(as the workflow writes), found folder {parts[-2] if len(parts) > 1 else ''!r}")
    return parts[-4], parts[-3], int(found.group(1))


def bad_name(name) -> str | None:
    """Why `name` cannot name a dataset or run, or None."""
    if not isinstance(name, str):
        return (f"{name!r} is a {type(name).__name__}, not a name (YAML reads unquoted yes/no/on/off/true/false "
                "as booleans and digits as numbers: quote it)")
    if not re.fullmatch(NAME_PATTERN, name):
        return f"{name!r} is not a name: use {NAME_RULE}"
    return None
