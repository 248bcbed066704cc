# Paths: the wildcards' values, the files of each dataset and run, and the rules' input and argument
# functions, from what config.smk defines.
import json
import re
import shlex


wildcard_constraints:
    dataset="|".join(re.escape(dataset) for dataset in DAG_DATASETS),
    variant="|".join(map(re.escape, [*TRAINED, *BUDGET_RUNS])),
    protocol="|".join([ALL_PATTERNS, *MR_PROTOCOLS]) or "none",
    seed=r"\d+",


def dataset_pickle(wildcards):
    entry = DATASETS[wildcards.dataset]
    return entry["path"] if "path" in entry else f"resources/synthetic/{wildcards.dataset}.pkl"


def run_dirs(dataset, runs):
    """results/{dataset}/{run}/{protocol}/seed{seed} of every evaluated (run, protocol) of these runs."""
    return [
        layout.run_dir(dataset, run, protocol, seed) for run, protocol in EVALUATED if run in runs for seed in SEEDS
    ]


def eval_csvs(dataset, runs):
    return [f"{folder}/eval.csv" for folder in run_dirs(dataset, runs)]


def predictions(dataset, runs):
    return [f"{folder}/predictions.csv.gz" for folder in run_dirs(dataset, runs)]


def train_logs(dataset, runs):
    return [f"{folder}/train_log.csv" for folder in run_dirs(dataset, runs) if f"/{COMPLETE_DATA}/" not in folder]


def test_masks(dataset):
    return [f"results/{dataset}/masks/seed{seed}.h5" for seed in SEEDS]


def optimum_samples(dataset):
    """The synthetic dataset's Bayes optimum per test row (none for a user's pickle)."""
    return [f"resources/synthetic/{dataset}.optimum_samples.csv.gz"] if "synthetic" in DATASETS[dataset] else []


def runtime_args():
    flags = [f"--device {config['device']}"] + [f"--{flag}" for flag in ("bf16", "compile") if config[flag]]
    return " ".join(flags)


TABLES, TABLE_FORMATS, FIGURES = layout.TABLES, layout.TABLE_FORMATS, layout.FIGURES


def dataset_outputs(dataset):
    return [f"results/{dataset}/tables/{table}.{ext}" for table in TABLES for ext in TABLE_FORMATS] + [
        f"results/{dataset}/figures/{figure}.{ext}" for figure in FIGURES for ext in layout.FIGURE_FORMATS
    ]


def pretrained_model(dataset, seed):
    return f"results/{dataset}/pretrain/seed{seed}/model.pt"


def result_files(dataset):
    """Every file the dataset's tables and figures are made from. Snakemake does not remake a missing file
    while the files made from it exist (an interrupted forced rerun leaves such gaps); it does remake a
    requested one, and then what depends on it."""
    return [
        f"results/{dataset}/data/features.h5",
        *test_masks(dataset),
        *(pretrained_model(dataset, seed) for seed in SEEDS),
        *(f"{folder}/{name}" for folder in run_dirs(dataset, TRAINED) for name in ("model.pt", "train_log.csv")),
        *eval_csvs(dataset, ALL_RUNS),
        *predictions(dataset, ALL_RUNS),
    ]


def all_outputs():
    """The default target: the tables and figures, and every file they are made from."""
    return [path for dataset in RUN_DATASETS for path in [*dataset_outputs(dataset), *result_files(dataset)]]


# Input and parameter functions of the rules.


def synthetic_args(wildcards):
    spec = DATASETS[wildcards.dataset]["synthetic"]
    sizes = " ".join(str(n) for n in spec["sizes"])
    return (
        f"--like {spec['like']} --seed {spec['seed']} --sizes {sizes} --length {spec['length']}"
        f" --redundancy {spec['redundancy']}"
    )


def min_sequence_length(wildcards):
    """The longest extractor kernel among the dataset's runs: shorter sequences are refused at validation."""
    runs = [resolved for (dataset, *_), resolved in RUN_CONFIGS.items() if dataset == wildcards.dataset]
    runs.append(PRETRAIN_CONFIGS[wildcards.dataset])
    return max(run.model.extractor_kernel for run in runs)


