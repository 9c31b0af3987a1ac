"""Lanczos interpolation from irregular stimulus times (words, audio frames) to TR times.

This is the Huth-lab convention (``lanczosinterp2D`` in the companion code of
Antonello, Vaidya & Huth 2023): the cutoff frequency is ``cutoff_mult / mean(diff(new_times))``
and the kernel is **not** normalised, so a downsampled feature scales with the number of words
that fall near a TR (word rate is part of the signal). ``normalize=True`` divides each output
row by the sum of its kernel weights instead (a weighted average).

`downsample_story` applies it to every layer of a story's features and keeps the TRs that have
a response.
"""

from __future__ import annotations

import logging

import numpy as np

from ._utils import DataError

logger = logging.getLogger(__name__)

# bytes of float64 kernel matrix built at once; bounds memory for long stories / 0.1 s frames
_KERNEL_CHUNK_BYTES = 64 * 2**20


def lanczos_kernel(x: np.ndarray, window: int = 3, cutoff_mult: float = 1.0) -> np.ndarray:
    """Lanczos kernel evaluated at offsets ``x`` given in units of the target sampling interval.

    With ``u = cutoff_mult * x`` (that is ``u = c * dt`` for cutoff ``c = cutoff_mult / dTR`` and
    ``x = dt / dTR``)::

        L(u) = window * sin(pi u) * sin(pi u / window) / (pi^2 u^2),   L(0) = 1,
        L(u) = 0 for |u| > window.

    Parameters
    ----------
    x : array of any shape
        Time offsets ``t_new - t_old`` divided by the mean target sampling interval.
    window : int
        Number of lobes on each side.
    cutoff_mult : float
        Multiplier of the cutoff frequency (1.0 = the target Nyquist-free cutoff ``1/dTR``).

    Returns
    -------
    weights : array of the shape of ``x``, float64
    """
    if window <= 0:
        raise ValueError(f"window must be positive, got {window}")
    u = cutoff_mult * np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        val = window * np.sin(np.pi * u) * np.sin(np.pi * u / window) / (np.pi**2 * u**2)
    val = np.where(u == 0, 1.0, val)
    return np.where(np.abs(u) > window, 0.0, val)


def _check_times(old_times: np.ndarray, new_times: np.ndarray) -> float:
    """Validate the time vectors; return the mean step of ``new_times``."""
    if old_times.ndim != 1:
        raise ValueError(f"old_times must be 1-D, got shape {old_times.shape}")
    if new_times.ndim != 1 or new_times.shape[0] < 2:
        raise ValueError(f"new_times must be 1-D with at least 2 times, got {new_times.shape}")
    if not (np.all(np.isfinite(old_times)) and np.all(np.isfinite(new_times))):
        raise DataError(
            "Lanczos interpolation needs finite times, got NaN or inf; check the word / TR "
            "tables for missing times and re-run the stage that wrote them"
        )
    mean_step = float(np.mean(np.diff(new_times)))
    if mean_step <= 0:
        raise ValueError(f"new_times must increase on average, mean step is {mean_step}")
    return mean_step


def _kernel_rows(
    old_times: np.ndarray,
    new_times: np.ndarray,
    mean_step: float,
    window: int,
    cutoff_mult: float,
    normalize: bool,
) -> np.ndarray:
    offsets = (new_times[:, None] - old_times[None, :]) / mean_step
    weights = lanczos_kernel(offsets, window=window, cutoff_mult=cutoff_mult)
    if normalize:
        total = weights.sum(axis=1, keepdims=True)
        weights = np.divide(weights, total, out=np.zeros_like(weights), where=total != 0)
    return weights


def lanczos_matrix(
    old_times: np.ndarray,
    new_times: np.ndarray,
    *,
    window: int = 3,
    cutoff_mult: float = 1.0,
    normalize: bool = False,
) -> np.ndarray:
    """Interpolation matrix ``W`` such that ``W @ data`` is `lanczos_interp` of ``data``.

    Parameters
    ----------
    old_times : array of shape (n_old,)
        Sample times of the data, in seconds.
    new_times : array of shape (n_new,)
        Target times, at least two; the cutoff is ``cutoff_mult / mean(diff(new_times))``.
    window, cutoff_mult, normalize
        As in `lanczos_interp`.

    Returns
    -------
    weights : array of shape (n_new, n_old), float64
    """
    old_times = np.asarray(old_times, dtype=np.float64)
    new_times = np.asarray(new_times, dtype=np.float64)
    mean_step = _check_times(old_times, new_times)
    return _kernel_rows(old_times, new_times, mean_step, window, cutoff_mult, normalize)


