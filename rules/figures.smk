# The final targets: tidy tables of every fit, scaling fits with bootstrap intervals, ROIs from
# the subject's own anatomy, figures drawn from the tables, flatmaps, the cost of the study.
# Every final output is registered for `snakemake --report` (captions in rules/report/).


rule encoding_table:
    input:
        scores=STUDY.entry_files(STUDY.table_entries, "npz"),
        summaries=STUDY.entry_files(STUDY.table_entries, "json"),
        ceilings=[path("noise_ceiling", subject=s) for s in SUBJECTS],
        features=[path("features", model=m) for m in RUN_MODELS],
    output:
        encoding=report(
            path("table", name="encoding"),
            caption="report/encoding.rst",
            category="Tables",
        ),
        best_layers=report(
            path("table", name="best_layers"),
            caption="report/best_layers.rst",
            category="Tables",
        ),
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
        entries=STUDY.entry_labels(STUDY.table_entries),
        subjects=SUBJECTS,
        models=RUN_MODELS,
        floor=config["noise_ceiling"]["floor"],
    script:
        "../workflow_scripts/encoding_table.py"


rule bootstrap_means:
    input:
        encoding=path("table", name="encoding"),
        scores=STUDY.entry_files(STUDY.table_entries, "npz"),
        ceilings=[path("noise_ceiling", subject=s) for s in SUBJECTS],
    output:
        path("table_gz", name="bootstrap_means"),
    log:
        log("bootstrap_means", "data"),
    benchmark:
        benchmark("bootstrap_means", "data")
    conda:
        "../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        entries=STUDY.entry_labels(STUDY.table_entries),
        subjects=SUBJECTS,
        floor=config["noise_ceiling"]["floor"],
        n_replicates=config["scaling"]["bootstrap"]["n_replicates"],
        seed=config["scaling"]["bootstrap"]["seed"],
    script:
        "../workflow_scripts/bootstrap_means.py"


rule scaling_table:
    input:
        encoding=path("table", name="encoding"),
        means=path("table_gz", name="bootstrap_means"),
    output:
        scaling=report(
            path("table", name="scaling"),
            caption="report/scaling.rst",
            category="Tables",
        ),
        headline=report(
            path("table", name="headline"),
            caption="report/headline.rst",
            category="Tables",
        ),
        lines=path("table_gz", name="scaling_bootstrap"),
    log:
        log("scaling_table", "data"),
    benchmark:
        benchmark("scaling_table", "data")
    conda:
        "../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        ci=config["scaling"]["ci"],
        seed=config["scaling"]["bootstrap"]["seed"],
        resample_subjects=config["scaling"]["bootstrap"]["resample_subjects"],
        paper=config["scaling"]["paper"],
        aliases=config["scaling"]["paper_aliases"],
    script:
        "../workflow_scripts/scaling_table.py"


rule roi_labels:
    input:
        pycortex=over(STUDY.pycortex_inputs, "subject"),
        annotations=over(STUDY.annotation_inputs, "dataset", "subject"),
        mask=path("transform", name="mask_thick"),
    output:
        path("rois"),
    log:
        log("roi_labels", "rois"),
    benchmark:
        benchmark("roi_labels", "rois")
    conda:
        "../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=20,
    params:
        subject="{subject}",
        db_dir=pycortex_db_of,
        xfmname="{subject}_auto",
        atlases=STUDY.atlases,
        groups=config["rois"]["groups"],
        functional=config["rois"]["functional"],
    script:
        "../workflow_scripts/roi_labels.py"


