# Config validation, paths, wildcard constraints and input functions. Helper functions of the
# workflow live here and nowhere else.

import functools
import os
import re
import sys
from pathlib import Path, PurePosixPath

# the library lives beside the Snakefile: importable here and in every job (also in --sdm conda
# environments, which hold only a stage's dependencies, not an installed fmriscaling)
sys.path.insert(0, workflow.basedir)
os.environ.update(
    PYTHONPATH=os.pathsep.join(p for p in (workflow.basedir, os.getenv("PYTHONPATH")) if p)
)

import numpy as np

from fmriscaling._pycortex import SUBJECT_FILES, transform_files
from fmriscaling.config import model_layers, stack_members, validate_config
from fmriscaling.download.manifest import manifest_stories, read_manifest, relpath_for, select_files
from fmriscaling.encoding.subsample import draw_stories, story_count_grid
from fmriscaling.rois import annotation_relpath

# validated copy with every default filled in; errors name the offending key
_validated = validate_config(config)
config.clear()
config.update(_validated)

DATASET = config["dataset"]["name"]
SOURCE = config["dataset"]["source"]
SUBJECTS = config["dataset"]["subjects"]
TEST_STORY = config["dataset"]["test_story"]
NEVER = "(?!x)x"  # a wildcard constraint that matches nothing: the rule is off for this config
# the dataset rules that apply: generated (rules/synthetic.smk) or downloaded (rules/download.smk)
SYNTHETIC_DATASET = re.escape(DATASET) if SOURCE == "synthetic" else NEVER
OPENNEURO_DATASET = re.escape(DATASET) if SOURCE == "openneuro" else NEVER

RUN_MODELS = config["run_models"]
VISION = config["vision"]
# vision models to run, and the tiny model whose features drive the synthetic vision dataset
VISION_RUN_MODELS = VISION["run_models"] if VISION["enabled"] else []
_VISION_TRUTH = (
    [VISION["synthetic"]["truth"]["model"]]
    if VISION["enabled"] and VISION["dataset"]["source"] == "synthetic"
    else []
)
MODELS = {
    name: config["models"][name]
    for name in dict.fromkeys(RUN_MODELS + VISION_RUN_MODELS + _VISION_TRUTH)
}
TEXT_MODELS = [m for m, spec in MODELS.items() if spec["kind"] == "text"]
SPEECH_MODELS = [m for m, spec in MODELS.items() if spec["kind"] == "speech"]
BUILT_MODELS = [m for m, spec in MODELS.items() if "build" in spec["source"]]
HUB_MODELS = [m for m, spec in MODELS.items() if "hub" in spec["source"]]
# stack name -> its members ({model, kind, layer}; layer a number or "best"), even layers expanded
STACKS = {stack["name"]: stack_members(stack, MODELS) for stack in config["stacks"]}


def _alternatives(names):
    """Regex matching exactly one of ``names`` (or nothing when empty)."""
    return "|".join(re.escape(n) for n in names) if names else NEVER


wildcard_constraints:
    dataset=re.escape(DATASET),
    subject=_alternatives(SUBJECTS),
    model=_alternatives(RUN_MODELS),
    layer=r"\d+",
    n=r"\d+",
    seed=r"\d+",
    story=r"[A-Za-z0-9_-]+",
    stack=_alternatives(STACKS),


# ---------------------------------------------------------------- paths
# Every path is spelled once, here. Rules use the templates as they are (wildcards left open);
# targets and input functions fill some or all wildcards in with `fill`. The dataset's own layout
# comes from the library (relpath_for), the same one the downloader uses.


def fill(template, **values):
    """``template`` with the named wildcards filled in and the others left as they are."""
    return re.sub(r"\{(\w+)\}", lambda m: str(values.get(m.group(1), m.group(0))), template)


def _in_data(kind):
    return f"results/data/{{dataset}}/{relpath_for(kind, subject='{subject}', story='{story}')}"


