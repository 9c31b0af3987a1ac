"""Selective, resumable, verified downloads of OpenNeuro ds003020 and of model snapshots.

The dataset is 137 GB; a run needs a few subjects, stories and kinds of file. The manifest
(``config/datasets/ds003020_manifest.tsv``: path, size and MD5 of every file) says what exists;
:func:`select_files` picks paths from it, :func:`download_many` fetches them in parallel over
HTTPS with HTTP ``Range`` resume, and :func:`download_file` guarantees that a file only appears
under its final name once its size and MD5 match the manifest.

:func:`snapshot_model` pins a Hugging Face model repository to a commit and downloads it into a
directory atomically, with a provenance record.

Command line::

    python -m fmriscaling.download --dest data/ds003020 --subjects UTS01 \\
        --stories all --kinds respdict responses textgrids
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import hashlib
import logging
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd
import requests
import urllib3
from tqdm.auto import tqdm

from fmriscaling._utils import (
    ANNEX_MAX_BYTES,
    ConfigError,
    DataError,
    is_annex_pointer,
    write_json,
)

logger = logging.getLogger(__name__)

#: Public HTTPS mirror of OpenNeuro ds003020 (no credentials); a file is ``<base>/<path>``.
DEFAULT_BASE_URL = "https://s3.amazonaws.com/openneuro.org/ds003020"

#: Kinds of file :func:`select_files` knows about.
KINDS = ("respdict", "responses", "textgrids", "audio", "pycortex", "freesurfer")

RESPDICT = "derivative/respdict.json"
_RESPONSES_DIR = "derivative/preprocessed_data"
_TEXTGRID_DIR = "derivative/TextGrids"
_AUDIO_DIR = "stimuli"
_PYCORTEX_DIR = "derivative/pycortex-db"
_FREESURFER_DIR = "derivative/freesurfer_subjdir"

_MD5_RE = re.compile(r"[0-9a-f]{32}")
_COMMIT_RE = re.compile(r"[0-9a-f]{40}")
_PART_SUFFIX = ".part"
# a git-annex pointer is a short text file; real data files are never this small and this shaped
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
SNAPSHOT_RECORD = "fmriscaling_snapshot.json"


# --------------------------------------------------------------------------- manifest


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read a dataset manifest: a TSV with columns ``path``, ``size``, ``md5``.

    Lines starting with ``#`` are comments. The source path is kept in ``df.attrs["source"]``.

    Parameters
    ----------
    path : path-like
        The manifest, e.g. ``config/datasets/ds003020_manifest.tsv``.

    Returns
    -------
    pandas.DataFrame
        One row per file: ``path`` (str, relative to the dataset root), ``size`` (int, bytes),
        ``md5`` (str, 32 lowercase hex digits), in file order.

    Raises
    ------
    DataError
        When the file is missing, the header is not ``path size md5`` or a row is malformed
        (wrong number of fields, non-integer size, bad MD5, duplicate path).
    """
    path = Path(path)
    fix = "regenerate it or restore it from the repository (config/datasets/)"
    if not path.is_file():
        raise DataError(f"manifest {path} does not exist; {fix}")
    lines = [
        (lineno, line)
        for lineno, line in enumerate(path.read_text().splitlines(), start=1)
        if line.strip() and not line.startswith("#")
    ]
    if not lines:
        raise DataError(f"manifest {path} has no header and no rows; {fix}")
    header_lineno, header = lines[0]
    if header.split("\t") != ["path", "size", "md5"]:
        raise DataError(
            f"manifest {path} line {header_lineno}: expected the tab-separated header "
            f"'path<TAB>size<TAB>md5', got {header!r}; {fix}"
        )
    paths: list[str] = []
    sizes: list[int] = []
    md5s: list[str] = []
    seen: set[str] = set()
    for lineno, line in lines[1:]:
        fields = line.split("\t")
        where = f"manifest {path} line {lineno}"
        if len(fields) != 3:
            raise DataError(
                f"{where}: expected 3 tab-separated fields (path, size, md5), got {len(fields)}: "
                f"{line!r}; {fix}"
            )
        relpath, size_text, md5 = fields
        try:
            size = int(size_text)
        except ValueError:
            raise DataError(f"{where}: size {size_text!r} is not an integer; {fix}") from None
        if size < 0:
            raise DataError(f"{where}: size {size} is negative; {fix}")
        if not _MD5_RE.fullmatch(md5):
            raise DataError(f"{where}: md5 {md5!r} is not 32 lowercase hex digits; {fix}")
        if relpath in seen:
            raise DataError(f"{where}: path {relpath!r} is listed twice; {fix}")
        seen.add(relpath)
        paths.append(relpath)
        sizes.append(size)
        md5s.append(md5)
    df = pd.DataFrame(
        {
            "path": pd.Series(paths, dtype=object),
            "size": pd.Series(sizes, dtype="int64"),
            "md5": pd.Series(md5s, dtype=object),
        }
    )
    df.attrs["source"] = str(path)
    return df


