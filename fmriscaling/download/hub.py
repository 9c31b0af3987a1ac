"""Model snapshots: a Hugging Face repository pinned to a commit, downloaded atomically.

:func:`snapshot_model` resolves a revision to a commit, downloads that commit into a staging
folder and renames it into place with a provenance record (:data:`SNAPSHOT_RECORD`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fmriscaling._utils import DataError, provenance, write_json
from fmriscaling.models import SNAPSHOT_RECORD

logger = logging.getLogger(__name__)

_COMMIT_RE = re.compile(r"[0-9a-f]{40}")
# the staging folder is .<dest>.part beside dest, like a file download's <dest>.part
_PART_SUFFIX = ".part"


def snapshot_model(
    repo_id: str,
    revision: str,
    dest: str | os.PathLike,
    *,
    endpoint: str | None = None,
    token: str | None = None,
    allow_patterns: Sequence[str] | str | None = None,
    max_workers: int = 8,
    gated: bool = False,
) -> dict[str, Any]:
    """Download a Hugging Face repository at a pinned commit into ``dest``, atomically.

    The revision is resolved to a commit first and the files are fetched at that commit, so
    the record always describes exactly the bytes on disk. Files land in ``.<dest>.part``
    beside ``dest`` (kept on failure, so a rerun resumes) and the folder is renamed to
    ``dest`` when complete; ``dest/fmriscaling_snapshot.json`` records the repository, the
    requested revision and the resolved commit.

    Parameters
    ----------
    repo_id : str
        E.g. ``"facebook/opt-125m"``.
    revision : str
        A 40-hex commit (recommended), a tag or a branch (a warning is logged: a branch moves).
    dest : path-like
        Final folder. If it already holds this commit (same record), nothing is downloaded.
    endpoint : str, optional
        Hub URL; defaults to ``HF_ENDPOINT`` or https://huggingface.co.
    token : str, optional
        Access token for gated or private repositories; defaults to ``HF_TOKEN``.
    allow_patterns : str or sequence of str, optional
        Glob patterns of the files to fetch (e.g. ``["*.json", "*.safetensors"]``).
    max_workers : int
        Parallel file downloads.
    gated : bool
        The repository needs an accepted licence (the config's ``source.gated``): without a
        token (``token``, ``HF_TOKEN`` or a ``huggingface-cli login``) it fails at once with
        the steps to take, before any request.

    Returns
    -------
    dict
        The provenance record written to ``dest/fmriscaling_snapshot.json`` (``repo_id``,
        ``revision``, ``commit``, ``endpoint``, ``allow_patterns``, ``files`` and versions).

    Raises
    ------
    DataError
        When the repository is gated or needs a token, does not exist, the revision does not
        exist, or ``dest`` holds something else.
    """
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if gated and not (token or _stored_token()):
        raise DataError(
            f"{repo_id} is a gated model (source.gated in the config) and no Hugging Face "
            f"token is set: accept its licence at https://huggingface.co/{repo_id}, create a "
            "token at https://huggingface.co/settings/tokens, then set HF_TOKEN (or run "
            "`huggingface-cli login`) and rerun"
        )
    dest = Path(dest)
    patterns = [allow_patterns] if isinstance(allow_patterns, str) else allow_patterns
    patterns = sorted(patterns) if patterns is not None else None
    if not _COMMIT_RE.fullmatch(revision):
        logger.warning(
            "%s: revision %r is a branch or tag, not a 40-hex commit; it is resolved now and "
            "the commit recorded, but pin the commit in the config for reproducibility",
            repo_id,
            revision,
        )
    where = endpoint or "the Hugging Face Hub"

    def translate(exc: Exception) -> DataError:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if isinstance(exc, GatedRepoError) or status in (401, 403):
            return DataError(
                f"{repo_id}@{revision}: access denied by {where} (HTTP {status}): the model is "
                "gated or private. Accept its licence on its Hugging Face page, create a token, "
                "and set HF_TOKEN (or pass token=)"
            )
        if isinstance(exc, RevisionNotFoundError):
            return DataError(
                f"{repo_id}: revision {revision!r} does not exist on {where}; check the "
                "revision in the config"
            )
        if isinstance(exc, RepositoryNotFoundError):
            return DataError(
                f"{repo_id}: repository not found on {where}; check the model id in the config "
                "(a private repository also needs HF_TOKEN)"
            )
        return DataError(f"{repo_id}@{revision}: download from {where} failed: {exc}")

    api = HfApi(endpoint=endpoint, token=token)
    try:
        commit = revision if _COMMIT_RE.fullmatch(revision) else None
        if commit is None:
            commit = api.model_info(repo_id, revision=revision).sha
        if not commit:
            raise DataError(f"{repo_id}@{revision}: {where} did not report a commit sha")
    except (GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError, HfHubHTTPError) as exc:
        raise translate(exc) from exc

    record_path = dest / SNAPSHOT_RECORD
    if dest.exists():
        old = _read_record(record_path)
        if (
            old is not None
            and old.get("repo_id") == repo_id
            and old.get("commit") == commit
            and old.get("allow_patterns") == patterns
        ):
            logger.info("%s@%s: already in %s", repo_id, commit, dest)
            return old
        raise DataError(
            f"{dest} exists but does not hold {repo_id} at commit {commit}"
            f"{' with these allow_patterns' if old else ''} (no matching {SNAPSHOT_RECORD}); "
            "remove it or choose another destination"
        )

    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.with_name(f".{dest.name}{_PART_SUFFIX}")
    marker = staging / ".fmriscaling_commit"
    if staging.exists() and (not marker.is_file() or marker.read_text() != commit):
        # our own leftover from an interrupted download of another commit: start afresh
        logger.info("%s: removing the leftover %s of another commit", repo_id, staging)
        shutil.rmtree(staging)
    staging.mkdir(exist_ok=True)
    marker.write_text(commit)
    logger.info("%s@%s (commit %s): downloading into %s", repo_id, revision, commit, staging)
    try:
        snapshot_download(
            repo_id,
            revision=commit,
            local_dir=staging,
            endpoint=endpoint,
            token=token,
            allow_patterns=patterns,
            max_workers=max_workers,
        )
    except (GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError, HfHubHTTPError) as exc:
        _drop_if_empty(staging, keep={marker.name})
        raise translate(exc) from exc
    except LocalEntryNotFoundError as exc:
        _drop_if_empty(staging, keep={marker.name})
        raise DataError(
            f"{repo_id}@{revision}: could not reach {where} ({exc}); check the network, or "
            "unset HF_HUB_OFFLINE"
        ) from exc
    files = sorted(
        p.relative_to(staging).as_posix()
        for p in staging.rglob("*")
        if p.is_file() and p != marker and ".cache" not in p.relative_to(staging).parts
    )
    if not files:
        raise DataError(
            f"{repo_id}@{commit}: no file matched allow_patterns={patterns}; check the patterns"
        )
    record = provenance(
        {"repo_id": repo_id, "revision": revision, "allow_patterns": patterns},
        repo_id=repo_id,
        revision=revision,
        commit=commit,
        endpoint=endpoint or "https://huggingface.co",
        allow_patterns=patterns,
        files=files,
    )
    write_json(staging / SNAPSHOT_RECORD, record)
    marker.unlink()
    os.replace(staging, dest)
    logger.info("%s@%s: %d file(s) in %s", repo_id, commit, len(files), dest)
    return record


def _stored_token() -> str | None:
    """The token huggingface_hub would use: ``HF_TOKEN`` or the one saved by a login."""
    from huggingface_hub import get_token

    return get_token()


def _drop_if_empty(folder: Path, keep: set[str]) -> None:
    """Remove our staging ``folder`` when it holds no downloaded file (else keep it to resume)."""
    payload = [
        p
        for p in folder.rglob("*")
        if p.is_file() and p.name not in keep and ".cache" not in p.relative_to(folder).parts
    ]
    if not payload:
        shutil.rmtree(folder, ignore_errors=True)


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
