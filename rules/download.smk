# Downloads: the configured subset of OpenNeuro ds003020 (manifest size + md5), and model snapshots.
# Both need network access: on a cluster they run on the login node (localrules).


rule download_ds003020_file:
    output:
        "results/data/{dataset}/{path}",
    log:
        "results/logs/download/{dataset}/{path}.log",
    wildcard_constraints:
        dataset=OPENNEURO_DATASET,
        path=r"(derivative|stimuli)/.+",
    retries: 2
    localrule: True
    conda:
        "../envs/fmriscaling.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=120,
    params:
        url=lambda wildcards: f"{config['download']['base_url'].rstrip('/')}/{wildcards.path}",
        entry=manifest_entry,
        retries=config["download"]["retries"],
        chunk_mb=config["download"]["chunk_mb"],
        timeout_s=config["download"]["timeout_s"],
    script:
        "../workflow_scripts/download_file.py"


rule download_dataset:
    input:
        dataset_files,
    localrule: True


rule download_model:
    output:
        directory("results/models/{model}"),
    log:
        "results/logs/download_model/{model}.log",
    wildcard_constraints:
        model=_alternatives(HUB_MODELS),
    retries: 2
    localrule: True
    conda:
        "../envs/features.yaml"
    threads: 4
    resources:
        mem_mb=2000,
        runtime=600,
    params:
        repo_id=lambda wildcards: MODELS[wildcards.model]["source"]["hub"],
        revision=lambda wildcards: MODELS[wildcards.model]["source"]["revision"],
        gated=lambda wildcards: MODELS[wildcards.model]["source"].get("gated", False),
    script:
        "../workflow_scripts/download_model.py"
