# Configuration: the workflow config validated (schema, then what a schema cannot say), the names and runs
# it defines, and every run's resolved configuration. paths.smk turns them into files.
import json
import os
import re

from snakemake.utils import validate

from rohydr.core import layout
from rohydr.core.config import build_run_config
from rohydr.core.workflow_config import check_keys_are_strings, check_namespace, refuse_duplicate_keys

for _configfile in workflow.configfiles:
    refuse_duplicate_keys(_configfile)
check_keys_are_strings(config)
validate(config, schema="../schemas/config.schema.yaml")


# The workflow description page of `snakemake --report`.
report: "../report/workflow.rst"


DATASETS = config["datasets"]
RUN_DATASETS = config.get("run_datasets") or list(DATASETS)
# The sweeps (targets `redundancy_sweep` and `budget_sweep`, not in the default run) train on copies of a
# synthetic dataset at other redundancies, as datasets {dataset}_r{value}.
SWEEP = config.get("redundancy_sweep") or {}
BUDGET = config.get("budget_sweep") or {}


def _redundancy_copies(key, spec, values):
    """{copy name: (its dataset entry, what makes it)} of the dataset `spec` names, at each redundancy."""
    base = DATASETS.get(spec["dataset"], {})
    if "synthetic" not in base:
        raise ValueError(f"{key}.dataset {spec['dataset']!r} is not a configured synthetic dataset")
    return {
        layout.sweep_dataset(spec["dataset"], value): (
            {**base, "synthetic": {**base["synthetic"], "redundancy": value}},
            f"{key} (dataset {spec['dataset']!r})",
        )
        for value in values
    }


_copies = {}
if SWEEP:
    _copies.update(_redundancy_copies("redundancy_sweep", SWEEP, SWEEP["values"]))
if BUDGET:
    _copies.update(_redundancy_copies("budget_sweep", BUDGET, BUDGET["redundancy"]))
SWEEP_DATASETS = {name: entry for name, (entry, _) in _copies.items()}
REDUNDANCY_DATASETS = [layout.sweep_dataset(SWEEP["dataset"], value) for value in SWEEP.get("values", [])]
# The budget sweep's datasets: the configured one, then its copies.
BUDGET_DATASETS = (
    [BUDGET["dataset"], *(layout.sweep_dataset(BUDGET["dataset"], r) for r in BUDGET["redundancy"])] if BUDGET else []
)
# The budget sweep's runs: name -> (the configured run it copies, its generator stage's most epochs).
BUDGET_RUNS = {
    layout.budget_run(run, epochs): (run, epochs)
    for run in BUDGET.get("runs", [])
    for epochs in BUDGET["generator_epochs"]
}
check_namespace(
    list(DATASETS),
    {name: origin for name, (_, origin) in _copies.items()},
    {**{run: "variant" for run in config["variants"]}, **{run: "baseline" for run in config["baselines"]}},
    config.get("fed_zeros", []),
    {name: f"the budget sweep's copy of {run!r}" for name, (run, _) in BUDGET_RUNS.items()},
)
DATASETS = {**DATASETS, **SWEEP_DATASETS}
# Every dataset the DAG can build: the run ones and the swept ones.
DAG_DATASETS = list(dict.fromkeys([*RUN_DATASETS, *SWEEP_DATASETS, *BUDGET_DATASETS]))
SEEDS = config["seeds"]
VARIANTS = config["variants"]
BASELINES = config["baselines"]
# Trained models: the variants and the trained baselines. Built in, from the pretrained backbone:
# `complete_zero` (fed zeros for the missing modalities: the floor) and `complete` (complete inputs only).
TRAINED = {**VARIANTS, **BASELINES}
FLOOR, COMPLETE = layout.FLOOR, layout.COMPLETE
BUILT_IN = list(layout.BUILT_IN_RUNS)
COMPLETE_DATA = layout.COMPLETE_DATA  # the protocol folder of the built-in runs
MAIN_VARIANT = config["main_variant"]
# What the tables and figures show: the main variant first, the other variants, then these baselines.
REPORT_BASELINES = [*BASELINES, *BUILT_IN]
PROTOCOLS = config["protocols"]
ALL_PATTERNS = layout.ALL_PATTERNS
MR_PROTOCOLS = [layout.mr_protocol(rate) for rate in PROTOCOLS.get(layout.PER_MR, {}).get("rates", [])]


def protocols_of(run):
    """The protocol folders a run trains under: all_patterns and/or one per missing rate (mr0.1 ...)."""
    found = [ALL_PATTERNS] if run in PROTOCOLS.get(ALL_PATTERNS, {}).get("runs", []) else []
    return found + (MR_PROTOCOLS if run in PROTOCOLS.get(layout.PER_MR, {}).get("runs", []) else [])


