"""FIR delays, z-scoring and per-story design assembly."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sklearn.base import clone

from fmriscaling import DataError
from fmriscaling.encoding.design import FIRDelayer, build_design, zscore


def test_fir_delayer_matches_hand_built_matrix():
    X = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0]])
    expected = np.array(
        [
            # delay 1       delay 2
            [0.0, 0.0, 0.0, 0.0],
            [1.0, 10.0, 0.0, 0.0],
            [2.0, 20.0, 1.0, 10.0],
            [3.0, 30.0, 2.0, 20.0],
        ]
    )
    np.testing.assert_array_equal(FIRDelayer(delays=(1, 2)).fit_transform(X), expected)


def test_fir_delayer_zero_and_negative_delays():
    X = np.array([[1.0], [2.0], [3.0]])
    expected = np.array([[1.0, 2.0], [2.0, 3.0], [3.0, 0.0]])
    np.testing.assert_array_equal(FIRDelayer(delays=(0, -1)).fit(X).transform(X), expected)


def test_fir_delayer_sklearn_api(rng):
    delayer = FIRDelayer(delays=(1, 2, 3, 4))
    assert delayer.get_params() == {"delays": (1, 2, 3, 4)}
    X = rng.standard_normal((20, 3))
    assert delayer.fit(X) is delayer
    assert delayer.n_features_in_ == 3
    assert delayer.transform(X).shape == (20, 12)
    assert clone(delayer).get_params() == delayer.get_params()
    assert list(delayer.get_feature_names_out(["a", "b", "c"])[:4]) == [
        "a_delay1",
        "b_delay1",
        "c_delay1",
        "a_delay2",
    ]
    with pytest.raises(ValueError, match="expected"):
        delayer.transform(rng.standard_normal((20, 4)))
    with pytest.raises(Exception, match="not fitted"):
        FIRDelayer().transform(X)


def test_zscore_constant_column_is_zero_and_logged(caplog):
    X = np.column_stack([np.arange(10.0), np.full(10, 3.0)]).astype(np.float32)
    with caplog.at_level(logging.INFO, logger="fmriscaling.encoding.design"):
        Z = zscore(X, name="toy")
    assert Z.dtype == np.float32
    assert np.all(np.isfinite(Z))
    np.testing.assert_array_equal(Z[:, 1], 0.0)
    np.testing.assert_allclose(Z[:, 0].mean(), 0.0, atol=1e-6)
    np.testing.assert_allclose(Z[:, 0].std(), 1.0, rtol=1e-6)
    assert "1 constant column" in caplog.text


def test_zscore_rejects_nan():
    with pytest.raises(DataError, match="non-finite"):
        zscore(np.array([[1.0], [np.nan]]))


def _stories(rng, lengths, n_features=3, n_voxels=2):
    features, responses = {}, {}
    for i, n in enumerate(lengths):
        name = f"story{i}"
        # different offsets and scales per story: per-story z-scoring must remove them
        features[name] = rng.standard_normal((n, n_features)) * (i + 1) + 5 * i
        responses[name] = rng.standard_normal((n, n_voxels)) * (i + 2) - 3 * i
    return features, responses


def test_build_design_tr_mismatch_names_story_and_counts(rng):
    features, responses = _stories(rng, [30, 25])
    responses["story1"] = responses["story1"][:24]
    with pytest.raises(DataError, match=r"story1.*25 TRs.*24 TRs"):
        build_design(features, responses, ["story0", "story1"], delays=(1, 2))


def test_build_design_delays_stay_within_stories(rng):
    lengths = [30, 25, 20]
    features, responses = _stories(rng, lengths)
    stories = list(features)
    delays = (1, 2, 3, 4)
    X, Y, story_lengths = build_design(features, responses, stories, delays=delays)
    assert story_lengths == lengths
    assert X.shape == (sum(lengths), 3 * len(delays))
    assert Y.shape == (sum(lengths), 2)
    assert X.dtype == np.float32 and Y.dtype == np.float32
    starts = np.cumsum([0, *lengths[:-1]])
    for start, story in zip(starts, stories, strict=True):
        z = zscore(features[story])
        for k, d in enumerate(delays):
            block = X[start : start + len(z), 3 * k : 3 * (k + 1)]
            # the first d rows of each story's delayed block are zero, not the previous story
            np.testing.assert_array_equal(block[:d], 0.0)
            np.testing.assert_allclose(block[d:], z[:-d], rtol=1e-5, atol=1e-6)


def test_build_design_zscores_within_each_story(rng):
    lengths = [40, 35]
    features, responses = _stories(rng, lengths)
    X, Y, _ = build_design(features, responses, ["story0", "story1"], delays=(0,))
    for sl in (slice(0, 40), slice(40, 75)):
        np.testing.assert_allclose(X[sl].mean(axis=0), 0.0, atol=1e-5)
        np.testing.assert_allclose(X[sl].std(axis=0), 1.0, rtol=1e-5)
        np.testing.assert_allclose(Y[sl].mean(axis=0), 0.0, atol=1e-5)
        np.testing.assert_allclose(Y[sl].std(axis=0), 1.0, rtol=1e-5)


def test_build_design_trims_before_zscore_and_delay(rng):
    features, responses = _stories(rng, [50])
    X, Y, lengths = build_design(
        features, responses, ["story0"], delays=(1,), extra_trim={"story0": 10}
    )
    assert lengths == [40]
    z = zscore(features["story0"][10:])
    np.testing.assert_array_equal(X[0], 0.0)  # trimmed rows never re-enter through a delay
    np.testing.assert_allclose(X[1:], z[:-1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(Y, zscore(responses["story0"][10:]), rtol=1e-5, atol=1e-6)


def test_build_design_constant_feature_column_gives_zeros(rng):
    features, responses = _stories(rng, [20, 20])
    features["story1"][:, 1] = 7.0
    X, _, _ = build_design(features, responses, ["story0", "story1"], delays=(1, 2))
    assert np.all(np.isfinite(X))
    np.testing.assert_array_equal(X[20:, [1, 4]], 0.0)


def test_build_design_missing_story(rng):
    features, responses = _stories(rng, [20])
    with pytest.raises(DataError, match="'nope' has no features"):
        build_design(features, responses, ["story0", "nope"])
