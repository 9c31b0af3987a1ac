# Banded ridge and variance partitioning (fmriscaling.encoding.partition): per (subject,
# partition) the joint fit of the bands, whose single fits are the stacking stage's members;
# the tables (with the comparison of single bands, stacks and joint fits), the figure and maps.


rule fit_partition:
    input:
        members=over(STUDY.partition_member_files, "dataset", "subject", "partition"),
        features=over(STUDY.partition_feature_dirs, "dataset", "partition"),
        responses=path("prepared"),
    output:
        path("partition"),
    log:
        log("fit_partition", "partition"),
    benchmark:
        benchmark("fit_partition", "partition")
    conda:
        "../envs/encoding.yaml"
    threads: config["compute"]["ridge_threads"]
    resources:
        mem_mb=per_attempt("ridge_mem_mb"),
        runtime=per_attempt("ridge_runtime"),
        gpu=GPU,
    params:
        labels=lambda wildcards: {
            "subject": wildcards.subject,
            "partition": wildcards.partition,
        },
        bands=over(STUDY.partition_labels, "partition"),
        train_stories=over(STUDY.train_stories, "subject"),
        encoding=STUDY.partitioning_params(),
        partitioning=config["partitioning"],
        statistics=config["statistics"],
    script:
        "../workflow_scripts/fit_partition.py"


rule partition_table:
    input:
        unpack(over(STUDY.stacking_voxel_labels)),
        partitions=[e["path"] for e in STUDY.partition_entries],
        stacks=[e["path"] for e in STUDY.stack_entries],
    output:
        **{
            name: report(f, caption="report/partition.rst", category="Variance partitioning")
            for name, f in STUDY.partition_table_outputs().items()
        },
    log:
        log("partition_table", "data"),
    benchmark:
        benchmark("partition_table", "data")
    conda:
        "../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        partitions=STUDY.entry_labels(STUDY.partition_entries),
        stacks=STUDY.entry_labels(STUDY.stack_entries),
        subjects=SUBJECTS,
    script:
        "../workflow_scripts/partition_table.py"


rule partition_figure:
    input:
        path("table", name="partition"),
    output:
        report(
            formats_of("figure", name="variance_partition"),
            caption="report/variance_partition.rst",
            category="Variance partitioning",
        ),
    log:
        log("partition_figure", "data"),
    benchmark:
        benchmark("partition_figure", "data")
    conda:
        "../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        min_voxels=config["figures"]["roi_min_voxels"],
    script:
        "../workflow_scripts/partition_figure.py"


rule partition_map:
    input:
        partitions=over(STUDY.partition_maps_of, "subject"),
        pycortex=over(STUDY.pycortex_inputs, "subject"),
        mask=path("transform", name="mask_thick"),
        reference=path("transform", name="reference"),
    output:
        report(
            formats_of("partition_map"),
            caption="report/partition_map.rst",
            category="Variance partitioning",
            subcategory="{subject}",
        ),
    log:
        log("partition_map", "partition_map"),
    benchmark:
        benchmark("partition_map", "partition_map")
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
        "../workflow_scripts/partition_map.py"