def lanczos_interp(
    data: np.ndarray,
    old_times: np.ndarray,
    new_times: np.ndarray,
    *,
    window: int = 3,
    cutoff_mult: float = 1.0,
    normalize: bool = False,
) -> np.ndarray:
    """Resample ``data`` sampled at ``old_times`` to ``new_times`` with a Lanczos kernel.

    ``output[i] = sum_j L(new_times[i] - old_times[j]) * data[j]`` (see `lanczos_kernel`), with the
    cutoff ``cutoff_mult / mean(diff(new_times))``. Not normalised unless ``normalize=True``, in
    which case each row is divided by ``sum_j L(...)`` (rows with zero weight stay zero).

    Parameters
    ----------
    data : array of shape (n_old, n_dims) or (n_old,)
        Values at ``old_times`` (e.g. word features).
    old_times : array of shape (n_old,)
        Sample times of ``data`` in seconds; need not be sorted or regular.
    new_times : array of shape (n_new,)
        Target times (e.g. TR midpoints), at least two, increasing on average.
    window : int
        Number of Lanczos lobes (3 in the paper).
    cutoff_mult : float
        Multiplier of the cutoff frequency.
    normalize : bool
        Divide each output row by the sum of its kernel weights.

    Returns
    -------
    resampled : array of shape (n_new, n_dims) (or (n_new,) for 1-D ``data``)
        Same floating dtype as ``data`` (float64 for integer input).
    """
    data = np.asarray(data)
    old_times = np.asarray(old_times, dtype=np.float64)
    new_times = np.asarray(new_times, dtype=np.float64)
    squeeze = data.ndim == 1
    if squeeze:
        data = data[:, None]
    if data.ndim != 2:
        raise ValueError(f"data must be 1-D or 2-D (n_old, n_dims), got shape {data.shape}")
    mean_step = _check_times(old_times, new_times)
    if old_times.shape[0] != data.shape[0]:
        raise ValueError(
            f"old_times has {old_times.shape[0]} times but data has {data.shape[0]} rows"
        )

    out_dtype = data.dtype if np.issubdtype(data.dtype, np.floating) else np.float64
    n_new, n_old = new_times.shape[0], old_times.shape[0]
    out = np.zeros((n_new, data.shape[1]), dtype=out_dtype)
    if n_old == 0:
        return out[:, 0] if squeeze else out
    rows_per_chunk = max(1, _KERNEL_CHUNK_BYTES // (8 * n_old))
    for lo in range(0, n_new, rows_per_chunk):
        hi = min(n_new, lo + rows_per_chunk)
        weights = _kernel_rows(
            old_times, new_times[lo:hi], mean_step, window, cutoff_mult, normalize
        )
        out[lo:hi] = weights.astype(out_dtype, copy=False) @ data
    return out[:, 0] if squeeze else out


def downsample_story(
    word_feats: np.ndarray,
    word_times: np.ndarray,
    tr_times: np.ndarray,
    rows: slice | np.ndarray,
    *,
    window: int = 3,
    cutoff_mult: float = 1.0,
    normalize: bool = False,
) -> np.ndarray:
    """Lanczos-interpolate every layer's word features to TR times, then keep ``rows``.

    The cutoff is computed from all ``tr_times`` (the reference does the same with the n − 5
    simulated TRs) before the response rows are selected.

    Parameters
    ----------
    word_feats : array of shape (n_layers, n_words, n_dims)
        Features at ``word_times``.
    word_times : array of shape (n_words,)
        Word times in seconds.
    tr_times : array of shape (n_trs,)
        TR midpoint times in seconds.
    rows : slice or array of int (or bool of shape (n_trs,))
        TRs to keep, in output order (the rows that have a response).
    window : int
        Lanczos lobes.
    cutoff_mult : float
        Multiplier of the cutoff frequency ``1 / mean(diff(tr_times))``.
    normalize : bool
        Normalise the kernel rows (the reference does not).

    Returns
    -------
    tr_feats : array of shape (n_layers, n_rows, n_dims), float32
    """
    word_feats = np.asarray(word_feats)
    if word_feats.ndim != 3:
        raise ValueError(f"word_feats must be (n_layers, n_words, n_dims), got {word_feats.shape}")
    weights = lanczos_matrix(
        word_times, tr_times, window=window, cutoff_mult=cutoff_mult, normalize=normalize
    )[rows]
    if weights.shape[1] != word_feats.shape[1]:
        raise ValueError(
            f"word_times has {weights.shape[1]} times but word_feats {word_feats.shape[1]} words"
        )
    weights = weights.astype(np.float32)
    out = np.empty((word_feats.shape[0], weights.shape[0], word_feats.shape[2]), np.float32)
    for layer in range(word_feats.shape[0]):
        out[layer] = weights @ word_feats[layer].astype(np.float32, copy=False)
    return out