PATHS = {
    "data": "results/data/{dataset}",
    "dataset_file": "results/data/{dataset}/{path}",
    "respdict": _in_data("respdict"),
    "textgrid": _in_data("textgrids"),
    "audio": _in_data("audio"),
    "responses": _in_data("responses"),
    "transform": "results/data/{dataset}/derivative/pycortex-db/{subject}/transforms/{subject}_auto/{name}.nii.gz",
    "pycortex_file": "results/data/{dataset}/derivative/pycortex-db/{subject}/{file}",
    "ground_truth": "results/data/{dataset}/ground_truth",
    "model": "results/models/{model}",
    "timing": "results/stimuli/{dataset}/{story}.{kind}.tsv",
    "features": "results/features/{dataset}/{model}",
    "prepared": "results/responses/{dataset}/{subject}.h5",
    "fit": "results/encoding/{dataset}/{subject}/{model}/layer-{layer}/scores.{ext}",
    "subset_fit": "results/encoding/{dataset}/{subject}/{model}/layer-{layer}/ntrain-{n}/seed-{seed}/scores.{ext}",
    "noise_ceiling": "results/noise_ceiling/{dataset}/{subject}.npz",
    "stack_member": "results/stacking/{dataset}/{subject}/members/{model}/layer-{layer}.h5",
    "stack": "results/stacking/{dataset}/{subject}/{stack}/scores.npz",
    "table": "results/tables/{dataset}/{name}.csv",
    "table_gz": "results/tables/{dataset}/{name}.csv.gz",
    "rois": "results/rois/{dataset}/{subject}.npz",
    "figure": "results/figures/{dataset}/{name}.{fmt}",
    "brain_map": "results/figures/{dataset}/{subject}_best_model_map.{fmt}",
}


def path(name, /, **values):
    """The path template ``name`` of `PATHS`, with ``values`` filled in."""
    return fill(PATHS[name], **values)


def _key(name, /, **values):
    """What a log or benchmark of output ``name`` is filed under: its path below its stage
    folder, without extensions or a generic file name (results/encoding/X/scores.{ext} -> X,
    results/stimuli/{dataset}/{story}.{kind}.tsv -> {dataset}/{story})."""
    parts = PurePosixPath(PATHS[name]).parts[2:]  # below results/<stage>/
    leaf = parts[-1].split(".", 1)[0]
    key = PurePosixPath(*parts[:-1]) if leaf == "scores" else PurePosixPath(*parts[:-1], leaf)
    return fill(str(key), **values)


def log(rule, name, /, **values):
    """``results/logs/<rule>/<key of output name>.log`` (mirrors the output path)."""
    return f"results/logs/{rule}/{_key(name, **values)}.log"


def benchmark(rule, name, /, **values):
    """``results/benchmarks/<rule>/<key of output name>.tsv`` (mirrors the output path)."""
    return f"results/benchmarks/{rule}/{_key(name, **values)}.tsv"


# ---------------------------------------------------------------- stories


if SOURCE == "openneuro":
    MANIFEST = read_manifest(config["download"]["manifest"])
    MANIFEST_INDEX = MANIFEST.set_index("path")
    AVAILABLE = {s: manifest_stories(MANIFEST, s) for s in SUBJECTS}
else:
    # imported here, not at the top: a real study's parse needs nothing from the demo
    from fmriscaling.demo.names import synthetic_story_names

    MANIFEST = MANIFEST_INDEX = None
    _names = synthetic_story_names(config["synthetic"]["n_train_stories"])
    AVAILABLE = {s: sorted(_names + [TEST_STORY]) for s in SUBJECTS}


def train_stories(subject):
    """Training stories of ``subject``: configured list, or all with responses but the test story."""
    wanted = config["dataset"]["train_stories"]
    available = AVAILABLE[subject]
    if wanted == "all":
        excluded = set(config["dataset"]["exclude_stories"]) | {TEST_STORY}
        return [s for s in available if s not in excluded]
    missing = [s for s in wanted if s not in available]
    if missing:
        raise ValueError(
            f"config key 'dataset.train_stories' lists {missing}, which have no responses for "
            f"{subject} in the dataset (available: {len(available)} stories)"
        )
    return list(wanted)


for _subject in SUBJECTS:
    if TEST_STORY not in AVAILABLE[_subject]:
        raise ValueError(
            f"config key 'dataset.test_story' is {TEST_STORY!r}, but {_subject} has no responses "
            "for it in the dataset"
        )

