# Group maps on fsaverage5 (config group_maps:): each subject's maps carried to fsaverage5
# (language: voxels -> pycortex vertices -> the FreeSurfer registration sphere; vision: the
# challenge's fsaverage vertices), averaged across subjects, written as GIFTI, tabulated per ROI
# and drawn (nilearn: a figure and an interactive page per map); a pycortex WebGL viewer per
# language subject. `make view` serves them (python -m fmriscaling.viewers).

if STUDY.surface_enabled:

    rule surface_maps:
        input:
            unpack(over(STUDY.surface_inputs, "subject")),
        output:
            maps=path("surface_maps"),
            giftis=STUDY.surface_giftis("language", "{subject}", "{dataset}"),
        log:
            log("surface_maps", "surface_maps"),
        benchmark:
            benchmark("surface_maps", "surface_maps")
        conda:
            "../envs/figures.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=20,
        params:
            specs=STUDY.surface_spec_params("language"),
            subject="{subject}",
            score_labels=over(STUDY.surface_score_labels, "subject"),
            stacks=STUDY.speech_stacks,
            atlases=STUDY.atlases,
            db_dir=pycortex_db_of,
            xfmname="{subject}_auto",
            floor=config["noise_ceiling"]["floor"],
            sampler=config["group_maps"]["sampler"],
        script:
            "../workflow_scripts/surface_maps.py"


if STUDY.vision_surface_enabled:

    rule vision_surface_maps:
        input:
            unpack(over(STUDY.vision_surface_inputs, "subject")),
        output:
            maps=path("surface_maps"),
            giftis=STUDY.surface_giftis("vision", "{subject}", "{dataset}"),
        log:
            log("vision_surface_maps", "surface_maps"),
        benchmark:
            benchmark("vision_surface_maps", "surface_maps")
        wildcard_constraints:
            dataset=STUDY.vision_wildcards()["dataset"],
            subject=STUDY.vision_wildcards()["subject"],
        conda:
            "../envs/figures.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=20,
        params:
            specs=STUDY.surface_spec_params("vision"),
            subject="{subject}",
            models=STUDY.vision_run_models,
            n_layers={m: STUDY.n_layers(m) for m in STUDY.vision_run_models},
            hemispheres=STUDY.hemispheres,
            roi_classes=STUDY.vision_roi_classes,
        script:
            "../workflow_scripts/vision_surface_maps.py"


# the group maps and their figures, once per track (rules group_maps, group_figures and
# vision_group_maps, vision_group_figures)
for track in STUDY.surface_tracks():
    prefix = "" if track == "language" else "vision_"

    rule:
        name:
            f"{prefix}group_maps"
        input:
            STUDY.group_inputs(track),
        output:
            maps=STUDY.surface_maps_file(track, "group"),
            giftis=STUDY.surface_giftis(track, "group"),
            table=report(
                STUDY.group_roi_table(track),
                caption="report/group_rois.rst",
                category="Group maps (fsaverage5)",
                subcategory=STUDY.surface_dataset(track),
            ),
        log:
            f"results/logs/{prefix}group_maps/{STUDY.surface_dataset(track)}.log",
        benchmark:
            f"results/benchmarks/{prefix}group_maps/{STUDY.surface_dataset(track)}.tsv"
        conda:
            "../envs/figures.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=10,
        params:
            specs=STUDY.surface_spec_params(track),
            subjects=STUDY.subjects if track == "language" else STUDY.vision_subjects,
            roi_groups=config["rois"]["groups"] if track == "language" else {},
        script:
            "../workflow_scripts/group_maps.py"

    rule:
        name:
            f"{prefix}group_figures"
        input:
            STUDY.surface_maps_file(track, "group"),
        output:
            figures=report(
                [f for fs in STUDY.group_figure_files(track).values() for f in fs],
                caption="report/group_map.rst",
                category="Group maps (fsaverage5)",
                subcategory=STUDY.surface_dataset(track),
            ),
            pages=STUDY.group_page_files(track),
        log:
            f"results/logs/{prefix}group_figures/{STUDY.surface_dataset(track)}.log",
        benchmark:
            f"results/benchmarks/{prefix}group_figures/{STUDY.surface_dataset(track)}.tsv"
        conda:
            "../envs/figures.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=20,
        params:
            specs=STUDY.surface_spec_params(track),
            figures=STUDY.group_figure_files(track),
            pages=STUDY.group_pages(track),
            n_subjects=len(STUDY.subjects if track == "language" else STUDY.vision_subjects),
            dataset=STUDY.surface_dataset(track),
            # the report's links to the interactive pages and viewers (relative to results/)
            links=STUDY.viewer_links(track),
        script:
            "../workflow_scripts/group_figures.py"


if STUDY.viewers_enabled:

    rule subject_viewer:
        input:
            unpack(over(STUDY.viewer_inputs, "subject")),
        output:
            directory(path("viewer")),
        log:
            log("subject_viewer", "viewer"),
        benchmark:
            benchmark("subject_viewer", "viewer")
        conda:
            "../envs/figures.yaml"
        threads: 1
        resources:
            mem_mb=8000,
            runtime=30,
        params:
            subject="{subject}",
            db_dir=pycortex_db_of,
            xfmname="{subject}_auto",
        script:
            "../workflow_scripts/subject_viewer.py"
