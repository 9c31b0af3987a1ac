# Voxelwise encoding models: each subject's responses prepared once (trimmed, z-scored, float32),
# then FIR delays + ridge per (model, layer) on all training stories and on random subsets of them
# (data-size scaling). Subjects that share a training set share one fit job: one design, one
# Gram and one eigendecomposition per fold for all of them, and each subject's outputs at its
# own path (asking for one subject's scores runs the group's job). See FIT_GROUPS in common.smk.

ENCODING_PARAMS = dict(
    test_story=TEST_STORY,
    delays=config["encoding"]["delays"],
    alphas=alphas(),
    cv=config["encoding"]["cv"],
    n_folds=config["encoding"]["n_folds"],
    extra_trim_test=config["encoding"]["test_extra_trim"],
    backend=config["encoding"]["backend"],
    solver=config["encoding"]["solver"],
    solver_impl=config["encoding"]["solver_impl"],
    score_dtype=config["encoding"]["score_dtype"],
    save_weights=config["encoding"]["save_weights"],
    save_predictions=config["encoding"]["save_predictions"],
)
if config["encoding"]["cv"] == "bootstrap":
    # only bootstrap CV draws chunks: a story-CV fit does not rerun when these change
    ENCODING_PARAMS.update(
        bootstrap=config["encoding"]["bootstrap"], seed=config["encoding"]["seed"]
    )


rule prepare_responses:
    input:
        responses=prepared_inputs,
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
        stories=lambda wildcards: prepared_stories(wildcards.subject),
        extra_trim={TEST_STORY: config["encoding"]["test_extra_trim"]},
        expected_sizes=lambda wildcards: manifest_sizes(wildcards.subject),
    script:
        "../workflow_scripts/prepare_responses.py"


for index, group in enumerate(FIT_GROUPS):
    for kind in FIT_RULES:

        rule:
            name:
                fit_rule_name(kind, index)
            input:
                features=path("features"),
                responses=[path("prepared", subject=s) for s in group],
            output:
                scores=group_outputs(kind, group, "npz"),
                summary=group_outputs(kind, group, "json"),
            log:
                log(fit_rule_name(kind, index), kind, subject=group_label(group)),
            benchmark:
                benchmark(fit_rule_name(kind, index), kind, subject=group_label(group))
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
                train_stories=group_train_stories(kind, group),
                encoding=ENCODING_PARAMS,
            script:
                "../workflow_scripts/fit_encoding.py"