ALL_STORIES = sorted({TEST_STORY}.union(*(train_stories(s) for s in SUBJECTS)))


# ---------------------------------------------------------------- models


def model_dir(model):
    """Snapshot folder of a model: a local path, or results/models/<model> made by a rule."""
    source = MODELS[model]["source"]
    return source["local"] if "local" in source else path("model", model=model)


def model_dir_input(wildcards):
    return model_dir(wildcards.model)


def layers_of(model):
    return model_layers(MODELS[model])


# ---------------------------------------------------------------- resources


GPU = 1 if config["compute"]["gpu"] else 0


def per_attempt(key):
    """A resource that grows with each retry: attempt x config['compute'][key]."""
    value = config["compute"][key]
    return lambda wildcards, attempt: attempt * value


# ---------------------------------------------------------------- input functions


def responses_of(subject, stories):
    return [path("responses", dataset=DATASET, subject=subject, story=s) for s in stories]


def prepared_stories(subject):
    """Stories of a subject's prepared responses: every training story, then the test story."""
    return train_stories(subject) + [TEST_STORY]


def manifest_sizes(subject):
    """Bytes of a subject's raw response files, story -> size, where the manifest knows them."""
    if MANIFEST_INDEX is None:
        return {}
    return {
        story: int(
            MANIFEST_INDEX.loc[relpath_for("responses", subject=subject, story=story), "size"]
        )
        for story in prepared_stories(subject)
    }


def prepared_inputs(wildcards):
    """Raw response files a subject's prepared responses are built from (stem -> story)."""
    return responses_of(wildcards.subject, prepared_stories(wildcards.subject))


def _fit_groups():
    """Subjects grouped by training set (same stories, same order), in config order.

    The design matrix depends on the features and the stories only: subjects in one group share
    every Gram and eigendecomposition, so one fit job serves the whole group. A subject whose
    training set differs is a group of its own, fitted alone.
    """
    groups = {}
    for subject in SUBJECTS:
        groups.setdefault(tuple(train_stories(subject)), []).append(subject)
    return list(groups.values())


FIT_GROUPS = _fit_groups()
# output name in PATHS -> rule name (of the first group; later groups get a numbered suffix)
FIT_RULES = {"fit": "fit_encoding", "subset_fit": "fit_encoding_subset"}


def fit_rule_name(kind, index):
    """Rule of group ``index`` for outputs ``kind``: fit_encoding(_subset), then _2, _3, ..."""
    return FIT_RULES[kind] + ("" if index == 0 else f"_{index + 1}")


def group_outputs(kind, subjects, ext):
    """Per-subject outputs of a group's fit job: today's path of every subject."""
    return [path(kind, subject=s, ext=ext) for s in subjects]


def group_label(subjects):
    """What a group job's log and benchmark are filed under: its subjects joined by '+'."""
    return "+".join(subjects)


def group_train_stories(kind, subjects):
    """Training stories of a group's fits: all of them, or the draw of ``{n}`` and ``{seed}``
    (subjects with one story list get one draw)."""
    stories = train_stories(subjects[0])
    if kind == "fit":
        return stories
    return lambda wildcards: draw_stories(stories, int(wildcards.n), int(wildcards.seed))


def alphas():
    a = config["encoding"]["alphas"]
    return np.logspace(a["log10_min"], a["log10_max"], a["num"]).tolist()


def subsample_sizes(subject):
    """Story counts of the data-size sweep, below all: the full fit is the all-stories point
    (a subset of every story is the same for every seed)."""
    n_all = len(train_stories(subject))
    return [n for n in story_count_grid(n_all, config["subsampling"]["n_stories"]) if n < n_all]


def timing_tables(kind):
    """One timing table per story (``{dataset}`` left open)."""
    return [path("timing", story=s, kind=kind) for s in ALL_STORIES]


def tiny_model_corpus(wildcards):
    """Text models train their tokenizer on the demo stories; speech models need nothing."""
    if MODELS[wildcards.model]["kind"] != "text":
        return []
    return [path("textgrid", dataset=DATASET, story=s) for s in ALL_STORIES]


