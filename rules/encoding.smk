# Voxelwise encoding models: FIR delays + ridge (himalaya) per (subject, model, layer), on all
# training stories and on random subsets of them (data-size scaling).

ENCODING_PARAMS = dict(
    test_story=TEST_STORY,
    delays=config["encoding"]["delays"],
    alphas=alphas(),
    cv=config["encoding"]["cv"],
    n_folds=config["encoding"]["n_folds"],
    bootstrap=config["encoding"]["bootstrap"],
    extra_trim_test=config["encoding"]["test_extra_trim"],
    backend=config["encoding"]["backend"],
    solver=config["encoding"]["solver"],
    solver_impl=config["encoding"]["solver_impl"],
    score_dtype=config["encoding"]["score_dtype"],
    save_weights=config["encoding"]["save_weights"],
    save_predictions=config["encoding"]["save_predictions"],
    seed=config["encoding"]["seed"],
)


rule fit_encoding:
    input:
        features="results/features/{dataset}/{model}",
        responses=encoding_responses,
    output:
        scores="results/encoding/{dataset}/{subject}/{model}/layer-{layer}/scores.npz",
        summary="results/encoding/{dataset}/{subject}/{model}/layer-{layer}/scores.json",
    log:
        "results/logs/fit_encoding/{dataset}/{subject}/{model}/layer-{layer}.log",
    benchmark:
        "results/benchmarks/fit_encoding/{dataset}/{subject}/{model}/layer-{layer}.tsv"
    conda:
        "../envs/encoding.yaml"
    threads: config["compute"]["ridge_threads"]
    resources:
        mem_mb=per_attempt("ridge_mem_mb"),
        runtime=per_attempt("ridge_runtime"),
        gpu=GPU,
    params:
        train_stories=lambda wildcards: train_stories(wildcards.subject),
        encoding=ENCODING_PARAMS,
    script:
        "../workflow_scripts/fit_encoding.py"


rule fit_encoding_subset:
    input:
        features="results/features/{dataset}/{model}",
        responses=subset_responses,
    output:
        scores="results/encoding/{dataset}/{subject}/{model}/layer-{layer}/ntrain-{n}/seed-{seed}/scores.npz",
        summary="results/encoding/{dataset}/{subject}/{model}/layer-{layer}/ntrain-{n}/seed-{seed}/scores.json",
    log:
        "results/logs/fit_encoding_subset/{dataset}/{subject}/{model}/layer-{layer}/ntrain-{n}/seed-{seed}.log",
    benchmark:
        "results/benchmarks/fit_encoding_subset/{dataset}/{subject}/{model}/layer-{layer}/ntrain-{n}/seed-{seed}.tsv"
    conda:
        "../envs/encoding.yaml"
    threads: config["compute"]["ridge_threads"]
    resources:
        mem_mb=per_attempt("ridge_mem_mb"),
        runtime=per_attempt("ridge_runtime"),
        gpu=GPU,
    params:
        train_stories=subset_stories,
        encoding=ENCODING_PARAMS,
    script:
        "../workflow_scripts/fit_encoding.py"
