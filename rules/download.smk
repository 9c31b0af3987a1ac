# Downloads: the configured subset of OpenNeuro ds003020 (manifest size + md5), and model snapshots.
# Both need network access: on a cluster they run on the login node (localrules).


rule download_ds003020_file:
    output:
        path("dataset_file"),
    log:
        log("download", "dataset_file"),
    benchmark:
        benchmark("download", "dataset_file")
    wildcard_constraints:
        dataset=STUDY.dataset_constraint("openneuro"),
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
        entry=over(STUDY.manifest_entry, "path"),
        retries=config["download"]["retries"],
        chunk_mb=config["download"]["chunk_mb"],
        timeout_s=config["download"]["timeout_s"],
    script:
        "../workflow_scripts/download_file.py"


rule download_dataset:
    input:
        over(STUDY.dataset_files),
    localrule: True


rule download_model:
    output:
        directory(path("model")),
    log:
        log("download_model", "model"),
    benchmark:
        benchmark("download_model", "model")
    wildcard_constraints:
        model=alternatives(STUDY.hub_models),
    retries: 2
    localrule: True
    conda:
        "../envs/features.yaml"
    threads: 4
    resources:
        mem_mb=2000,
        runtime=600,
    params:
        repo_id=over(STUDY.source_field, "model", key="hub"),
        revision=over(STUDY.source_field, "model", key="revision"),
        gated=over(STUDY.source_field, "model", key="gated"),
    script:
        "../workflow_scripts/download_model.py"