def manifest_entry(wildcards):
    """Size and md5 of a manifest path; a clear error for a path the snapshot does not have."""
    try:
        row = MANIFEST_INDEX.loc[wildcards.path]
    except KeyError:
        raise ValueError(
            f"{wildcards.path} is not in {config['download']['manifest']}: the workflow can only "
            "download files of the ds003020 snapshot listed there"
        ) from None
    return {"size": int(row["size"]), "md5": str(row["md5"])}


def download_kinds():
    """Kinds of ds003020 file the configured analysis needs, plus the extra kinds asked for."""
    kinds = ["respdict", "responses", "textgrids"] + (["audio"] if SPEECH_MODELS else [])
    extra = set(config["download"]["kinds"])
    if config["figures"]["brain_maps"]:
        extra.add("pycortex")
    return kinds + sorted(extra)


def dataset_files(wildcards=None):
    """Every data file the configured analysis needs: the library's selection of the manifest
    (the downloader's own), or the generated demo files."""
    data = path("data", dataset=DATASET)
    if SOURCE != "openneuro":
        return sorted(
            [path("respdict", dataset=DATASET)]
            + [path("textgrid", dataset=DATASET, story=s) for s in ALL_STORIES]
            + [f for s in SUBJECTS for f in responses_of(s, prepared_stories(s))]
        )
    kinds = download_kinds()
    story_kinds = [k for k in kinds if k in ("respdict", "textgrids", "audio")]
    subject_kinds = [k for k in kinds if k in ("pycortex", "freesurfer")]
    files = select_files(MANIFEST, subjects=None, stories=ALL_STORIES, kinds=story_kinds)
    for subject in SUBJECTS:
        stories = train_stories(subject) + [TEST_STORY]
        files += select_files(MANIFEST, subjects=[subject], stories=stories, kinds=["responses"])
        files += select_files(MANIFEST, subjects=[subject], kinds=subject_kinds)
    return sorted({f"{data}/{relpath}" for relpath in files})


# ---------------------------------------------------------------- stacking


def member_fit_layers(wildcards):
    """Layer fits a stack member reads: every layer of its model for "best" (the CV choice),
    else its own layer's fit where the sweep has it (to compare alphas)."""
    layers = layers_of(wildcards.model)
    return layers if wildcards.layer == "best" else [l for l in layers if l == int(wildcards.layer)]


def member_fits(wildcards):
    return [
        path(
            "fit",
            dataset=wildcards.dataset,
            subject=wildcards.subject,
            model=wildcards.model,
            layer=l,
            ext="npz",
        )
        for l in member_fit_layers(wildcards)
    ]


def stack_member_files(wildcards):
    """Member files of a stack for one subject, in the stack's member order."""
    return [
        path(
            "stack_member",
            dataset=wildcards.dataset,
            subject=wildcards.subject,
            model=m["model"],
            layer=m["layer"],
        )
        for m in STACKS[wildcards.stack]
    ]


def stack_member_labels(wildcards):
    return [
        {"model": m["model"], "kind": m["kind"], "layer_spec": str(m["layer"])}
        for m in STACKS[wildcards.stack]
    ]


STACK_ENTRIES = [
    {"subject": s, "stack": name, "path": path("stack", dataset=DATASET, subject=s, stack=name)}
    for s in SUBJECTS
    for name in STACKS
]
STACK_TABLE_NAMES = ["stacking", "stacking_members"] if STACKS else []


def stacking_voxel_labels(wildcards=None):
    """The voxel groups the stacking tables summarise besides all voxels: the subjects' ROI
    labels (datasets with pycortex surfaces) and the demo's ground truth (its voxel groups:
    auditory / semantic / unresponsive)."""
    groups = {"rois": rois_of_subjects()} if HAS_CORTEX else {}
    if SOURCE == "synthetic":
        groups["ground_truth"] = path("ground_truth", dataset=DATASET)
    return groups


def stacking_weight_maps(wildcards):
    """A subject's stack scores, drawn as weight maps beside the best model's maps."""
    return [
        fill(e["path"], dataset=DATASET) for e in STACK_ENTRIES if e["subject"] == wildcards.subject
    ]


# ---------------------------------------------------------------- targets


