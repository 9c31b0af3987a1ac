"""fMRI responses of ds003020: per-story HDF5 files, test-story repeats, cortical masks.

``derivative/preprocessed_data/<subject>/<story>.hf5`` holds dataset ``data`` of shape
(respdict[story] - 20, n_voxels), float64. The test story's file also holds its repeats
(read as ``individual_repeats``, shape (n_repeats, n_trs, n_voxels)), ``data`` being
their mean. Everything is returned as float32.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
from pathlib import Path

import h5py
import numpy as np

from ._hdf5 import open_hdf5
from ._utils import DataError, check_data_file

logger = logging.getLogger(__name__)

__all__ = [
    "REPEATS_DATASETS",
    "check_tr_count",
    "constant_voxels",
    "list_datasets",
    "load_mask",
    "read_repeats",
    "read_responses",
]

REPEATS_DATASETS: tuple[str, ...] = ("individual_repeats", "repeats")
"""Dataset names tried, in order, for the repeats of the test story."""

_REDOWNLOAD = "Re-download the file and check its md5 against the dataset manifest."


def _refetch_hint(path: str | os.PathLike) -> str:
    """The commands that fetch a response file again, as the last sentence of an error.

    ``snakemake --force <path>`` reruns the rule that made it (its download, or the demo
    generator); a path in the ds003020 layout (``<root>/derivative/preprocessed_data/<subject>/
    <story>.hf5``) also gets the equivalent ``python -m fmriscaling.download`` command.

    Parameters
    ----------
    path : path-like
        The response file.

    Returns
    -------
    str
        E.g. ``"Fetch it again: `snakemake --cores 1 --force <path>` (...)."``
    """
    path = Path(path)
    hint = (
        f"Fetch it again: `{shlex.join(['snakemake', '--cores', '1', '--force', str(path)])}` "
        "(reruns its download, or the demo generator)"
    )
    parts = path.parts
    if len(parts) >= 4 and parts[-4:-2] == ("derivative", "preprocessed_data"):
        root, subject, story = Path(*parts[:-4]), parts[-2], path.stem
        command = ["python", "-m", "fmriscaling.download", "--dest", str(root)]
        command += ["--subjects", subject, "--stories", story, "--kinds", "responses"]
        hint += f", or for OpenNeuro ds003020 `{shlex.join([*command, '--verify-existing'])}`"
    return hint + "."


def _open_responses(
    path: Path, expected_size: int | None
) -> contextlib.AbstractContextManager[h5py.File]:
    return open_hdf5(
        path, kind="HDF5 response file", fix=_refetch_hint(path), expected_size=expected_size
    )


def list_datasets(f: h5py.Group) -> list[str]:
    """Paths of all datasets under an open HDF5 group, with their shapes, e.g. ``'data (355, 81126)'``."""
    found: list[str] = []

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            found.append(f"{name} {obj.shape}")

    f.visititems(visit)
    return found


def _check_finite(arr: np.ndarray, path: Path, what: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        bad_voxels = bad.reshape(-1, arr.shape[-1]).any(axis=0)
        idx = np.flatnonzero(bad_voxels)
        raise DataError(
            f"{path}: {what} has {int(bad.sum())} NaN/inf value(s) in {idx.size} of "
            f"{arr.shape[-1]} voxels (first voxel indices {idx[:10].tolist()}). Responses are "
            f"never imputed: re-download the file, or drop these voxels with a mask."
        )


def constant_voxels(Y: np.ndarray) -> np.ndarray:
    """Voxels whose response never changes (their correlation with anything is undefined).

    Parameters
    ----------
    Y : array of shape (n_trs, n_voxels)

    Returns
    -------
    mask : bool array of shape (n_voxels,)
        True where a voxel is constant over TRs.
    """
    Y = np.asarray(Y)
    if Y.ndim != 2:
        raise ValueError(f"Y must be 2-D (n_trs, n_voxels), got shape {Y.shape}")
    if Y.shape[0] == 0:
        return np.ones(Y.shape[1], dtype=bool)
    return (Y == Y[:1]).all(axis=0)


def _label(story: str | None) -> str:
    return f"story {story!r}: " if story else ""


def read_responses(
    path: str | os.PathLike,
    *,
    n_trs: int | None = None,
    story: str | None = None,
    expected_size: int | None = None,
) -> np.ndarray:
    """Read the responses of one story.

    Parameters
    ----------
    path : path-like
        ``<story>.hf5`` with dataset ``data``.
    n_trs : int, optional
        Expected number of rows (``respdict[story] - 20`` with the default trimming).
    story : str, optional
        Story name for messages; defaults to the file's stem.
    expected_size : int, optional
        The file's size in bytes, e.g. from the manifest; a smaller file is reported as
        truncated.

    Returns
    -------
    Y : float32 array of shape (n_trs, n_voxels)

    Raises
    ------
    DataError
        When the file is missing, a git-annex pointer, truncated, corrupt or not HDF5 (the
        message gives the command that fetches it again), lacks ``data`` (the
        message lists the datasets present), ``data`` is not 2-D, has the wrong number of
        rows, or holds NaN/inf values.
    """
    path = Path(path)
    story = story or path.stem
    with _open_responses(path, expected_size) as f:
        if "data" not in f or not isinstance(f["data"], h5py.Dataset):
            raise DataError(
                f"{path}: no dataset 'data'; datasets present: {list_datasets(f) or 'none'}. "
                f"Expected a ds003020 preprocessed response file. {_REDOWNLOAD}"
            )
        ds = f["data"]
        if ds.ndim != 2:
            raise DataError(
                f"{path}: dataset 'data' has shape {ds.shape}; expected 2-D (n_trs, n_voxels)."
            )
        if n_trs is not None and ds.shape[0] != n_trs:
            raise DataError(
                f"{_label(story)}response file {path} has {ds.shape[0]} TRs but {n_trs} were "
                "expected (respdict[story] - 20 with the default trimming). Check respdict.json "
                "and the trim settings, or re-download the file."
            )
        Y = ds.astype(np.float32)[()]
    _check_finite(Y, path, "dataset 'data'")
    n_const = int(constant_voxels(Y).sum())
    if n_const:
        logger.warning(
            "%s: %d of %d voxels are constant over %d TRs (their correlations are undefined)",
            path,
            n_const,
            Y.shape[1],
            Y.shape[0],
        )
    logger.debug("read responses %s: shape %s", path, Y.shape)
    return Y


def read_repeats(
    path: str | os.PathLike,
    *,
    n_trs: int | None = None,
    story: str | None = None,
    rtol: float = 1e-3,
    expected_size: int | None = None,
) -> np.ndarray:
    """Read the repeated runs of the test story.

    Parameters
    ----------
    path : path-like
        The test story's ``.hf5`` file (e.g. ``wheretheressmoke.hf5``).
    n_trs : int, optional
        Expected number of TRs per repeat.
    story : str, optional
        Story name for messages; defaults to the file's stem.
    rtol : float
        Tolerance, relative to the largest absolute response, for the check that ``data``
        (when present) is the mean of the repeats; a mismatch is logged, not raised.
    expected_size : int, optional
        The file's size in bytes, e.g. from the manifest; a smaller file is reported as
        truncated.

    Returns
    -------
    repeats : float32 array of shape (n_repeats, n_trs, n_voxels)

    Raises
    ------
    DataError
        When the file is missing, a git-annex pointer, truncated, corrupt or not HDF5 (the
        message gives the command that fetches it again), holds none of
        :data:`REPEATS_DATASETS` (the message lists the datasets present), the repeats are not
        3-D, there are fewer than 2 repeats, the TR count is wrong, ``data`` (the repeat mean the models are tested on) has another
        shape than the repeats' mean, or values are NaN/inf.
    """
    path = Path(path)
    story = story or path.stem
    with _open_responses(path, expected_size) as f:
        name = next((n for n in REPEATS_DATASETS if isinstance(f.get(n), h5py.Dataset)), None)
        if name is None:
            raise DataError(
                f"{path}: no repeats dataset (looked for {list(REPEATS_DATASETS)}); datasets "
                f"present: {list_datasets(f) or 'none'}. This file must hold the repeats of the "
                "test story (ds003020: wheretheressmoke.hf5 of the subject), shape "
                "(n_repeats, n_trs, n_voxels)."
            )
        ds = f[name]
        if ds.ndim != 3:
            raise DataError(
                f"{path}: dataset {name!r} has shape {ds.shape}; expected 3-D "
                "(n_repeats, n_trs, n_voxels)."
            )
        if ds.shape[0] < 2:
            raise DataError(
                f"{path}: dataset {name!r} holds {ds.shape[0]} repeat(s); the noise ceiling "
                "needs at least 2."
            )
        if n_trs is not None and ds.shape[1] != n_trs:
            raise DataError(
                f"{_label(story)}repeats in {path} have {ds.shape[1]} TRs but {n_trs} were "
                "expected. Check respdict.json and the trim settings."
            )
        repeats = ds.astype(np.float32)[()]
        mean_ds = f.get("data")
        data = mean_ds.astype(np.float32)[()] if isinstance(mean_ds, h5py.Dataset) else None
    _check_finite(repeats, path, f"dataset {name!r}")
    if data is not None:
        mean = repeats.mean(axis=0, dtype=np.float64)
        if data.shape != mean.shape:
            # 'data' is what the models are tested on: a ceiling over other TRs or voxels would
            # normalise test r by the wrong thing
            raise DataError(
                f"{path}: 'data' (the test responses the models are scored on) has shape "
                f"{data.shape} but the repeats in {name!r} average to shape {mean.shape}; expected "
                "the same (n_trs, n_voxels), or the noise ceiling would describe other TRs or "
                "voxels than test r. Re-download the file and check its md5 against the manifest."
            )
        else:
            scale = max(float(np.abs(mean).max()), np.finfo(np.float32).tiny)
            err = float(np.nanmax(np.abs(data - mean))) / scale
            if not err <= rtol:
                logger.warning(
                    "%s: 'data' differs from the mean of %r by up to %.3g (relative to the "
                    "largest response); using the repeats as stored",
                    path,
                    name,
                    err,
                )
    logger.debug("read repeats %s[%r]: shape %s", path, name, repeats.shape)
    return repeats


def check_tr_count(
    story: str,
    n_features: int,
    n_responses: int,
    *,
    feature_file: str | os.PathLike | None = None,
    response_file: str | os.PathLike | None = None,
) -> None:
    """Fail when features and responses of a story have different TR counts.

    Raises
    ------
    DataError
        Naming the story, both counts and the files, with the likely causes.
    """
    if int(n_features) == int(n_responses):
        return
    feat = f" ({feature_file})" if feature_file else ""
    resp = f" ({response_file})" if response_file else ""
    raise DataError(
        f"story {story!r}: features have {n_features} TRs{feat} but responses have "
        f"{n_responses} TRs{resp}. Features are computed at respdict[story] - 5 simulated TRs "
        "and trimmed (first 10, last 5 by default) to respdict[story] - 20 rows: check "
        "respdict.json for this story and the trim settings (an extra trim of the test story "
        "must be applied to the responses too)."
    )


def load_mask(path: str | os.PathLike, *, pycortex_order: bool = True) -> tuple[np.ndarray, int]:
    """Read a NIfTI voxel mask (e.g. pycortex ``mask_thick.nii.gz``).

    Parameters
    ----------
    path : path-like
        NIfTI file; nonzero voxels are in the mask.
    pycortex_order : bool
        Transpose to pycortex's (z, y, x) order, as ``cortex.db.get_mask`` does; the voxel
        columns of the ds003020 responses follow ``mask[mask]`` in that order.

    Returns
    -------
    mask : bool array of shape (z, y, x) (or (x, y, z) when ``pycortex_order`` is False)
    n_voxels : int
        Number of voxels in the mask.
    """
    import nibabel as nib  # imported here: only the maps need it

    path = check_data_file(path, kind="NIfTI mask")
    try:
        img = nib.load(path)
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises several types for unreadable files
        raise DataError(f"{path}: not a readable NIfTI image ({exc}). {_REDOWNLOAD}") from None
    if data.ndim != 3:
        raise DataError(f"{path}: mask has shape {data.shape}; expected a 3-D volume.")
    mask = data != 0
    if pycortex_order:
        mask = mask.T
    return np.ascontiguousarray(mask), int(mask.sum())
