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
from fmriscaling.workflow.study import alternatives

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


def over(method, *names, **fixed):
    """An input or params function: ``method`` of the Study called with the job's wildcards
    ``names`` (as keyword arguments of the same names) and ``fixed``."""
    return lambda wildcards: method(**{n: wildcards[n] for n in names}, **fixed)


def with_directories(outputs, *names):
    """A Study's named outputs with the folders among them flagged as Snakemake directories."""
    folder = lambda f: [directory(x) for x in f] if isinstance(f, list) else directory(f)
    return {name: folder(f) if name in names else f for name, f in outputs.items()}


def pycortex_db_of(wildcards, input):
    return STUDY.pycortex_db(input.mask)