def _source(manifest: pd.DataFrame) -> str:
    return manifest.attrs.get("source", "the manifest")


def _path_parts(manifest: pd.DataFrame) -> list[list[str]]:
    return [p.split("/") for p in manifest["path"]]


def manifest_subjects(manifest: pd.DataFrame) -> list[str]:
    """Subjects with any file in the manifest (responses, pycortex or FreeSurfer), sorted.

    Parameters
    ----------
    manifest : pandas.DataFrame
        As returned by :func:`read_manifest`.

    Returns
    -------
    list of str
        E.g. ``["UTS01", ..., "UTS09"]``.
    """
    subject_dirs = {_RESPONSES_DIR, _PYCORTEX_DIR, _FREESURFER_DIR}
    subjects = {
        parts[2]
        for parts in _path_parts(manifest)
        if len(parts) > 3 and "/".join(parts[:2]) in subject_dirs
    }
    return sorted(subjects)


def manifest_stories(manifest: pd.DataFrame, subject: str | None = None) -> list[str]:
    """Stories with a response file ``derivative/preprocessed_data/<subject>/<story>.hf5``.

    Parameters
    ----------
    manifest : pandas.DataFrame
        As returned by :func:`read_manifest`.
    subject : str, optional
        A subject id such as ``"UTS01"``; None gives the union over all subjects.

    Returns
    -------
    list of str
        Story names, sorted.

    Raises
    ------
    DataError
        When ``subject`` has no response file in the manifest (the message lists close matches).
    """
    stories: dict[str, set[str]] = {}
    for parts in _path_parts(manifest):
        if len(parts) == 4 and "/".join(parts[:2]) == _RESPONSES_DIR and parts[3].endswith(".hf5"):
            stories.setdefault(parts[2], set()).add(parts[3][: -len(".hf5")])
    if subject is None:
        return sorted(set().union(*stories.values()))
    if subject not in stories:
        raise DataError(
            f"subject {subject!r} has no response files in {_source(manifest)}"
            f"{_suggest(subject, stories)}; subjects there: {', '.join(sorted(stories))}"
        )
    return sorted(stories[subject])


def _suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def relpath_for(kind: str, *, subject: str | None = None, story: str | None = None) -> str:
    """Dataset-relative path of a single-file kind.

    Parameters
    ----------
    kind : {"respdict", "responses", "textgrids", "audio"}
        Kind of file. ``pycortex`` and ``freesurfer`` are folders: use :func:`select_files`.
    subject : str, optional
        Needed for ``responses``.
    story : str, optional
        Needed for ``responses``, ``textgrids`` and ``audio``.

    Returns
    -------
    str
        E.g. ``relpath_for("responses", subject="UTS01", story="souls")`` is
        ``"derivative/preprocessed_data/UTS01/souls.hf5"``.
    """
    if kind == "respdict":
        return RESPDICT
    if kind in ("responses", "textgrids", "audio") and story is None:
        raise ConfigError(f"kind {kind!r} needs a story")
    if kind == "responses":
        if subject is None:
            raise ConfigError("kind 'responses' needs a subject")
        return f"{_RESPONSES_DIR}/{subject}/{story}.hf5"
    if kind == "textgrids":
        return f"{_TEXTGRID_DIR}/{story}.TextGrid"
    if kind == "audio":
        return f"{_AUDIO_DIR}/{story}.wav"
    raise ConfigError(
        f"kind {kind!r} is not a single-file kind; use one of respdict, responses, textgrids, "
        "audio (pycortex and freesurfer are folders: use select_files)"
    )