TRAININGS = [(run, protocol) for run in TRAINED for protocol in protocols_of(run)]
# Trained all-pattern models also scored fed zeros instead of their recovery: run name -> trained run.
FED_ZEROS = {layout.fed_zeros_run(run): run for run in config.get("fed_zeros", [])}
ALL_RUNS = [*VARIANTS, *FED_ZEROS, *REPORT_BASELINES]  # every run the tables and figures show
# Every evaluated (run, protocol): the trainings, the models fed zeros and the built-in runs.
EVALUATED = TRAININGS + [(run, ALL_PATTERNS) for run in FED_ZEROS] + [(run, COMPLETE_DATA) for run in BUILT_IN]
DISPLAY_NAMES = config.get("display_names", {})
ABLATION = config.get("ablation") or [MAIN_VARIANT, *(v for v in VARIANTS if v != MAIN_VARIANT)]
COMPARISON = config.get("comparison") or [MAIN_VARIANT]
RES = config["resources"]
# What a training job (pretraining or a run's training) asks of the scheduler: one GPU where there is one.
TRAIN_JOB = {"gpu": 1, "mem_mb": RES["train_mem_mb"], "runtime": RES["train_runtime"]}


def _check_names():
    unknown = [name for name in RUN_DATASETS if name not in DATASETS]
    if unknown:
        raise ValueError(f"run_datasets names unknown dataset(s) {unknown}; configured: {sorted(DATASETS)}")
    for key, rows in {"ablation": ABLATION, "comparison": COMPARISON}.items():
        unknown = [name for name in rows if name not in TRAINED]
        if unknown:
            raise ValueError(f"{key} names unknown run(s) {unknown}; configured: {sorted(TRAINED)}")
        untrained = [name for name in rows if ALL_PATTERNS not in protocols_of(name)]
        if untrained:
            raise ValueError(
                f"{key} rows {untrained} are not in protocols.all_patterns.runs: the {key} table "
                "compares all-pattern models"
            )
    for protocol, spec in PROTOCOLS.items():
        unknown = [name for name in spec.get("runs", []) if name not in TRAINED]
        if unknown:
            raise ValueError(f"protocols.{protocol}.runs names unknown run(s) {unknown}; configured: {sorted(TRAINED)}")
    if not TRAININGS:
        raise ValueError("no run is trained: list variants under protocols.all_patterns.runs or protocols.per_mr.runs")
    if MAIN_VARIANT not in VARIANTS:
        raise ValueError(f"main_variant {MAIN_VARIANT!r} is not a configured variant: {sorted(VARIANTS)}")
    known = [*TRAINED, *(layout.fed_zeros_run(run) for run in TRAINED), *BUILT_IN]
    unknown = sorted(set(DISPLAY_NAMES) - set(known))
    if unknown:
        raise ValueError(f"display_names names unknown run(s) {unknown}; configured: {sorted(known)}")
    clash = sorted(set(VARIANTS) & set(BASELINES))
    if clash:
        raise ValueError(f"names used both as variant and baseline: {clash}")
    untrained = [run for run in FED_ZEROS.values() if ALL_PATTERNS not in protocols_of(run)]
    if untrained:
        raise ValueError(f"fed_zeros names run(s) {untrained} that are not in protocols.all_patterns.runs")
    if not protocols_of(MAIN_VARIANT):
        raise ValueError(
            f"main_variant {MAIN_VARIANT!r} is not trained: list it under protocols.all_patterns.runs "
            "or protocols.per_mr.runs"
        )
    reference = config.get("recovery_reference")
    if reference is not None and reference not in TRAINED:
        raise ValueError(f"recovery_reference {reference!r} is not a configured run: {sorted(TRAINED)}")
    _check_display_names()
    _check_budget_sweep()


def _check_budget_sweep():
    for key in ("runs", "references"):
        unknown = [name for name in BUDGET.get(key, []) if name not in TRAINED]
        if unknown:
            raise ValueError(f"budget_sweep.{key} names unknown run(s) {unknown}; configured: {sorted(TRAINED)}")
    for key in ("mse_reference", "conditional_mean"):
        if BUDGET.get(key) is not None and BUDGET[key] not in BUDGET["references"]:
            raise ValueError(
                f"budget_sweep.{key} {BUDGET[key]!r} is not one of budget_sweep.references {BUDGET['references']}"
            )
    for name in BUDGET.get("runs", []):
        recovery = _run_config(BUDGET["dataset"], name).model.recovery
        if recovery != "generative":
            raise ValueError(
                f"budget_sweep.runs: {name!r} has no generator to give steps to (its recovery is "
                f"{recovery!r}); list it in references"
            )


