# The vision track: Algonauts 2023 / NSD (Matsuyama, Sasaki & Nishimoto 2023; METHODS.md
# section 2). The demo's synthetic dataset in the challenge layout, or a checked local copy;
# every layer's spatial map max-pooled to k x k; per-vertex (layer, k) selection by
# cross-validated ridge on all and on subsets of the training images; the challenge's noise
# ceiling; tables and figures.

VISION_SELECTION = dict(
    pooling=VISION["pooling"],
    hemispheres=HEMISPHERES,
    alphas=np.logspace(
        VISION["selection"]["alphas"]["log10_min"],
        VISION["selection"]["alphas"]["log10_max"],
        VISION["selection"]["alphas"]["num"],
    ).tolist(),
    n_folds=VISION["selection"]["n_folds"],
    fold_seed=VISION["selection"]["seed"],
    n_images=VISION["split"]["n_images"],
    test_fraction=VISION["split"]["test_fraction"],
    n_train=VISION["split"]["n_train"],
    backend=config["encoding"]["backend"],
    solver=config["encoding"]["solver"],
    score_dtype=config["encoding"]["score_dtype"],
)


# the demo's dataset; a local copy is read where it lies
if VISION_SOURCE == "synthetic":

    rule generate_demo_vision_dataset:
        input:
            truth_model=model_dir(_VISION_TRUTH[0]) if _VISION_TRUTH else [],
        output:
            ground_truth=directory(path("vision_truth")),
            fmri=[f for s in VISION_SUBJECTS for f in vision_subject_files(s, "{dataset}")["fmri"]],
            images=[
                directory(f)
                for s in VISION_SUBJECTS
                for f in vision_subject_files(s, "{dataset}")["images"]
            ],
            rois=[
                f
                for s in VISION_SUBJECTS
                for kind in ("roi_masks", "roi_mappings", "fsaverage")
                for f in vision_subject_files(s, "{dataset}")[kind]
            ],
            noise_ceiling=[
                f
                for s in VISION_SUBJECTS
                for kind in ("ncsnr", "repeats")
                for f in vision_subject_files(s, "{dataset}")[kind]
            ],
        log:
            log("generate_demo_vision_dataset", "data"),
        benchmark:
            benchmark("generate_demo_vision_dataset", "data")
        wildcard_constraints:
            dataset=SYNTHETIC_VISION,
        conda:
            "../envs/features.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            subjects=VISION_SUBJECTS,
            hemispheres=HEMISPHERES,
            generator=VISION["synthetic"],
        script:
            "../workflow_scripts/generate_demo_vision_dataset.py"


rule extract_vision_features:
    input:
        model=model_dir_input,
        images=lambda wildcards: [folder for _, folder in vision_image_sets()],
    output:
        directory(path("features")),
    log:
        log("extract_vision_features", "features"),
    benchmark:
        benchmark("extract_vision_features", "features")
    wildcard_constraints:
        **VISION_WILDCARDS,
    conda:
        "../envs/features.yaml"
    threads: config["compute"]["vision_threads"]
    resources:
        mem_mb=per_attempt("extract_mem_mb"),
        runtime=per_attempt("extract_runtime"),
        gpu=GPU,
    params:
        model_name="{model}",
        image_sets=lambda wildcards: [name for name, _ in vision_image_sets()],
        expected_n_layers=lambda wildcards: MODELS[wildcards.model]["n_layers"],
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
        fmri=vision_fmri,
        test_fmri=vision_test_fmri,
    output:
        scores=path("vision_fit", ext="npz"),
        summary=path("vision_fit", ext="json"),
    log:
        log("select_vision", "vision_fit"),
    benchmark:
        benchmark("select_vision", "vision_fit")
    wildcard_constraints:
        **VISION_WILDCARDS,
    conda:
        "../envs/encoding.yaml"
    threads: config["compute"]["vision_threads"]
    resources:
        mem_mb=per_attempt("ridge_mem_mb"),
        runtime=per_attempt("ridge_runtime"),
        gpu=GPU,
    params:
        subject="{subject}",
        layers=lambda wildcards: layers_of(wildcards.model),
        selection=VISION_SELECTION,
        # ensemble members keep their test predictions
        save_predictions=lambda wildcards: (
            VISION["selection"]["save_predictions"] or wildcards.model in VISION["ensemble"]
        ),
        sweep={},
    script:
        "../workflow_scripts/select_vision.py"


