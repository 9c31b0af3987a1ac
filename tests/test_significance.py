"""The block permutation test of test correlations and the FDR control."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from scipy.stats import false_discovery_control

from fmriscaling.encoding.significance import block_permutations, fdr, permutation_pvalues


def _ar1(rng, n_trs, n_voxels, phi):
    """Stationary AR(1) series, one per column."""
    x = np.empty((n_trs, n_voxels))
    x[0] = rng.standard_normal(n_voxels)
    noise = np.sqrt(1 - phi**2) * rng.standard_normal((n_trs, n_voxels))
    for t in range(1, n_trs):
        x[t] = phi * x[t - 1] + noise[t]
    return x


def test_whole_blocks_are_shuffled_and_the_tris_left_over_stay_in_place():
    order = block_permutations(35, block_trs=10, n_permutations=200, seed=3)
    assert order.shape == (200, 35)
    assert (np.sort(order, axis=1) == np.arange(35)).all()  # each TR once
    blocks = order[:, :30].reshape(200, 3, 10)
    # each slot holds a whole block, in order
    np.testing.assert_array_equal(
        blocks - blocks[:, :, :1], np.broadcast_to(np.arange(10), (200, 3, 10))
    )
    assert set(np.unique(blocks[:, :, 0])) == {0, 10, 20}
    # the 5 TRs left over stay at the end, in place
    np.testing.assert_array_equal(order[:, 30:], np.broadcast_to(np.arange(30, 35), (200, 5)))
    # every order of the three blocks shows up
    assert len({tuple(row) for row in blocks[:, :, 0]}) == 6
    np.testing.assert_array_equal(
        order, block_permutations(35, block_trs=10, n_permutations=200, seed=3)
    )
    with pytest.raises(ValueError, match="fewer than two whole blocks"):
        block_permutations(15, block_trs=10)


def test_p_is_the_count_of_a_plain_loop_over_the_same_permutations(rng):
    n_trs, n_perm = 60, 99
    pred = rng.standard_normal((n_trs, 5))
    resp = 0.3 * pred + rng.standard_normal((n_trs, 5))
    out = permutation_pvalues(pred, resp, block_trs=7, n_permutations=n_perm, seed=11)
    assert out["method"] == "blocks"  # 8 whole blocks of 7 TRs, 4 TRs left over
    order = block_permutations(n_trs, block_trs=7, n_permutations=n_perm, seed=11)
    for v in range(5):
        r = np.corrcoef(pred[:, v], resp[:, v])[0, 1]
        assert out["r"][v] == pytest.approx(r, abs=1e-6)
        r_perm = [np.corrcoef(pred[o, v], resp[:, v])[0, 1] for o in order]
        count = sum(rp >= r - 1e-6 for rp in r_perm)
        assert out["p"][v] == pytest.approx((1 + count) / (1 + n_perm))
    numpy = permutation_pvalues(pred, resp, block_trs=7, n_permutations=n_perm, seed=11,
                                device="numpy")  # fmt: skip
    np.testing.assert_array_equal(numpy["p"], out["p"])
    # p is never 0, and a batch size of one voxel and one permutation changes nothing
    assert out["p"].min() >= 1 / (1 + n_perm)
    tiny = permutation_pvalues(pred, resp, block_trs=7, n_permutations=n_perm, seed=11,
                               memory_mb=1e-4)  # fmt: skip
    np.testing.assert_array_equal(tiny["p"], out["p"])
    # single TRs (exchangeable samples) go through permuted copies: the same loop holds
    singles = permutation_pvalues(pred, resp, block_trs=1, n_permutations=n_perm, seed=4)
    assert singles["method"] == "gather"
    order = block_permutations(n_trs, block_trs=1, n_permutations=n_perm, seed=4)
    r = np.corrcoef(pred[:, 2], resp[:, 2])[0, 1]
    count = sum(np.corrcoef(pred[o, 2], resp[:, 2])[0, 1] >= r - 1e-6 for o in order)
    assert singles["p"][2] == pytest.approx((1 + count) / (1 + n_perm))


def test_blocks_keep_the_null_calibrated_where_single_tr_shuffles_do_not():
    """Null voxels, prediction and response independent AR(1) with phi 0.7: blocks of 10 TRs
    reject at about the nominal 5 %; shuffling single TRs rejects far too often."""
    rng = np.random.default_rng(7)
    n_trs, n_voxels = 300, 3000
    pred, resp = _ar1(rng, n_trs, n_voxels, 0.7), _ar1(rng, n_trs, n_voxels, 0.7)
    blocks = permutation_pvalues(pred, resp, block_trs=10, n_permutations=199, seed=1)
    singles = permutation_pvalues(pred, resp, block_trs=1, n_permutations=199, seed=1)
    rate_blocks = np.mean(blocks["p"] < 0.05)
    rate_singles = np.mean(singles["p"] < 0.05)
    assert 0.03 <= rate_blocks <= 0.07, rate_blocks
    assert rate_singles > 0.12, rate_singles


def test_signal_voxels_are_found_and_fdr_holds_near_q():
    rng = np.random.default_rng(2)
    n_trs, n_null, n_signal = 300, 1800, 200
    shared = _ar1(rng, n_trs, n_signal, 0.5)
    pred = np.concatenate([_ar1(rng, n_trs, n_null, 0.5), shared], axis=1)
    resp = _ar1(rng, n_trs, n_null + n_signal, 0.5)
    resp[:, n_null:] += 0.45 * shared  # r about 0.4
    out = permutation_pvalues(pred, resp, block_trs=10, n_permutations=999, seed=0)
    q, significant = fdr(out["p"], q=0.05)
    found = significant[n_null:].mean()
    false = significant[:n_null].sum() / max(significant.sum(), 1)
    assert found > 0.9 and false <= 0.1, (found, false)
    np.testing.assert_allclose(q, false_discovery_control(out["p"], method="bh"))


def test_bh_q_values_by_hand():
    p = np.array([0.01, 0.04, 0.03, 0.20])
    # sorted 0.01, 0.03, 0.04, 0.20 -> p m / rank 0.04, 0.06, 0.0533, 0.20 -> running minimum
    # from the largest: 0.04, 0.0533, 0.0533, 0.20
    q, significant = fdr(p, q=0.05)
    np.testing.assert_allclose(q, [0.04, 0.16 / 3, 0.16 / 3, 0.20])
    assert significant.tolist() == [True, False, False, False]
    with pytest.raises(ValueError, match="finite and in"):
        fdr(np.array([0.1, np.nan]))


def test_a_constant_prediction_gets_p_one_not_nan(rng):
    pred = rng.standard_normal((40, 3))
    pred[:, 1] = 2.0
    out = permutation_pvalues(pred, rng.standard_normal((40, 3)), block_trs=4, n_permutations=50)
    assert out["constant"].tolist() == [False, True, False]
    assert out["p"][1] == 1.0 and np.isfinite(out["p"]).all()


def _ridge(rng, alphas):
    from fmriscaling.encoding.folds import story_folds
    from fmriscaling.encoding.ridge import fit_ridge_cv

    # as many features as half the TRs: the best penalty (noise / weight variance = 100) is
    # well inside a wide grid and far below a grid of 1e5-1e6
    n_trs, n_features, n_voxels = 200, 100, 60
    X = rng.standard_normal((n_trs, n_features))
    W = rng.standard_normal((n_features, n_voxels))
    Y = X @ W * 0.1 + rng.standard_normal((n_trs, n_voxels))
    folds = story_folds([50, 50, 50, 50], n_folds=4)
    result = fit_ridge_cv(X, Y, alphas=alphas, folds=folds, backend="numpy")
    return result


def test_alpha_diagnostics_warn_on_a_narrow_grid_and_not_on_a_wide_one(rng, caplog):
    from fmriscaling.config import alpha_grid
    from fmriscaling.encoding.significance import alpha_edges, warn_at_alpha_edges

    # far too strong penalties: every voxel with signal wants less than the grid's smallest
    narrow = [1e5, 1e6]
    result = _ridge(rng, narrow)
    edges = alpha_edges(result.alphas, result.cv_scores, narrow)
    assert edges["n_voxels_cv_positive"] > 30 and edges["fraction_alpha_min"] > 0.9
    with caplog.at_level(logging.WARNING, logger="fmriscaling.encoding.significance"):
        messages = warn_at_alpha_edges(edges, narrow, limit=0.05, what="UTS01 m layer 2",
                                       key="encoding.alphas")  # fmt: skip
    (message,) = messages
    assert message in caplog.text
    assert "UTS01 m layer 2" in message and "smallest alpha of the grid (1e+05)" in message
    assert "widen encoding.alphas (lower its start)" in message
    # the demo's default grid spans the penalties these voxels want
    wide = alpha_grid({"log10_min": 0, "log10_max": 6, "num": 13})
    result = _ridge(rng, wide)
    edges = alpha_edges(result.alphas, result.cv_scores, wide)
    assert edges["fraction_alpha_min"] <= 0.05 and edges["fraction_alpha_max"] <= 0.05
    assert warn_at_alpha_edges(edges, wide, what="fit", key="encoding.alphas") == []


def test_alpha_edges_count_only_voxels_with_a_positive_cv_score():
    from fmriscaling.encoding.significance import alpha_edges

    grid = [1.0, 10.0, 100.0]
    alpha = np.array([1.0, 100.0, 100.0, 10.0, 100.0])
    cv = np.array([0.2, 0.1, -0.1, 0.3, -0.05])  # the noise voxels chose 100: not counted
    edges = alpha_edges(alpha, cv, grid)
    assert edges == {"n_voxels_cv_positive": 3, "fraction_alpha_min": pytest.approx(1 / 3),
                     "fraction_alpha_max": pytest.approx(1 / 3)}  # fmt: skip
    assert np.isnan(alpha_edges(alpha, -np.abs(cv), grid)["fraction_alpha_max"])
