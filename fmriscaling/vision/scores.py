"""The Algonauts 2023 challenge's noise ceiling and noise-normalised score, and summaries.

METHODS.md, section 2: with ``A``, ``B``, ``C`` the numbers of test images shown 3, 2 and 1
times, a vertex's noise ceiling (the largest r² its averaged responses allow) is::

    NC = ncsnr² / (ncsnr² + (A/3 + B/2 + C) / (A + B + C))

and its score is ``100 · min(1, max(r, 0)² / NC)``, with ``r`` the Pearson correlation of the
predicted and measured test responses. A vertex with ``NC <= 0`` (ncsnr 0: no measurable
signal) or an unknown ncsnr has no ceiling: it gets no score and is counted, never divided by
(as the language track does with CC_max).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._utils import DataError, atomic_path, write_provenance

logger = logging.getLogger(__name__)

__all__ = [
    "challenge_noise_ceiling",
    "compute_vision_noise_ceiling",
    "load_vision_noise_ceiling",
    "noise_normalized_score",
    "repeat_counts",
    "summarize",
    "write_vision_noise_ceiling",
]


def repeat_counts(n_repeats: Sequence[int]) -> tuple[int, int, int]:
    """``(A, B, C)``: how many images were shown 3, 2 and 1 times.

    Parameters
    ----------
    n_repeats : sequence of int in {1, 2, 3}, one per test image

    Raises
    ------
    DataError
        A count outside 1-3, or no image.
    """
    n = np.asarray(n_repeats, dtype=np.int64).ravel()
    if n.size == 0:
        raise DataError("no test images: the noise ceiling needs at least one")
    bad = np.setdiff1d(np.unique(n), [1, 2, 3])
    if bad.size:
        raise DataError(
            f"repeat counts must be 1, 2 or 3 (NSD shows an image up to 3 times); got {bad}"
        )
    return int((n == 3).sum()), int((n == 2).sum()), int((n == 1).sum())


def challenge_noise_ceiling(ncsnr: Any, counts: tuple[int, int, int]) -> np.ndarray:
    """Per-vertex noise ceiling ``NC = ncsnr² / (ncsnr² + (A/3 + B/2 + C)/(A + B + C))``.

    Parameters
    ----------
    ncsnr : array of shape (n_vertices,)
        NSD's noise-ceiling SNR (signal sd / single-trial noise sd); NaN = unknown.
    counts : (int, int, int)
        ``(A, B, C)`` of `repeat_counts`.

    Returns
    -------
    nc : float64 array of shape (n_vertices,)
        A fraction of variance in [0, 1) (NaN where ncsnr is NaN).
    """
    a, b, c = (int(x) for x in counts)
    if min(a, b, c) < 0 or a + b + c == 0:
        raise DataError(f"repeat counts (A, B, C) = {counts}: expected non-negative, not all 0")
    ncsnr = np.asarray(ncsnr, dtype=np.float64)
    if np.any(ncsnr < 0):
        raise DataError(f"ncsnr must be >= 0; {int((ncsnr < 0).sum())} vertices are negative")
    noise = (a / 3 + b / 2 + c) / (a + b + c)
    signal = ncsnr**2
    return signal / (signal + noise)


def noise_normalized_score(r: Any, nc: Any) -> np.ndarray:
    """The challenge's score per vertex, ``100 · min(1, max(r, 0)² / NC)``; NaN without a ceiling.

    Parameters
    ----------
    r : array of shape (n_vertices,)
        Test correlation.
    nc : array of shape (n_vertices,)
        Noise ceiling (`challenge_noise_ceiling`); NaN or <= 0 = none.

    Returns
    -------
    score : float64 array of shape (n_vertices,), in [0, 100] or NaN
    """
    r = np.asarray(r, dtype=np.float64)
    nc = np.asarray(nc, dtype=np.float64)
    if r.shape != nc.shape:
        raise DataError(
            f"test r has shape {r.shape} but the noise ceiling {nc.shape}; both must cover the "
            "same vertices (same subject and hemispheres)"
        )
    out = np.full(r.shape, np.nan)
    valid = np.isfinite(nc) & (nc > 0)
    out[valid] = 100.0 * np.minimum(1.0, np.maximum(r[valid], 0.0) ** 2 / nc[valid])
    return out


def summarize(values: Any, mask: Any | None = None) -> dict[str, float]:
    """Mean and median of the finite values inside ``mask``, and how many were left out.

    Returns
    -------
    summary : dict
        ``mean``, ``median`` (NaN when nothing is left), ``n`` (finite values in the mask),
        ``n_missing`` (values in the mask that are NaN: no ceiling).
    """
    values = np.asarray(values, dtype=np.float64)
    mask = np.ones(values.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    inside = values[mask]
    finite = inside[np.isfinite(inside)]
    return {
        "mean": float(finite.mean()) if finite.size else float("nan"),
        "median": float(np.median(finite)) if finite.size else float("nan"),
        "n": int(finite.size),
        "n_missing": int(inside.size - finite.size),
    }


def write_vision_noise_ceiling(
    out_npz: str | os.PathLike,
    *,
    ncsnr: Any,
    n_repeats_test: Sequence[int],
    n_vertices: Mapping[str, int],
    params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Compute and save one subject's noise ceiling on its test images.

    Parameters
    ----------
    out_npz : path-like
        ``nc``, ``ncsnr``, ``valid`` (NC > 0), ``counts`` (A, B, C) and ``hemisphere_sizes``.
    ncsnr : array of shape (n_vertices,)
    n_repeats_test : sequence of int
        Repeats of each test image.
    n_vertices : mapping hemisphere -> int
        Vertices per hemisphere, in the concatenation order.
    params : mapping, optional
        Stored in the provenance.

    Returns
    -------
    summary : dict
        ``counts``, ``n_valid``, ``n_invalid``, ``median_nc``.
    """
    ncsnr = np.asarray(ncsnr, dtype=np.float64)
    total = sum(int(v) for v in n_vertices.values())
    if ncsnr.size != total:
        raise DataError(
            f"ncsnr has {ncsnr.size} values but the fMRI has {total} vertices "
            f"({dict(n_vertices)}); the ncsnr files must be in challenge space (see "
            "fmriscaling.vision.dataset.ncsnr_from_fsaverage)"
        )
    counts = repeat_counts(n_repeats_test)
    nc = challenge_noise_ceiling(ncsnr, counts)
    valid = np.isfinite(nc) & (nc > 0)
    with atomic_path(out_npz, suffix=".npz") as tmp:
        np.savez(
            tmp,
            nc=nc,
            ncsnr=ncsnr,
            valid=valid,
            counts=np.asarray(counts, dtype=np.int64),
            hemispheres=np.asarray(list(n_vertices)),
            hemisphere_sizes=np.asarray(list(n_vertices.values()), dtype=np.int64),
        )
    summary = {
        "counts": list(counts),
        "n_valid": int(valid.sum()),
        "n_invalid": int(valid.size - valid.sum()),
        "median_nc": float(np.nanmedian(nc)) if np.isfinite(nc).any() else float("nan"),
    }
    write_provenance(out_npz, params, **summary)
    logger.info(
        "noise ceiling: A, B, C = %s; %d vertices with a ceiling, %d without; median NC %.3f",
        counts,
        summary["n_valid"],
        summary["n_invalid"],
        summary["median_nc"],
    )
    return summary