def _check_display_names():
    """Each evaluated run has a label of its own, which a Markdown table cell can hold."""
    labels = {}
    for run in dict.fromkeys(run for run, _ in EVALUATED):
        label = DISPLAY_NAMES.get(run, run)
        if "|" in label or not label.isprintable():
            raise ValueError(f"display_names.{run} {label!r}: '|' and control characters would break the tables")
        if label in labels:
            raise ValueError(
                f"runs {labels[label]!r} and {run!r} would both be shown as {label!r}: "
                "give them display names of their own"
            )
        labels[label] = run


def protocol_override(protocol, configured_draw):
    """What a training protocol sets in the run configuration: the draw of the missing modalities. Under a
    missing rate, a run configured with the reference's per-batch draw (at any level) keeps it."""
    if protocol == ALL_PATTERNS:
        weights = PROTOCOLS[ALL_PATTERNS].get("pattern_weights", {})
        return {"train": {"missing_draw": ALL_PATTERNS, "pattern_weights": weights}}
    if protocol is None:
        return {}
    draw = "per_batch" if configured_draw == "per_batch" else "per_sample"
    return {"train": {"missing_draw": draw, "train_mr": layout.rate_of(protocol)}}


def run_layers(run):
    """A run's own overrides; a budget sweep's run adds its generator stage."""
    if run not in BUDGET_RUNS:
        return (TRAINED.get(run, {}),)
    base, epochs = BUDGET_RUNS[run]
    stage = {"generator_epochs": epochs}
    if epochs and "generator_early_stop" in BUDGET:
        stage["generator_early_stop"] = BUDGET["generator_early_stop"]
    return (TRAINED[base], {"train": stage})


def _run_config(dataset, run, protocol=None):
    """A run's resolved hyper-parameters (a RunConfig), checked now so a bad value fails at parse time."""
    entry = DATASETS[dataset]
    layers = (config["overrides"], entry["overrides"], *run_layers(run))
    where = f"run {run!r}" + (f", protocol {protocol!r}" if protocol else "")
    try:
        configured = build_run_config(entry["preset"], *layers, faithful=config["faithful"])
        override = protocol_override(protocol, configured.train.missing_draw)
        resolved = build_run_config(entry["preset"], *layers, override, faithful=config["faithful"])
    except ValueError as error:
        raise ValueError(f"config of dataset {dataset!r}, {where}: {error}") from None
    return resolved


def run_config_json(resolved):
    """What the run_config rules write, and what their params compare on a rerun: one line of sorted JSON."""
    return json.dumps(resolved.to_dict(), sort_keys=True)


def _check_profile_variables():
    """A profile's resource such as `'$ROHYDR_SLURM_ACCOUNT'` whose variable is unset would reach sbatch
    literally: stop before anything is submitted."""
    settings = workflow.resource_settings
    scopes = {"default-resources": settings.default_resources or {}}
    scopes.update({f"set-resources {rule}": res for rule, res in settings.overwrite_resources.items()})
    unset = {}
    for scope, resources in scopes.items():
        for name, resource in resources.items():
            raw = getattr(resource, "raw", resource)
            for variable in re.findall(r"\$\{?(\w+)", os.path.expandvars(raw) if isinstance(raw, str) else ""):
                unset.setdefault(variable, []).append(f"{name} in {scope}")
    if unset:
        lines = [f"  ${variable} (for {', '.join(uses)})" for variable, uses in unset.items()]
        raise ValueError(
            "the profile's resources name environment variables that are not set:\n"
            + "\n".join(lines)
            + "\nexport them first, e.g. export "
            + " ".join(f"{v}=..." for v in unset)
        )


_check_names()
_check_profile_variables()
PRETRAIN_CONFIGS = {dataset: _run_config(dataset, "pretrain") for dataset in DAG_DATASETS}
for _dataset in RUN_DATASETS:  # every configured run is checked, trained under a protocol or not
    for _run in TRAINED:
        _run_config(_dataset, _run)


def _budget_point_run(name):
    """The run whose model a budget point is: the configured run itself where the budget leaves its
    configuration as it is (no generator stage for a run that has none), else the budget's copy."""
    run, _ = BUDGET_RUNS[name]
    same = _run_config(BUDGET["dataset"], name, ALL_PATTERNS) == _run_config(BUDGET["dataset"], run, ALL_PATTERNS)
    return run if same else name


BUDGET_POINT_RUNS = {name: _budget_point_run(name) for name in BUDGET_RUNS}
# The budget sweep's trainings (all-pattern models): its points, and the references beside them.
BUDGET_TRAININGS = [(run, ALL_PATTERNS) for run in [*BUDGET_POINT_RUNS.values(), *BUDGET.get("references", [])]]
RUN_CONFIGS = {
    (dataset, run, protocol): _run_config(dataset, run, protocol)
    for dataset in DAG_DATASETS
    for run, protocol in dict.fromkeys([*TRAININGS, *(BUDGET_TRAININGS if dataset in BUDGET_DATASETS else [])])
}
