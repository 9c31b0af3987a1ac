"""Noise ceiling (Sahani & Linden 2003; Schoppe et al. 2016) against known ground truth."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from fmriscaling import DataError
from fmriscaling.encoding.noise_ceiling import (
    cc_abs,
    cc_norm_from_prediction,
    compute_noise_ceiling_file,
    load_noise_ceiling,
    noise_ceiling,
    normalized_correlation,
    summarize_normalized,
)


def _repeats(rng, n_repeats, n_trs, signal_sd, noise_sd):
    signal = rng.standard_normal((n_trs, signal_sd.size)) * signal_sd
    noise = rng.standard_normal((n_repeats, n_trs, signal_sd.size)) * noise_sd
    return signal, signal[None] + noise


def test_cc_max_matches_theory(rng):
    n_repeats = 10
    signal_sd = np.array([1.0, 1.0, 0.5, 2.0, 1.0])
    noise_sd = np.array([0.5, 2.0, 1.0, 1.0, 4.0])
    _, repeats = _repeats(rng, n_repeats, 20_000, signal_sd, noise_sd)
    nc = noise_ceiling(repeats)
    expected = 1 / np.sqrt(1 + noise_sd**2 / (n_repeats * signal_sd**2))
    np.testing.assert_allclose(nc.cc_max, expected, atol=0.01)
    np.testing.assert_allclose(nc.sp, signal_sd**2, rtol=0.05)
    np.testing.assert_allclose(nc.np_, noise_sd**2, rtol=0.05)
    np.testing.assert_allclose(nc.tp, nc.sp + nc.np_)
    assert nc.valid.all() and nc.n_repeats == n_repeats
    # the closed form of METHODS: 1/sqrt(1 + (TP/SP - 1)/N)
    np.testing.assert_allclose(nc.cc_max, 1 / np.sqrt(1 + (nc.tp / nc.sp - 1) / n_repeats))


def test_pure_noise_voxels_are_invalid_excluded_and_counted(rng):
    # a zero-signal voxel has SP <= 0 about half the time; force it with a nearly constant mean
    n_repeats, n_trs = 4, 500
    signal = rng.standard_normal((n_trs, 3))
    repeats = signal[None] + 0.3 * rng.standard_normal((n_repeats, n_trs, 3))
    # voxel 3: repeats that cancel in the mean -> Var(mean) ~ 0 < TP / N, so SP < 0
    noise = rng.standard_normal((n_repeats, n_trs, 1))
    noise -= noise.mean(axis=0, keepdims=True)
    repeats = np.concatenate([repeats, noise], axis=2)
    nc = noise_ceiling(repeats)
    assert nc.sp[3] <= 0
    np.testing.assert_array_equal(nc.valid, [True, True, True, False])
    assert np.isnan(nc.cc_max[3]) and nc.n_valid == 3

    r = np.array([0.5, 0.4, 0.3, 0.9])
    cc_norm = normalized_correlation(r, nc.cc_max)
    assert np.isnan(cc_norm[3])
    mean, n_valid, n_invalid = summarize_normalized(cc_norm, nc.valid)
    assert (n_valid, n_invalid) == (3, 1)
    np.testing.assert_allclose(mean, np.mean(r[:3] / nc.cc_max[:3]))


def test_cc_norm_identity(rng):
    n_repeats = 5
    signal_sd = np.array([1.0, 0.7, 1.5])
    signal, repeats = _repeats(rng, n_repeats, 400, signal_sd, np.array([1.0, 1.0, 2.0]))
    prediction = signal + rng.standard_normal(signal.shape)
    nc = noise_ceiling(repeats)
    mean_response = repeats.mean(axis=0)
    r = cc_abs(mean_response, prediction)
    np.testing.assert_allclose(
        r, [np.corrcoef(mean_response[:, v], prediction[:, v])[0, 1] for v in range(3)]
    )
    np.testing.assert_allclose(
        normalized_correlation(r, nc.cc_max),
        cc_norm_from_prediction(mean_response, prediction, nc.sp),
        rtol=1e-10,
    )


def test_floor(rng):
    _, repeats = _repeats(rng, 3, 20_000, np.array([1.0, 0.3]), np.array([0.5, 3.0]))
    nc = noise_ceiling(repeats)
    assert nc.cc_max[1] < 0.25 < nc.cc_max[0]
    r = np.array([0.5, 0.05])
    np.testing.assert_allclose(
        normalized_correlation(r, nc.cc_max, floor=0.25), [0.5 / nc.cc_max[0], 0.05 / 0.25]
    )
    floored = noise_ceiling(repeats, floor=0.25)
    np.testing.assert_allclose(floored.cc_max, [nc.cc_max[0], 0.25])


def test_noise_ceiling_rejects_bad_input(rng):
    with pytest.raises(DataError, match=">= 2 repeats"):
        noise_ceiling(rng.standard_normal((1, 10, 2)))
    bad = rng.standard_normal((3, 10, 2))
    bad[0, 0, 0] = np.nan
    with pytest.raises(DataError, match="non-finite"):
        noise_ceiling(bad)
    with pytest.raises(DataError, match="non-finite normalised"):
        summarize_normalized(np.array([0.1, np.nan]), np.array([True, True]))


def test_compute_noise_ceiling_file_trims_and_saves(rng, tmp_path):
    _, repeats = _repeats(rng, 4, 300, np.ones(6), np.full(6, 0.8))
    repeats = repeats.astype(np.float32)
    # the first 40 TRs are garbage: the ceiling must not see them
    repeats[:, :40] = rng.standard_normal((4, 40, 6)).astype(np.float32) * 50
    path = tmp_path / "wheretheressmoke.hf5"
    with h5py.File(path, "w") as f:
        f["data"] = repeats.mean(axis=0)
        f["individual_repeats"] = repeats
    out = tmp_path / "nc" / "noise_ceiling.npz"
    nc = compute_noise_ceiling_file(path, out, test_extra_trim=40, params={"test_extra_trim": 40})
    expected = noise_ceiling(repeats[:, 40:])
    np.testing.assert_allclose(nc.cc_max, expected.cc_max)
    with np.load(out) as data:
        assert {"cc_max", "sp", "tp", "np", "valid", "n_repeats"} <= set(data.files)
        assert data["cc_max"].shape == (6,) and int(data["n_repeats"]) == 4
    loaded = load_noise_ceiling(out)
    np.testing.assert_allclose(loaded.cc_max, expected.cc_max, rtol=1e-6)
    prov = json.loads((tmp_path / "nc" / "noise_ceiling.npz.provenance.json").read_text())
    assert prov["params"] == {"test_extra_trim": 40} and prov["n_trs"] == 260
