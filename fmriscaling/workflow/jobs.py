"""Every job of a study, from the `Study` itself: what the plan prices.

`study_jobs` lists the jobs of the default target (``rule all``) stage by stage, each with its
rule, wildcards, outputs, inputs and the facts its price needs (``params``: subjects, stories,
model, layer, training-set size, images). It reads no data: it is how a study is planned
before a download. ``tests/test_study.py`` holds it against the DAG Snakemake builds from the
rules (the same rule and output file for every job of the demo and the cluster slice).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._utils import DataError
from .paths import fill

if TYPE_CHECKING:
    from .study import Study

__all__ = ["Job", "study_jobs"]


@dataclass
class Job:
    """One job of a study.

    Attributes
    ----------
    rule : str
        The rule's name (fit groups after the first: ``fit_encoding_2``, ...).
    outputs, inputs : list of str
        Its files, as the rule declares them (wildcards filled in).
    wildcards : dict
    params : dict
        The facts its price needs (see `fmriscaling.plan.CostModel`).
    gpu : bool
        Whether it runs on GPUs (``compute.gpu``).
    n_gpus : int
        How many GPUs it asks for (extraction: what its model needs, `Study.extract_gpus`;
        other GPU jobs one; 0 on a CPU).
    local : bool
        A local rule (downloads, ``all``): the login node on a cluster.
    runtime : float or None
        The minutes it asks for on its first attempt (heavy rules).
    """

    rule: str
    outputs: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    wildcards: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    gpu: bool = False
    local: bool = False
    n_gpus: int = 0
    runtime: float | None = None


def study_jobs(study: Study) -> list[Job]:
    """Every job ``snakemake`` runs for the study's default target, in stage order.

    Dataset files that no job makes are downloads (`download_ds003020_file`) for a study on
    OpenNeuro, and the generator's outputs for the demo.
    """
    jobs: list[Job] = []
    jobs += _models(study)
    if study.run_models:
        jobs += _language(study)
    if study.vision_enabled:
        jobs += _vision(study)
    jobs += _surface(study)
    if study.source == "openneuro" and study.run_models:
        made = {f for job in jobs for f in job.outputs}
        data = study.path("data", dataset=study.dataset) + "/"
        needed = sorted({f for job in jobs for f in job.inputs if f.startswith(data)} - made)
        jobs[:0] = [
            Job(
                "download_ds003020_file",
                outputs=[f],
                wildcards=dict(dataset=study.dataset, path=f[len(data) :]),
                params=dict(bytes=study.manifest_entry(f[len(data) :])["size"]),
                local=True,
            )
            for f in needed
        ]
    jobs.append(Job("all", inputs=study.final_targets(), local=True))
    return jobs


def _heavy(study: Study, runtime_key: str, n_gpus: int | None = None) -> dict[str, Any]:
    compute = study.config["compute"]
    gpu = bool(compute["gpu"])
    n = (1 if gpu else 0) if n_gpus is None else n_gpus
    return dict(gpu=gpu, runtime=float(compute[runtime_key]), n_gpus=n)


def _models(study: Study) -> list[Job]:
    """Snapshots of the models the study runs: built (demo) or downloaded (hub)."""
    jobs = []
    if study.built_models:
        jobs.append(
            Job(
                "build_tiny_models",
                outputs=[study.path("model", model=m) for m in study.built_models],
                inputs=study.tiny_models_textgrids(),
                params=dict(models=list(study.built_models)),
            )
        )
    for model in study.models:
        if model in study.hub_models:
            jobs.append(
                Job(
                    "download_model",
                    outputs=[study.path("model", model=model)],
                    wildcards=dict(model=model),
                    params=dict(model=model),
                    local=True,
                )
            )
    return jobs


def _each(template: Iterable[str], **values: Any) -> list[str]:
    return [fill(t, **values) for t in template]


def _flat(named: dict[str, str | list[str]]) -> list[str]:
    """A rule's named outputs (one file or a list each) as one list, in order."""
    return [f for files in named.values() for f in ([files] if isinstance(files, str) else files)]


