"""End-to-end encoding fit on small synthetic stories written in the workflow's file layout."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest

from fmriscaling import DataError
from fmriscaling.encoding import folds as folds_module
from fmriscaling.encoding.fit import fit_encoding

DELAYS = (1, 2, 3, 4)  # the encoding_dataset fixture's delays

ALPHAS = np.logspace(-1, 4, 6)
N_SIGNAL = 6


@pytest.fixture
def dataset(encoding_dataset):
    """Layer file (one dataset per story) and one response file per story, one subject."""
    feature_file, responses = encoding_dataset(subjects=("S1",))
    return feature_file, responses["S1"]


def _fit(dataset, tmp_path, **kw):
    feature_file, response_files = dataset
    args = {
        "feature_file": feature_file,
        "response_files": response_files,
        "train_stories": ["alpha", "beta", "gamma", "delta"],
        "test_story": "test",
        "delays": DELAYS,
        "alphas": ALPHAS,
        "backend": "numpy",
        "out_npz": tmp_path / "out" / "scores.npz",
        "params": {"delays": list(DELAYS)},
        "meta": {"subject": "S1", "layer": 3},
    }
    args.update(kw)
    return fit_encoding(**args)


def test_fit_encoding_end_to_end(dataset, tmp_path):
    summary = _fit(dataset, tmp_path, save_predictions=True, save_weights=True)
    out = tmp_path / "out" / "scores.npz"
    n_voxels = N_SIGNAL + 4
    with np.load(out) as data:
        test_r = data["test_r"]
        assert test_r.shape == data["alpha"].shape == data["cv_score"].shape == (n_voxels,)
        assert data["test_pred"].shape == data["test_true"].shape == (120, n_voxels)
        assert data["oof_pred"].shape == (420, n_voxels)
        assert data["weights"].shape == (6 * len(DELAYS), n_voxels)
        assert np.all(data["test_r"][:N_SIGNAL] > 0.8)
        assert np.all(np.abs(data["test_r"][N_SIGNAL:]) < 0.35)
        # test_true is the trimmed, z-scored test story
        np.testing.assert_allclose(data["test_true"].mean(axis=0), 0, atol=1e-5)
        # score agrees with an independent Pearson r of the saved prediction
        r0 = np.corrcoef(data["test_pred"][:, 0], data["test_true"][:, 0])[0, 1]
        assert test_r[0] == pytest.approx(r0, abs=1e-4)
    saved = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    assert saved["n_train_stories"] == 4 and saved["n_train_trs"] == 420
    assert saved["n_test_trs"] == 120 and saved["train_stories"] == [
        "alpha",
        "beta",
        "gamma",
        "delta",
    ]
    assert saved["subject"] == "S1" and saved["mean_test_r"] == pytest.approx(float(test_r.mean()))
    for key in ("solver", "backend", "fit_seconds", "peak_memory_bytes", "median_alpha"):
        assert key in saved
    assert saved["score_dtype"] == "float32"
    prov = json.loads((tmp_path / "out" / "scores.npz.provenance.json").read_text())
    assert prov["params"] == {"delays": list(DELAYS)}


def test_himalaya_solver_impl_gives_the_same_fit(dataset, tmp_path):
    fast = _fit(dataset, tmp_path / "fast")
    reference = _fit(dataset, tmp_path / "himalaya", solver_impl="himalaya")
    assert (fast["solver_impl"], reference["solver_impl"]) == ("fast", "himalaya")
    with (
        np.load(tmp_path / "fast" / "out" / "scores.npz") as a,
        np.load(tmp_path / "himalaya" / "out" / "scores.npz") as b,
    ):
        np.testing.assert_allclose(a["alpha"], b["alpha"], rtol=1e-5)
        np.testing.assert_allclose(a["cv_score"], b["cv_score"], atol=1e-5)
        np.testing.assert_allclose(a["test_r"], b["test_r"], atol=1e-5)


def test_fit_encoding_bootstrap_cv(dataset, tmp_path):
    summary = _fit(
        dataset,
        tmp_path,
        train_stories=["alpha"],
        cv="bootstrap",
        bootstrap={"n_boots": 3, "chunk_len": 10, "n_chunks": 2},
    )
    assert summary["n_train_stories"] == 1 and summary["cv"] == "bootstrap"
    with np.load(tmp_path / "out" / "scores.npz") as data:
        assert np.all(np.isfinite(data["test_r"]))
        assert data["test_r"][:N_SIGNAL].mean() > 0.5


def test_bootstrap_cv_defaults_to_holding_out_a_fifth(dataset, tmp_path, monkeypatch):
    calls, real = [], folds_module.bootstrap_chunk_folds

    def spy(n_samples, **kwargs):
        calls.append((n_samples, kwargs))
        return real(n_samples, **kwargs)

    monkeypatch.setattr(folds_module, "bootstrap_chunk_folds", spy)
    summary = _fit(
        dataset,
        tmp_path,
        train_stories=["alpha"],
        cv="bootstrap",
        bootstrap={"n_boots": 3, "chunk_len": 10, "n_chunks": None},
    )
    ((n_samples, kwargs),) = calls
    assert n_samples == summary["n_train_trs"]
    assert kwargs["n_chunks"] == math.ceil(n_samples / 5 / 10) and kwargs["n_boots"] == 3


def test_one_story_with_story_folds_is_refused(dataset, tmp_path):
    with pytest.raises(DataError, match="cv: bootstrap"):
        _fit(dataset, tmp_path, train_stories=["alpha"])
    assert not (tmp_path / "out" / "scores.npz").exists()


def test_test_story_in_training_set_is_refused(dataset, tmp_path):
    with pytest.raises(DataError, match="also a training story"):
        _fit(dataset, tmp_path, train_stories=["alpha", "test"])


def test_nan_in_features_is_refused(dataset, tmp_path):
    feature_file, _ = dataset
    with h5py.File(feature_file, "a") as f:
        f["beta"][5, 2] = np.nan
    with pytest.raises(DataError, match=r"beta.*non-finite"):
        _fit(dataset, tmp_path)
    assert not (tmp_path / "out" / "scores.npz").exists()


def test_fit_encoding_bfloat16_scoring_is_recorded(dataset, tmp_path):
    summary = _fit(dataset, tmp_path, backend="torch", score_dtype="bfloat16")
    assert summary["score_dtype"] == "bfloat16" and summary["backend"] == "torch"
    with np.load(tmp_path / "out" / "scores.npz") as data:
        assert np.all(data["test_r"][:N_SIGNAL] > 0.8)
    with pytest.raises(ValueError, match="bfloat16"):
        _fit(dataset, tmp_path, score_dtype="bfloat16")  # numpy backend
