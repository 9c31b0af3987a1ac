"""Shared plumbing: errors, atomic writes, provenance, logging for workflow scripts."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import sys
import tempfile
import traceback
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class FmriScalingError(Exception):
    """Base class of the errors this package raises on purpose."""


class DataError(FmriScalingError, ValueError):
    """An input file is missing, malformed or inconsistent.

    The message names the file, what was expected and how to fix it.
    """


class ConfigError(FmriScalingError, ValueError):
    """A configuration key has a wrong value; the message names the key."""


# a git-annex pointer (a DataLad checkout without the content) is a short text naming the key
ANNEX_MAX_BYTES = 1024
ANNEX_HINT = (
    "It is a git-annex/DataLad pointer, not the data: fetch the content "
    "(`datalad get <file>` or `git annex get <file>`), or download the file from "
    "OpenNeuro's public S3 bucket with the workflow's download rule."
)


def is_annex_pointer(head: bytes) -> bool:
    """Whether the first bytes of a short file or response are a git-annex pointer."""
    text = head.lstrip()
    return text.startswith(b"/annex/objects/") or b".git/annex/objects" in text


def check_data_file(path: str | os.PathLike, *, kind: str = "data file") -> Path:
    """Fail clearly when ``path`` is missing, empty or a git-annex pointer.

    Parameters
    ----------
    path : path-like
        File to check.
    kind : str
        What the file should be (``"TextGrid"``, ``"HDF5 response file"``); used in messages.

    Returns
    -------
    Path
        ``path`` as a Path.

    Raises
    ------
    DataError
        When the file is a broken symlink (e.g. into ``.git/annex`` with the content not
        fetched), a git-annex pointer file, missing, or empty.
    """
    path = Path(path)
    if path.is_symlink() and not path.exists():
        target = os.readlink(path)
        if "annex" in target:
            raise DataError(
                f"{path}: expected a {kind}, found a git-annex symlink to {target} whose "
                f"content is not present. {ANNEX_HINT}"
            )
        raise DataError(f"{path}: expected a {kind}, found a broken symlink to {target}.")
    if not path.exists():
        raise DataError(f"{path}: {kind} does not exist. Download it or fix the path.")
    if path.is_dir():
        raise DataError(f"{path}: expected a {kind}, found a directory.")
    size = path.stat().st_size
    if size == 0:
        raise DataError(
            f"{path}: {kind} is empty (0 bytes). Re-download the file (check its md5 against "
            "the dataset manifest)."
        )
    if size <= ANNEX_MAX_BYTES:
        head = path.read_bytes()
        if is_annex_pointer(head):
            raise DataError(
                f"{path}: expected a {kind}, found git-annex pointer text "
                f"{head.decode('ascii', 'replace').strip()!r}. {ANNEX_HINT}"
            )
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    A reader never sees a partial file: on any exception the temporary file is removed
    and ``path`` is left as it was.

    Parameters
    ----------
    path : path-like
        Final destination.
    suffix : str, optional
        Suffix of the temporary name (libraries such as ``np.savez`` add their own
        extension when it is missing, so pass the final one). Defaults to ``path``'s suffix.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent,
        prefix=f".{path.name}.",
        suffix=(path.suffix if suffix is None else suffix) + ".part",
    )
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp's suffix ends in .part; give writers a name that ends like the target
    final_tmp = tmp_path.with_name(tmp_path.name[: -len(".part")])
    tmp_path.rename(final_tmp)
    try:
        yield final_tmp
        os.replace(final_tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            final_tmp.unlink()
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def config_hash(obj: Any) -> str:
    """Stable short hash of a JSON-serialisable object (key order does not matter)."""
    blob = json.dumps(obj, sort_keys=True, default=_json_default).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


_TRACKED_PACKAGES = (
    "fmriscaling",
    "numpy",
    "scipy",
    "torch",
    "transformers",
    "tokenizers",
    "himalaya",
    "h5py",
    "pandas",
)


def package_versions(names: tuple[str, ...] = _TRACKED_PACKAGES) -> dict[str, str | None]:
    """Installed versions of ``names`` (None where a package is absent)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def provenance(params: Mapping[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """Provenance record to store beside an artifact.

    Parameters
    ----------
    params : mapping, optional
        The values that determined the artifact (the rule's ``params``); hashed into
        ``config_hash`` and stored verbatim.
    **extra
        Anything else worth keeping (model id, revision, dtype, device, ...).
    """
    params = dict(params or {})
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "params": params,
        "config_hash": config_hash(params),
        "versions": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        **extra,
    }


def provenance_path(artifact: str | os.PathLike) -> Path:
    """Path of the provenance sidecar of ``artifact``: ``<artifact>.provenance.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".provenance.json")


def write_provenance(
    artifact: str | os.PathLike, params: Mapping[str, Any] | None = None, **extra: Any
) -> Path:
    """Write the provenance sidecar of ``artifact`` and return its path."""
    out = provenance_path(artifact)
    write_json(out, provenance(params, **extra))
    return out


def log_to_file(log_path: str | os.PathLike | None, level: int = logging.INFO) -> None:
    """Send logging and uncaught tracebacks of a workflow script to ``log_path``.

    Also echoes to stderr, so progress shows in the terminal of a local run. The first line
    names the host and, inside a SLURM allocation, the job id (`job_context`).
    """
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )

    def _hook(exc_type, exc, tb):
        logging.getLogger("fmriscaling").error(
            "uncaught exception:\n%s", "".join(traceback.format_exception(exc_type, exc, tb))
        )

    sys.excepthook = _hook
    logging.getLogger("fmriscaling").info("running %s", job_context())


def job_context() -> str:
    """Where this process runs: ``host vm`` or ``host vm, SLURM job 17`` inside an allocation."""
    job = os.environ.get("SLURM_JOB_ID")
    return f"host {platform.node()}" + (f", SLURM job {job}" if job else "")


def limit_threads(n: int) -> None:
    """Let torch and the BLAS / OpenMP libraries numpy and scipy loaded use at most ``n``
    threads (a job's declared ``threads``), so that parallel jobs do not oversubscribe the
    cores (oversubscribed OpenMP threads spin, which costs CPU time for nothing)."""
    import torch

    n = max(1, int(n))
    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - comes with scikit-learn
        return
    threadpool_limits(limits=n)
