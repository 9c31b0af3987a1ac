# The vision track: Algonauts 2023 / NSD (Matsuyama, Sasaki & Nishimoto 2023; METHODS.md
# section 2). The demo's synthetic dataset in the challenge layout, or a checked local copy;
# every layer's spatial map max-pooled to k x k; per-vertex (layer, k) selection by
# cross-validated ridge on all and on subsets of the training images; the challenge's noise
# ceiling; tables and figures.

# the demo's dataset; a local copy is read where it lies
if STUDY.vision_source == "synthetic":

    rule generate_demo_vision_dataset:
        input:
            truth_model=STUDY.vision_truth_model_dir(),
        output:
            **with_directories(STUDY.demo_vision_outputs(), "ground_truth", "images"),
        log:
            log("generate_demo_vision_dataset", "data"),
        benchmark:
            benchmark("generate_demo_vision_dataset", "data")
        wildcard_constraints:
            dataset=STUDY.vision_wildcards()["dataset"],
        conda:
            "../envs/features.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            subjects=STUDY.vision_subjects,
            hemispheres=STUDY.hemispheres,
            generator=VISION["synthetic"],
        script:
            "../workflow_scripts/generate_demo_vision_dataset.py"


rule extract_vision_features:
    input:
        model=over(STUDY.model_dir, "model"),
        images=over(STUDY.vision_image_folders),
    output:
        directory(path("features")),
    log:
        log("extract_vision_features", "features"),
    benchmark:
        benchmark("extract_vision_features", "features")
    wildcard_constraints:
        **STUDY.vision_wildcards(),
    conda:
        "../envs/features.yaml"
    threads: config["compute"]["vision_threads"]
    resources:
        mem_mb=per_attempt("extract_mem_mb"),
        runtime=per_attempt("extract_runtime"),
        gpu=GPU,
    params:
        model_name="{model}",
        image_sets=over(STUDY.vision_image_set_names),
        expected_n_layers=over(STUDY.n_layers, "model"),
        pooling=VISION["pooling"],
        batch_size=VISION["features"]["batch_size"],
        n_workers=VISION["features"]["n_workers"],
        device=config["features"]["device"],
        dtype=config["features"]["dtype"],
    script:
        "../workflow_scripts/extract_vision_features.py"


rule select_vision:
    input:
        features=path("features"),
        fmri=over(STUDY.vision_fmri, "subject"),
        test_fmri=over(STUDY.vision_test_fmri, "subject"),
    output:
        scores=path("vision_fit", ext="npz"),
        summary=path("vision_fit", ext="json"),
    log:
        log("select_vision", "vision_fit"),
    benchmark:
        benchmark("select_vision", "vision_fit")
    wildcard_constraints:
        **STUDY.vision_wildcards(),
    conda:
        "../envs/encoding.yaml"
    threads: config["compute"]["vision_threads"]
    resources:
        mem_mb=per_attempt("ridge_mem_mb"),
        runtime=per_attempt("ridge_runtime"),
        gpu=GPU,
    params:
        subject="{subject}",
        layers=over(STUDY.layers_of, "model"),
        selection=STUDY.vision_selection_params(),
        save_predictions=over(STUDY.vision_save_predictions, "model"),
        sweep={},
    script:
        "../workflow_scripts/select_vision.py"


if STUDY.vision_sweep_sizes:

    use rule select_vision as select_vision_sweep with:
        output:
            scores=STUDY.vision_sweep_outputs("npz"),
            summary=STUDY.vision_sweep_outputs("json"),
        log:
            fill(log("select_vision_sweep", "vision_subset_fit"), n="all", seed="all"),
        benchmark:
            fill(benchmark("select_vision_sweep", "vision_subset_fit"), n="all", seed="all")
        params:
            subject="{subject}",
            layers=over(STUDY.layers_of, "model"),
            selection=STUDY.vision_selection_params(),
            save_predictions=False,
            # one job per (subject, model): every size and seed, in the order of the outputs
            sweep={"sizes": STUDY.vision_sweep_sizes, "seeds": VISION["subsampling"]["seeds"]},