def _language(study: Study) -> list[Job]:
    d = study.dataset
    jobs: list[Job] = []
    if study.source == "synthetic":
        outputs = _flat(study.demo_dataset_outputs())
        jobs.append(
            Job(
                "generate_demo_dataset",
                outputs=_each(outputs, dataset=d),
                wildcards=dict(dataset=d),
                params=dict(subjects=study.subjects),
            )
        )
    for story in study.all_stories:
        jobs.append(
            Job(
                "story_timing",
                outputs=[
                    study.path("timing", dataset=d, story=story, kind=k) for k in ("words", "trs")
                ],
                inputs=[
                    study.path("textgrid", dataset=d, story=story),
                    study.path("respdict", dataset=d),
                ],
                wildcards=dict(dataset=d, story=story),
                params=dict(story=story),
            )
        )
    for model in study.run_models:
        kind = study.models[model]["kind"]
        trs = _each(study.timing_tables("trs"), dataset=d)
        stimuli = (
            _each(study.timing_tables("words"), dataset=d)
            if kind == "text"
            else [study.path("audio", dataset=d, story=s) for s in study.all_stories]
        )
        jobs.append(
            Job(
                f"extract_{kind}_features",
                outputs=[study.path("features", dataset=d, model=model)],
                inputs=[study.model_dir(model), *stimuli, *trs],
                wildcards=dict(dataset=d, model=model),
                params=dict(model=model, stories=study.all_stories),
                **_heavy(study, "extract_runtime", study.extract_gpus(model)),
            )
        )
    for subject in study.subjects:
        jobs.append(
            Job(
                "prepare_responses",
                outputs=[study.path("prepared", dataset=d, subject=subject)],
                inputs=study.prepared_responses(subject),
                wildcards=dict(dataset=d, subject=subject),
                params=dict(subject=subject, stories=study.prepared_stories(subject)),
            )
        )
    for subject in study.subjects:
        jobs.append(
            Job(
                "noise_ceiling",
                outputs=[study.path("noise_ceiling", dataset=d, subject=subject)],
                inputs=study.responses_of(subject, [study.test_story]),
                wildcards=dict(dataset=d, subject=subject),
                params=dict(subject=subject),
            )
        )
    jobs += _fits(study)
    jobs += _stacking(study)
    jobs += _tables_and_figures(study)
    return jobs


def _fits(study: Study) -> list[Job]:
    """One job per (model, layer[, subset or fixed width]) and group of subjects sharing a
    training set."""
    d, sub = study.dataset, study.config["subsampling"]
    jobs = []
    for index, group in enumerate(study.fit_groups):
        responses = [study.path("prepared", dataset=d, subject=s) for s in group]
        for model in study.run_models:
            features = study.path("features", dataset=d, model=model)
            for layer in study.layers_of(model):
                # (kind, its extra wildcards, training-set size, seed): the fit on all stories,
                # the data-size draws, and the layer at each fixed width (features.fixed_dim)
                fits: list[tuple[str, dict[str, Any], int | None, int]] = [("fit", {}, None, -1)]
                if any(f["model"] == model and layer in f["layers"] for f in sub["fits"]):
                    fits += [
                        ("subset_fit", dict(n=n, seed=seed), n, seed)
                        for n in study.subsample_sizes(group[0])
                        for seed in sub["seeds"]
                    ]
                fits += [("width_fit", dict(width=w), None, -1) for w in study.fixed_dims[model]]
                for kind, extra, n, seed in fits:
                    labels = dict(dataset=d, model=model, layer=layer, **extra)
                    outputs = [
                        f
                        for ext in ("npz", "json")
                        for f in _each(study.group_outputs(kind, group, ext), **labels)
                    ]
                    width = {"width": extra["width"]} if kind == "width_fit" else {}
                    jobs.append(
                        Job(
                            study.fit_rule_name(kind, index),
                            outputs=outputs,
                            inputs=[features, *responses],
                            wildcards=labels,
                            params=dict(
                                subjects=group,
                                model=model,
                                layer=layer,
                                n_train=n,
                                **width,
                                train_stories=study.fit_stories(group, n, seed),
                            ),
                            **_heavy(study, "ridge_runtime"),
                        )
                    )
    return jobs