def table_entries():
    """Metadata of every fit and its scores path, in the order of the tables' rows."""
    entries = []
    for subject in SUBJECTS:
        for model in RUN_MODELS:
            spec = MODELS[model]
            for layer in layers_of(model):
                labels = dict(dataset=DATASET, subject=subject, model=model, layer=layer)
                common = dict(
                    subject=subject,
                    model=model,
                    family=spec["family"],
                    kind=spec["kind"],
                    n_params=spec["n_params"],
                    layer=layer,
                    n_layers=spec["n_layers"],
                )
                entries.append(dict(common, n_train=None, seed=-1, path=path("fit", **labels)))
                for fit in config["subsampling"]["fits"]:
                    if fit["model"] != model or layer not in fit["layers"]:
                        continue
                    for n in subsample_sizes(subject):
                        for seed in config["subsampling"]["seeds"]:
                            entries.append(
                                dict(
                                    common,
                                    n_train=n,
                                    seed=seed,
                                    path=path("subset_fit", **labels, n=n, seed=seed),
                                )
                            )
    return entries


TABLE_ENTRIES = table_entries()


def entry_labels(entries):
    """The entries' metadata without their paths, for params (a moved file reruns nothing)."""
    return [{k: v for k, v in e.items() if k != "path"} for e in entries]


def entry_files(entries, ext):
    return [fill(e["path"], ext=ext) for e in entries]


def full_fits_of(subject):
    return [e for e in TABLE_ENTRIES if e["subject"] == subject and e["n_train"] is None]


TABLE_NAMES = ["encoding", "best_layers", "scaling", "headline", "rois", "costs"]
FIGURE_NAMES = (
    ["model_size_scaling"]
    + (["speech_model_size_scaling"] if SPEECH_MODELS else [])
    + ["layer_profiles"]
    + (["data_scaling"] if config["subsampling"]["fits"] else [])
)
FORMATS = config["figures"]["formats"]


def formats_of(name, /, **values):
    """The files of one figure, one per configured format."""
    return [path(name, **values, fmt=fmt) for fmt in FORMATS]


def figure_outputs(wildcards=None):
    """Named outputs of the scaling_figures rule (figure name -> its file per format)."""
    return {name: formats_of("figure", name=name) for name in FIGURE_NAMES}


def final_targets(wildcards):
    """The language track's tables, figures and maps (when it runs models), and the vision
    track's tables and figures (when it is enabled)."""
    if not RUN_MODELS:
        return vision_targets()
    tables = [path("table", dataset=DATASET, name=name) for name in TABLE_NAMES + STACK_TABLE_NAMES]
    figures = [fill(f, dataset=DATASET) for files in figure_outputs().values() for f in files]
    figures += [
        f
        for name in ("noise_ceiling", "costs") + (("stacking_gain",) if STACKS else ())
        for f in formats_of("figure", dataset=DATASET, name=name)
    ]
    maps = (
        [f for s in SUBJECTS for f in formats_of("brain_map", dataset=DATASET, subject=s)]
        if config["figures"]["brain_maps"]
        else []
    )
    return tables + figures + maps + vision_targets()


# ---------------------------------------------------------------- anatomy: ROIs and maps

# a pycortex database with surfaces: downloaded (ds003020 ships one per subject) or the demo's
HAS_CORTEX = SOURCE == "openneuro" or config["synthetic"]["cortex"] is not None
ATLASES = sorted({atlas for spec in config["rois"]["groups"].values() for atlas in spec})
DEMO_PYCORTEX_FILES = [*SUBJECT_FILES, "surface-info/curvature.npz"]


def demo_pycortex_outputs(subject):
    """What the demo generator writes into a subject's pycortex folder besides the masks."""
    if config["synthetic"]["cortex"] is None:
        return []
    xfm = transform_files(subject, f"{subject}_auto")[0]  # matrices.xfm; the masks are apart
    return [path("pycortex_file", subject=subject, file=f) for f in [*DEMO_PYCORTEX_FILES, xfm]]


def annotation_files(subject):
    """The FreeSurfer annotations (lh, rh) of every atlas the ROI groups use."""
    return [
        path("dataset_file", path=annotation_relpath(subject, hemi, atlas))
        for atlas in ATLASES
        for hemi in ("lh", "rh")
    ]


