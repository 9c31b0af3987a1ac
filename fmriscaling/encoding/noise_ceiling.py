"""Noise ceiling of the repeated test story (Sahani & Linden 2003; Schoppe et al. 2016).

With N repeats ``r_n(t)``, their mean ``r̄(t)`` and a prediction ``r̂(t)``, variances and
covariances taken over time (``ddof=0`` everywhere; the choice cancels in every ratio below
as long as it is the same for all of them):

- ``TP = mean_n Var(r_n)`` (total power), ``SP = (N·Var(r̄) − TP)/(N − 1)`` (signal power),
  ``NP = TP − SP`` (noise power);
- ``CC_max = sqrt(SP / Var(r̄))``, undefined (NaN, ``valid = False``) where ``SP <= 0``;
- ``CC_abs = Cov(r̄, r̂)/sqrt(Var(r̄)·Var(r̂))`` and
  ``CC_norm = CC_abs / CC_max = Cov(r̄, r̂)/sqrt(Var(r̂)·SP)``.

Voxels without a ceiling are excluded from normalised averages and counted, never divided by.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._utils import DataError, atomic_path, write_provenance

logger = logging.getLogger(__name__)

__all__ = [
    "NoiseCeiling",
    "cc_abs",
    "cc_norm_from_prediction",
    "compute_noise_ceiling_file",
    "load_noise_ceiling",
    "noise_ceiling",
    "normalized_correlation",
    "summarize_normalized",
]


@dataclass(frozen=True)
class NoiseCeiling:
    """Per-voxel noise ceiling of a repeated story.

    Attributes
    ----------
    tp : array of shape (n_voxels,)
        Total power, mean over repeats of the variance over time.
    sp : array of shape (n_voxels,)
        Signal power (may be <= 0 where the signal is too weak to estimate).
    np_ : array of shape (n_voxels,)
        Noise power ``TP − SP``.
    cc_max : array of shape (n_voxels,)
        Highest correlation a perfect model could reach with the repeat mean; NaN where
        ``valid`` is False.
    valid : bool array of shape (n_voxels,)
        ``SP > 0``.
    n_repeats : int
    """

    tp: np.ndarray
    sp: np.ndarray
    np_: np.ndarray
    cc_max: np.ndarray
    valid: np.ndarray
    n_repeats: int

    @property
    def n_valid(self) -> int:
        """Number of voxels with a defined ceiling."""
        return int(self.valid.sum())


def noise_ceiling(repeats: np.ndarray, *, floor: float | None = None) -> NoiseCeiling:
    """Signal power and ``CC_max`` per voxel from repeated presentations.

    Parameters
    ----------
    repeats : array of shape (n_repeats, n_trs, n_voxels)
        Responses to the same story, one slice per presentation (already trimmed).
    floor : float, optional
        If given, ``cc_max`` is raised to at least ``floor`` on valid voxels (the paper floors
        at 0.25, *unconfirmed*). Invalid voxels stay NaN.

    Returns
    -------
    NoiseCeiling

    Raises
    ------
    DataError
        Fewer than 2 repeats, fewer than 2 TRs, or non-finite values.
    """
    repeats = np.asarray(repeats)
    if repeats.ndim != 3:
        raise DataError(
            f"repeats must have shape (n_repeats, n_trs, n_voxels), got {repeats.shape}."
        )
    n_repeats, n_trs, _ = repeats.shape
    if n_repeats < 2 or n_trs < 2:
        raise DataError(
            f"noise ceiling needs >= 2 repeats and >= 2 TRs, got {n_repeats} repeats of "
            f"{n_trs} TRs. Use the repeated test story's individual repeats."
        )
    if not np.all(np.isfinite(repeats)):
        raise DataError(
            f"repeats contain {int(repeats.size - np.isfinite(repeats).sum())} non-finite "
            "values; expected finite responses. Check the test-story file."
        )
    repeats = repeats.astype(np.float64, copy=False)
    tp = repeats.var(axis=1, ddof=0).mean(axis=0)
    var_mean = repeats.mean(axis=0).var(axis=0, ddof=0)
    sp = (n_repeats * var_mean - tp) / (n_repeats - 1)
    valid = sp > 0
    cc_max = np.full(sp.shape, np.nan)
    cc_max[valid] = np.sqrt(sp[valid] / var_mean[valid])
    if floor is not None:
        cc_max[valid] = np.maximum(cc_max[valid], float(floor))
    n_invalid = int((~valid).sum())
    logger.info(
        "noise ceiling: %d repeats, %d TRs, %d voxels, %d without a ceiling (SP <= 0), "
        "median CC_max %.3f",
        n_repeats,
        n_trs,
        sp.size,
        n_invalid,
        float(np.median(cc_max[valid])) if valid.any() else float("nan"),
    )
    return NoiseCeiling(
        tp=tp, sp=sp, np_=tp - sp, cc_max=cc_max, valid=valid, n_repeats=int(n_repeats)
    )


def normalized_correlation(
    r: np.ndarray, cc_max: np.ndarray, *, floor: float | None = None
) -> np.ndarray:
    """``CC_norm = r / max(CC_max, floor)`` on voxels with a ceiling, NaN elsewhere.

    Parameters
    ----------
    r : array of shape (n_voxels,)
        Test correlation with the repeat mean (``CC_abs``).
    cc_max : array of shape (n_voxels,)
        Ceiling; NaN or <= 0 marks a voxel without one.
    floor : float, optional
        Lower bound applied to ``cc_max`` before dividing.

    Returns
    -------
    cc_norm : float64 array of shape (n_voxels,)
    """
    r = np.asarray(r, dtype=np.float64)
    cc_max = np.asarray(cc_max, dtype=np.float64)
    if r.shape != cc_max.shape:
        raise DataError(
            f"test r has shape {r.shape} but the noise ceiling has {cc_max.shape}; both must "
            "cover the same voxels (same subject and mask)."
        )
    valid = np.isfinite(cc_max) & (cc_max > 0)
    denom = cc_max if floor is None else np.maximum(cc_max, float(floor))
    out = np.full(r.shape, np.nan)
    out[valid] = r[valid] / denom[valid]
    return out


def cc_abs(mean_response: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """Pearson correlation over time, per voxel.

    Parameters
    ----------
    mean_response : array of shape (n_trs, n_voxels)
    prediction : array of shape (n_trs, n_voxels)

    Returns
    -------
    r : array of shape (n_voxels,)
        NaN where either input is constant.
    """
    a, b = _centred_pair(mean_response, prediction)
    cov = (a * b).mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return cov / np.sqrt((a * a).mean(axis=0) * (b * b).mean(axis=0))


def cc_norm_from_prediction(
    mean_response: np.ndarray, prediction: np.ndarray, sp: np.ndarray
) -> np.ndarray:
    """``CC_norm = Cov(r̄, r̂)/sqrt(Var(r̂)·SP)``, NaN where ``SP <= 0``.

    Parameters
    ----------
    mean_response : array of shape (n_trs, n_voxels)
        Repeat mean ``r̄`` on the same TRs as the ceiling.
    prediction : array of shape (n_trs, n_voxels)
    sp : array of shape (n_voxels,)
        Signal power from `noise_ceiling` (same ``ddof=0`` convention).

    Returns
    -------
    cc_norm : array of shape (n_voxels,)
    """
    a, b = _centred_pair(mean_response, prediction)
    sp = np.asarray(sp, dtype=np.float64)
    cov = (a * b).mean(axis=0)
    out = np.full(cov.shape, np.nan)
    ok = sp > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        out[ok] = cov[ok] / np.sqrt((b * b).mean(axis=0)[ok] * sp[ok])
    return out


def summarize_normalized(
    cc_norm: np.ndarray, valid: np.ndarray | None = None
) -> tuple[float, int, int]:
    """Mean normalised correlation over the voxels that have a ceiling.

    Parameters
    ----------
    cc_norm : array of shape (n_voxels,)
    valid : bool array of shape (n_voxels,), optional
        Voxels with a ceiling; defaults to the finite entries of ``cc_norm``. A valid voxel
        whose ``cc_norm`` is not finite is an error, not silently dropped.

    Returns
    -------
    mean : float
        Mean over valid voxels (NaN if there are none).
    n_valid, n_invalid : int
    """
    cc_norm = np.asarray(cc_norm, dtype=np.float64)
    valid = np.isfinite(cc_norm) if valid is None else np.asarray(valid, dtype=bool)
    if valid.shape != cc_norm.shape:
        raise DataError(f"valid has shape {valid.shape}, cc_norm {cc_norm.shape}; must match.")
    if not np.all(np.isfinite(cc_norm[valid])):
        raise DataError(
            f"{int((~np.isfinite(cc_norm[valid])).sum())} voxels with a noise ceiling have a "
            "non-finite normalised correlation; the test correlations contain NaN. Refit."
        )
    n_valid = int(valid.sum())
    mean = float(cc_norm[valid].mean()) if n_valid else float("nan")
    return mean, n_valid, int(valid.size - n_valid)


def compute_noise_ceiling_file(
    repeats_path: str | os.PathLike,
    out_npz: str | os.PathLike,
    *,
    test_extra_trim: int = 40,
    floor: float | None = None,
    params: Mapping[str, Any] | None = None,
) -> NoiseCeiling:
    """Compute the noise ceiling of a test-story file and save it.

    The repeats are trimmed by the same ``test_extra_trim`` rows at the start as the test story in
    the encoding fits, so ceilings and test correlations refer to the same TRs. The repeats
    are not z-scored: the ceiling is a ratio of powers and z-scoring each repeat separately
    would bias it.

    Parameters
    ----------
    repeats_path : path-like
        Test-story response file with the individual repeats (read by
        `fmriscaling.responses.read_repeats`).
    out_npz : path-like
        Written atomically with arrays ``cc_max``, ``sp``, ``tp``, ``np``, ``valid`` (per
        voxel) and scalar ``n_repeats``, ``test_extra_trim``, ``floor`` (NaN for none); a
        ``.provenance.json`` sidecar is written beside it.
    test_extra_trim : int, default 40
        TRs dropped at the start of every repeat.
    floor : float, optional
        Floor on ``cc_max`` (see `noise_ceiling`).
    params : mapping, optional
        Rule params stored in the provenance.

    Returns
    -------
    NoiseCeiling
    """
    from ..responses import read_repeats

    repeats = read_repeats(repeats_path)
    n_trs = repeats.shape[1]
    if not 0 <= int(test_extra_trim) < n_trs - 1:
        raise DataError(
            f"{repeats_path}: test_extra_trim={test_extra_trim} but the repeats have {n_trs} TRs; "
            "expected 0 <= test_extra_trim < n_trs - 1. Lower encoding test_extra_trim."
        )
    try:
        nc = noise_ceiling(repeats[:, int(test_extra_trim) :], floor=floor)
    except DataError as err:
        raise DataError(f"{repeats_path}: {err}") from err
    out_npz = Path(out_npz)
    with atomic_path(out_npz, suffix=".npz") as tmp:
        np.savez(
            tmp,
            cc_max=nc.cc_max.astype(np.float32),
            sp=nc.sp.astype(np.float32),
            tp=nc.tp.astype(np.float32),
            np=nc.np_.astype(np.float32),
            valid=nc.valid,
            n_repeats=np.int64(nc.n_repeats),
            test_extra_trim=np.int64(test_extra_trim),
            floor=np.float64(np.nan if floor is None else floor),
        )
    write_provenance(
        out_npz,
        params,
        source=str(repeats_path),
        n_repeats=nc.n_repeats,
        n_trs=int(n_trs - int(test_extra_trim)),
        n_voxels=int(nc.sp.size),
        n_valid=nc.n_valid,
    )
    logger.info("wrote %s (%d/%d voxels with a ceiling)", out_npz, nc.n_valid, nc.sp.size)
    return nc


def load_noise_ceiling(path: str | os.PathLike) -> NoiseCeiling:
    """Read a file written by `compute_noise_ceiling_file`.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    NoiseCeiling
        ``cc_max`` as stored (already floored if a floor was used when computing).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"noise-ceiling file {path} does not exist; create it with the noise_ceiling rule."
        )
    with np.load(path) as data:
        missing = {"cc_max", "sp", "tp", "np", "valid", "n_repeats"} - set(data.files)
        if missing:
            raise DataError(
                f"{path} lacks {sorted(missing)}; expected a file written by "
                "compute_noise_ceiling_file. Delete it and rerun the noise_ceiling rule."
            )
        return NoiseCeiling(
            tp=data["tp"].astype(np.float64),
            sp=data["sp"].astype(np.float64),
            np_=data["np"].astype(np.float64),
            cc_max=data["cc_max"].astype(np.float64),
            valid=data["valid"].astype(bool),
            n_repeats=int(data["n_repeats"]),
        )


def _centred_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise DataError(
            f"mean response {a.shape} and prediction {b.shape} must share a 2-D shape "
            "(n_trs, n_voxels)."
        )
    return a - a.mean(axis=0), b - b.mean(axis=0)
