"""The challenge's noise ceiling and noise-normalised score against hand computations, and the
noise ceiling's meaning on simulated data: a perfect prediction reaches r² = NC on average."""

from __future__ import annotations

import numpy as np
import pytest

from fmriscaling import DataError
from fmriscaling.vision.scores import (
    challenge_noise_ceiling,
    compute_vision_noise_ceiling,
    load_vision_noise_ceiling,
    noise_normalized_score,
    repeat_counts,
    summarize,
)


def test_repeat_counts():
    assert repeat_counts([3, 3, 2, 1, 3, 1]) == (3, 1, 2)
    with pytest.raises(DataError, match="1, 2 or 3"):
        repeat_counts([3, 4])


def test_noise_ceiling_equals_a_hand_computation():
    # A, B, C = 5, 3, 2 images shown 3, 2, 1 times: (5/3 + 3/2 + 2) / 10 = 31/60
    ncsnr = np.array([0.0, 0.5, 1.0, 2.0, np.nan])
    nc = challenge_noise_ceiling(ncsnr, (5, 3, 2))
    # ncsnr² / (ncsnr² + 31/60), by hand: 0, 0.25/0.7666..., 1/1.5166..., 4/4.5166...
    np.testing.assert_allclose(nc[:4], [0.0, 0.3260870, 0.6593407, 0.8856089], rtol=1e-6)
    assert np.isnan(nc[4])
    # every image shown 3 times: ncsnr² / (ncsnr² + 1/3)
    np.testing.assert_allclose(challenge_noise_ceiling([1.0], (7, 0, 0)), [0.75])


def test_noise_normalized_score_equals_a_hand_computation():
    nc = np.array([0.0, 0.3260870, 0.6593407, 0.8856089, 0.5, np.nan])
    r = np.array([0.4, 0.3, 0.5, 0.99, -0.2, 0.3])
    score = noise_normalized_score(r, nc)
    # 100 * min(1, max(r, 0)^2 / NC): no ceiling, 0.09/0.326, 0.25/0.659, capped, r < 0 -> 0
    np.testing.assert_allclose(score[1:5], [27.6, 37.916667, 100.0, 0.0], rtol=1e-5)
    assert np.isnan(score[0]) and np.isnan(score[5])
    summary = summarize(score)
    assert summary["n"] == 4 and summary["n_missing"] == 2
    assert summary["mean"] == pytest.approx((27.6 + 37.916667 + 100.0) / 4, rel=1e-5)
    with pytest.raises(DataError, match="same vertices"):
        noise_normalized_score(r, nc[:3])


def test_a_perfect_prediction_reaches_the_ceiling_on_average(rng):
    """Simulate NSD: signal sd 1, single-trial noise sd 1/ncsnr, rows = mean of 1-3 trials.
    The squared correlation of the true signal with the rows is NC on average."""
    n_images, n_vertices = 20000, 6
    ncsnr = np.array([0.2, 0.4, 0.7, 1.0, 1.5, 3.0])
    repeats = rng.choice([1, 2, 3], size=n_images, p=[0.2, 0.3, 0.5])
    signal = rng.standard_normal((n_images, n_vertices))
    noise = rng.standard_normal((n_images, n_vertices)) / ncsnr / np.sqrt(repeats)[:, None]
    rows = signal + noise
    r = np.array([np.corrcoef(signal[:, v], rows[:, v])[0, 1] for v in range(n_vertices)])
    nc = challenge_noise_ceiling(ncsnr, repeat_counts(repeats))
    np.testing.assert_allclose(r**2, nc, atol=0.02)  # sd of r² here is <= 0.006
    assert np.mean(noise_normalized_score(r, nc)) > 95


def test_noise_ceiling_file_uses_the_held_out_rows(tmp_path):
    n_rows = 50
    for hemi, n in (("lh", 3), ("rh", 2)):
        np.save(tmp_path / f"{hemi}_fmri.npy", np.zeros((n_rows, n), np.float32))
        np.save(tmp_path / f"{hemi}_ncsnr.npy", np.full(n, 1.0, np.float32))
    repeats = np.full(n_rows, 3)
    repeats[-5:] = 1  # the last 10 % (the test rows) were shown once
    np.save(tmp_path / "repeats.npy", repeats)
    out = tmp_path / "nc.npz"
    summary = compute_vision_noise_ceiling(
        out,
        ncsnr_files=[tmp_path / "lh_ncsnr.npy", tmp_path / "rh_ncsnr.npy"],
        fmri_files={"lh": tmp_path / "lh_fmri.npy", "rh": tmp_path / "rh_fmri.npy"},
        repeats_file=tmp_path / "repeats.npy",
        test_fraction=0.1,
    )
    assert summary["counts"] == [0, 0, 5]
    np.testing.assert_allclose(load_vision_noise_ceiling(out), np.full(5, 0.5))
    with np.load(out) as data:
        assert data["hemisphere_sizes"].tolist() == [3, 2]
    assert (tmp_path / "nc.npz.provenance.json").is_file()
