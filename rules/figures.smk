# Tidy tables of every fit, scaling-law fits, figures drawn from the tables, brain maps.


rule encoding_table:
    input:
        scores=entry_files(TABLE_ENTRIES, "npz"),
        summaries=entry_files(TABLE_ENTRIES, "json"),
        ceilings=[path("noise_ceiling", subject=s) for s in SUBJECTS],
        features=[path("features", model=m) for m in RUN_MODELS],
    output:
        **{name: path("table", name=name) for name in TABLE_NAMES},
    log:
        log("encoding_table", "data"),
    benchmark:
        benchmark("encoding_table", "data")
    conda:
        "../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        entries=entry_labels(TABLE_ENTRIES),
        subjects=SUBJECTS,
        models=RUN_MODELS,
        floor=config["noise_ceiling"]["floor"],
    script:
        "../workflow_scripts/encoding_table.py"


rule scaling_figures:
    input:
        table=path("table", name="encoding"),
    output:
        **figure_outputs(),
    log:
        log("scaling_figures", "data"),
    benchmark:
        benchmark("scaling_figures", "data")
    conda:
        "../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        names=FIGURE_NAMES,
    script:
        "../workflow_scripts/scaling_figures.py"


rule brain_map:
    input:
        best_layers=path("table", name="best_layers"),
        scores=lambda wildcards: entry_files(full_fits_of(wildcards.subject), "npz"),
        ceiling=path("noise_ceiling"),
        mask=path("transform", name="mask_thick"),
        reference=path("transform", name="reference"),
    output:
        path("brain_map"),
    log:
        log("brain_map", "brain_map"),
    benchmark:
        benchmark("brain_map", "brain_map")
    conda:
        "../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        subject="{subject}",
        fits=lambda wildcards: entry_labels(full_fits_of(wildcards.subject)),
        floor=config["noise_ceiling"]["floor"],
    script:
        "../workflow_scripts/brain_map.py"
