# Data stage: the synthetic default, validation of the MMSA pickle, conversion to HDF5.


rule synthesize:
    output:
        pickle="resources/synthetic/{dataset}.pkl",
        optimum="resources/synthetic/{dataset}.optimum.csv",
        about="resources/synthetic/{dataset}.optimum.json",
        samples="resources/synthetic/{dataset}.optimum_samples.csv.gz",
    log:
        "results/{dataset}/logs/synthesize.log",
    resources:
        mem_mb=RES["cpu_mem_mb"],
        runtime=30,
    params:
        args=synthetic_args,
    shell:
        "rohydr synth {output.pickle:q} {params.args} > {log:q} 2>&1"


rule validate_dataset:
    input:
        dataset_pickle,
    output:
        "results/{dataset}/data/validation.json",
    log:
        "results/{dataset}/logs/validate_dataset.log",
    resources:
        mem_mb=RES["convert_mem_mb"],
        runtime=60,
    params:
        min_length=min_sequence_length,
    shell:
        "rohydr validate {input:q} --min-length {params.min_length} --report {output:q} > {log:q} 2>&1"


rule convert_hdf5:
    input:
        pickle=dataset_pickle,
        validation="results/{dataset}/data/validation.json",
    output:
        "results/{dataset}/data/features.h5",
    log:
        "results/{dataset}/logs/convert_hdf5.log",
    resources:
        mem_mb=RES["convert_mem_mb"],
        runtime=120,
    params:
        args=convert_args,
    shell:
        "rohydr convert {input.pickle:q} {output:q} --validation {input.validation:q} {params.args} > {log:q} 2>&1"
