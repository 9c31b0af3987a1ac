# Config validation, paths, wildcard constraints and input functions. Helper functions of the
# workflow live here and nowhere else.

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

from fmriscaling.config import model_layers, validate_config
from fmriscaling.download.manifest import manifest_stories, read_manifest, relpath_for, select_files
from fmriscaling.encoding.subsample import draw_stories, story_count_grid

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
MODELS = {name: config["models"][name] for name in RUN_MODELS}
TEXT_MODELS = [m for m, spec in MODELS.items() if spec["kind"] == "text"]
SPEECH_MODELS = [m for m, spec in MODELS.items() if spec["kind"] == "speech"]
BUILT_MODELS = [m for m, spec in MODELS.items() if "build" in spec["source"]]
HUB_MODELS = [m for m, spec in MODELS.items() if "hub" in spec["source"]]


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
    "ground_truth": "results/data/{dataset}/ground_truth",
    "model": "results/models/{model}",
    "timing": "results/stimuli/{dataset}/{story}.{kind}.tsv",
    "features": "results/features/{dataset}/{model}",
    "prepared": "results/responses/{dataset}/{subject}.h5",
    "fit": "results/encoding/{dataset}/{subject}/{model}/layer-{layer}/scores.{ext}",
    "subset_fit": "results/encoding/{dataset}/{subject}/{model}/layer-{layer}/ntrain-{n}/seed-{seed}/scores.{ext}",
    "noise_ceiling": "results/noise_ceiling/{dataset}/{subject}.npz",
    "table": "results/tables/{dataset}/{name}.csv",
    "figure": "results/figures/{dataset}/{name}.{fmt}",
    "brain_map": "results/figures/{dataset}/{subject}_best_model_map.png",
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


TABLE_NAMES = ["encoding", "best_layers", "scaling"]
FIGURE_NAMES = ["model_size_scaling", "layer_profiles"] + (
    ["data_scaling"] if config["subsampling"]["fits"] else []
)


def figure_outputs(wildcards=None):
    """Named outputs of the scaling_figures rule (figure name -> its file per format)."""
    return {
        name: [path("figure", name=name, fmt=fmt) for fmt in config["figures"]["formats"]]
        for name in FIGURE_NAMES
    }


def final_targets(wildcards):
    tables = [path("table", dataset=DATASET, name=name) for name in TABLE_NAMES]
    figures = [fill(f, dataset=DATASET) for files in figure_outputs().values() for f in files]
    maps = (
        [path("brain_map", dataset=DATASET, subject=s) for s in SUBJECTS]
        if config["figures"]["brain_maps"]
        else []
    )
    return tables + figures + maps