def _stacking(study: Study) -> list[Job]:
    d = study.dataset
    jobs = []
    for subject in study.subjects:
        for model, layer in study.member_spaces():
            jobs.append(
                Job(
                    "stack_member",
                    outputs=[
                        study.path(
                            "stack_member", dataset=d, subject=subject, model=model, layer=layer
                        )
                    ],
                    inputs=[
                        study.path("features", dataset=d, model=model),
                        study.path("prepared", dataset=d, subject=subject),
                        *study.member_fits(d, subject, model, layer),
                    ],
                    wildcards=dict(dataset=d, subject=subject, model=model, layer=layer),
                    params=dict(
                        subjects=[subject],
                        model=model,
                        layer=layer,
                        n_train=None,
                        train_stories=study.train_stories(subject),
                    ),
                    **_heavy(study, "ridge_runtime"),
                )
            )
        for stack in study.stacks:
            jobs.append(
                Job(
                    "stack_regression",
                    outputs=[study.path("stack", dataset=d, subject=subject, stack=stack)],
                    inputs=[
                        *study.stack_member_files(d, subject, stack),
                        study.path("noise_ceiling", dataset=d, subject=subject),
                    ],
                    wildcards=dict(dataset=d, subject=subject, stack=stack),
                    params=dict(subject=subject, n_members=len(study.stacks[stack])),
                    **_heavy(study, "ridge_runtime"),
                )
            )
    if study.stacks:
        jobs.append(
            Job(
                "stacking_table",
                outputs=[study.path("table", dataset=d, name=n) for n in study.stack_table_names],
                inputs=[e["path"] for e in study.stack_entries],
                wildcards=dict(dataset=d),
            )
        )
    return jobs + _partitions(study)


def _partitions(study: Study) -> list[Job]:
    """One joint fit per (subject, partition), the tables, the figure and the maps."""
    d = study.dataset
    jobs = []
    for entry in study.partition_entries:
        subject, partition = entry["subject"], entry["partition"]
        jobs.append(
            Job(
                "fit_partition",
                outputs=[entry["path"]],
                inputs=[
                    *study.partition_member_files(d, subject, partition),
                    *study.partition_feature_dirs(d, partition),
                    study.path("prepared", dataset=d, subject=subject),
                ],
                wildcards=dict(dataset=d, subject=subject, partition=partition),
                params=dict(
                    subject=subject,
                    bands=study.partitions[partition],
                    train_stories=study.train_stories(subject),
                ),
                **_heavy(study, "ridge_runtime"),
            )
        )
    if not study.partitions:
        return jobs
    outputs = [fill(f, dataset=d) for f in study.partition_table_outputs().values()]
    jobs.append(
        Job(
            "partition_table",
            outputs=outputs,
            inputs=[e["path"] for e in study.partition_entries + study.stack_entries],
            wildcards=dict(dataset=d),
        )
    )
    return jobs


