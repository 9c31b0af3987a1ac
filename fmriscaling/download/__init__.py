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

Each submodule is imported on first use of one of its names; the hub client only when
`snapshot_model` runs.
"""

import importlib
from typing import Any

# public name -> the submodule it lives in; imported on first use, so that reading the manifest
# (the workflow does it at parse time) loads neither the HTTP stack nor the hub client
_HOMES = {
    "KINDS": "manifest",
    "RESPDICT": "manifest",
    "manifest_stories": "manifest",
    "manifest_subjects": "manifest",
    "read_manifest": "manifest",
    "relpath_for": "manifest",
    "select_files": "manifest",
    "DEFAULT_BASE_URL": "http",
    "download_file": "http",
    "download_many": "http",
    "file_url": "http",
    "snapshot_model": "hub",
    "SNAPSHOT_RECORD": "hub",
    "main": "cli",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
