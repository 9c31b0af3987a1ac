"""Small statistics shared across the library's packages (scaling fits, figures, vision)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["fit_log_linear", "r2_columns"]


def fit_log_linear(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """Least-squares line ``y = slope · log10(x) + intercept``.

    Parameters
    ----------
    x : array of shape (n_points,)
        Positive values (model parameters, training stories, ...).
    y : array of shape (n_points,)

    Returns
    -------
    slope : float
        Change of ``y`` per decade (10x) of ``x``.
    intercept : float
        ``y`` at ``x = 1``.
    r : float
        Pearson correlation of ``log10(x)`` and ``y`` (NaN if ``y`` is constant).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x {x.shape} and y {y.shape} must be 1-D of the same length")
    if x.size < 2 or np.unique(x).size < 2:
        raise ValueError("fit_log_linear needs at least two distinct x values")
    if np.any(x <= 0) or not np.all(np.isfinite(x)) or not np.all(np.isfinite(y)):
        raise ValueError("fit_log_linear needs finite y and finite positive x")
    lx = np.log10(x)
    slope, intercept = np.polyfit(lx, y, 1)
    if np.ptp(y) == 0:
        r = float("nan")
    else:
        r = float(np.corrcoef(lx, y)[0, 1])
    return float(slope), float(intercept), r


def r2_columns(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Test R² per column, ``1 − Σ(y − ȳ − ŷ)² / Σ(y − ȳ)²`` in float64; 0 for a constant column.

    ``y`` is centred over the samples (the responses are z-scored per story, so ȳ is ~0; centring
    makes it exact, which himalaya's ``r2_score_split`` assumes: its split of a joint model's R²
    then sums to this R² of the summed prediction). Negative where ``ŷ`` is worse than ȳ.

    Parameters
    ----------
    pred, y : arrays of shape (n_samples, n_columns)

    Returns
    -------
    r2 : float64 array of shape (n_columns,)
    """
    y = np.asarray(y, dtype=np.float64)
    y_c = y - y.mean(0)
    sst = (y_c * y_c).sum(0)
    sse = ((y_c - np.asarray(pred, dtype=np.float64)) ** 2).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sst > 0, 1.0 - sse / np.where(sst > 0, sst, 1.0), 0.0)