def select_files(
    manifest: pd.DataFrame,
    *,
    subjects: Sequence[str] | str | None,
    stories: Sequence[str] | str | None = "all",
    kinds: Sequence[str],
) -> list[str]:
    """Manifest paths for some subjects, stories and kinds of file.

    Parameters
    ----------
    manifest : pandas.DataFrame
        As returned by :func:`read_manifest`.
    subjects : sequence of str, "all" or None
        Subject ids such as ``["UTS01", "UTS02"]``; ``"all"`` for every subject; None or empty
        for none (then story-level kinds cover every story with responses).
    stories : sequence of str, "all" or None
        Story names; ``"all"`` or None for every story each subject has. With explicit names,
        a subject that lacks one of them is an error.
    kinds : sequence of str
        Among ``respdict`` (``derivative/respdict.json``), ``responses``
        (``derivative/preprocessed_data/<subject>/<story>.hf5``), ``textgrids``
        (``derivative/TextGrids/<story>.TextGrid``), ``audio`` (``stimuli/<story>.wav``),
        ``pycortex`` (``derivative/pycortex-db/<subject>/...``) and ``freesurfer``
        (``derivative/freesurfer_subjdir/<subject>/...``).

    Returns
    -------
    list of str
        Manifest paths, unique, in manifest order.

    Raises
    ------
    DataError
        When a subject, a story or a needed file is not in the manifest; the message names it
        and lists close matches.
    ConfigError
        When a kind is unknown.
    """
    kinds = list(kinds)
    for kind in kinds:
        if kind not in KINDS:
            raise ConfigError(
                f"unknown kind {kind!r}{_suggest(kind, KINDS)}; known kinds: {', '.join(KINDS)}"
            )
    all_subjects = manifest_subjects(manifest)
    if subjects is None:
        subjects = []
    elif isinstance(subjects, str):
        subjects = all_subjects if subjects == "all" else [subjects]
    for subject in subjects:
        if subject not in all_subjects:
            raise DataError(
                f"subject {subject!r} is not in {_source(manifest)}{_suggest(subject, all_subjects)}"
                f"; subjects there: {', '.join(all_subjects)}"
            )
    all_stories = manifest_stories(manifest)
    explicit_stories: list[str] | None
    if stories is None or (isinstance(stories, str) and stories == "all"):
        explicit_stories = None
    else:
        explicit_stories = [stories] if isinstance(stories, str) else list(stories)
        for story in explicit_stories:
            if story not in all_stories:
                raise DataError(
                    f"story {story!r} has no response file in {_source(manifest)}"
                    f"{_suggest(story, all_stories)}; see manifest_stories() for the list"
                )

    available = set(manifest["path"])
    wanted: set[str] = set()

    def need(relpath: str, what: str) -> None:
        if relpath not in available:
            raise DataError(
                f"{what}: {relpath} is not in {_source(manifest)}"
                f"{_suggest(relpath, available)}; choose another subject or story"
            )
        wanted.add(relpath)

    per_subject: dict[str, list[str]] = {}
    for subject in subjects:
        have = manifest_stories(manifest, subject)
        if explicit_stories is None:
            per_subject[subject] = have
        else:
            missing = [s for s in explicit_stories if s not in have]
            if missing and "responses" in kinds:
                raise DataError(
                    f"subject {subject} has no responses for {', '.join(missing)} in "
                    f"{_source(manifest)} ({len(have)} stories there); drop them or the subject"
                )
            per_subject[subject] = [s for s in explicit_stories if s in have]
    if explicit_stories is not None:
        story_set = list(explicit_stories)
    elif subjects:
        story_set = sorted(set().union(*per_subject.values()))
    else:
        story_set = all_stories

    if "respdict" in kinds:
        need(RESPDICT, "respdict")
    if "responses" in kinds:
        for subject, subject_stories in per_subject.items():
            for story in subject_stories:
                need(relpath_for("responses", subject=subject, story=story), "responses")
    for kind in ("textgrids", "audio"):
        if kind in kinds:
            for story in story_set:
                need(relpath_for(kind, story=story), kind)
    for kind, folder in (("pycortex", _PYCORTEX_DIR), ("freesurfer", _FREESURFER_DIR)):
        if kind not in kinds:
            continue
        for subject in subjects:
            prefix = f"{folder}/{subject}/"
            files = [p for p in manifest["path"] if p.startswith(prefix)]
            if not files:
                raise DataError(
                    f"{kind}: no files under {prefix} in {_source(manifest)}; subject {subject} "
                    f"has none in this dataset; drop '{kind}' or the subject"
                )
            wanted.update(files)
    return [p for p in manifest["path"] if p in wanted]