def _tables_and_figures(study: Study) -> list[Job]:
    from .. import outputs as names

    d = study.dataset
    table = lambda name: study.path("table", dataset=d, name=name)  # noqa: E731
    gz = lambda name: study.path("table_gz", dataset=d, name=name)  # noqa: E731
    figure = lambda name: study.formats_of("figure", dataset=d, name=name)  # noqa: E731
    scores = _each(study.entry_files(study.table_entries, "npz"), dataset=d)
    jobs = [
        Job("encoding_table", [table(n) for n in names.ENCODING_TABLES], scores),
        Job("bootstrap_means", [gz(names.BOOTSTRAP_TABLE)], [table("encoding"), *scores]),
        Job(
            "scaling_table",
            [*(table(n) for n in names.SCALING_TABLES), gz(names.SCALING_LINES)],
            [table("encoding"), gz(names.BOOTSTRAP_TABLE)],
        ),
    ]
    for subject in study.subjects if study.has_cortex else []:
        jobs.append(
            Job(
                "roi_labels",
                outputs=[study.path("rois", dataset=d, subject=subject)],
                inputs=[*study.pycortex_inputs(subject), *study.annotation_inputs(d, subject)],
                wildcards=dict(dataset=d, subject=subject),
                params=dict(subject=subject),
            )
        )
    full = [e for s in study.subjects for e in study.full_fits_of(s)]
    jobs.append(
        Job(
            "roi_tables",
            [*(gz(n) for n in names.VOXEL_TABLES), table(names.ROI_TABLE)],
            _each(study.entry_files(full, "npz"), dataset=d),
        )
    )
    jobs.append(
        Job(
            "scaling_figures",
            [f for fs in study.figure_outputs().values() for f in _each(fs, dataset=d)],
            [table("encoding")],
        )
    )
    jobs.append(Job("noise_ceiling_figure", figure(names.NOISE_CEILING_FIGURE), [gz("voxels")]))
    if study.stacks:
        jobs.append(Job("stacking_figure", figure(names.STACKING_FIGURE), [table("stacking")]))
    if study.partitions:
        jobs.append(
            Job(
                "partition_figure",
                figure(names.PARTITION_FIGURE),
                [table(names.PARTITION_TABLES[0])],
            )
        )
    if study.config["figures"]["brain_maps"]:
        for subject in study.subjects:
            jobs.append(
                Job(
                    "brain_map",
                    outputs=study.formats_of("brain_map", dataset=d, subject=subject),
                    inputs=[gz("voxels"), *study.pycortex_inputs(subject)],
                    wildcards=dict(dataset=d, subject=subject),
                    params=dict(subject=subject),
                )
            )
            if study.partitions:
                jobs.append(
                    Job(
                        "partition_map",
                        outputs=study.formats_of("partition_map", dataset=d, subject=subject),
                        inputs=[
                            *study.partition_maps_of(subject),
                            *study.pycortex_inputs(subject),
                        ],
                        wildcards=dict(dataset=d, subject=subject),
                        params=dict(subject=subject),
                    )
                )
    jobs.append(Job("cost_table", [table(names.COST_TABLE)], [table("encoding")]))
    jobs.append(Job("cost_figure", figure(names.COST_FIGURE), [table(names.COST_TABLE)]))
    for job in jobs:
        job.wildcards.setdefault("dataset", d)
    return jobs


def _vision(study: Study) -> list[Job]:
    d = study.vision_dataset
    vpath = study.vpath
    jobs: list[Job] = []
    if study.vision_source == "synthetic":
        files = _each(_flat(study.demo_vision_outputs()), dataset=d)
        jobs.append(
            Job(
                "generate_demo_vision_dataset",
                outputs=files,
                inputs=[study.model_dir(m) for m in study.vision_truth_models],
                wildcards=dict(dataset=d),
            )
        )
    data = study.vision_data
    n_images = sum(
        data[s]["n_train"]
        + (data[s].get("n_test_images", 0) if study.vision_uses_test_split(s) else 0)
        for s in study.vision_subjects
    )
    folders = study.vision_image_folders()
    for model in study.vision_run_models:
        jobs.append(
            Job(
                "extract_vision_features",
                outputs=[vpath("features", model=model)],
                inputs=[study.model_dir(model), *folders],
                wildcards=dict(dataset=d, model=model),
                params=dict(model=model, n_images=n_images),
                **_heavy(study, "extract_runtime"),
            )
        )
    sub = study.vision["subsampling"]
    for subject in study.vision_subjects:
        fmri = [*study.vision_fmri(subject), *study.vision_test_fmri(subject)]
        try:
            n_train = study.vision_full_train(subject)
        except DataError as err:  # the selection job itself will stop with this message
            n_train = data[subject]["n_train"]
            study.assume(f"{subject}: {err}; its selection priced at its {n_train} images")
        vertices = _vision_vertices(study, subject)
        for model in study.vision_run_models:
            labels = dict(dataset=d, subject=subject, model=model)
            common = dict(subject=subject, model=model, n_vertices=vertices)
            features = vpath("features", model=model)
            jobs.append(
                Job(
                    "select_vision",
                    outputs=[study.path("vision_fit", ext=e, **labels) for e in ("npz", "json")],
                    inputs=[features, *fmri],
                    wildcards=labels,
                    params=dict(common, sizes=[n_train]),
                    **_heavy(study, "ridge_runtime"),
                )
            )
            if model == sub["model"] and study.vision_sweep_sizes:
                outputs = [
                    fill(f, **labels)
                    for e in ("npz", "json")
                    for f in study.vision_sweep_outputs(e)
                ]
                sizes = [n for n in study.vision_sweep_sizes for _ in sub["seeds"]]
                jobs.append(
                    Job(
                        "select_vision_sweep",
                        outputs=outputs,
                        inputs=[features, *fmri],
                        wildcards=labels,
                        params=dict(common, sizes=sizes),
                        **_heavy(study, "ridge_runtime"),
                    )
                )
        if study.vision["noise_ceiling"]["enabled"]:
            jobs.append(
                Job(
                    "vision_noise_ceiling",
                    outputs=[vpath("noise_ceiling", subject=subject)],
                    inputs=[*study.vision_ncsnr(subject), *fmri],
                    wildcards=dict(dataset=d, subject=subject),
                    params=dict(subject=subject, n_vertices=vertices),
                )
            )
        if study.vision["ensemble"]:
            jobs.append(
                Job(
                    "vision_ensemble",
                    outputs=[
                        vpath("vision_ensemble", subject=subject, ext=e) for e in ("npz", "json")
                    ],
                    inputs=[*study.vision_ensemble_members(subject), *fmri],
                    wildcards=dict(dataset=d, subject=subject),
                    params=dict(subject=subject, n_vertices=vertices),
                )
            )
    jobs.append(
        Job(
            "vision_table",
            outputs=[fill(f, dataset=d) for f in study.vision_table_outputs().values()],
            inputs=study.vision_entry_files("npz"),
            wildcards=dict(dataset=d),
        )
    )
    jobs.append(
        Job(
            "vision_figures",
            outputs=[
                fill(f, dataset=d) for fs in study.vision_figure_outputs().values() for f in fs
            ],
            inputs=[vpath("table", name="encoding")],
            wildcards=dict(dataset=d),
        )
    )
    return jobs


