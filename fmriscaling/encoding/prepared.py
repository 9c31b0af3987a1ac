"""Prepared responses: one subject's responses trimmed, z-scored and float32, in one checked file.

A fit of a ds003020 subject needs the responses of every training story and of the test story,
trimmed (the test story's first ``extra_trim`` TRs dropped) and z-scored within each story. The
raw files are float64 (UTS03: ~27,000 TRs x 95,556 voxels, ~21 GB), so reading and preparing
them again for each of ~2,000 fits would dominate the study's I/O. `prepare_responses` does it
once per subject; the fits read the result in voxel blocks (`open_prepared`). The raw files stay
the source of truth: the prepared file records what it was built from and is refused, never
silently used, once it no longer matches.

File layout (``results/responses/{dataset}/{subject}.h5``, HDF5)::

    /stories/<story>   float32 (n_trs, n_voxels): the story's responses after trimming,
                       z-scored over those TRs exactly as `build_design` z-scores them;
                       chunks of (n_trs, 1024 voxels) with a Fletcher-32 checksum each
    attrs["format"]    "fmriscaling-prepared-responses", attrs["version"] 1
    attrs["record"]    JSON: subject, stories (in order), n_voxels, per story n_trs (stored),
                       n_trs_raw (rows of the raw file) and extra_trim, dtype, and the source
                       files with their size, mtime (ns) and MD5

and beside it ``<subject>.h5.provenance.json`` (`fmriscaling._utils.write_provenance`): the
build's params, the same record, its hash and the file's size in bytes.

One dataset per story, chunked across voxels, lets a fit read any subset of stories for a block
of voxels and nothing else (the data-size sweep fits on subsets). The chunk checksums make a
damaged byte fail the read instead of entering a fit.

`open_prepared` refuses the file (`StaleResponsesError`) when its provenance record is missing,
its size differs from the recorded one (truncated or rewritten), the HDF5 structure or the
record inside disagree with the provenance, a source file is missing, has another size, or has
another mtime and other bytes (MD5) than when the file was built, or the stories and trims the
fit asks for are not the ones stored. A source that was only touched (new mtime, same bytes)
does not make the file stale, as it does not make Snakemake rebuild it. `explaining_stale` adds
to a refusal how the caller rebuilds the file; nothing here deletes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shlex
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._hdf5 import open_hdf5
from .._utils import DataError, atomic_path, config_hash, provenance_path, write_provenance
from ..responses import read_responses
from .design import zscore

logger = logging.getLogger(__name__)

__all__ = [
    "PREPARED_FORMAT",
    "PREPARED_VERSION",
    "PreparedColumns",
    "PreparedResponses",
    "StaleResponsesError",
    "explaining_stale",
    "open_prepared",
    "prepare_responses",
]

PREPARED_FORMAT = "fmriscaling-prepared-responses"
PREPARED_VERSION = 2  # 2: the record names the per-story trims extra_trim
# voxels per chunk: a chunk is one story's TRs x 1024 voxels (~1.5 MB for a 375-TR story)
_CHUNK_VOXELS = 1024


class StaleResponsesError(DataError):
    """A prepared-responses file that does not match its sources, its record or the fit.

    Attributes
    ----------
    path : Path
        The prepared file.
    """

    def __init__(self, message: str, path: str | os.PathLike):
        super().__init__(message)
        self.path = Path(path)


def _rebuild_hint(path: Path) -> str:
    command = shlex.join(["snakemake", "--cores", "1", "--force", str(path)])
    return (
        f"Rebuild it from the raw response files: `{command}`, then run the fit again (the "
        "file is left as it is: nothing that reads it deletes it)."
    )


def _source_stat(path: str | os.PathLike) -> dict[str, Any]:
    stat = Path(path).stat()
    return {"path": str(path), "size": int(stat.st_size), "mtime_ns": int(stat.st_mtime_ns)}


def _md5(path: str | os.PathLike) -> str:
    """MD5 of a file's bytes (what the ds003020 manifest lists for its files)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "md5").hexdigest()


