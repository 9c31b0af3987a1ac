"""Per-vertex (layer, k) selection: splits and folds, the choice of the true candidate on data
built to favour it, the refit's predictions, the whole fit on the synthetic dataset against its
ground truth, the data-size sweep and the ensemble."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _vision_fixtures import SUBJECT, build_dataset

from fmriscaling import DataError
from fmriscaling.encoding.ridge import fit_ridge_cv
from fmriscaling.vision.selection import (
    fit_vision_ensemble,
    fit_vision_selection,
    fit_vision_sweep,
    select_per_vertex,
)
from fmriscaling.vision.splits import image_folds, image_split, standardize

ALPHAS = np.logspace(0, 15, 30)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These fits take milliseconds: a second thread only adds synchronisation (and the CI
    machine is shared)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_split_is_the_papers():
    train, test = image_split(9841, n_images=8779, test_fraction=0.1)
    assert (train.size, test.size) == (7901, 878)  # geomspace(10, 7901, 10) tops out at 7901
    assert train[-1] == 7900 and test[0] == 7901 and test[-1] == 8778
    train, _ = image_split(100, test_fraction=0.2, n_train=50)
    np.testing.assert_array_equal(train, np.arange(50))
    with pytest.raises(DataError, match="n_images is 9000, but the subject has 8779"):
        image_split(8779, n_images=9000)
    with pytest.raises(DataError, match="n_train is 95"):
        image_split(100, test_fraction=0.1, n_train=95)


def test_folds_partition_the_images():
    folds = image_folds(50, n_folds=8, seed=0)
    assert len(folds) == 8
    held_out = np.concatenate([val for _, val in folds])
    np.testing.assert_array_equal(np.sort(held_out), np.arange(50))
    for train, val in folds:
        assert np.intersect1d(train, val).size == 0 and train.size + val.size == 50
    # 10 images: folds of at least 3 validation images
    small = image_folds(10, n_folds=8)
    assert len(small) == 3 and min(v.size for _, v in small) >= 3


def _candidate_data(rng, n=240, n_test=60, n_vertices=40):
    """Four random feature spaces (two wider than the images: dual); vertex v is driven by
    candidate ``truth[v]`` through random weights, plus noise."""
    sizes = {(0, 1): 16, (0, 2): 64, (1, 1): 32, (1, 4): 512}
    feats = {c: rng.standard_normal((n + n_test, p)) for c, p in sizes.items()}
    candidates = list(sizes)
    truth = rng.integers(0, len(candidates), n_vertices)
    Y = np.empty((n + n_test, n_vertices))
    for v, t in enumerate(truth):
        X = feats[candidates[t]]
        signal = X @ rng.standard_normal(X.shape[1])
        Y[:, v] = signal / signal.std() + 0.5 * rng.standard_normal(n + n_test)
    return candidates, feats, truth, Y[:n], Y[n:]


def test_selection_picks_the_true_candidate_and_keeps_its_refit(rng):
    candidates, feats, truth, Y_train, Y_test = _candidate_data(rng)
    n = Y_train.shape[0]

    def load(candidate):
        return feats[candidate][:n], feats[candidate][n:]

    folds = image_folds(n, 8, seed=0)
    sel = select_per_vertex(
        candidates, load, Y_train, Y_test, alphas=ALPHAS, folds=folds, backend="torch",
        return_test_pred=True,
    )  # fmt: skip
    np.testing.assert_array_equal(sel.best, truth)
    assert [f["solver"] for f in sel.fits] == ["primal", "primal", "primal", "dual"]
    # each vertex keeps the best CV score of all candidates ...
    np.testing.assert_allclose(sel.cv_scores[sel.best, np.arange(truth.size)], sel.cv_scores.max(0))
    # ... and its test predictions and r are those of its candidate's own refit
    Yz_train, Yz_test = standardize(Y_train, Y_test)
    for c in range(len(candidates)):
        cols = np.flatnonzero(sel.best == c)
        X_train, X_test = standardize(*load(candidates[c]))
        ref = fit_ridge_cv(
            X_train, Yz_train[:, cols], alphas=ALPHAS, folds=folds, X_test=X_test,
            Y_test=Yz_test[:, cols], backend="torch", return_test_pred=True,
        )  # fmt: skip
        np.testing.assert_allclose(sel.test_pred[:, cols], ref.test_pred, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(sel.test_r[cols], ref.test_r, atol=1e-5)
        np.testing.assert_array_equal(sel.alphas[cols], ref.alphas)
    assert sel.test_r.mean() > 0.7


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return build_dataset(tmp_path_factory.mktemp("selection"))


def _fit(synthetic, out, **kw):
    settings = dict(
        feature_dir=synthetic["features"],
        subject=SUBJECT,
        fmri_files=synthetic["fmri"],
        layers=[0, 1, 2, 3],
        pooling=[1, 2, 4],
        alphas=ALPHAS,
        test_fraction=0.2,
        backend="torch",
        out_npz=out,
    )
    return fit_vision_selection(**{**settings, **kw})


def test_the_synthetic_ground_truth_is_recovered(synthetic, tmp_path):
    summary = _fit(synthetic, tmp_path / "scores.npz", save_predictions=True)
    assert summary["n_train_images"] == 128 and summary["n_test_images"] == 32
    assert summary["n_candidates"] == 12 and summary["test_source"] == "held_out"
    scores = np.load(tmp_path / "scores.npz")
    truth = np.load(synthetic["data"] / "ground_truth" / f"{SUBJECT}.npz")
    for driver, (layer, pool) in ((1, (1, 4)), (2, (3, 1))):
        chosen = (scores["layer"] == layer) & (scores["pool"] == pool)
        assert chosen[truth["driver"] == driver].mean() > 0.7, driver
    signal = truth["driver"] > 0
    assert scores["test_r"][signal].mean() > 0.4 > abs(scores["test_r"][~signal].mean())
    assert scores["test_pred"].shape == (32, 120) and scores["test_rows"][0] == 128
    assert json.loads((tmp_path / "scores.json").read_text())["candidates"][0]["layer"] == 0


def test_sweep_and_ensemble(synthetic, tmp_path):
    outs = [tmp_path / f"n{n}-s{s}.npz" for n in (12, 40) for s in (0, 1)]
    summaries = fit_vision_sweep(
        sizes=[12, 40], seeds=[0, 1], out_npzs=outs, feature_dir=synthetic["features"],
        subject=SUBJECT, fmri_files=synthetic["fmri"], layers=[1, 3], pooling=[1, 4],
        alphas=ALPHAS, test_fraction=0.2, backend="torch",
    )  # fmt: skip
    assert [s["n_train_images"] for s in summaries] == [12, 12, 40, 40]
    rows = [np.load(o)["train_rows"] for o in outs]
    assert not np.array_equal(rows[0], rows[1])  # one subset per seed ...
    assert all(np.array_equal(np.load(o)["test_rows"], np.arange(128, 160)) for o in outs)
    # ... always scored on the same held-out images, and more images predict better
    assert np.mean([s["mean_test_r"] for s in summaries[2:]]) > np.mean(
        [s["mean_test_r"] for s in summaries[:2]]
    )
    members = {}
    for name, layers in (("a", [1]), ("b", [3])):
        members[name] = tmp_path / f"{name}.npz"
        fit_vision_selection(
            feature_dir=synthetic["features"], subject=SUBJECT, fmri_files=synthetic["fmri"],
            layers=layers, pooling=[1, 4], alphas=ALPHAS, test_fraction=0.2, backend="torch",
            save_predictions=True, out_npz=members[name],
        )  # fmt: skip
    summary = fit_vision_ensemble(
        score_files=members, subject=SUBJECT, fmri_files=synthetic["fmri"],
        out_npz=tmp_path / "ens.npz",
    )  # fmt: skip
    mean_pred = (np.load(members["a"])["test_pred"] + np.load(members["b"])["test_pred"]) / 2
    Y = np.concatenate([np.load(synthetic["fmri"][h])[128:] for h in ("lh", "rh")], axis=1)
    expected = [np.corrcoef(mean_pred[:, v], Y[:, v])[0, 1] for v in range(Y.shape[1])]
    np.testing.assert_allclose(np.load(tmp_path / "ens.npz")["test_r"], expected, atol=1e-5)
    assert summary["members"] == ["a", "b"]
    with pytest.raises(DataError, match="no test predictions"):
        fit_vision_ensemble(
            score_files={"x": outs[0], "y": outs[1]}, subject=SUBJECT,
            fmri_files=synthetic["fmri"], out_npz=tmp_path / "bad.npz",
        )  # fmt: skip


def test_feature_rows_must_match_the_fmri(synthetic, tmp_path):
    short = tmp_path / "lh.npy"
    np.save(short, np.load(synthetic["fmri"]["lh"])[:150])
    with pytest.raises(
        DataError, match=rf"{SUBJECT} lh: 160 images in image set .* but 150 fMRI rows"
    ):
        _fit(synthetic, tmp_path / "x.npz", fmri_files={"lh": short})
