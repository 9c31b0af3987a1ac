# The embedded demo: a synthetic dataset in the exact ds003020 layout, and tiny random models.


rule generate_demo_dataset:
    output:
        respdict="results/data/{dataset}/derivative/respdict.json",
        textgrids=expand(
            "results/data/{{dataset}}/derivative/TextGrids/{story}.TextGrid",
            story=ALL_STORIES,
        ),
        audio=expand("results/data/{{dataset}}/stimuli/{story}.wav", story=ALL_STORIES),
        responses=expand(
            "results/data/{{dataset}}/derivative/preprocessed_data/{subject}/{story}.hf5",
            subject=SUBJECTS,
            story=ALL_STORIES,
        ),
        masks=expand(
            "results/data/{{dataset}}/derivative/pycortex-db/{subject}/transforms/{subject}_auto/{name}.nii.gz",
            subject=SUBJECTS,
            name=["mask_thick", "reference"],
        ),
        ground_truth=directory("results/data/{dataset}/ground_truth"),
    log:
        "results/logs/generate_demo_dataset/{dataset}.log",
    benchmark:
        "results/benchmarks/generate_demo_dataset/{dataset}.tsv"
    wildcard_constraints:
        dataset=SYNTHETIC_DATASET,
    conda:
        "../envs/fmriscaling.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        root=lambda wildcards: f"results/data/{wildcards.dataset}",
        subjects=SUBJECTS,
        test_story=TEST_STORY,
        generator=config["synthetic"],
        tr=config["stimuli"]["tr"],
    script:
        "../workflow_scripts/generate_demo_dataset.py"


rule build_tiny_model:
    input:
        corpus=tiny_model_corpus,
    output:
        directory("results/models/{model}"),
    log:
        "results/logs/build_tiny_model/{model}.log",
    wildcard_constraints:
        model=_alternatives(BUILT_MODELS),
    conda:
        "../envs/features.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        kind=lambda wildcards: MODELS[wildcards.model]["kind"],
        build=lambda wildcards: MODELS[wildcards.model]["source"]["build"],
        n_layers=lambda wildcards: MODELS[wildcards.model]["n_layers"],
    script:
        "../workflow_scripts/build_tiny_model.py"
