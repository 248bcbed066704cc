# Report stage: paper-style tables and figures per dataset, and named targets per variant.

ALL_RUNS = [*VARIANTS, *REPORT_BASELINES]


rule aggregate:
    input:
        lambda wc: eval_csvs(wc.dataset, ALL_RUNS),
    output:
        report(
            "results/{dataset}/tables/missing_patterns.html",
            caption="../report/missing_patterns.rst",
            category="{dataset}",
            subcategory="Tables",
            labels={"table": "1. missing patterns"},
        ),
        report(
            "results/{dataset}/tables/missing_rates.html",
            caption="../report/missing_rates.rst",
            category="{dataset}",
            subcategory="Tables",
            labels={"table": "2. missing rates"},
        ),
        report(
            "results/{dataset}/tables/ablation.html",
            caption="../report/ablation.rst",
            category="{dataset}",
            subcategory="Tables",
            labels={"table": "3. ablation"},
        ),
        [f"results/{{dataset}}/tables/{table}.{ext}" for table in TABLES for ext in TABLE_FORMATS if ext != "html"],
        "results/{dataset}/tables/all_metrics.csv",
        "results/{dataset}/tables/seeds.csv",
    params:
        shown=report_args,
        ablation=" ".join(ABLATION),
    log:
        "results/{dataset}/logs/aggregate.log",
    localrule: True
    shell:
        "rohydr aggregate --dataset {wildcards.dataset} --eval {input} {params.shown}"
        " --ablation {params.ablation} --out-dir results/{wildcards.dataset}/tables > {log} 2>&1"


rule plots:
    input:
        scores=lambda wc: eval_csvs(wc.dataset, ALL_RUNS),
        logs=lambda wc: train_logs(wc.dataset, TRAINED),
    output:
        report(
            "results/{dataset}/figures/mr_curves.png",
            caption="../report/mr_curves.rst",
            category="{dataset}",
            subcategory="Figures",
            labels={"figure": "1. accuracy vs missing rate"},
        ),
        report(
            "results/{dataset}/figures/recovery_quality.png",
            caption="../report/recovery_quality.rst",
            category="{dataset}",
            subcategory="Figures",
            labels={"figure": "2. recovery quality"},
        ),
        report(
            "results/{dataset}/figures/training_curves.png",
            caption="../report/training_curves.rst",
            category="{dataset}",
            subcategory="Figures",
            labels={"figure": "3. training curves"},
        ),
        [f"results/{{dataset}}/figures/{figure}.pdf" for figure in FIGURES],
    params:
        shown=report_args,
    log:
        "results/{dataset}/logs/plots.log",
    localrule: True
    shell:
        "rohydr plots --dataset {wildcards.dataset} --eval {input.scores} --train-logs {input.logs} {params.shown}"
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
        [f"results/{dataset}/tables/ablation.{ext}" for dataset in RUN_DATASETS for ext in TABLE_FORMATS],
    localrule: True


rule baselines:
    input:
        [csv for dataset in RUN_DATASETS for csv in eval_csvs(dataset, [*BASELINES, "complete"])],
    localrule: True
