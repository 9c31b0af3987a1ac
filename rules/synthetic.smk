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


rule build_tiny_model:
    input:
        corpus=over(STUDY.tiny_model_corpus, "model"),
    output:
        directory(path("model")),
    log:
        log("build_tiny_model", "model"),
    benchmark:
        benchmark("build_tiny_model", "model")
    wildcard_constraints:
        model=alternatives(STUDY.built_models),
    conda:
        "../envs/features.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        kind=over(STUDY.kind_of, "model"),
        build=over(STUDY.source_field, "model", key="build"),
        n_layers=over(STUDY.n_layers, "model"),
    script:
        "../workflow_scripts/build_tiny_model.py"
