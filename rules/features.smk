# Feature extraction: one job per (dataset, model) runs the model once over every story and
# writes every layer, downsampled to the TRs of the response files. A job asks for as many GPUs
# as its model's weights and activations need (Study.extract_gpus, fmriscaling/sizing.py); a
# model larger than one GPU is loaded across them with a device map.


rule extract_text_features:
    input:
        model=over(STUDY.model_dir, "model"),
        words=STUDY.timing_tables("words"),
        trs=STUDY.timing_tables("trs"),
    output:
        directory(path("features")),
    log:
        log("extract_text_features", "features"),
    benchmark:
        benchmark("extract_text_features", "features")
    wildcard_constraints:
        model=alternatives(STUDY.text_models),
    conda:
        "../envs/features.yaml"
    threads: config["compute"]["extract_threads"]
    resources:
        mem_mb=per_attempt("extract_mem_mb"),
        runtime=per_attempt("extract_runtime"),
        gpu=over(STUDY.extract_gpus, "model"),
        # what the model needs, uncapped (a local run caps gpu at its own --resources gpu), and
        # the GPUs' memory; resources, not params: they never change what the job writes
        model_gpus=over(STUDY.extract_gpus, "model"),
        gpu_mem_mb=round(1000 * config["compute"]["gpu_mem_gb"]),
    params:
        kind="text",
        model_name="{model}",
        stories=STUDY.all_stories,
        expected_n_layers=over(STUDY.n_layers, "model"),
        context=config["features"]["text"],
        window_start=lookup(dpath="models/{model}/window_start", within=config),
        device=config["features"]["device"],
        dtype=config["features"]["dtype"],
        lanczos=config["features"]["lanczos"],
    script:
        "../workflow_scripts/extract_features.py"


rule extract_speech_features:
    input:
        model=over(STUDY.model_dir, "model"),
        audio=[path("audio", story=s) for s in STUDY.all_stories],
        trs=STUDY.timing_tables("trs"),
    output:
        directory(path("features")),
    log:
        log("extract_speech_features", "features"),
    benchmark:
        benchmark("extract_speech_features", "features")
    wildcard_constraints:
        model=alternatives(STUDY.speech_models),
    conda:
        "../envs/features.yaml"
    threads: config["compute"]["extract_threads"]
    resources:
        mem_mb=per_attempt("extract_mem_mb"),
        runtime=per_attempt("extract_runtime"),
        gpu=over(STUDY.extract_gpus, "model"),
    params:
        kind="speech",
        model_name="{model}",
        stories=STUDY.all_stories,
        expected_n_layers=over(STUDY.n_layers, "model"),
        window=config["features"]["speech"],
        device=config["features"]["device"],
        dtype=config["features"]["dtype"],
        lanczos=config["features"]["lanczos"],
    script:
        "../workflow_scripts/extract_features.py"
