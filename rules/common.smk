# Config validation, constants, wildcard constraints and input functions. Helper functions of the
# workflow live here and nowhere else.

import os
import re
import sys
from pathlib import Path

# the library lives beside the Snakefile: importable here and in every job (also in --sdm conda
# environments, which hold only a stage's dependencies, not an installed fmriscaling)
sys.path.insert(0, workflow.basedir)
os.environ.update(
    PYTHONPATH=os.pathsep.join(p for p in (workflow.basedir, os.getenv("PYTHONPATH")) if p)
)

import numpy as np

from fmriscaling.config import model_layers, validate_config
from fmriscaling.download import manifest_stories, read_manifest
from fmriscaling.encoding.subsample import draw_stories, story_count_grid

# validated copy with every default filled in; errors name the offending key
_validated = validate_config(config)
config.clear()
config.update(_validated)

DATASET = config["dataset"]["name"]
SOURCE = config["dataset"]["source"]
SUBJECTS = config["dataset"]["subjects"]
TEST_STORY = config["dataset"]["test_story"]
DATA = f"results/data/{DATASET}"
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
    return source["local"] if "local" in source else f"results/models/{model}"


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


def response_file(subject, story):
    return f"{DATA}/derivative/preprocessed_data/{subject}/{story}.hf5"


def encoding_responses(wildcards):
    """Response files of the training stories and the test story (the script maps stem -> story)."""
    stories = train_stories(wildcards.subject) + [TEST_STORY]
    return [response_file(wildcards.subject, story) for story in stories]


def subset_stories(wildcards):
    return draw_stories(train_stories(wildcards.subject), int(wildcards.n), int(wildcards.seed))


def subset_responses(wildcards):
    stories = subset_stories(wildcards) + [TEST_STORY]
    return [response_file(wildcards.subject, story) for story in stories]


def alphas():
    a = config["encoding"]["alphas"]
    return np.logspace(a["log10_min"], a["log10_max"], a["num"]).tolist()


def subsample_sizes(subject):
    """Story counts of the data-size sweep, below all: the full fit is the all-stories point
    (a subset of every story is the same for every seed)."""
    n_all = len(train_stories(subject))
    return [n for n in story_count_grid(n_all, config["subsampling"]["n_stories"]) if n < n_all]


# ---------------------------------------------------------------- stage inputs


def tiny_model_corpus(wildcards):
    """Text models train their tokenizer on the demo stories; speech models need nothing."""
    if MODELS[wildcards.model]["kind"] != "text":
        return []
    return expand(f"{DATA}/derivative/TextGrids/{{story}}.TextGrid", story=ALL_STORIES)


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


def dataset_files(wildcards=None):
    """Every data file the configured analysis needs (and the extra kinds asked for)."""
    files = [f"{DATA}/derivative/respdict.json"]
    files += expand(f"{DATA}/derivative/TextGrids/{{story}}.TextGrid", story=ALL_STORIES)
    if SPEECH_MODELS:
        files += expand(f"{DATA}/stimuli/{{story}}.wav", story=ALL_STORIES)
    for subject in SUBJECTS:
        files += [response_file(subject, s) for s in train_stories(subject) + [TEST_STORY]]
    if SOURCE == "openneuro":
        for subject in SUBJECTS:
            prefixes = []
            if "pycortex" in config["download"]["kinds"] or config["figures"]["brain_maps"]:
                prefixes.append(f"derivative/pycortex-db/{subject}/transforms/{subject}_auto/")
            if "freesurfer" in config["download"]["kinds"]:
                prefixes.append(f"derivative/fmriprep/sourcedata/freesurfer/{subject}/")
            files += [
                f"{DATA}/{p}"
                for p in MANIFEST["path"]
                if any(p.startswith(prefix) for prefix in prefixes)
            ]
    return sorted(set(files))


def timing_tables(kind):
    return expand(f"results/stimuli/{{{{dataset}}}}/{{story}}.{kind}.tsv", story=ALL_STORIES)


# ---------------------------------------------------------------- targets


def subsample_scores_path(subject, model, layer, n, seed):
    return os.path.join(
        f"results/encoding/{DATASET}/{subject}/{model}/layer-{layer}",
        f"ntrain-{n}",
        f"seed-{seed}",
        "scores.npz",
    )


def table_entries():
    """Metadata of every fit, in the order of the tables' rows."""
    entries = []
    for subject in SUBJECTS:
        for model in RUN_MODELS:
            spec = MODELS[model]
            for layer in layers_of(model):
                base = f"results/encoding/{DATASET}/{subject}/{model}/layer-{layer}"
                common = dict(
                    subject=subject,
                    model=model,
                    family=spec["family"],
                    kind=spec["kind"],
                    n_params=spec["n_params"],
                    layer=layer,
                    n_layers=spec["n_layers"],
                    features_dir=f"results/features/{DATASET}/{model}",
                )
                entries.append(dict(common, n_train=None, seed=-1, path=f"{base}/scores.npz"))
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
                                    path=subsample_scores_path(subject, model, layer, n, seed),
                                )
                            )
    return entries


TABLE_ENTRIES = table_entries()


def noise_ceiling_files():
    return {s: f"results/noise_ceiling/{DATASET}/{s}.npz" for s in SUBJECTS}


TABLES = [
    f"results/tables/{DATASET}/encoding.csv",
    f"results/tables/{DATASET}/best_layers.csv",
    f"results/tables/{DATASET}/scaling.csv",
]
FIGURE_NAMES = ["model_size_scaling", "layer_profiles"] + (
    ["data_scaling"] if config["subsampling"]["fits"] else []
)
FIGURES = [
    f"results/figures/{DATASET}/{name}.{fmt}"
    for name in FIGURE_NAMES
    for fmt in config["figures"]["formats"]
]
BRAIN_MAPS = (
    [f"results/figures/{DATASET}/{subject}_best_model_map.png" for subject in SUBJECTS]
    if config["figures"]["brain_maps"]
    else []
)


def final_targets(wildcards):
    return TABLES + FIGURES + BRAIN_MAPS
