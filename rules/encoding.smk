# Voxelwise encoding models: FIR delays + ridge (himalaya) per (subject, model, layer), on all
# training stories and on random subsets of them (data-size scaling).

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


rule fit_encoding:
    input:
        features=path("features"),
        responses=encoding_responses,
    output:
        scores=path("fit", ext="npz"),
        summary=path("fit", ext="json"),
    log:
        log("fit_encoding", "fit"),
    benchmark:
        benchmark("fit_encoding", "fit")
    conda:
        "../envs/encoding.yaml"
    threads: config["compute"]["ridge_threads"]
    resources:
        mem_mb=per_attempt("ridge_mem_mb"),
        runtime=per_attempt("ridge_runtime"),
        gpu=GPU,
    params:
        layer=lambda wildcards: int(wildcards.layer),
        train_stories=lambda wildcards: train_stories(wildcards.subject),
        encoding=ENCODING_PARAMS,
    script:
        "../workflow_scripts/fit_encoding.py"


use rule fit_encoding as fit_encoding_subset with:
    input:
        features=path("features"),
        responses=subset_responses,
    output:
        scores=path("subset_fit", ext="npz"),
        summary=path("subset_fit", ext="json"),
    log:
        log("fit_encoding_subset", "subset_fit"),
    benchmark:
        benchmark("fit_encoding_subset", "subset_fit")
    params:
        layer=lambda wildcards: int(wildcards.layer),
        train_stories=subset_stories,
        encoding=ENCODING_PARAMS,
