# Feature extraction: one job per (dataset, model) runs the model once over every story and
# writes every layer, downsampled to the TRs of the response files.


rule extract_text_features:
    input:
        model=model_dir_input,
        words=timing_tables("words"),
        trs=timing_tables("trs"),
    output:
        directory(path("features")),
    log:
        log("extract_text_features", "features"),
    benchmark:
        benchmark("extract_text_features", "features")
    wildcard_constraints:
        model=_alternatives(TEXT_MODELS),
    conda:
        "../envs/features.yaml"
    threads: config["compute"]["extract_threads"]
    resources:
        mem_mb=per_attempt("extract_mem_mb"),
        runtime=per_attempt("extract_runtime"),
        gpu=GPU,
    params:
        kind="text",
        model_name="{model}",
        stories=ALL_STORIES,
        expected_n_layers=lambda wildcards: MODELS[wildcards.model]["n_layers"],
        context=config["features"]["text"],
        device=config["features"]["device"],
        dtype=config["features"]["dtype"],
        lanczos=config["features"]["lanczos"],
    script:
        "../workflow_scripts/extract_features.py"


rule extract_speech_features:
    input:
        model=model_dir_input,
        audio=[path("audio", story=s) for s in ALL_STORIES],
        trs=timing_tables("trs"),
    output:
        directory(path("features")),
    log:
        log("extract_speech_features", "features"),
    benchmark:
        benchmark("extract_speech_features", "features")
    wildcard_constraints:
        model=_alternatives(SPEECH_MODELS),
    conda:
        "../envs/features.yaml"
    threads: config["compute"]["extract_threads"]
    resources:
        mem_mb=per_attempt("extract_mem_mb"),
        runtime=per_attempt("extract_runtime"),
        gpu=GPU,
    params:
        kind="speech",
        model_name="{model}",
        stories=ALL_STORIES,
        expected_n_layers=lambda wildcards: MODELS[wildcards.model]["n_layers"],
        window=config["features"]["speech"],
        device=config["features"]["device"],
        dtype=config["features"]["dtype"],
        lanczos=config["features"]["lanczos"],
    script:
        "../workflow_scripts/extract_features.py"
