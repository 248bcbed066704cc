# Evaluation stage: fixed masks per dataset and seed (shared by every variant, so comparisons are
# paired), then every trained model scored on every missing condition.


rule masks:
    input:
        "results/{dataset}/data/features.h5",
    output:
        "results/{dataset}/masks/seed{seed}.h5",
    log:
        "results/{dataset}/logs/masks/seed{seed}.log",
    resources:
        mem_mb=RES["cpu_mem_mb"],
        runtime=10,
    shell:
        "rohydr masks --data {input:q} --seed {wildcards.seed} --out {output:q} > {log:q} 2>&1"


rule evaluate:
    input:
        data="results/{dataset}/data/features.h5",
        model=evaluated_model,
        masks="results/{dataset}/masks/seed{seed}.h5",
    output:
        scores="results/{dataset}/{run}/{protocol}/seed{seed}/eval.csv",
        predictions="results/{dataset}/{run}/{protocol}/seed{seed}/predictions.csv.gz",
    log:
        "results/{dataset}/logs/evaluate/{run}/{protocol}/seed{seed}.log",
    benchmark:
        "results/{dataset}/benchmarks/evaluate/{run}/{protocol}/seed{seed}.tsv"
    wildcard_constraints:
        run="|".join(map(re.escape, [*BUILT_IN, *FED_ZEROS, *TRAINED, *BUDGET_RUNS])),
        protocol="|".join([ALL_PATTERNS, *MR_PROTOCOLS, COMPLETE_DATA]),
    threads: RES["train_threads"]
    resources:
        gpu=1,
        mem_mb=RES["train_mem_mb"],
        runtime=60,
    params:
        runtime=runtime_args(),
        fill=evaluate_args,
    shell:
        "rohydr evaluate --data {input.data:q} --model {input.model:q} --masks {input.masks:q} --seed {wildcards.seed}"
        " --run {wildcards.run:q} --protocol {wildcards.protocol:q}"
        " --out {output.scores:q} --predictions {output.predictions:q} --threads {threads} {params.fill} {params.runtime}"
        " > {log:q} 2>&1"
