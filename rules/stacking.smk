# Stacked audio + semantic regression (METHODS.md, 'Stacked regression'): the members' out-of-fold
# predictions per (subject, model, layer), the per-voxel simplex weights per (subject, stack),
# and the tables.


rule stack_member:
    input:
        features=path("features"),
        responses=path("prepared"),
        fits=over(STUDY.member_fits, "dataset", "subject", "model", "layer"),
    output:
        path("stack_member"),
    log:
        log("stack_member", "stack_member"),
    benchmark:
        benchmark("stack_member", "stack_member")
    wildcard_constraints:
        layer=r"\d+|best",
    conda:
        "../envs/encoding.yaml"
    threads: config["compute"]["ridge_threads"]
    resources:
        mem_mb=per_attempt("ridge_mem_mb"),
        runtime=per_attempt("ridge_runtime"),
        gpu=GPU,
    params:
        member=lambda wildcards: {
            "subject": wildcards.subject,
            "model": wildcards.model,
            "layer": wildcards.layer,
        },
        fit_layers=over(STUDY.member_fit_layers, "model", "layer"),
        train_stories=over(STUDY.train_stories, "subject"),
        encoding=STUDY.stack_member_params(),
        oof_dtype=config["stacking"]["oof_dtype"],
    script:
        "../workflow_scripts/stack_member.py"


rule stack_regression:
    input:
        members=over(STUDY.stack_member_files, "dataset", "subject", "stack"),
        ceiling=path("noise_ceiling"),
    output:
        path("stack"),
    log:
        log("stack_regression", "stack"),
    benchmark:
        benchmark("stack_regression", "stack")
    conda:
        "../envs/encoding.yaml"
    threads: config["compute"]["ridge_threads"]
    resources:
        mem_mb=per_attempt("ridge_mem_mb"),
        runtime=per_attempt("ridge_runtime"),
        gpu=GPU,
    params:
        labels=lambda wildcards: {"subject": wildcards.subject, "stack": wildcards.stack},
        members=over(STUDY.stack_member_labels, "stack"),
        floor=config["noise_ceiling"]["floor"],
        backend=config["encoding"]["backend"],
        calibrate=config["stacking"]["calibrate"],
        block_voxels=config["stacking"]["block_voxels"],
        tol=config["stacking"]["tol"],
        statistics=config["statistics"],
    script:
        "../workflow_scripts/stack_regression.py"


rule stacking_table:
    input:
        unpack(over(STUDY.stacking_voxel_labels)),
        scores=[e["path"] for e in STUDY.stack_entries],
    output:
        **{
            name: report(
                path("table", name=name), caption="report/stacking.rst", category="Tables"
            )
            for name in STUDY.stack_table_names
        },
    log:
        log("stacking_table", "data"),
    benchmark:
        benchmark("stacking_table", "data")
    conda:
        "../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        entries=STUDY.entry_labels(STUDY.stack_entries),
        subjects=SUBJECTS,
    script:
        "../workflow_scripts/stacking_table.py"
