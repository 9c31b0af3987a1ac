"""Closed forms of the demo's generative model: its HRF, and the correlations a perfect model reaches.

The synthetic responses are signal + independent noise per repeat (`fmriscaling.demo.synthetic`),
so the noise ceiling and the expected test correlation of the true model have closed forms; the
tests compare the estimators of `fmriscaling.encoding.noise_ceiling` and the fitted models
against them.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["analytic_cc_max", "canonical_hrf", "expected_correlation"]


def canonical_hrf(tr: float = 2.0, duration: float = 32.0) -> np.ndarray:
    """SPM canonical double-gamma HRF sampled every ``tr`` seconds, normalised to unit sum.

    Parameters
    ----------
    tr : float
        Sampling interval in seconds.
    duration : float
        Length of the kernel in seconds.

    Returns
    -------
    hrf : array of shape (n_taps,)
        ``hrf[j]`` weighs the input ``j`` TRs earlier (``hrf[0]`` is at lag 0 s).
    """
    t = np.arange(0.0, duration, tr)
    # peak gamma(6) minus undershoot gamma(16) / 6, unit time scale (SPM defaults)
    h = stats.gamma.pdf(t, 6.0) - stats.gamma.pdf(t, 16.0) / 6.0
    return h / h.sum()


def analytic_cc_max(
    signal_variance: np.ndarray, noise_sd: np.ndarray, n_repeats: int
) -> np.ndarray:
    """Population noise ceiling of a repeat mean: ``1 / sqrt(1 + sigma^2 / (N s^2))``.

    With signal variance ``s^2`` and noise variance ``sigma^2``, METHODS' SP = s^2 and
    TP = s^2 + sigma^2, so ``CC_max = 1/sqrt(1 + (TP/SP - 1)/N)``. Zero where there is no signal.

    Parameters
    ----------
    signal_variance : array of shape (n_voxels,)
    noise_sd : array of shape (n_voxels,)
    n_repeats : int

    Returns
    -------
    cc_max : array of shape (n_voxels,)
    """
    s2 = np.asarray(signal_variance, dtype=np.float64)
    sigma2 = np.asarray(noise_sd, dtype=np.float64) ** 2
    out = np.zeros(np.broadcast(s2, sigma2).shape)
    ok = s2 > 0
    out[ok] = 1.0 / np.sqrt(1.0 + sigma2[ok] / (n_repeats * s2[ok]))
    return out


def expected_correlation(
    signal_variance: np.ndarray, noise_variance: np.ndarray, n_rows: int
) -> np.ndarray:
    """Expected Pearson r between a fixed signal and signal + white noise over ``n_rows`` samples.

    Second-order expansion over the noise (the signal is fixed, the noise Gaussian): with
    ``a = T s^2`` and ``b = (T - 1) v`` for signal variance ``s^2`` (``ddof=0``), noise variance
    ``v`` and ``T`` rows::

        E[r] ~ sqrt(a / (a + b)) + sqrt(a) v ((a - 2b) / 2 + 3 (T - 1) v / 4) / (a + b)^(5/2)

    For the repeat mean, ``v = sigma^2 / N``; as ``T`` grows this tends to `analytic_cc_max`.

    Parameters
    ----------
    signal_variance : array of shape (n_voxels,)
    noise_variance : array of shape (n_voxels,)
    n_rows : int

    Returns
    -------
    r : array of shape (n_voxels,)
        Zero where the signal variance is zero.
    """
    s2 = np.asarray(signal_variance, dtype=np.float64)
    v = np.asarray(noise_variance, dtype=np.float64)
    s2, v = np.broadcast_arrays(s2, v)
    out = np.zeros(s2.shape)
    ok = s2 > 0
    a = n_rows * s2[ok]
    vv = v[ok]
    b = (n_rows - 1) * vv
    out[ok] = (
        np.sqrt(a / (a + b))
        + np.sqrt(a) * vv * ((a - 2 * b) / 2 + 0.75 * (n_rows - 1) * vv) / (a + b) ** 2.5
    )
    return out