def prepare_responses(
    response_files: Mapping[str, str | os.PathLike],
    out_path: str | os.PathLike,
    *,
    stories: Sequence[str] | None = None,
    extra_trim: Mapping[str, int] | None = None,
    subject: str | None = None,
    expected_sizes: Mapping[str, int] | None = None,
    params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build a subject's prepared-responses file from its raw per-story response files.

    Per story, in order: read ``data`` (`fmriscaling.responses.read_responses`, float32), drop
    ``extra_trim[story]`` TRs at the start, z-score every voxel over the kept TRs
    (`fmriscaling.encoding.design.zscore`, the same function and order as `build_design`, so a
    fit gets the same numbers either way), store float32. The file is written under a temporary
    name and renamed when complete; the provenance record beside it is written last.

    Parameters
    ----------
    response_files : mapping story -> path-like
        Raw response file of each story (``<story>.hf5`` with dataset ``data``, shape
        (n_trs, n_voxels)).
    out_path : path-like
        The prepared file, e.g. ``results/responses/{dataset}/{subject}.h5``.
    stories : sequence of str, optional
        Stories to store, in this order (default: the order of ``response_files``).
    extra_trim : mapping story -> int, optional
        TRs dropped at the start of a story (e.g. ``{"wheretheressmoke": 40}``); others keep
        every TR.
    expected_sizes : mapping story -> int, optional
        Bytes each raw file should have (the dataset manifest's): a shorter file is reported as
        truncated, with both sizes and the command that fetches it again, before HDF5 reads it.
    subject : str, optional
        Stored in the record, for messages.
    params : mapping, optional
        Rule params, stored in the provenance.

    Returns
    -------
    record : dict
        What ``attrs["record"]`` and the provenance hold (see the module docstring).

    Raises
    ------
    DataError
        A raw file is missing, corrupt or holds NaN/inf (`read_responses`), the stories have
        different voxel counts, a trim leaves no TRs, or a raw file changed while it was read.
    """
    import h5py

    stories = [str(s) for s in (stories if stories is not None else response_files)]
    missing = [s for s in stories if s not in response_files]
    if not stories or missing:
        raise DataError(
            f"prepare_responses: no response file for stories {missing or 'any'}; expected "
            "one raw response file per story to prepare."
        )
    extra_trim = {str(k): int(v) for k, v in (extra_trim or {}).items()}
    out_path = Path(out_path)
    record: dict[str, Any] = {
        "format": PREPARED_FORMAT,
        "version": PREPARED_VERSION,
        "subject": subject,
        "stories": stories,
        "n_voxels": None,
        "n_trs": [],
        "n_trs_raw": [],
        "extra_trim": [],
        "dtype": "float32",
        "zscore": "per story over the kept TRs, population std, constant voxels set to 0",
        "sources": [],
    }
    with atomic_path(out_path, suffix=".h5") as tmp, h5py.File(tmp, "w") as f:
        group = f.create_group("stories")
        for story in stories:
            source = Path(response_files[story])
            before = _source_stat(source)
            raw = read_responses(
                source, story=story, expected_size=(expected_sizes or {}).get(story)
            )
            before["md5"] = _md5(source)
            if _source_stat(source) != {k: before[k] for k in ("path", "size", "mtime_ns")}:
                raise DataError(f"{source} changed while it was read; prepare it again.")
            n_raw, n_voxels = raw.shape
            if record["n_voxels"] is None:
                record["n_voxels"] = int(n_voxels)
            elif n_voxels != record["n_voxels"]:
                raise DataError(
                    f"story {story!r}: {source} has {n_voxels} voxels but story "
                    f"{stories[0]!r} has {record['n_voxels']}; the response files of one "
                    "subject must share one voxel mask."
                )
            trim = extra_trim.get(story, 0)
            if trim < 0 or trim >= n_raw:
                raise DataError(
                    f"story {story!r}: extra_trim={trim} but {source} has {n_raw} TRs; "
                    "expected 0 <= extra_trim < n_trs. Lower encoding test_extra_trim."
                )
            y = zscore(raw[trim:], name=f"responses of story {story!r}")
            del raw
            group.create_dataset(
                story,
                data=y,
                chunks=(y.shape[0], max(1, min(n_voxels, _CHUNK_VOXELS))),
                fletcher32=True,
            )
            record["n_trs"].append(int(y.shape[0]))
            record["n_trs_raw"].append(int(n_raw))
            record["extra_trim"].append(trim)
            record["sources"].append(before)
            logger.info("%s: %d of %d TRs, %d voxels", story, y.shape[0], n_raw, n_voxels)
        f.attrs["format"] = PREPARED_FORMAT
        f.attrs["version"] = PREPARED_VERSION
        f.attrs["record"] = json.dumps(record, sort_keys=True)
    write_provenance(
        out_path,
        params,
        record=record,
        record_hash=config_hash(record),
        file_size=out_path.stat().st_size,
    )
    logger.info(
        "wrote %s: %d stories, %d TRs x %d voxels float32 (%.2f GB)",
        out_path,
        len(stories),
        sum(record["n_trs"]),
        record["n_voxels"],
        out_path.stat().st_size / 1e9,
    )
    return record


class PreparedResponses:
    """An open, verified prepared-responses file (from `open_prepared`).

    Attributes
    ----------
    path : Path
    record : dict
        The build record (stories, TR counts, trims, sources; see the module docstring).
    n_voxels : int
    """

    def __init__(self, path: Path, h5file, record: dict[str, Any]):
        self.path = path
        self._file = h5file
        self.record = record
        self.n_voxels = int(record["n_voxels"])
        self._index = {story: i for i, story in enumerate(record["stories"])}

    def _entry(self, key: str, story: str):
        return self.record[key][self._index[story]]

    def n_trs(self, story: str) -> int:
        """TRs stored for ``story`` (after its trim)."""
        return int(self._entry("n_trs", story))

    def n_trs_raw(self, story: str) -> int:
        """TRs of the raw file of ``story`` (what the features must have)."""
        return int(self._entry("n_trs_raw", story))

    def source(self, story: str) -> str:
        """Path of the raw response file ``story`` was prepared from."""
        return str(self._entry("sources", story)["path"])

    def read(self, story: str, cols: slice = slice(None)) -> np.ndarray:
        """Float32 responses of one story, shape (n_trs, n_columns of ``cols``)."""
        n_cols = len(range(*cols.indices(self.n_voxels)))
        out = np.empty((self.n_trs(story), n_cols), dtype=np.float32)
        self._read_into(out, story, cols)
        return out

    def _read_into(self, out: np.ndarray, story: str, cols: slice) -> None:
        try:
            self._file["stories"][story].read_direct(out, source_sel=np.s_[:, cols])
        except OSError as exc:  # a Fletcher-32 mismatch or an unreadable chunk
            raise StaleResponsesError(
                f"{self.path}: reading story {story!r} failed, the file is corrupt ({exc}). "
                f"{_rebuild_hint(self.path)}",
                self.path,
            ) from None

    def columns(self, stories: Sequence[str]) -> PreparedColumns:
        """The responses of ``stories`` stacked in this order, as a target source."""
        return PreparedColumns(self, stories)


class PreparedColumns:
    """Target source (see `fmriscaling.encoding.targets`) of stories of a prepared file.

    Rows are the stories' TRs stacked in the order given; a column block is read story by
    story straight into one array.

    Parameters
    ----------
    prepared : PreparedResponses
    stories : sequence of str
    """

    def __init__(self, prepared: PreparedResponses, stories: Sequence[str]):
        self.prepared = prepared
        self.stories = [str(s) for s in stories]
        self.lengths = [prepared.n_trs(s) for s in self.stories]
        self.shape = (int(sum(self.lengths)), prepared.n_voxels)
        self.segments = (prepared.n_voxels,)

    def read(self, cols: slice) -> np.ndarray:
        """Float32 block of shape (n_trs, len(cols)), read from disk."""
        start, stop, _ = cols.indices(self.shape[1])
        out = np.empty((self.shape[0], max(0, stop - start)), dtype=np.float32)
        row = 0
        for story, n in zip(self.stories, self.lengths, strict=True):
            # rows of a C-ordered array are contiguous: each story is read in place
            self.prepared._read_into(out[row : row + n], story, slice(start, stop))
            row += n
        return out


def _invalid(path: Path, reason: str) -> StaleResponsesError:
    return StaleResponsesError(
        f"{path}: prepared responses cannot be used: {reason}. {_rebuild_hint(path)}", path
    )


def _read_provenance(path: Path) -> dict[str, Any]:
    sidecar = provenance_path(path)
    try:
        prov = json.loads(sidecar.read_text())
        return {"record": prov["record"], "file_size": int(prov["file_size"])}
    except FileNotFoundError:
        raise _invalid(path, f"its provenance record {sidecar} is missing") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _invalid(path, f"its provenance record {sidecar} is unreadable ({exc})") from None


def _check_sources(path: Path, record: Mapping[str, Any]) -> None:
    """Every source as it was: same size, and same mtime or (touched only) same MD5."""
    for entry in record["sources"]:
        source = Path(entry["path"])
        try:
            now = _source_stat(source)
        except FileNotFoundError:
            raise _invalid(path, f"its source {source} no longer exists") from None
        if now["size"] != entry["size"]:
            raise _invalid(
                path,
                f"its source {source} changed since it was built ({entry['size']} bytes then, "
                f"{now['size']} now)",
            )
        if now["mtime_ns"] == entry["mtime_ns"]:
            continue
        # a new mtime with the old size: touched, or rewritten? Only the bytes can tell (as
        # Snakemake's own input checksums do); this reads one file, and only when it was touched
        if _md5(source) != entry["md5"]:
            raise _invalid(
                path,
                f"its source {source} changed since it was built (same size, new mtime "
                f"{now['mtime_ns']} ns instead of {entry['mtime_ns']} ns, other MD5)",
            )
        logger.info("%s was touched since %s was built, but its content is the same", source, path)


def _check_request(
    path: Path, record: Mapping[str, Any], extra_trim: Mapping[str, int] | None
) -> None:
    if extra_trim is None:
        return
    stored = dict(zip(record["stories"], record["extra_trim"], strict=True))
    missing = sorted(set(extra_trim) - set(stored))
    if missing:
        raise _invalid(path, f"it lacks stories {missing} (it holds {len(stored)} stories)")
    differ = {s: (stored[s], int(t)) for s, t in extra_trim.items() if stored[s] != int(t)}
    if differ:
        detail = ", ".join(f"{s!r}: {a} stored, {b} asked" for s, (a, b) in differ.items())
        raise _invalid(path, f"it was trimmed otherwise than the fit asks ({detail})")


@contextlib.contextmanager
def open_prepared(
    path: str | os.PathLike,
    *,
    extra_trim: Mapping[str, int] | None = None,
    check_sources: bool = True,
) -> Iterator[PreparedResponses]:
    """Open a prepared-responses file after checking that it is complete, intact and current.

    Parameters
    ----------
    path : path-like
        The prepared file (from `prepare_responses`).
    extra_trim : mapping story -> int, optional
        Stories the caller needs, with the TRs it expects dropped at their start; a story
        missing from the file or trimmed otherwise makes the file invalid for this use.
    check_sources : bool, default True
        Compare the recorded size and mtime of every source file with the file on disk now (and
        its MD5, where only the mtime differs).

    Yields
    ------
    PreparedResponses
        Open until the block ends; reads are checked against the chunk checksums.

    Raises
    ------
    StaleResponsesError
        The provenance record is missing or unreadable, the size differs from the recorded one,
        the file is not a readable HDF5 file, its format, record or datasets disagree with the
        provenance, a source changed or vanished, or the request does not match (see above).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: prepared responses do not exist. {_rebuild_hint(path)}")
    expected = _read_provenance(path)
    size = path.stat().st_size
    if size != expected["file_size"]:
        raise _invalid(
            path,
            f"it has {size} bytes but was written with {expected['file_size']} (truncated or "
            "overwritten)",
        )
    opened = open_hdf5(path, kind="prepared responses", fix=_rebuild_hint(path))
    try:
        f = opened.__enter__()
    except DataError as exc:  # not HDF5, a damaged header, a truncated end
        raise StaleResponsesError(str(exc), path) from None
    with contextlib.ExitStack() as stack:
        stack.push(opened)  # closes the file when the block ends, also on an error
        record = _verified_record(path, f, expected["record"])
        if check_sources:
            _check_sources(path, record)
        _check_request(path, record, extra_trim)
        yield PreparedResponses(path, f, record)


def _verified_record(path: Path, f, expected: Mapping[str, Any]) -> dict[str, Any]:
    if f.attrs.get("format") != PREPARED_FORMAT or int(f.attrs.get("version", -1)) != (
        PREPARED_VERSION
    ):
        raise _invalid(
            path,
            f"format {f.attrs.get('format')!r} version {f.attrs.get('version')!r}, expected "
            f"{PREPARED_FORMAT!r} version {PREPARED_VERSION}",
        )
    try:
        record = json.loads(f.attrs["record"])
    except (KeyError, ValueError, TypeError) as exc:
        raise _invalid(path, f"its record attribute is unreadable ({exc})") from None
    if config_hash(record) != config_hash(expected):
        raise _invalid(path, "the record inside it differs from its provenance record")
    group = f.get("stories")
    for story, n_trs in zip(record["stories"], record["n_trs"], strict=True):
        ds = None if group is None else group.get(story)
        shape = (int(n_trs), int(record["n_voxels"]))
        if ds is None or ds.shape != shape or ds.dtype != np.float32:
            found = "nothing" if ds is None else f"{ds.dtype} {ds.shape}"
            raise _invalid(path, f"story {story!r} should be float32 {shape}, found {found}")
    return record


@contextlib.contextmanager
def explaining_stale(hint: str | None = None) -> Iterator[None]:
    """Re-raise a refused prepared file's `StaleResponsesError` with ``hint`` appended (how to
    rebuild it, in the caller's terms). The file is left as it is: it is another job's output,
    and a reader never deletes what it did not make.

    Parameters
    ----------
    hint : str, optional
        E.g. which rule made the file and the command that rebuilds it; None re-raises as is.
    """
    try:
        yield
    except StaleResponsesError as err:
        if hint is None:
            raise
        raise StaleResponsesError(f"{err} {hint}", err.path) from None