def annotation_inputs(wildcards):
    return [fill(f, dataset=wildcards.dataset) for f in annotation_files(wildcards.subject)]


def pycortex_inputs(wildcards):
    """The subject's pycortex files a map or the ROI labels read (masks included)."""
    subject = wildcards.subject
    masks = [
        path("transform", dataset=DATASET, subject=subject, name=n)
        for n in ("mask_thick", "reference")
    ]
    if SOURCE == "openneuro":
        files = select_files(MANIFEST, subjects=[subject], kinds=["pycortex"])
        return sorted({*masks, *(path("dataset_file", dataset=DATASET, path=f) for f in files)})
    return masks + [fill(f, dataset=DATASET) for f in demo_pycortex_outputs(subject)]


def pycortex_db_of(wildcards, input):
    """The pycortex filestore of a job's mask (<db>/<subject>/transforms/<xfm>/mask_thick...)."""
    return str(Path(input.mask).parents[3])


def rois_of_subjects(wildcards=None):
    """The ROI labels of every subject, when the dataset has pycortex surfaces."""
    return [path("rois", subject=s) for s in SUBJECTS] if HAS_CORTEX else []


def benchmark_records(wildcards=None):
    """Every extraction and fit job with its benchmark file, for the cost table."""
    records = []
    for model in RUN_MODELS:
        job = f"extract_{MODELS[model]['kind']}_features"
        where = benchmark(job, "features", dataset=DATASET, model=model)
        records.append(dict(rule=job, model=model, path=where))
    # one fit job per (model, layer[, subset]) and group of subjects that share a training set
    seen = set()
    for entry in TABLE_ENTRIES:
        kind = "fit" if entry["n_train"] is None else "subset_fit"
        index = next(i for i, g in enumerate(FIT_GROUPS) if entry["subject"] in g)
        job, group = fit_rule_name(kind, index), group_label(FIT_GROUPS[index])
        labels = {k: entry[k] for k in ("model", "layer", "n_train", "seed")}
        where = benchmark(job, kind, dataset=DATASET, subject=group, **labels, n=entry["n_train"])
        if where not in seen:
            seen.add(where)
            records.append(dict(labels, subject=group, rule=job, path=where))
    return records


# ---------------------------------------------------------------- vision track
# Algonauts 2023 / NSD (rules/vision.smk). The track has its own {dataset} name; a local copy of
# the challenge data is checked -- what is missing, how to obtain it, where to put it -- when the
# DAG is built, before any job runs (a parse alone, e.g. snakemake --lint, needs no data).

from fmriscaling import DataError
from fmriscaling.vision.dataset import ROI_CLASSES, check_algonauts_dir
from fmriscaling.vision.dataset import relpath as vision_relpath

VISION_ENABLED = VISION["enabled"]
VISION_DATASET = VISION["dataset"]["name"]
VISION_SOURCE = VISION["dataset"]["source"]
VISION_SUBJECTS = VISION["dataset"]["subjects"]
HEMISPHERES = VISION["dataset"]["hemispheres"]
# rules of the vision track match its own dataset, subjects and models only
VISION_WILDCARDS = dict(
    dataset=re.escape(VISION_DATASET) if VISION_ENABLED else NEVER,
    subject=_alternatives(VISION_SUBJECTS),
    model=_alternatives(VISION_RUN_MODELS),
)
SYNTHETIC_VISION = VISION_WILDCARDS["dataset"] if VISION_SOURCE == "synthetic" else NEVER
# generated data live in results/data/<name>; a local copy wherever vision.dataset.dir says
VISION_ROOT = (
    "results/data/{dataset}"
    if VISION_SOURCE == "synthetic"
    else (VISION["dataset"]["dir"] or f"results/data/{VISION_DATASET}").rstrip("/")
)


def _in_vision_data(kind):
    relpath = vision_relpath(kind, subject="{subject}", hemi="{hemi}", roi_class="{roi_class}")
    return f"{VISION_ROOT}/{relpath}"


