# Report stage: paper-style tables and figures per dataset, and named targets per variant.


rule aggregate:
    input:
        scores=lambda wc: eval_csvs(wc.dataset, ALL_RUNS),
        predictions=lambda wc: predictions(wc.dataset, ALL_RUNS),
        masks=lambda wc: test_masks(wc.dataset),
        optimum=lambda wc: optimum_samples(wc.dataset),
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
        report(
            "results/{dataset}/tables/comparison.html",
            caption="../report/comparison.rst",
            category="{dataset}",
            subcategory="Tables",
            labels={"table": "4. comparison with peers"},
        ),
        report(
            "results/{dataset}/tables/gap_closed.html",
            caption="../report/gap_closed.rst",
            category="{dataset}",
            subcategory="Tables",
            labels={"table": "5. share of the gap closed"},
        ),
        report(
            "results/{dataset}/tables/recovery.html",
            caption="../report/recovery.rst",
            category="{dataset}",
            subcategory="Tables",
            labels={"table": "6. recovery"},
        ),
        [f"results/{{dataset}}/tables/{table}.{ext}" for table in TABLES for ext in TABLE_FORMATS if ext != "html"],
        "results/{dataset}/tables/all_metrics.csv",
        "results/{dataset}/tables/seeds.csv",
    log:
        "results/{dataset}/logs/aggregate.log",
    localrule: True
    params:
        shown=report_args,
        ablation=" ".join([*ABLATION, *FED_ZEROS]),
        comparison=" ".join(COMPARISON),
        optimum=lambda wc: " ".join(f"--optimum {path}" for path in optimum_samples(wc.dataset)),
        reference=recovery_reference_args(),
    shell:
        "rohydr aggregate --dataset {wildcards.dataset:q} --eval {input.scores:q} --masks {input.masks:q}"
        " {params.optimum} {params.reference} {params.shown} --ablation {params.ablation}"
        " --comparison {params.comparison}"
        " --out-dir results/{wildcards.dataset:q}/tables > {log:q} 2>&1"


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
        report(
            "results/{dataset}/figures/comparison.png",
            caption="../report/comparison_figure.rst",
            category="{dataset}",
            subcategory="Figures",
            labels={"figure": "4. comparison with peers"},
        ),
        [f"results/{{dataset}}/figures/{figure}.pdf" for figure in FIGURES],
    log:
        "results/{dataset}/logs/plots.log",
    localrule: True
    params:
        shown=report_args,
        comparison=" ".join(COMPARISON),
    shell:
        "rohydr plots --dataset {wildcards.dataset:q} --eval {input.scores:q} --train-logs {input.logs:q} {params.shown}"
        " --comparison {params.comparison}"
        " --out-dir results/{wildcards.dataset:q}/figures > {log:q} 2>&1"


# One target per variant and baseline: `snakemake no_diffusion --cores 8 --resources gpu=1`.
for _run in [*TRAINED, *BUILT_IN]:

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


rule comparison:
    input:
        [f"results/{dataset}/tables/comparison.{ext}" for dataset in RUN_DATASETS for ext in TABLE_FORMATS],
        [f"results/{dataset}/figures/comparison.{ext}" for dataset in RUN_DATASETS for ext in ("png", "pdf")],
    localrule: True


rule baselines:
    input:
        [csv for dataset in RUN_DATASETS for csv in eval_csvs(dataset, [*BASELINES, *BUILT_IN])],
    localrule: True


# One target per training protocol: `snakemake per_mr --cores 8 --resources gpu=1`.
for _protocol, _folders in {ALL_PATTERNS: [ALL_PATTERNS], layout.PER_MR: MR_PROTOCOLS}.items():

    rule:
        name:
            _protocol
        input:
            [
                f"results/{dataset}/{run}/{protocol}/seed{seed}/eval.csv"
                for dataset in RUN_DATASETS
                for run, protocol in TRAININGS
                if protocol in _folders
                for seed in SEEDS
            ],
        localrule: True


# The redundancy sweep: every swept dataset's tables, then each method's score against redundancy.
REDUNDANCY_FILES = ("png", "pdf", "csv")


rule redundancy_sweep:
    input:
        [f"{layout.sweep_stem(SWEEP['dataset'], layout.REDUNDANCY_SWEEP)}.{ext}" for ext in REDUNDANCY_FILES]
        if SWEEP
        else [],
    localrule: True


rule sweep_plot:
    input:
        tables=[f"results/{dataset}/tables/missing_patterns.csv" for dataset in REDUNDANCY_DATASETS],
    output:
        [f"{layout.sweep_stem('{base}', layout.REDUNDANCY_SWEEP)}.{ext}" for ext in REDUNDANCY_FILES],
    log:
        f"{layout.SWEEPS_FOLDER}/logs/{{base}}_{layout.REDUNDANCY_SWEEP}.log",
    localrule: True
    params:
        values=" ".join(str(value) for value in SWEEP.get("values", [])),
        shown=lambda wc: shlex.join(
            [
                "--main-variant",
                MAIN_VARIANT,
                "--display-names",
                *(f"{run}={label}" for run, label in DISPLAY_NAMES.items()),
            ]
        ),
        stem=lambda wc: layout.sweep_stem(wc.base, layout.REDUNDANCY_SWEEP),
    shell:
        "rohydr sweep-plot --tables {input.tables:q} --redundancy {params.values} {params.shown}"
        " --out {params.stem:q} > {log:q} 2>&1"


# The budget sweep: each generator trained with generator stages of several budgets (on the dataset and its
# copies at other redundancies); its recovery and Acc-2 against the generator steps.
BUDGET_FILES = ("png", "pdf", "csv", "md")


rule budget_sweep:
    input:
        [f"{layout.sweep_stem(BUDGET['dataset'], layout.BUDGET_SWEEP)}.{ext}" for ext in BUDGET_FILES] if BUDGET else [],
    localrule: True


rule budget_manifest:
    output:
        f"{layout.sweep_stem('{base}', layout.BUDGET_SWEEP)}.json",
    log:
        f"{layout.SWEEPS_FOLDER}/logs/{{base}}_{layout.BUDGET_SWEEP}_manifest.log",
    localrule: True
    params:
        manifest=lambda wc: json.dumps(budget_manifest(), sort_keys=True),
    run:
        from rohydr.core.io import write_text_atomic

        write_text_atomic(output[0], f"{params.manifest}\n")
        write_text_atomic(log[0], f"wrote {output[0]}\n")


rule budget_plot:
    input:
        manifest=f"{layout.sweep_stem('{base}', layout.BUDGET_SWEEP)}.json",
        files=budget_inputs(),
    output:
        [f"{layout.sweep_stem('{base}', layout.BUDGET_SWEEP)}.{ext}" for ext in BUDGET_FILES],
    log:
        f"{layout.SWEEPS_FOLDER}/logs/{{base}}_{layout.BUDGET_SWEEP}.log",
    localrule: True
    params:
        stem=lambda wc: layout.sweep_stem(wc.base, layout.BUDGET_SWEEP),
    shell:
        "rohydr budget-plot --manifest {input.manifest:q} --out {params.stem:q} > {log:q} 2>&1"