def _surface(study: Study) -> list[Job]:
    """Group maps on fsaverage5 (per subject, the group, figures) and the subject viewers."""
    jobs: list[Job] = []
    for track in study.surface_tracks():
        d = study.surface_dataset(track)
        vision = track == "vision"
        subjects = study.vision_subjects if vision else study.subjects
        prefix = "vision_" if vision else ""
        n_maps = len(study.surface_specs(track))
        for subject in subjects:
            inputs = (study.vision_surface_inputs if vision else study.surface_inputs)(subject)
            jobs.append(
                Job(
                    f"{prefix}surface_maps",
                    outputs=[
                        study.surface_maps_file(track, subject),
                        *study.surface_giftis(track, subject),
                    ],
                    inputs=_flat(inputs),
                    wildcards=dict(dataset=d, subject=subject),
                    params=dict(subject=subject, n_maps=n_maps, track=track),
                )
            )
        group = study.surface_maps_file(track, "group")
        jobs.append(
            Job(
                f"{prefix}group_maps",
                outputs=[
                    group,
                    *study.surface_giftis(track, "group"),
                    study.group_roi_table(track),
                ],
                inputs=study.group_inputs(track),
                params=dict(n_maps=n_maps, subjects=subjects, track=track),
            )
        )
        jobs.append(
            Job(
                f"{prefix}group_figures",
                outputs=[
                    *(f for fs in study.group_figure_files(track).values() for f in fs),
                    *study.group_page_files(track),
                ],
                inputs=[group],
                params=dict(n_maps=n_maps, n_pages=len(study.page_specs(track)), track=track),
            )
        )
    if study.viewers_enabled:
        for subject in study.subjects:
            jobs.append(
                Job(
                    "subject_viewer",
                    outputs=[study.viewer_dir(subject)],
                    inputs=_flat(study.viewer_inputs(subject)),
                    wildcards=dict(dataset=study.dataset, subject=subject),
                    params=dict(subject=subject),
                )
            )
    return jobs


def _vision_vertices(study: Study, subject: str) -> int:
    counts = study.vision_data[subject]
    if all(h in counts for h in study.hemispheres):
        return int(sum(counts[h] for h in study.hemispheres))
    if study.vision_source == "synthetic":
        return int(study.vision["synthetic"]["n_vertices"]) * len(study.hemispheres)
    return 0