def load_vision_noise_ceiling(path: str | os.PathLike) -> np.ndarray:
    """The per-vertex ``nc`` of a file written by `write_vision_noise_ceiling`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"noise ceiling {path} does not exist; run rule vision_noise_ceiling")
    with np.load(path, allow_pickle=False) as data:
        if "nc" not in data.files:
            raise DataError(f"{path} lacks 'nc'; expected a file of rule vision_noise_ceiling")
        return data["nc"].astype(np.float64)


def compute_vision_noise_ceiling(
    out_npz: str | os.PathLike,
    *,
    ncsnr_files: Sequence[str | os.PathLike],
    fmri_files: Mapping[str, str | os.PathLike],
    repeats_file: str | os.PathLike | None = None,
    test_fmri_files: Mapping[str, str | os.PathLike] | None = None,
    n_images: int | None = None,
    test_fraction: float = 0.1,
    default_repeats: int = 3,
    params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One subject's noise ceiling on the test images the selection fits are scored on.

    Parameters
    ----------
    out_npz : path-like
        See `write_vision_noise_ceiling`.
    ncsnr_files : sequence of path-like
        ``<hemi>_ncsnr.npy`` per hemisphere, in the order of ``fmri_files``.
    fmri_files : mapping hemisphere -> path
        Training-split fMRI (only their headers are read: rows and vertices).
    repeats_file : path-like, optional
        Repeat counts of the training images; without it every image counts
        ``default_repeats``.
    test_fmri_files : mapping hemisphere -> path, optional
        When the test split is the test set (its images' repeats are unknown: the default).
    n_images, test_fraction
        The split of `fmriscaling.vision.splits.image_split` (same test rows as the fits).
    default_repeats : int
    params : mapping, optional

    Returns
    -------
    summary : dict
    """
    from .dataset import npy_shape, read_ncsnr, read_repeats
    from .splits import image_split

    shapes = {hemi: npy_shape(path) for hemi, path in fmri_files.items()}
    n_rows = next(iter(shapes.values()))[0]
    if test_fmri_files:
        n_test = npy_shape(next(iter(test_fmri_files.values())))[0]
        repeats_test = np.full(n_test, int(default_repeats))
    else:
        _, test_rows = image_split(n_rows, n_images=n_images, test_fraction=test_fraction)
        repeats_test = read_repeats(repeats_file, n_rows, default=default_repeats)[test_rows]
    return write_vision_noise_ceiling(
        out_npz,
        ncsnr=read_ncsnr(ncsnr_files),
        n_repeats_test=repeats_test,
        n_vertices={hemi: shape[1] for hemi, shape in shapes.items()},
        params=params,
    )
