# The embedded demo: a synthetic dataset in the exact ds003020 layout, and tiny random models.


rule generate_demo_dataset:
    output:
        **with_directories(STUDY.demo_dataset_outputs(), "ground_truth"),
    log:
        log("generate_demo_dataset", "data"),
    benchmark:
        benchmark("generate_demo_dataset", "data")
    wildcard_constraints:
        dataset=STUDY.dataset_constraint("synthetic"),
    conda:
        "../envs/fmriscaling.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        subjects=SUBJECTS,
        test_story=TEST_STORY,
        generator=config["synthetic"],
        tr=config["stimuli"]["tr"],
    script:
        "../workflow_scripts/generate_demo_dataset.py"


if STUDY.built_models:

    # every tiny model in one job: building one takes a second, importing transformers and torch
    # for it five (a model is rebuilt when its spec changes: the params trigger). The LMs'
    # tokenizer trains on the demo stories' words, drawn from the generator's settings (corpus),
    # so this job runs beside generate_demo_dataset, not after it
    rule build_tiny_models:
        input:
            textgrids=STUDY.tiny_models_textgrids(),
        output:
            [directory(path("model", model=m)) for m in STUDY.built_models],
        log:
            fill(log("build_tiny_models", "model"), model="all"),
        benchmark:
            fill(benchmark("build_tiny_models", "model"), model="all")
        conda:
            "../envs/features.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            builds=STUDY.tiny_model_builds(),
            corpus=STUDY.tiny_models_corpus(),
        script:
            "../workflow_scripts/build_tiny_models.py"
