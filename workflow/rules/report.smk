# Report stage: paper-style tables and figures per dataset, and named targets per variant.

ALL_RUNS = [*VARIANTS, *BASELINES, "complete"]


rule aggregate:
    input:
        lambda wc: eval_csvs(wc.dataset, ALL_RUNS),
    output:
        report(
            multiext("results/{dataset}/tables/missing_patterns", ".md", ".tex", ".csv"),
            caption="../report/missing_patterns.rst",
            category="Tables",
            labels=lambda wc: {"dataset": wc.dataset, "table": "missing patterns"},
        ),
        report(
            multiext("results/{dataset}/tables/missing_rates", ".md", ".tex", ".csv"),
            caption="../report/missing_rates.rst",
            category="Tables",
            labels=lambda wc: {"dataset": wc.dataset, "table": "missing rates"},
        ),
        report(
            multiext("results/{dataset}/tables/ablation", ".md", ".tex", ".csv"),
            caption="../report/ablation.rst",
            category="Tables",
            labels=lambda wc: {"dataset": wc.dataset, "table": "ablation"},
        ),
        "results/{dataset}/tables/all_metrics.csv",
    params:
        peers=peers_args,
        ablation=" ".join(ABLATION),
    log:
        "results/{dataset}/logs/aggregate.log",
    localrule: True
    shell:
        "rohydr aggregate --dataset {wildcards.dataset} --eval {input} {params.peers}"
        " --ablation {params.ablation} --out-dir results/{wildcards.dataset}/tables > {log} 2>&1"


rule plots:
    input:
        scores=lambda wc: eval_csvs(wc.dataset, ALL_RUNS),
        logs=lambda wc: train_logs(wc.dataset, TRAINED),
    output:
        report(
            "results/{dataset}/figures/mr_curves.png",
            caption="../report/mr_curves.rst",
            category="Figures",
            labels=lambda wc: {"dataset": wc.dataset, "figure": "missing rate"},
        ),
        "results/{dataset}/figures/mr_curves.pdf",
        report(
            "results/{dataset}/figures/training_curves.png",
            caption="../report/training_curves.rst",
            category="Figures",
            labels=lambda wc: {"dataset": wc.dataset, "figure": "training curves"},
        ),
        "results/{dataset}/figures/training_curves.pdf",
        report(
            "results/{dataset}/figures/recovery_quality.png",
            caption="../report/recovery_quality.rst",
            category="Figures",
            labels=lambda wc: {"dataset": wc.dataset, "figure": "recovery quality"},
        ),
        "results/{dataset}/figures/recovery_quality.pdf",
    log:
        "results/{dataset}/logs/plots.log",
    localrule: True
    shell:
        "rohydr plots --dataset {wildcards.dataset} --eval {input.scores} --train-logs {input.logs}"
        " --out-dir results/{wildcards.dataset}/figures > {log} 2>&1"


# One target per variant and baseline: `snakemake no_diffusion --cores 8 --resources gpu=1`.
for _run in [*TRAINED, "complete"]:

    rule:
        name:
            _run
        input:
            [csv for dataset in RUN_DATASETS for csv in eval_csvs(dataset, [_run])],
        localrule: True


rule ablation:
    input:
        [f"results/{dataset}/tables/ablation.{ext}" for dataset in RUN_DATASETS for ext in ("md", "tex", "csv")],
    localrule: True


rule baselines:
    input:
        [csv for dataset in RUN_DATASETS for csv in eval_csvs(dataset, [*BASELINES, "complete"])],
    localrule: True