def convert_args(wildcards):
    entry = DATASETS[wildcards.dataset]
    args = ["--text-encoder", entry["text_encoder"], *(["--bert", entry["bert_dir"]] if entry.get("bert_dir") else [])]
    return shlex.join(args)


def is_sequential(wildcards):
    return RUN_CONFIGS[(wildcards.dataset, wildcards.variant, wildcards.protocol)].train.schedule == "sequential"


def start_checkpoint(wildcards):
    """Where a training run starts: the pretraining, or for sequential stages the previous stage."""
    stage = int(getattr(wildcards, "stage", 3))
    if not is_sequential(wildcards) or stage == 1:
        return pretrained_model(wildcards.dataset, wildcards.seed)
    w = wildcards
    return f"results/{w.dataset}/{w.variant}/{w.protocol}/seed{w.seed}/stage{stage - 1}/model.pt"


def evaluated_model(wildcards):
    # The built-in runs are the pretrained backbone; a run fed zeros is its trained model.
    if wildcards.run in BUILT_IN:
        return pretrained_model(wildcards.dataset, wildcards.seed)
    run = FED_ZEROS.get(wildcards.run, wildcards.run)
    return f"results/{wildcards.dataset}/{run}/{wildcards.protocol}/seed{wildcards.seed}/model.pt"


def evaluate_args(wildcards):
    return "--zeros-for-missing" if wildcards.run == FLOOR or wildcards.run in FED_ZEROS else ""


def recovery_reference_args():
    """The recovery table's reference run, when it is trained under the all-pattern protocol."""
    reference = config.get("recovery_reference")
    return f"--recovery-reference {reference}" if reference and ALL_PATTERNS in protocols_of(reference) else ""


def report_args(wildcards):
    """What `rohydr aggregate` and `rohydr plots` show, all from the config: the quoted literature, the
    main variant, the baselines and the display names."""
    key = DATASETS[wildcards.dataset]["literature"]
    args = ["--literature", "none"] if key == "none" else ["--peers-key", key]
    args += ["--main-variant", MAIN_VARIANT, "--baselines", *REPORT_BASELINES, "--floor", FLOOR]
    shown = {run for run, _ in EVALUATED}
    names = [f"{run}={label}" for run, label in DISPLAY_NAMES.items() if run in shown]
    if names:
        args += ["--display-names", *names]
    return shlex.join(args)


def budget_manifest():
    """What `rohydr budget-plot` reads (its format: rohydr/reporting/budget.py), from the config."""
    seeds = BUDGET.get("seeds") or SEEDS

    def files(dataset, run, seed):
        folder = layout.run_dir(dataset, run, ALL_PATTERNS, seed)
        return {"seed": seed, "predictions": f"{folder}/predictions.csv.gz", "train_log": f"{folder}/train_log.csv"}

    entries = []
    for dataset in BUDGET_DATASETS:
        points = [
            {
                "run": run,
                "label": DISPLAY_NAMES.get(run, run),
                "generator_epochs": epochs,
                **files(dataset, BUDGET_POINT_RUNS[name], seed),
            }
            for name, (run, epochs) in BUDGET_RUNS.items()
            for seed in seeds
        ]
        references = [
            {"run": run, "label": DISPLAY_NAMES.get(run, run), **files(dataset, run, seed)}
            for run in BUDGET["references"]
            for seed in seeds
        ]
        for reference in references:
            del reference["train_log"]
        optimum = optimum_samples(dataset)
        entries.append(
            {
                "dataset": dataset,
                "redundancy": DATASETS[dataset]["synthetic"]["redundancy"],
                "masks": [f"results/{dataset}/masks/seed{seed}.h5" for seed in seeds],
                "optimum": optimum[0] if optimum else None,
                "points": points,
                "references": references,
            }
        )
    return {
        "mse_reference": BUDGET["mse_reference"],
        "conditional_mean": BUDGET.get("conditional_mean"),
        "main": MAIN_VARIANT,
        "datasets": entries,
    }


def budget_inputs():
    """Every file the budget manifest names."""
    if not BUDGET:
        return []
    found = []
    for entry in budget_manifest()["datasets"]:
        found += entry["masks"] + ([entry["optimum"]] if entry["optimum"] else [])
        for item in entry["points"] + entry["references"]:
            found += [item["predictions"], *([item["train_log"]] if "train_log" in item else [])]
    return list(dict.fromkeys(found))
