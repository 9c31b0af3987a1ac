"""Resumable, verified HTTPS downloads of dataset files.

:func:`download_many` fetches manifest paths in parallel with HTTP ``Range`` resume, and
:func:`download_file` guarantees that a file only appears under its final name once its size
and MD5 match the manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd
import requests
import urllib3
from tqdm.auto import tqdm

from fmriscaling._utils import ANNEX_MAX_BYTES, DataError, is_annex_pointer

from .manifest import _source, _suggest

logger = logging.getLogger(__name__)

#: Public HTTPS mirror of OpenNeuro ds003020 (no credentials); a file is ``<base>/<path>``.
DEFAULT_BASE_URL = "https://s3.amazonaws.com/openneuro.org/ds003020"

_PART_SUFFIX = ".part"
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


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
