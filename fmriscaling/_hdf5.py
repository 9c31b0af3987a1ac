"""Opening HDF5 inputs so that a truncated or corrupt file fails with its size and its fix.

h5py reports a partial copy as ``OSError: ... truncated file: eof = ..., stored_eof = ...``
and a damaged header as ``file signature not found`` or ``bad superblock``; :func:`open_hdf5`
turns these into a :class:`DataError` that names the file, says what is wrong (with the
sizes) and ends with the caller's command that fetches or rebuilds it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ._utils import DataError, check_data_file

if TYPE_CHECKING:
    import h5py

logger = logging.getLogger(__name__)

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

# HDF5 compares the file's length with the end-of-file address stored in its superblock
_TRUNCATED_RE = re.compile(r"truncated file: .*stored_eof = (\d+)")
# system errors (a writer's lock, a permission); any other error opening a file whose
# signature is right means damaged metadata
_NOT_DAMAGE = ("unable to lock file", "errno =")


@contextlib.contextmanager
def open_hdf5(
    path: str | os.PathLike, *, kind: str, fix: str, expected_size: int | None = None
) -> Iterator[h5py.File]:
    """Open an HDF5 file read-only, or raise a `DataError` that says why not and how to fix it.

    Before opening, ``path`` goes through `check_data_file` (missing, empty, git-annex pointer)
    and its first bytes are checked for the HDF5 signature. An ``OSError`` raised while the
    file is open (a damaged chunk) becomes a `DataError` too.

    Parameters
    ----------
    path : path-like
        The HDF5 file.
    kind : str
        What the file is, for messages, e.g. ``"HDF5 response file"``.
    fix : str
        Sentence ending every message, with the command that fetches or rebuilds the file.
    expected_size : int, optional
        Size in bytes the file should have (e.g. the manifest's); a smaller file is reported as
        truncated before HDF5 reads it, a larger one as not the expected file.

    Yields
    ------
    h5py.File
        Opened read-only; closed when the block ends.

    Raises
    ------
    DataError
        When the file is missing, empty or a git-annex pointer, has another size than
        ``expected_size``, is truncated (shorter than the end of file its superblock records),
        is not HDF5 or has a corrupt header, or a read from it fails.
    """
    import h5py

    path = check_data_file(path, kind=kind)
    size = path.stat().st_size
    if expected_size is not None and size < expected_size:
        where = f"{expected_size} bytes were expected"
        raise _truncated(path, kind, size, expected_size, where, fix)
    if expected_size is not None and size > expected_size:
        raise DataError(
            f"{path}: {kind} has {size} bytes but {expected_size} were expected: it is not "
            f"the expected file. {fix}"
        )
    with open(path, "rb") as fh:
        head = fh.read(len(HDF5_SIGNATURE))
    # the signature sits at byte 0 unless the file has a user block (then h5py finds it)
    if head != HDF5_SIGNATURE and not h5py.is_hdf5(path):
        raise DataError(
            f"{path}: not an HDF5 file (first bytes {head!r}, expected the HDF5 signature "
            f"{HDF5_SIGNATURE!r}): the header is corrupt or this is another format. {fix}"
        )
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        message = str(exc)
        match = _TRUNCATED_RE.search(message)
        if match is not None:
            where = f"its HDF5 superblock records {match.group(1)} bytes"
            raise _truncated(path, kind, size, int(match.group(1)), where, fix) from None
        if any(word in message for word in _NOT_DAMAGE):
            # a writer's lock or a permission: the bytes may be fine, so the fix is conditional
            raise DataError(
                f"{path}: could not open the {kind} ({message}). If it is damaged: {fix}"
            ) from None
        raise DataError(
            f"{path}: not a readable HDF5 file: its header (superblock or root group) is "
            f"corrupt ({message}). {fix}"
        ) from None
    with f:
        try:
            yield f
        except OSError as exc:
            raise DataError(
                f"{path}: reading the {kind} failed, it is corrupt ({exc}). {fix}"
            ) from None


def _truncated(path: Path, kind: str, size: int, expected: int, where: str, fix: str) -> DataError:
    return DataError(
        f"{path}: truncated {kind}: {size} bytes on disk, but {where} ({expected - size} bytes "
        f"missing), e.g. a partial copy or an interrupted transfer. {fix}"
    )
