# Voxelwise encoding models: each subject's responses prepared once (trimmed, z-scored, float32),
# then FIR delays + ridge per (model, layer) on all training stories and on random subsets of them
# (data-size scaling), and on all of them with the layer projected to each fixed width d
# (features.fixed_dim: size versus width). Subjects that share a training set share one fit
# job: one design, one Gram and one eigendecomposition per fold for all of them, and each
# subject's outputs at its own path (asking for one subject's scores runs the group's job).
# See Study.fit_groups.


rule prepare_responses:
    input:
        responses=over(STUDY.prepared_responses, "subject"),
    output:
        path("prepared"),
    log:
        log("prepare_responses", "prepared"),
    benchmark:
        benchmark("prepare_responses", "prepared")
    conda:
        "../envs/encoding.yaml"
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: attempt * 4000,
        runtime=60,
    params:
        subject="{subject}",
        stories=over(STUDY.prepared_stories, "subject"),
        test_story=TEST_STORY,
        test_extra_trim=config["encoding"]["test_extra_trim"],
        expected_sizes=over(STUDY.manifest_sizes, "subject"),
    script:
        "../workflow_scripts/prepare_responses.py"


for index, group in enumerate(STUDY.fit_groups):
    for kind in ("fit", "subset_fit", "width_fit"):

        rule:
            name:
                STUDY.fit_rule_name(kind, index)
            input:
                features=path("features"),
                responses=[path("prepared", subject=s) for s in group],
            output:
                scores=STUDY.group_outputs(kind, group, "npz"),
                summary=STUDY.group_outputs(kind, group, "json"),
            log:
                log(STUDY.fit_rule_name(kind, index), kind, subject=STUDY.group_label(group)),
            benchmark:
                benchmark(STUDY.fit_rule_name(kind, index), kind, subject=STUDY.group_label(group))
            conda:
                "../envs/encoding.yaml"
            threads: config["compute"]["ridge_threads"]
            resources:
                mem_mb=per_attempt("ridge_mem_mb"),
                runtime=per_attempt("ridge_runtime"),
                gpu=GPU,
            params:
                layer=lambda wildcards: int(wildcards.layer),
                subjects=group,
                train_stories=(
                    over(STUDY.fit_stories, "n", "seed", subjects=group)
                    if kind == "subset_fit"
                    else STUDY.fit_stories(group)
                ),
                # a fixed-width fit: the same settings and the projection to {width} dimensions
                encoding=(
                    over(STUDY.width_encoding_params, "width")
                    if kind == "width_fit"
                    else STUDY.encoding_params()
                ),
            script:
                "../workflow_scripts/fit_encoding.py"