# --------------------------------------------------------------------------- one file


def _file_md5(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        while block := f.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def _html_page(head: bytes) -> bool:
    text = head.lstrip()[:64].lower()
    return text.startswith(b"<!doctype html") or text.startswith(b"<html")


class _Retryable(Exception):
    """A transient failure: retry, resuming from the bytes on disk."""


def download_file(
    url: str,
    dest: str | os.PathLike,
    *,
    size: int,
    md5: str,
    retries: int = 3,
    chunk_size: int = 1 << 20,
    timeout: float = 60,
    session: requests.Session | None = None,
    progress: bool = False,
    verify_existing: bool = False,
    backoff: float = 0.2,
    relpath: str | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> Path:
    """Download ``url`` to ``dest``, resumably, and verify its size and MD5.

    Bytes go to ``<dest>.part`` beside ``dest``; a ``.part`` left by an interrupted run is
    resumed with an HTTP ``Range`` request. Only a file whose size and MD5 match is renamed to
    ``dest``, so a corrupt file never sits under the final name.

    Parameters
    ----------
    url : str
        Where to fetch the file.
    dest : path-like
        Final path; parent folders are created.
    size : int
        Expected size in bytes (from the manifest).
    md5 : str
        Expected MD5, 32 hex digits (from the manifest).
    retries : int
        How many times to retry after a connection error, a dropped or truncated body or a
        5xx/429 answer; each retry resumes from the bytes received.
    chunk_size : int
        Bytes per read.
    timeout : float
        Seconds to wait to connect and between bytes.
    session : requests.Session, optional
        Session to reuse (connection pooling); a new one otherwise.
    progress : bool
        Show a tqdm bar for this file.
    verify_existing : bool
        Also check the MD5 of an existing ``dest`` before skipping it (else size only).
    backoff : float
        Seconds to wait before retry ``k`` are ``backoff * k``.
    relpath : str, optional
        The file's path in the manifest, named in error messages (defaults to ``dest``).
    on_bytes : callable, optional
        Called with the number of bytes written after each chunk (negative when a download
        restarts from zero), e.g. to drive an overall progress bar.

    Returns
    -------
    pathlib.Path
        ``dest``.

    Raises
    ------
    DataError
        On 401/403/404 (no retry), a git-annex pointer or an HTML page instead of data, a
        truncated body or connection failures after all retries, or a size/MD5 mismatch.
    """
    dest = Path(dest)
    name = relpath or str(dest)
    md5 = md5.lower()
    if dest.is_file():
        have = dest.stat().st_size
        if have == size and (not verify_existing or _file_md5(dest) == md5):
            logger.debug("%s: already present, skipped", name)
            return dest
        logger.warning(
            "%s: existing %s does not match the manifest (%s); downloading it again",
            name,
            dest,
            f"size {have}, expected {size}" if have != size else "md5 differs",
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + _PART_SUFFIX)
    own_session = session is None
    session = session or requests.Session()
    bar = tqdm(
        total=size,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=dest.name,
        disable=not progress,
        leave=False,
    )
    started = time.monotonic()
    fetched = 0
    try:
        last_error = ""
        for attempt in range(retries + 1):
            if attempt:
                wait = backoff * attempt
                logger.info(
                    "%s: %s; retry %d/%d in %.1f s", name, last_error, attempt, retries, wait
                )
                time.sleep(wait)
            try:
                fetched += _fetch_once(
                    url, part, session, size=size, chunk_size=chunk_size, timeout=timeout,
                    name=name, bar=bar, on_bytes=on_bytes,
                )  # fmt: skip
                break
            except _Retryable as exc:
                last_error = str(exc)
        else:
            have = part.stat().st_size if part.exists() else 0
            raise DataError(
                f"{name}: download from {url} failed after {retries + 1} attempts: {last_error} "
                f"({have} of {size} bytes kept in {part}); check the network and run again "
                "to resume"
            )
        _verify(part, name=name, url=url, size=size, md5=md5)
        os.replace(part, dest)
    finally:
        bar.close()
        if own_session:
            session.close()
    elapsed = max(time.monotonic() - started, 1e-9)
    logger.info(
        "%s: downloaded %.1f MB in %.1f s (%.1f MB/s)",
        name,
        fetched / 1e6,
        elapsed,
        fetched / 1e6 / elapsed,
    )
    return dest


def _fetch_once(
    url: str,
    part: Path,
    session: requests.Session,
    *,
    size: int,
    chunk_size: int,
    timeout: float,
    name: str,
    bar: Any,
    on_bytes: Callable[[int], None] | None,
) -> int:
    """One GET into ``part``, resuming from its length; return the bytes written."""
    offset = part.stat().st_size if part.exists() else 0
    if offset > size:
        logger.warning(
            "%s: %s is larger than expected (%d > %d); restarting", name, part, offset, size
        )
        offset = _restart(part, offset, bar, on_bytes)
    if offset == size and size > 0:
        return 0  # complete from an earlier run: verify it
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = session.get(url, headers=headers, stream=True, timeout=timeout)
    except requests.RequestException as exc:
        raise _Retryable(f"connection failed ({type(exc).__name__}: {exc})") from exc
    with contextlib.closing(response):
        status = response.status_code
        if status in (401, 403, 404, 410):
            raise DataError(
                f"{name}: {url} answered HTTP {status} ({response.reason}); the file is not "
                "served there. Check base_url and that the dataset snapshot matches the "
                "manifest (OpenNeuro ds003020 3.1.0)"
            )
        if status == 416 and offset:
            logger.warning("%s: server refused range from byte %d; restarting", name, offset)
            _restart(part, offset, bar, on_bytes)
            raise _Retryable("HTTP 416 to a ranged request")
        if status in _RETRY_STATUS or status >= 500:
            raise _Retryable(f"HTTP {status} ({response.reason})")
        if status not in (200, 206):
            raise DataError(
                f"{name}: {url} answered HTTP {status} ({response.reason}), expected 200; "
                "check base_url"
            )
        if status == 206:
            match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
            if match is None or int(match.group(1)) != offset:
                logger.warning("%s: server resumed at the wrong byte; restarting", name)
                _restart(part, offset, bar, on_bytes)
                raise _Retryable("bad Content-Range in a 206 answer")
        elif offset:
            # the server ignored Range and sends the whole file: start again from zero
            logger.info("%s: server ignored the Range header; restarting from zero", name)
            offset = _restart(part, offset, bar, on_bytes)
        content_type = response.headers.get("Content-Type", "").lower()
        if content_type.startswith("text/html") and not name.lower().endswith((".html", ".htm")):
            raise DataError(
                f"{name}: {url} returned an HTML page (Content-Type {content_type}) instead of "
                "the file, likely an error or login page; check base_url"
            )
        declared = response.headers.get("Content-Length")
        expected_body = int(declared) if declared and declared.isdigit() else None
        received = 0
        written = 0
        mode = "ab" if offset else "wb"
        if not offset:
            bar.reset(total=size)
        else:
            bar.n = offset
            bar.refresh()
        body = _iter_body(response, chunk_size)
        with part.open(mode) as f:
            while True:
                try:
                    chunk = next(body, None)
                except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                    raise _Retryable(
                        f"connection dropped after {offset + received} of {size} bytes "
                        f"({type(exc).__name__})"
                    ) from exc
                if chunk is None:
                    break
                if offset == 0 and received == 0:
                    problem = _bad_head(chunk, name=name, url=url, size=size, body=expected_body)
                    if problem is not None:
                        f.close()
                        _discard(part)
                        raise DataError(problem)
                received += len(chunk)
                if offset + received > size:
                    f.close()
                    _discard(part)
                    raise DataError(
                        f"{name}: {url} sent more than the {size} bytes in the manifest; "
                        "the remote file differs from the manifest's snapshot; check "
                        "base_url and the snapshot"
                    )
                f.write(chunk)
                written += len(chunk)
                bar.update(len(chunk))
                if on_bytes is not None:
                    on_bytes(len(chunk))
        if expected_body is not None and received < expected_body:
            raise _Retryable(
                f"truncated body: {received} of {expected_body} bytes, then end of stream"
            )
        if offset + received < size:
            raise _Retryable(f"truncated body: {offset + received} of {size} bytes")
        return written


def _iter_body(response: requests.Response, chunk_size: int) -> Iterator[bytes]:
    """Yield the body as it arrives.

    ``read1`` hands over whatever the socket has, so the bytes received before a dropped
    connection reach the disk and a retry resumes from them (``iter_content`` would lose the
    last partial chunk). The first read is a full one of up to 1 KiB, for :func:`_bad_head`.
    """
    raw = response.raw
    read1 = getattr(raw, "read1", None)
    if read1 is None:  # pragma: no cover - urllib3 < 2.3
        yield from response.iter_content(chunk_size=chunk_size)
        return
    head = raw.read(ANNEX_MAX_BYTES)
    if not head:
        return
    yield head
    while chunk := read1(chunk_size):
        yield chunk


def _bad_head(chunk: bytes, *, name: str, url: str, size: int, body: int | None) -> str | None:
    """Why the first bytes are a git-annex pointer or an HTML page, or None."""
    short = body is None or body <= ANNEX_MAX_BYTES
    if short and is_annex_pointer(chunk):
        return (
            f"{name}: {url} returned a git-annex pointer ({chunk[:80]!r}) instead of the "
            f"file's {size} bytes; the content is not on that server: use the S3 mirror "
            f"({DEFAULT_BASE_URL}) or `datalad get`"
        )
    if _html_page(chunk) and not name.lower().endswith((".html", ".htm")):
        return (
            f"{name}: {url} returned an HTML page instead of the file, likely an error or "
            "login page; check base_url"
        )
    return None


def _restart(part: Path, offset: int, bar: Any, on_bytes: Callable[[int], None] | None) -> int:
    _discard(part)
    bar.reset()
    if on_bytes is not None and offset:
        on_bytes(-offset)
    return 0


def _discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _verify(part: Path, *, name: str, url: str, size: int, md5: str) -> None:
    """Check size then MD5 of a finished ``part``; remove it and raise on mismatch."""
    got_size = part.stat().st_size if part.exists() else 0
    if got_size != size:
        _discard(part)
        raise DataError(
            f"{name}: downloaded {got_size} bytes from {url}, expected {size} (manifest); "
            "the partial file was removed: run again, and check base_url if it repeats"
        )
    got_md5 = _file_md5(part)
    if got_md5 != md5:
        _discard(part)
        raise DataError(
            f"{name}: md5 of the download from {url} is {got_md5}, expected {md5} (manifest); "
            "the corrupt file was removed: run again, and check base_url and the dataset "
            "snapshot if it repeats"
        )


# --------------------------------------------------------------------------- many files


def file_url(base_url: str, relpath: str) -> str:
    """URL of a dataset file: ``<base_url>/<relpath>`` with unsafe characters quoted."""
    return f"{base_url.rstrip('/')}/{quote(relpath, safe='/')}"


def download_many(
    base_url: str,
    paths: Sequence[str],
    dest_root: str | os.PathLike,
    manifest: pd.DataFrame,
    *,
    workers: int = 4,
    retries: int = 3,
    progress: bool = True,
    verify_existing: bool = False,
    backoff: float = 0.2,
    timeout: float = 60,
) -> list[Path]:
    """Download manifest files in parallel under ``dest_root``, keeping their relative paths.

    Files already complete are skipped. A failure does not stop the others: after every
    download has finished, one :class:`DataError` lists each failed file and why; the files
    that succeeded stay in place.

    Parameters
    ----------
    base_url : str
        Dataset root URL, e.g. :data:`DEFAULT_BASE_URL`.
    paths : sequence of str
        Manifest paths, e.g. from :func:`select_files`.
    dest_root : path-like
        Local dataset root; ``<dest_root>/<path>`` is written.
    manifest : pandas.DataFrame
        As returned by :func:`read_manifest`; gives each file's size and MD5.
    workers : int
        Parallel downloads.
    retries, backoff, timeout, verify_existing
        Passed to :func:`download_file`.
    progress : bool
        Show one overall progress bar, in bytes.

    Returns
    -------
    list of pathlib.Path
        Local paths, in the order of ``paths``.

    Raises
    ------
    DataError
        When a path is not in the manifest (before any download) or any download failed.
    """
    dest_root = Path(dest_root)
    index = manifest.set_index("path")
    unknown = [p for p in paths if p not in index.index]
    if unknown:
        raise DataError(
            f"{len(unknown)} path(s) not in {_source(manifest)}: {', '.join(unknown[:10])}"
            f"{_suggest(unknown[0], index.index)}; pick paths with select_files()"
        )
    paths = list(dict.fromkeys(paths))
    sizes = {p: int(index.at[p, "size"]) for p in paths}
    todo = [
        p
        for p in paths
        if not (dest_root / p).is_file() or (dest_root / p).stat().st_size != sizes[p]
    ]
    logger.info(
        "%d file(s) requested (%.2f GB), %d to fetch (%.2f GB) from %s",
        len(paths),
        sum(sizes.values()) / 1e9,
        len(todo),
        sum(sizes[p] for p in todo) / 1e9,
        base_url,
    )
    local = threading.local()
    sessions: list[requests.Session] = []
    lock = threading.Lock()
    bar = tqdm(
        total=sum(sizes[p] for p in todo),
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=f"{len(todo)} files",
        disable=not progress,
    )
    for p in todo:  # resumed bytes count as done
        part = (dest_root / p).with_name(Path(p).name + _PART_SUFFIX)
        if part.is_file():
            bar.update(min(part.stat().st_size, sizes[p]))

    def on_bytes(n: int) -> None:
        with lock:
            bar.update(n)

    def session() -> requests.Session:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            with lock:
                sessions.append(local.session)
        return local.session

    def one(relpath: str) -> Path:
        return download_file(
            file_url(base_url, relpath),
            dest_root / relpath,
            size=sizes[relpath],
            md5=str(index.at[relpath, "md5"]),
            retries=retries,
            timeout=timeout,
            session=session(),
            progress=False,
            verify_existing=verify_existing,
            backoff=backoff,
            relpath=relpath,
            on_bytes=on_bytes,
        )

    failures: dict[str, str] = {}
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = {pool.submit(one, p): p for p in paths}
            for future in as_completed(futures):
                relpath = futures[future]
                exc = future.exception()
                if exc is not None:
                    failures[relpath] = f"{type(exc).__name__}: {exc}"
                    logger.error("%s: %s", relpath, exc)
    finally:
        bar.close()
        for s in sessions:
            s.close()
    if failures:
        lines = "\n".join(f"  {p}: {failures[p]}" for p in paths if p in failures)
        raise DataError(
            f"{len(failures)} of {len(paths)} download(s) from {base_url} failed "
            f"({len(paths) - len(failures)} succeeded and were kept):\n{lines}\n"
            "run the same command again to retry (partial files resume)"
        )
    return [dest_root / p for p in paths]


# --------------------------------------------------------------------------- model snapshots


def snapshot_model(
    repo_id: str,
    revision: str,
    dest: str | os.PathLike,
    *,
    endpoint: str | None = None,
    token: str | None = None,
    allow_patterns: Sequence[str] | str | None = None,
    max_workers: int = 8,
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

    from fmriscaling._utils import provenance

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
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fmriscaling.download",
        description="Download part of OpenNeuro ds003020, verified against the manifest.",
    )
    parser.add_argument("--base-url", default=DEFAULT_BASE_URL, help="dataset root URL")
    parser.add_argument(
        "--manifest",
        default="config/datasets/ds003020_manifest.tsv",
        help="TSV of path, size, md5 (default: %(default)s)",
    )
    parser.add_argument("--dest", required=True, help="local dataset root")
    parser.add_argument(
        "--subjects", nargs="*", default=["all"], help="subject ids, or 'all' (default)"
    )
    parser.add_argument("--stories", nargs="*", default=["all"], help="story names, or 'all'")
    parser.add_argument(
        "--kinds",
        nargs="+",
        choices=KINDS,
        default=["respdict", "responses", "textgrids"],
        help="kinds of file (default: %(default)s)",
    )
    parser.add_argument("--workers", type=int, default=4, help="parallel downloads")
    parser.add_argument("--retries", type=int, default=3, help="retries per file")
    parser.add_argument(
        "--verify-existing", action="store_true", help="check the MD5 of files already present"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--dry-run", action="store_true", help="list the selected files and their total size"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (1 on a data error)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    try:
        manifest = read_manifest(args.manifest)
        subjects = "all" if args.subjects == ["all"] else args.subjects
        stories = "all" if args.stories in (["all"], []) else args.stories
        paths = select_files(manifest, subjects=subjects, stories=stories, kinds=args.kinds)
        if args.dry_run:
            sizes = manifest.set_index("path").loc[paths, "size"]
            for p in paths:
                sys.stdout.write(f"{p}\n")
            logger.info("%d file(s), %.2f GB", len(paths), sizes.sum() / 1e9)
            return 0
        download_many(
            args.base_url,
            paths,
            args.dest,
            manifest,
            workers=args.workers,
            retries=args.retries,
            progress=not args.no_progress,
            verify_existing=args.verify_existing,
        )
    except (DataError, ConfigError) as exc:
        logger.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
