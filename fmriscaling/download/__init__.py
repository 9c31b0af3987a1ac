"""Selective, resumable, verified downloads of OpenNeuro ds003020 and of model snapshots.

``fmriscaling.download.manifest``
    `read_manifest` (path, size and MD5 of every file), `manifest_subjects`,
    `manifest_stories`, `relpath_for` and `select_files` (paths for some subjects, stories and
    kinds of file).
``fmriscaling.download.http``
    `download_file` (one file, ``Range`` resume, size and MD5 verified before it takes its
    final name) and `download_many` (manifest paths in parallel).
``fmriscaling.download.hub``
    `snapshot_model`: a Hugging Face repository pinned to a commit, downloaded atomically with
    a provenance record.
``fmriscaling.download.cli``
    The command line::

        python -m fmriscaling.download --dest data/ds003020 --subjects UTS01 \\
            --stories all --kinds respdict responses textgrids

The hub client is imported only when `snapshot_model` runs.
"""

from fmriscaling.models import SNAPSHOT_RECORD

from .cli import main
from .http import DEFAULT_BASE_URL, download_file, download_many, file_url
from .hub import snapshot_model
from .manifest import (
    KINDS,
    RESPDICT,
    manifest_stories,
    manifest_subjects,
    read_manifest,
    relpath_for,
    select_files,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "KINDS",
    "RESPDICT",
    "SNAPSHOT_RECORD",
    "download_file",
    "download_many",
    "file_url",
    "main",
    "manifest_stories",
    "manifest_subjects",
    "read_manifest",
    "relpath_for",
    "select_files",
    "snapshot_model",
]