if VISION_SWEEP_SIZES:

    use rule select_vision as select_vision_sweep with:
        output:
            scores=[
                path("vision_subset_fit", n=n, seed=s, ext="npz")
                for n in VISION_SWEEP_SIZES
                for s in VISION["subsampling"]["seeds"]
            ],
            summary=[
                path("vision_subset_fit", n=n, seed=s, ext="json")
                for n in VISION_SWEEP_SIZES
                for s in VISION["subsampling"]["seeds"]
            ],
        log:
            fill(log("select_vision_sweep", "vision_subset_fit"), n="all", seed="all"),
        benchmark:
            fill(benchmark("select_vision_sweep", "vision_subset_fit"), n="all", seed="all")
        params:
            subject="{subject}",
            layers=lambda wildcards: layers_of(wildcards.model),
            selection=VISION_SELECTION,
            save_predictions=False,
            # one job per (subject, model): every size and seed, in the order of the outputs
            sweep={"sizes": VISION_SWEEP_SIZES, "seeds": VISION["subsampling"]["seeds"]},


rule vision_noise_ceiling:
    input:
        ncsnr=lambda wildcards: vision_subject_files(wildcards.subject)["ncsnr"],
        fmri=vision_fmri,
        test_fmri=vision_test_fmri,
        repeats=vision_repeats,
    output:
        path("noise_ceiling"),
    log:
        log("vision_noise_ceiling", "noise_ceiling"),
    benchmark:
        benchmark("vision_noise_ceiling", "noise_ceiling")
    wildcard_constraints:
        dataset=VISION_WILDCARDS["dataset"],
        subject=VISION_WILDCARDS["subject"],
    conda:
        "../envs/fmriscaling.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        hemispheres=HEMISPHERES,
        n_images=VISION["split"]["n_images"],
        test_fraction=VISION["split"]["test_fraction"],
        default_repeats=VISION["noise_ceiling"]["n_repeats"],
    script:
        "../workflow_scripts/vision_noise_ceiling.py"


rule vision_ensemble:
    input:
        scores=lambda wildcards: [
            vpath("vision_fit", subject=wildcards.subject, model=m, ext="npz")
            for m in VISION["ensemble"]
        ],
        fmri=vision_fmri,
        test_fmri=vision_test_fmri,
    output:
        scores=path("vision_ensemble", ext="npz"),
        summary=path("vision_ensemble", ext="json"),
    log:
        log("vision_ensemble", "vision_ensemble"),
    benchmark:
        benchmark("vision_ensemble", "vision_ensemble")
    wildcard_constraints:
        dataset=VISION_WILDCARDS["dataset"],
        subject=VISION_WILDCARDS["subject"],
    conda:
        "../envs/encoding.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt("ridge_mem_mb"),
        runtime=10,
    params:
        subject="{subject}",
        members=VISION["ensemble"],
        hemispheres=HEMISPHERES,
    script:
        "../workflow_scripts/vision_ensemble.py"


rule vision_table:
    input:
        scores=lambda wildcards: [fill(e["path"], ext="npz") for e in vision_entries()],
        summaries=lambda wildcards: [fill(e["path"], ext="json") for e in vision_entries()],
        ceilings=(
            [vpath("noise_ceiling", subject=s) for s in VISION_SUBJECTS]
            if VISION["noise_ceiling"]["enabled"]
            else []
        ),
        rois=lambda wildcards: [
            f for s in VISION_SUBJECTS for fs in vision_roi_files(s).values() for f in fs
        ],
        features=[vpath("features", model=m) for m in VISION_RUN_MODELS],
    output:
        **{name: path("table", name=name) for name in VISION_TABLE_NAMES},
    log:
        log("vision_table", "data"),
    benchmark:
        benchmark("vision_table", "data")
    wildcard_constraints:
        dataset=VISION_WILDCARDS["dataset"],
    conda:
        "../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        entries=lambda wildcards: entry_labels(vision_entries()),
        subjects=VISION_SUBJECTS,
        models=VISION_RUN_MODELS,
        roi_classes=list(ROI_CLASSES),
        n_hemispheres=len(HEMISPHERES),
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
        **vision_figure_outputs(),
    log:
        log("vision_figures", "data"),
    benchmark:
        benchmark("vision_figures", "data")
    wildcard_constraints:
        dataset=VISION_WILDCARDS["dataset"],
    conda:
        "../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        names=VISION_FIGURE_NAMES,
        data_model=VISION["subsampling"]["model"],
    script:
        "../workflow_scripts/vision_figures.py"
