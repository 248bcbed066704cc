# Training stage: one resolved run configuration per run and protocol, the complete-modality
# pretraining shared by every run of a dataset and seed, then each run's multi-stage optimization under
# each of its training protocols (one GPU job each).


rule run_config:
    output:
        "results/{dataset}/{variant}/{protocol}/run_config.json",
    log:
        "results/{dataset}/logs/run_config/{variant}_{protocol}.log",
    localrule: True
    params:
        resolved=lambda wc: run_config_json(RUN_CONFIGS[(wc.dataset, wc.variant, wc.protocol)]),
    run:
        from rohydr.core.io import write_text_atomic

        write_text_atomic(output[0], f"{params.resolved}\n")
        write_text_atomic(log[0], f"wrote {output[0]}\n")


use rule run_config as pretrain_config with:
    output:
        "results/{dataset}/pretrain/run_config.json",
    log:
        "results/{dataset}/logs/run_config/pretrain.log",
    params:
        resolved=lambda wc: run_config_json(PRETRAIN_CONFIGS[wc.dataset]),


localrules:
    pretrain_config,


rule pretrain:
    input:
        data="results/{dataset}/data/features.h5",
        run_config="results/{dataset}/pretrain/run_config.json",
    output:
        model="results/{dataset}/pretrain/seed{seed}/model.pt",
        log_csv="results/{dataset}/pretrain/seed{seed}/train_log.csv",
    log:
        "results/{dataset}/logs/pretrain/seed{seed}.log",
    benchmark:
        "results/{dataset}/benchmarks/pretrain/seed{seed}.tsv"
    threads: RES["train_threads"]
    resources:
        **TRAIN_JOB,
    params:
        runtime=runtime_args(),
    shell:
        "rohydr pretrain --data {input.data:q} --run-config {input.run_config:q} --seed {wildcards.seed}"
        " --out {output.model:q} --log {output.log_csv:q} --threads {threads} {params.runtime} > {log:q} 2>&1"


rule train:
    input:
        data="results/{dataset}/data/features.h5",
        run_config="results/{dataset}/{variant}/{protocol}/run_config.json",
        pretrained=start_checkpoint,
        masks="results/{dataset}/masks/seed{seed}.h5",
    output:
        model="results/{dataset}/{variant}/{protocol}/seed{seed}/model.pt",
        log_csv="results/{dataset}/{variant}/{protocol}/seed{seed}/train_log.csv",
    log:
        "results/{dataset}/logs/train/{variant}/{protocol}/seed{seed}.log",
    benchmark:
        "results/{dataset}/benchmarks/train/{variant}/{protocol}/seed{seed}.tsv"
    threads: RES["train_threads"]
    resources:
        **TRAIN_JOB,
    params:
        stage=lambda wc: "3" if is_sequential(wc) else "all",
        runtime=runtime_args(),
    shell:
        "rohydr train --data {input.data:q} --run-config {input.run_config:q} --pretrained {input.pretrained:q}"
        " --masks {input.masks:q} --seed {wildcards.seed} --stage {params.stage}"
        " --out {output.model:q} --log {output.log_csv:q} --threads {threads} {params.runtime} > {log:q} 2>&1"


# The sequential schedule's first stages, one job each; the last stage is the `train` rule.
use rule train as train_stage with:
    output:
        model="results/{dataset}/{variant}/{protocol}/seed{seed}/stage{stage}/model.pt",
        log_csv="results/{dataset}/{variant}/{protocol}/seed{seed}/stage{stage}/train_log.csv",
    log:
        "results/{dataset}/logs/train/{variant}/{protocol}/seed{seed}_stage{stage}.log",
    benchmark:
        "results/{dataset}/benchmarks/train/{variant}/{protocol}/seed{seed}_stage{stage}.tsv"
    wildcard_constraints:
        stage="1|2",
    params:
        stage=lambda wc: wc.stage,
        runtime=runtime_args(),