rule vision_noise_ceiling:
    input:
        ncsnr=over(STUDY.vision_ncsnr, "subject"),
        fmri=over(STUDY.vision_fmri, "subject"),
        test_fmri=over(STUDY.vision_test_fmri, "subject"),
        repeats=over(STUDY.vision_repeats, "subject"),
    output:
        path("noise_ceiling"),
    log:
        log("vision_noise_ceiling", "noise_ceiling"),
    benchmark:
        benchmark("vision_noise_ceiling", "noise_ceiling")
    wildcard_constraints:
        dataset=STUDY.vision_wildcards()["dataset"],
        subject=STUDY.vision_wildcards()["subject"],
    conda:
        "../envs/fmriscaling.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        hemispheres=STUDY.hemispheres,
        n_images=VISION["split"]["n_images"],
        test_fraction=VISION["split"]["test_fraction"],
        default_repeats=VISION["noise_ceiling"]["n_repeats"],
    script:
        "../workflow_scripts/vision_noise_ceiling.py"


rule vision_ensemble:
    input:
        scores=over(STUDY.vision_ensemble_members, "subject"),
        fmri=over(STUDY.vision_fmri, "subject"),
        test_fmri=over(STUDY.vision_test_fmri, "subject"),
    output:
        scores=path("vision_ensemble", ext="npz"),
        summary=path("vision_ensemble", ext="json"),
    log:
        log("vision_ensemble", "vision_ensemble"),
    benchmark:
        benchmark("vision_ensemble", "vision_ensemble")
    wildcard_constraints:
        dataset=STUDY.vision_wildcards()["dataset"],
        subject=STUDY.vision_wildcards()["subject"],
    conda:
        "../envs/encoding.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt("ridge_mem_mb"),
        runtime=10,
    params:
        subject="{subject}",
        members=VISION["ensemble"],
        hemispheres=STUDY.hemispheres,
    script:
        "../workflow_scripts/vision_ensemble.py"


rule vision_table:
    input:
        scores=over(STUDY.vision_entry_files, ext="npz"),
        summaries=over(STUDY.vision_entry_files, ext="json"),
        ceilings=(
            [vpath("noise_ceiling", subject=s) for s in STUDY.vision_subjects]
            if VISION["noise_ceiling"]["enabled"]
            else []
        ),
        rois=over(STUDY.vision_roi_inputs),
        features=[vpath("features", model=m) for m in STUDY.vision_run_models],
    output:
        **STUDY.vision_table_outputs(),
    log:
        log("vision_table", "data"),
    benchmark:
        benchmark("vision_table", "data")
    wildcard_constraints:
        dataset=STUDY.vision_wildcards()["dataset"],
    conda:
        "../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        entries=over(STUDY.vision_entry_labels),
        subjects=STUDY.vision_subjects,
        models=STUDY.vision_run_models,
        roi_classes=STUDY.vision_roi_classes,
        n_hemispheres=len(STUDY.hemispheres),
        bootstrap=config["scaling"]["bootstrap"],
        ci=config["scaling"]["ci"],
    script:
        "../workflow_scripts/vision_table.py"


rule vision_figures:
    input:
        encoding=path("table", name="encoding"),
        rois=path("table", name="rois"),
        selection=path("table", name="selection"),
    output:
        **STUDY.vision_figure_outputs(),
    log:
        log("vision_figures", "data"),
    benchmark:
        benchmark("vision_figures", "data")
    wildcard_constraints:
        dataset=STUDY.vision_wildcards()["dataset"],
    conda:
        "../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        names=STUDY.vision_figure_names,
        data_model=VISION["subsampling"]["model"],
    script:
        "../workflow_scripts/vision_figures.py"
