# One Study from the library (fmriscaling.workflow: paths, stories, fit groups, draws, stacks,
# the vision sweep, table and figure names, targets) and one-line input functions over it. The
# logic lives in the Study, where unit tests reach it (tests/test_study.py); nothing is decided
# here.

import os
import sys

# the library lives beside the Snakefile: importable here and in every job (also in --sdm conda
# environments, which hold only a stage's dependencies, not an installed fmriscaling)
sys.path.insert(0, workflow.basedir)
os.environ.update(
    PYTHONPATH=os.pathsep.join(p for p in (workflow.basedir, os.getenv("PYTHONPATH")) if p)
)

from fmriscaling.workflow import Study, fill
from fmriscaling.workflow.study import NEVER, alternatives

# validated, every default filled in; errors name the offending key
STUDY = Study(config)
config.clear()
config.update(STUDY.config)

DATASET = STUDY.dataset
SUBJECTS = STUDY.subjects
TEST_STORY = STUDY.test_story
RUN_MODELS = STUDY.run_models
MODELS = STUDY.models
VISION = STUDY.vision
GPU = 1 if config["compute"]["gpu"] else 0

path = STUDY.path
log = STUDY.log
benchmark = STUDY.benchmark
formats_of = STUDY.formats_of
vpath = STUDY.vpath


wildcard_constraints:
    **STUDY.wildcard_constraints(),


def per_attempt(key):
    """A resource that grows with each retry: attempt x config['compute'][key]."""
    return lambda wildcards, attempt: attempt * config["compute"][key]


# ---------------------------------------------------------------- input functions and params
# (wildcards -> the Study's answer; see fmriscaling/workflow/study.py for each)


def model_dir_input(wildcards):
    return STUDY.model_dir(wildcards.model)


def n_layers_of(wildcards):
    return MODELS[wildcards.model]["n_layers"]


def layers_of(wildcards):
    return STUDY.layers_of(wildcards.model)


def model_source(key):
    return lambda wildcards: MODELS[wildcards.model]["source"].get(key, False)


def tiny_model_corpus(wildcards):
    return STUDY.tiny_model_corpus(wildcards.model)


def manifest_entry(wildcards):
    return STUDY.manifest_entry(wildcards.path)


def dataset_files(wildcards):
    return STUDY.dataset_files()


def prepared_inputs(wildcards):
    return STUDY.responses_of(wildcards.subject, STUDY.prepared_stories(wildcards.subject))


def prepared_stories(wildcards):
    return STUDY.prepared_stories(wildcards.subject)


def manifest_sizes(wildcards):
    return STUDY.manifest_sizes(wildcards.subject)


def train_stories(wildcards):
    return STUDY.train_stories(wildcards.subject)


def subset_stories(group):
    return lambda wildcards: STUDY.fit_stories(group, wildcards.n, wildcards.seed)


def member_fit_layers(wildcards):
    return STUDY.member_fit_layers(wildcards.model, wildcards.layer)


def member_fits(wildcards):
    return STUDY.member_fits(wildcards.dataset, wildcards.subject, wildcards.model, wildcards.layer)


def stack_member_files(wildcards):
    return STUDY.stack_member_files(wildcards.dataset, wildcards.subject, wildcards.stack)


def stack_member_labels(wildcards):
    return STUDY.stack_member_labels(wildcards.stack)


def stacking_voxel_labels(wildcards):
    return STUDY.stacking_voxel_labels()


def stacking_weight_maps(wildcards):
    return STUDY.stacking_weight_maps(wildcards.subject)


def annotation_inputs(wildcards):
    return [fill(f, dataset=wildcards.dataset) for f in STUDY.annotation_files(wildcards.subject)]


def pycortex_inputs(wildcards):
    return STUDY.pycortex_inputs(wildcards.subject)


def pycortex_db_of(wildcards, input):
    return STUDY.pycortex_db(input.mask)


def vision_image_folders(wildcards):
    return [folder for _, folder in STUDY.vision_image_sets()]


def vision_image_set_names(wildcards):
    return [name for name, _ in STUDY.vision_image_sets()]


def vision_fmri(wildcards):
    return STUDY.vision_fmri(wildcards.subject)


def vision_test_fmri(wildcards):
    return STUDY.vision_test_fmri(wildcards.subject)


def vision_repeats(wildcards):
    return STUDY.vision_repeats(wildcards.subject)


def vision_ncsnr(wildcards):
    return STUDY.vision_subject_files(wildcards.subject)["ncsnr"]


def vision_save_predictions(wildcards):
    # ensemble members keep their test predictions
    return VISION["selection"]["save_predictions"] or wildcards.model in VISION["ensemble"]


def vision_ensemble_members(wildcards):
    return [
        vpath("vision_fit", subject=wildcards.subject, model=m, ext="npz")
        for m in VISION["ensemble"]
    ]


def vision_entry_files(ext):
    return lambda wildcards: [fill(e["path"], ext=ext) for e in STUDY.vision_entries]


def vision_roi_inputs(wildcards):
    return [
        f for s in STUDY.vision_subjects for fs in STUDY.vision_roi_files(s).values() for f in fs
    ]


def vision_entry_labels(wildcards):
    return STUDY.entry_labels(STUDY.vision_entries)


def final_targets(wildcards):
    return STUDY.final_targets()