rule roi_tables:
    input:
        best_layers=path("table", name="best_layers"),
        scores=[f for s in SUBJECTS for f in STUDY.entry_files(STUDY.full_fits_of(s), "npz")],
        ceilings=[path("noise_ceiling", subject=s) for s in SUBJECTS],
        rois=STUDY.rois_of_subjects(),
        stacking=[path("table", name="stacking")] if STUDY.stacks else [],
    output:
        voxels=path("table_gz", name="voxels"),
        roi_voxels=path("table_gz", name="roi_voxels"),
        rois=report(
            path("table", name="rois"),
            caption="report/rois.rst",
            category="Tables",
        ),
    log:
        log("roi_tables", "data"),
    benchmark:
        benchmark("roi_tables", "data")
    conda:
        "../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=20,
    params:
        fits=STUDY.entry_labels([e for s in SUBJECTS for e in STUDY.full_fits_of(s)]),
        subjects=SUBJECTS,
        floor=config["noise_ceiling"]["floor"],
    script:
        "../workflow_scripts/roi_tables.py"


rule scaling_figures:
    input:
        encoding=path("table", name="encoding"),
        scaling=path("table", name="scaling"),
        lines=path("table_gz", name="scaling_bootstrap"),
    output:
        **{
            name: report(
                files,
                caption=f"report/{name}.rst",
                category="Scaling",
            )
            for name, files in STUDY.figure_outputs().items()
        },
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
        names=STUDY.figure_names,
    script:
        "../workflow_scripts/scaling_figures.py"


rule noise_ceiling_figure:
    input:
        voxels=path("table_gz", name="voxels"),
        rois=path("table", name="rois"),
    output:
        report(
            formats_of("figure", name="noise_ceiling"),
            caption="report/noise_ceiling.rst",
            category="Noise ceiling and ROIs",
        ),
    log:
        log("noise_ceiling_figure", "data"),
    benchmark:
        benchmark("noise_ceiling_figure", "data")
    conda:
        "../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        min_voxels=config["figures"]["roi_min_voxels"],
    script:
        "../workflow_scripts/noise_ceiling_figure.py"


rule stacking_figure:
    input:
        path("table", name="stacking"),
    output:
        report(
            formats_of("figure", name="stacking_gain"),
            caption="report/stacking_gain.rst",
            category="Stacked regression",
        ),
    log:
        log("stacking_figure", "data"),
    benchmark:
        benchmark("stacking_figure", "data")
    conda:
        "../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        min_voxels=config["figures"]["roi_min_voxels"],
    script:
        "../workflow_scripts/stacking_figure.py"


rule brain_map:
    input:
        voxels=path("table_gz", name="voxels"),
        stacks=over(STUDY.stacking_weight_maps, "subject"),
        pycortex=over(STUDY.pycortex_inputs, "subject"),
        mask=path("transform", name="mask_thick"),
        reference=path("transform", name="reference"),
    output:
        report(
            formats_of("brain_map"),
            caption="report/brain_map.rst",
            category="Brain maps",
            subcategory="{subject}",
        ),
    log:
        log("brain_map", "brain_map"),
    benchmark:
        benchmark("brain_map", "brain_map")
    conda:
        "../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        subject="{subject}",
        db_dir=pycortex_db_of,
        xfmname="{subject}_auto",
        flatmap=config["figures"]["flatmap"],
    script:
        "../workflow_scripts/brain_map.py"


rule cost_table:
    input:
        # the jobs whose benchmarks are read: the table is built after all of them
        encoding=path("table", name="encoding"),
        scores=STUDY.entry_files(STUDY.table_entries, "npz"),
        features=[path("features", model=m) for m in RUN_MODELS],
    output:
        report(
            path("table", name="costs"),
            caption="report/costs_table.rst",
            category="Cost",
        ),
    log:
        log("cost_table", "data"),
    conda:
        "../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        records=STUDY.benchmark_records(),
    script:
        "../workflow_scripts/cost_table.py"


rule cost_figure:
    input:
        path("table", name="costs"),
    output:
        report(
            formats_of("figure", name="costs"),
            caption="report/costs.rst",
            category="Cost",
        ),
    log:
        log("cost_figure", "data"),
    conda:
        "../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../workflow_scripts/cost_figure.py"
