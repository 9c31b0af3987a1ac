"""The workflow's own logic as a library object: `Study` (paths, stories, fit groups, draws,
stacks, the vision sweep, table and figure names, final targets), its jobs (`Job`,
`Study.jobs`) and the sizes the plan prices them by (`StudyFacts`).

``rules/common.smk`` builds one `Study` from Snakemake's config and keeps one-line input
functions over it; `fmriscaling.plan` prices ``Study.jobs()``. Nothing here imports Snakemake.
"""

from .facts import StudyFacts, load_config, merge_configs
from .jobs import Job, study_jobs
from .paths import fill
from .study import Study

__all__ = ["Job", "Study", "StudyFacts", "fill", "load_config", "merge_configs", "study_jobs"]