PATHS.update(
    vision_truth="results/data/{dataset}/ground_truth",
    vision_fmri=_in_vision_data("training_fmri"),
    vision_test_fmri=_in_vision_data("test_fmri"),
    vision_images=_in_vision_data("training_images"),
    vision_test_images=_in_vision_data("test_images"),
    vision_roi_mask=_in_vision_data("roi_mask"),
    vision_roi_mapping=_in_vision_data("roi_mapping"),
    vision_fsaverage=_in_vision_data("all_vertices"),
    vision_ncsnr=_in_vision_data("ncsnr"),
    vision_repeats=_in_vision_data("n_repeats"),
    vision_fit="results/encoding/{dataset}/{subject}/{model}/selected/scores.{ext}",
    vision_subset_fit=(
        "results/encoding/{dataset}/{subject}/{model}/selected/ntrain-{n}/seed-{seed}/scores.{ext}"
    ),
    vision_ensemble="results/encoding/{dataset}/{subject}/ensemble/scores.{ext}",
)


def vpath(name, /, **values):
    """`path` in the vision dataset: ``{dataset}`` is the vision track's."""
    return path(name, dataset=VISION_DATASET, **values)


def vision_subject_files(subject, dataset=VISION_DATASET):
    """Every file and folder of one subject that the demo generator writes, by kind
    (``dataset="{dataset}"`` keeps the wildcard open, for the generator's outputs)."""

    def each(name, **values):
        return path(name, dataset=dataset, subject=subject, **values)

    return {
        "fmri": [each("vision_fmri", hemi=h) for h in HEMISPHERES],
        "images": [each("vision_images"), each("vision_test_images")],
        "roi_masks": [
            each("vision_roi_mask", hemi=h, roi_class=c) for h in HEMISPHERES for c in ROI_CLASSES
        ],
        "roi_mappings": [each("vision_roi_mapping", roi_class=c) for c in ROI_CLASSES],
        "fsaverage": [each("vision_fsaverage", hemi=h) for h in HEMISPHERES],
        "ncsnr": [each("vision_ncsnr", hemi=h) for h in HEMISPHERES],
        "repeats": [each("vision_repeats")],
    }


def vision_roi_files(subject):
    """ROI label files of one subject: the masks of each class (hemispheres in order), then
    the class's mapping."""
    return {
        c: [vpath("vision_roi_mask", subject=subject, hemi=h, roi_class=c) for h in HEMISPHERES]
        + [vpath("vision_roi_mapping", subject=subject, roi_class=c)]
        for c in ROI_CLASSES
    }


@functools.cache
def vision_data():
    """Per subject: training images and vertices per hemisphere; a local copy is checked first
    (DataError naming what is missing, how to obtain it and where to put it)."""
    if VISION_SOURCE == "synthetic":
        n = VISION["synthetic"]["n_train_images"]
        return {s: {"n_train": n} for s in VISION_SUBJECTS}
    return check_algonauts_dir(
        VISION_ROOT,
        VISION_SUBJECTS,
        HEMISPHERES,
        noise_ceiling=VISION["noise_ceiling"]["enabled"],
    )


def vision_uses_test_split(subject):
    """Whether the test set is the test split (its fMRI exists), not held-out training images."""
    mode = VISION["split"]["test"]
    files = [vpath("vision_test_fmri", subject=subject, hemi=h) for h in HEMISPHERES]
    present = VISION_SOURCE == "local" and all(os.path.isfile(f) for f in files)
    if mode == "test_split" and not present:
        raise ValueError(
            f"config key 'vision.split.test' is 'test_split', but {subject} has no test fMRI "
            f"({', '.join(files)}); the challenge never released it: use 'held_out' or 'auto'"
        )
    return mode != "held_out" and present


def vision_full_train(subject):
    """Training images of a subject's full fit (`split_rows`, as the fit computes them)."""
    from fmriscaling.vision.selection import split_rows

    split = VISION["split"]
    train, _ = split_rows(
        vision_data()[subject]["n_train"],
        test_split=vision_uses_test_split(subject),
        n_images=split["n_images"],
        test_fraction=split["test_fraction"],
        n_train=split["n_train"],
    )
    return int(train.size)


