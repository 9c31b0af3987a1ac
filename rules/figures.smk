# Tidy tables of every fit, scaling-law fits, figures drawn from the tables, brain maps.


rule encoding_table:
    input:
        scores=[entry["path"] for entry in TABLE_ENTRIES],
        ceilings=list(noise_ceiling_files().values()),
        features=expand("results/features/{{dataset}}/{model}", model=RUN_MODELS),
    output:
        encoding="results/tables/{dataset}/encoding.csv",
        best_layers="results/tables/{dataset}/best_layers.csv",
        scaling="results/tables/{dataset}/scaling.csv",
    log:
        "results/logs/encoding_table/{dataset}.log",
    conda:
        "../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        entries=TABLE_ENTRIES,
        ceilings=noise_ceiling_files(),
        floor=config["noise_ceiling"]["floor"],
    script:
        "../workflow_scripts/encoding_table.py"


rule scaling_figures:
    input:
        table="results/tables/{dataset}/encoding.csv",
    output:
        expand(
            "results/figures/{{dataset}}/{name}.{fmt}",
            name=FIGURE_NAMES,
            fmt=config["figures"]["formats"],
        ),
    log:
        "results/logs/scaling_figures/{dataset}.log",
    conda:
        "../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        out_dir=lambda wildcards: f"results/figures/{wildcards.dataset}",
        names=FIGURE_NAMES,
        formats=config["figures"]["formats"],
    script:
        "../workflow_scripts/scaling_figures.py"


rule brain_map:
    input:
        best_layers="results/tables/{dataset}/best_layers.csv",
        scores=lambda wildcards: [
            e["path"]
            for e in TABLE_ENTRIES
            if e["subject"] == wildcards.subject and e["n_train"] is None
        ],
        ceiling="results/noise_ceiling/{dataset}/{subject}.npz",
        mask="results/data/{dataset}/derivative/pycortex-db/{subject}/transforms/{subject}_auto/mask_thick.nii.gz",
        reference="results/data/{dataset}/derivative/pycortex-db/{subject}/transforms/{subject}_auto/reference.nii.gz",
    output:
        "results/figures/{dataset}/{subject}_best_model_map.png",
    log:
        "results/logs/brain_map/{dataset}/{subject}.log",
    conda:
        "../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        encoding_dir=lambda wildcards: f"results/encoding/{wildcards.dataset}/{wildcards.subject}",
        floor=config["noise_ceiling"]["floor"],
    script:
        "../workflow_scripts/brain_map.py"
