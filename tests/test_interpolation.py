"""Lanczos interpolation against a direct evaluation of the Huth-lab formula."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fmriscaling import interpolation
from fmriscaling._utils import DataError
from fmriscaling.interpolation import (
    downsample_story,
    lanczos_interp,
    lanczos_kernel,
    lanczos_matrix,
)


def _direct(data, old_times, new_times, window, cutoff_mult, normalize=False):
    """Double loop over the formula, written independently of the library."""
    cutoff = cutoff_mult / np.mean(np.diff(new_times))
    out = np.zeros((len(new_times), data.shape[1]))
    for i, tn in enumerate(new_times):
        total = 0.0
        for j, to in enumerate(old_times):
            u = cutoff * (tn - to)
            if u == 0:
                w = 1.0
            elif abs(u) > window:
                w = 0.0
            else:
                w = (
                    window
                    * math.sin(math.pi * u)
                    * math.sin(math.pi * u / window)
                    / (math.pi**2 * u**2)
                )
            out[i] += w * data[j]
            total += w
        if normalize and total != 0:
            out[i] /= total
    return out


@pytest.fixture
def irregular(rng):
    # word-like times: irregular gaps, one exact coincidence with a TR time, a pause
    gaps = rng.exponential(0.35, size=120)
    gaps[60] = 6.0
    old_times = np.cumsum(gaps) - 3.0
    old_times[10] = 5.0
    new_times = np.arange(0, 60, 2.0) + 1.0
    data = rng.standard_normal((old_times.size, 5))
    return data, old_times, new_times


@pytest.mark.parametrize(("window", "cutoff_mult"), [(3, 1.0), (2, 0.8), (5, 1.3)])
@pytest.mark.parametrize("normalize", [False, True])
def test_matches_direct_formula(irregular, window, cutoff_mult, normalize):
    data, old_times, new_times = irregular
    expected = _direct(data, old_times, new_times, window, cutoff_mult, normalize)
    got = lanczos_interp(
        data, old_times, new_times, window=window, cutoff_mult=cutoff_mult, normalize=normalize
    )
    assert got.shape == (new_times.size, data.shape[1])
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    matrix = lanczos_matrix(
        old_times, new_times, window=window, cutoff_mult=cutoff_mult, normalize=normalize
    )
    np.testing.assert_allclose(matrix @ data, expected, rtol=1e-10, atol=1e-12)


def test_chunking_does_not_change_result(irregular, monkeypatch):
    data, old_times, new_times = irregular
    whole = lanczos_interp(data, old_times, new_times)
    # a few kernel rows per chunk
    monkeypatch.setattr(interpolation, "_KERNEL_CHUNK_BYTES", 8 * old_times.size * 3)
    chunked = lanczos_interp(data, old_times, new_times)
    # equal up to the last bit of float64: BLAS may sum in another order for another shape
    # (seen on a CPU without AMX), so bit equality is not a property of the code
    np.testing.assert_allclose(chunked, whole, rtol=1e-13, atol=1e-15)


def test_unnormalised_scales_with_word_rate_normalised_does_not():
    new_times = np.arange(0, 100, 2.0) + 1.0
    for step, rate_per_tr in [(0.25, 8.0), (0.5, 4.0)]:
        old_times = np.arange(-20, 120, step)
        ones = np.ones(old_times.size)
        raw = lanczos_interp(ones, old_times, new_times)
        # kernel integrates to ~1 TR, so a constant sums to ~ words per TR
        np.testing.assert_allclose(raw, rate_per_tr, rtol=0.01)
        norm = lanczos_interp(3.5 * ones, old_times, new_times, normalize=True)
        np.testing.assert_allclose(norm, 3.5, rtol=1e-12)


def test_kernel_values():
    assert lanczos_kernel(np.array([0.0]))[0] == 1.0
    # zero beyond the window, for either sign and after scaling by cutoff_mult
    np.testing.assert_array_equal(lanczos_kernel(np.array([3.0001, -3.5, 10.0, -1e6])), 0.0)
    np.testing.assert_array_equal(lanczos_kernel(np.array([6.01, -7.0]), cutoff_mult=0.5), 0.0)
    assert lanczos_kernel(np.array([5.9]), cutoff_mult=0.5)[0] != 0.0
    # zero crossings at the integers, symmetric, main lobe positive
    np.testing.assert_allclose(lanczos_kernel(np.array([1.0, 2.0, -1.0])), 0.0, atol=1e-15)
    x = np.linspace(-2.9, 2.9, 41)
    np.testing.assert_allclose(lanczos_kernel(x), lanczos_kernel(-x))
    assert np.all(lanczos_kernel(np.linspace(-0.99, 0.99, 11)) > 0)


def test_no_weight_rows_stay_zero_when_normalised():
    old_times = np.array([0.0, 0.5])
    new_times = np.arange(0.0, 42.0, 2.0)  # cutoff 1/2 s: only TRs within 6 s see a word
    out = lanczos_interp(np.ones((2, 1)), old_times, new_times, normalize=True)
    assert out[-1, 0] == 0.0 and out[0, 0] == pytest.approx(1.0)


def test_bad_times_raise():
    with pytest.raises(DataError, match="finite"):
        lanczos_interp(np.ones(3), np.array([0.0, np.nan, 1.0]), np.arange(4.0))
    with pytest.raises(ValueError, match="3 times but data has 2"):
        lanczos_interp(np.ones(2), np.arange(3.0), np.arange(4.0))
    with pytest.raises(ValueError, match="at least 2"):
        lanczos_interp(np.ones(2), np.arange(2.0), np.array([1.0]))


def test_downsample_story_matches_per_layer_lanczos(rng):
    word_feats = rng.standard_normal((3, 50, 4)).astype(np.float32)
    word_times = np.sort(rng.uniform(0, 40, 50))
    tr_times = np.arange(20) * 2.0 + 1.0
    rows = slice(3, 17)
    out = downsample_story(word_feats, word_times, tr_times, rows)
    assert out.shape == (3, 14, 4) and out.dtype == np.float32
    for layer in range(3):
        expected = lanczos_interp(word_feats[layer].astype(np.float64), word_times, tr_times)
        np.testing.assert_allclose(out[layer], expected[rows], rtol=1e-4, atol=1e-5)
