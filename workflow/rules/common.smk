import json
import os
import re
import shlex

from snakemake.utils import validate

from rohydr.config import build_run_config


validate(config, schema="../schemas/config.schema.yaml")


# The workflow description page of `snakemake --report`.
report: "../report/workflow.rst"

DATASETS = config["datasets"]
RUN_DATASETS = config.get("run_datasets") or list(DATASETS)
SEEDS = config["seeds"]
VARIANTS = config["variants"]
BASELINES = config["baselines"]
# Trained models: the variants and the trained baselines; `complete` reuses the pretrained backbone.
TRAINED = {**VARIANTS, **BASELINES}
MAIN_VARIANT = config["main_variant"]
# What the tables and figures show: the main variant first, the other variants, then these baselines.
REPORT_BASELINES = [*BASELINES, "complete"]
DISPLAY_NAMES = config.get("display_names", {})
ABLATION = config.get("ablation") or [MAIN_VARIANT, *(v for v in VARIANTS if v != MAIN_VARIANT)]
RES = config["resources"]


def _check_names():
    unknown = [name for name in RUN_DATASETS if name not in DATASETS]
    if unknown:
        raise ValueError(f"run_datasets names unknown dataset(s) {unknown}; configured: {sorted(DATASETS)}")
    unknown = [name for name in ABLATION if name not in TRAINED]
    if unknown:
        raise ValueError(f"ablation names unknown variant(s) {unknown}; configured: {sorted(TRAINED)}")
    if MAIN_VARIANT not in VARIANTS:
        raise ValueError(f"main_variant {MAIN_VARIANT!r} is not a configured variant: {sorted(VARIANTS)}")
    unknown = sorted(set(DISPLAY_NAMES) - set(TRAINED) - {"complete"})
    if unknown:
        raise ValueError(f"display_names names unknown run(s) {unknown}; configured: {sorted([*TRAINED, 'complete'])}")
    clash = sorted(set(VARIANTS) & set(BASELINES))
    if clash:
        raise ValueError(f"names used both as variant and baseline: {clash}")


def _run_config(dataset, run):
    """A run's resolved hyper-parameters as JSON, checked now so a bad value fails at parse time."""
    entry = DATASETS[dataset]
    try:
        resolved = build_run_config(entry["preset"], config["overrides"], entry["overrides"], TRAINED.get(run, {}))
    except ValueError as error:
        raise ValueError(f"config of dataset {dataset!r}, run {run!r}: {error}") from None
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
        raise ValueError("the profile's resources name environment variables that are not set:\n" + "\n".join(lines)
                         + "\nexport them first, e.g. export " + " ".join(f"{v}=..." for v in unset))


_check_names()
_check_profile_variables()
RUN_CONFIGS = {
    (dataset, run): _run_config(dataset, run)
    for dataset in RUN_DATASETS
    for run in ["pretrain", *TRAINED]
}


wildcard_constraints:
    dataset="|".join(RUN_DATASETS),
    variant="|".join(TRAINED),
    seed=r"\d+",


def dataset_pickle(wildcards):
    entry = DATASETS[wildcards.dataset]
    return entry["path"] if "path" in entry else f"resources/synthetic/{wildcards.dataset}.pkl"


def eval_csvs(dataset, runs):
    return [f"results/{dataset}/{run}/seed{seed}/eval.csv" for run in runs for seed in SEEDS]


def train_logs(dataset, runs):
    return [f"results/{dataset}/{run}/seed{seed}/train_log.csv" for run in runs for seed in SEEDS]


def runtime_args():
    flags = [f"--device {config['device']}"] + [f"--{flag}" for flag in ("bf16", "compile") if config[flag]]
    return " ".join(flags)


TABLES = ["missing_patterns", "missing_rates", "ablation"]
FIGURES = ["mr_curves", "training_curves", "recovery_quality"]


TABLE_FORMATS = ["html", "md", "tex", "csv"]


def dataset_outputs(dataset):
    return [f"results/{dataset}/tables/{table}.{ext}" for table in TABLES for ext in TABLE_FORMATS] + [
        f"results/{dataset}/figures/{figure}.{ext}" for figure in FIGURES for ext in ("png", "pdf")
    ]


def all_outputs():
    return [path for dataset in RUN_DATASETS for path in dataset_outputs(dataset)]


# Input and parameter functions of the rules.


def synthetic_args(wildcards):
    spec = DATASETS[wildcards.dataset]["synthetic"]
    sizes = " ".join(str(n) for n in spec["sizes"])
    return (f"--like {spec['like']} --seed {spec['seed']} --sizes {sizes} --length {spec['length']}"
            f" --redundancy {spec['redundancy']}")


def min_sequence_length(wildcards):
    """The longest extractor kernel among the dataset's runs: shorter sequences are refused at validation."""
    runs = [json.loads(resolved) for (dataset, _), resolved in RUN_CONFIGS.items() if dataset == wildcards.dataset]
    return max(run["model"]["extractor_kernel"] for run in runs)


def convert_args(wildcards):
    entry = DATASETS[wildcards.dataset]
    args = f"--text-encoder {entry['text_encoder']}"
    return args + (f" --bert {entry['bert_dir']}" if entry.get("bert_dir") else "")


def is_sequential(dataset, variant):
    return json.loads(RUN_CONFIGS[(dataset, variant)])["train"]["schedule"] == "sequential"


def start_checkpoint(wildcards):
    """Where a training run starts: the pretraining, or for sequential stages the previous stage."""
    stage = int(getattr(wildcards, "stage", 3))
    sequential = is_sequential(wildcards.dataset, wildcards.variant)
    if not sequential or stage == 1:
        return f"results/{wildcards.dataset}/pretrain/seed{wildcards.seed}/model.pt"
    return f"results/{wildcards.dataset}/{wildcards.variant}/seed{wildcards.seed}/stage{stage - 1}/model.pt"


def evaluated_model(wildcards):
    # The `complete` baseline is the pretrained backbone on complete inputs.
    run = "pretrain" if wildcards.run == "complete" else wildcards.run
    return f"results/{wildcards.dataset}/{run}/seed{wildcards.seed}/model.pt"


def report_args(wildcards):
    """What `rohydr aggregate` and `rohydr plots` show, all from the config: the quoted literature, the
    main variant, the baselines and the display names."""
    key = DATASETS[wildcards.dataset]["literature"]
    args = ["--literature", "none"] if key == "none" else ["--peers-key", key]
    args += ["--main-variant", MAIN_VARIANT, "--baselines", *REPORT_BASELINES]
    if DISPLAY_NAMES:
        args += ["--display-names", *(f"{run}={label}" for run, label in DISPLAY_NAMES.items())]
    return shlex.join(args)
