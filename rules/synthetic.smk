# The embedded demo: a synthetic dataset in the exact ds003020 layout, and tiny random models.


rule generate_demo_dataset:
    output:
        respdict=path("respdict"),
        textgrids=[path("textgrid", story=s) for s in STUDY.all_stories],
        audio=[path("audio", story=s) for s in STUDY.all_stories],
        responses=[
            path("responses", subject=sub, story=s) for sub in SUBJECTS for s in STUDY.all_stories
        ],
        masks=[
            path("transform", subject=sub, name=name)
            for sub in SUBJECTS
            for name in ("mask_thick", "reference")
        ],
        # with synthetic.cortex: the rest of each subject's pycortex folder and its annotations
        pycortex=[f for sub in SUBJECTS for f in STUDY.demo_pycortex_outputs(sub)],
        annotations=(
            [f for sub in SUBJECTS for f in STUDY.annotation_files(sub)]
            if STUDY.has_cortex
            else []
        ),
        ground_truth=directory(path("ground_truth")),
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