def _vision_sweep_sizes():
    """Training-set sizes of the data-scaling sweep, the same for every subject: the grid up to
    the smallest subject's full fit, below it (each subject's full fit is the sweep's top; the
    paper fixed vision.split.n_images at the smallest subject's 8779 images for this reason)."""
    if not VISION_ENABLED or not VISION["subsampling"]["model"]:
        return []
    try:
        n_full = min(vision_full_train(s) for s in VISION_SUBJECTS)
    except DataError:
        return []  # a local copy is missing or incomplete: vision_targets() reports it
    return [n for n in story_count_grid(n_full, VISION["subsampling"]["n_train"]) if n < n_full]


VISION_SWEEP_SIZES = _vision_sweep_sizes()


def vision_image_sets(wildcards=None):
    """(image set name, image folder) of every subject: its training split, and its test split
    when that is the test set."""
    vision_data()
    sets = []
    for subject in VISION_SUBJECTS:
        sets.append((f"{subject}_train", vpath("vision_images", subject=subject)))
        if vision_uses_test_split(subject):
            sets.append((f"{subject}_test", vpath("vision_test_images", subject=subject)))
    return sets


def vision_fmri(wildcards):
    vision_data()
    return [vpath("vision_fmri", subject=wildcards.subject, hemi=h) for h in HEMISPHERES]


def vision_test_fmri(wildcards):
    if not vision_uses_test_split(wildcards.subject):
        return []
    return [vpath("vision_test_fmri", subject=wildcards.subject, hemi=h) for h in HEMISPHERES]


def vision_repeats(wildcards):
    """The per-image repeat counts, where the dataset has them (else a default is assumed)."""
    repeats = vpath("vision_repeats", subject=wildcards.subject)
    return [repeats] if VISION_SOURCE == "synthetic" or os.path.isfile(repeats) else []


def vision_entries():
    """Metadata and scores path of every vision fit, in table order."""
    entries = []
    for subject in VISION_SUBJECTS:
        for model in VISION_RUN_MODELS:
            spec = MODELS[model]
            common = dict(
                subject=subject, model=model, family=spec["family"], n_params=spec["n_params"]
            )
            labels = dict(dataset=VISION_DATASET, subject=subject, model=model)
            entries.append(
                dict(common, kind="full", n_train=None, seed=-1, path=path("vision_fit", **labels))
            )
            if model == VISION["subsampling"]["model"]:
                for n in VISION_SWEEP_SIZES:
                    for seed in VISION["subsampling"]["seeds"]:
                        entries.append(
                            dict(
                                common,
                                kind="subsample",
                                n_train=n,
                                seed=seed,
                                path=path("vision_subset_fit", **labels, n=n, seed=seed),
                            )
                        )
        if VISION["ensemble"]:
            entries.append(
                dict(
                    subject=subject,
                    model="ensemble",
                    family="ensemble",
                    n_params=None,
                    kind="ensemble",
                    n_train=None,
                    seed=-1,
                    path=vpath("vision_ensemble", subject=subject),
                )
            )
    return entries


VISION_TABLE_NAMES = ["encoding", "rois", "selection", "scaling", "scaling_rois"]
# model-size figures need a family with two sizes, the data-scaling figure a sweep
_VISION_SIZES_PER_FAMILY = [
    sum(MODELS[m]["family"] == f for m in VISION_RUN_MODELS)
    for f in {MODELS[m]["family"] for m in VISION_RUN_MODELS}
]
VISION_FIGURE_NAMES = (
    (
        ["model_size_scaling", "model_size_rois"]
        if max(_VISION_SIZES_PER_FAMILY, default=0) > 1
        else []
    )
    + ["roi_scores", "selection"]
    + (["data_scaling"] if VISION["subsampling"]["model"] else [])
)


def vision_figure_outputs(wildcards=None):
    """Named outputs of the vision_figures rule (figure name -> its file per format)."""
    return {
        name: [path("figure", name=name, fmt=fmt) for fmt in config["figures"]["formats"]]
        for name in VISION_FIGURE_NAMES
    }


def vision_targets():
    """The vision track's tables and figures ([] when it is off); checks a local copy first."""
    if not VISION_ENABLED:
        return []
    vision_data()
    tables = [vpath("table", name=name) for name in VISION_TABLE_NAMES]
    figures = [
        fill(f, dataset=VISION_DATASET) for fs in vision_figure_outputs().values() for f in fs
    ]
    return tables + figures
