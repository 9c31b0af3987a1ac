"""Tests of fmriscaling.encoding.ridge against closed forms, brute force and himalaya."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from himalaya.backend import get_backend
from himalaya.backend import numpy as numpy_backend
from scipy.stats import spearmanr

from fmriscaling._utils import DataError
from fmriscaling.encoding import backend as backend_module
from fmriscaling.encoding import eigen as eigen_module
from fmriscaling.encoding import ridge as ridge_module
from fmriscaling.encoding.backend import resolve_score_dtype, using_backend
from fmriscaling.encoding.folds import bootstrap_chunk_folds, default_n_chunks, story_folds
from fmriscaling.encoding.ridge import alphas_from_companion, fit_ridge_cv

BACKENDS = ["numpy", "torch", pytest.param("torch_cuda", marks=pytest.mark.gpu)]
SHAPES = {"primal": (150, 40), "dual": (60, 150)}


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


def _data(rng, n, p, n_voxels=12, n_test=50, noise=1.0):
    X = rng.standard_normal((n + n_test, p))
    W = rng.standard_normal((p, n_voxels)) / np.sqrt(p)
    Y = X @ W + noise * rng.standard_normal((n + n_test, n_voxels))
    X, Y = X.astype(np.float32), Y.astype(np.float32)
    return X[:n], Y[:n], X[n:], Y[n:]


def _ridge64(X, Y, alpha):
    X, Y = X.astype(np.float64), Y.astype(np.float64)
    return np.linalg.solve(X.T @ X + alpha * np.eye(X.shape[1]), X.T @ Y)


def _corr(a, b):
    a = a - a.mean(0)
    b = b - b.mean(0)
    return (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0))


def _brute_force_cv(X, Y, alphas, folds):
    """(n_alphas, n_voxels) mean validation correlation, float64 closed form per fold/alpha."""
    scores = np.zeros((len(alphas), Y.shape[1]))
    for train, val in folds:
        for i, alpha in enumerate(alphas):
            W = _ridge64(X[train], Y[train], alpha)
            scores[i] += _corr(X[val].astype(np.float64) @ W, Y[val].astype(np.float64))
    return scores / len(folds)


def _equal_story_folds(n, n_stories=6, n_folds=3):
    lengths = [n // n_stories] * n_stories
    lengths[-1] += n - sum(lengths)
    return story_folds(lengths, n_folds=n_folds)


@pytest.mark.parametrize("form", ["primal", "dual"])
def test_fixed_alpha_equals_closed_form(rng, backend, form):
    n, p = SHAPES[form]
    X, Y, X_test, Y_test = _data(rng, n, p)
    alpha = 30.0
    res = fit_ridge_cv(
        X,
        Y,
        alphas=[alpha],
        folds=None,
        fixed_alpha=alpha,
        X_test=X_test,
        Y_test=Y_test,
        backend=backend,
        return_weights=True,
        return_test_pred=True,
    )
    W = _ridge64(X, Y, alpha)
    assert res.solver == form
    assert res.backend == backend
    assert res.weights.shape == (p, Y.shape[1])
    np.testing.assert_allclose(res.weights, W, atol=2e-4 * np.abs(W).max())
    pred = X_test.astype(np.float64) @ W
    np.testing.assert_allclose(res.test_pred, pred, atol=2e-4 * np.abs(pred).max())
    np.testing.assert_allclose(res.test_r, _corr(pred, Y_test), atol=1e-4)
    np.testing.assert_array_equal(res.alphas, np.float32(alpha))
    assert res.cv_scores is None and res.oof_pred is None


def test_primal_and_dual_agree(rng, backend):
    X, Y, X_test, Y_test = _data(rng, 90, 85, n_voxels=10)
    folds = _equal_story_folds(90)
    alphas = np.logspace(0, 4, 9)
    kwargs = dict(
        alphas=alphas,
        folds=folds,
        X_test=X_test,
        Y_test=Y_test,
        backend=backend,
        score_dtype="float32",  # exact agreement: not the default auto, bfloat16 on AMX CPUs
    )
    primal = fit_ridge_cv(X, Y, solver="primal", return_weights=True, **kwargs)
    dual = fit_ridge_cv(X, Y, solver="dual", return_weights=True, **kwargs)
    assert (primal.solver, dual.solver) == ("primal", "dual")
    np.testing.assert_allclose(primal.cv_scores_all, dual.cv_scores_all, atol=1e-4)
    np.testing.assert_array_equal(primal.alphas, dual.alphas)
    np.testing.assert_allclose(primal.weights, dual.weights, atol=1e-4 * np.abs(dual.weights).max())
    np.testing.assert_allclose(primal.test_r, dual.test_r, atol=1e-4)


@pytest.mark.parametrize("form", ["primal", "dual"])
def test_cv_matches_brute_force_and_himalaya(rng, backend, form):
    n, p = SHAPES[form]
    X, Y, X_test, Y_test = _data(rng, n, p, n_voxels=15, noise=2.0)
    folds = _equal_story_folds(n)
    alphas = np.logspace(0, 5, 11)
    kwargs = dict(alphas=alphas, folds=folds, X_test=X_test, Y_test=Y_test, backend=backend)
    fast = fit_ridge_cv(X, Y, score_dtype="float32", **kwargs)
    reference = fit_ridge_cv(X, Y, solver_impl="himalaya", **kwargs)

    brute = _brute_force_cv(X, Y, alphas, folds)
    np.testing.assert_allclose(fast.cv_scores_all, brute, atol=1e-4)
    # alphas must agree wherever the best alpha wins by more than float32 noise
    top2 = np.sort(brute, axis=0)[-2:]
    clear = top2[1] - top2[0] > 1e-4
    assert clear.sum() >= 5
    np.testing.assert_allclose(fast.alphas[clear], alphas[brute.argmax(0)][clear], rtol=1e-5)
    np.testing.assert_allclose(fast.alphas[clear], reference.alphas[clear], rtol=1e-5)
    np.testing.assert_allclose(fast.cv_scores, reference.cv_scores, atol=1e-4)
    np.testing.assert_allclose(fast.cv_scores, brute.max(0), atol=1e-4)
    np.testing.assert_allclose(fast.test_r, reference.test_r, atol=1e-4)


def test_synthetic_reaches_ceiling_and_noisy_voxels_get_larger_alphas(rng):
    n, n_test, p, n_voxels = 2000, 1000, 100, 40
    X = rng.standard_normal((n + n_test, p))
    W = rng.standard_normal((p, n_voxels)) / np.sqrt(p)
    noise_sd = np.exp(rng.uniform(np.log(0.3), np.log(4.0), n_voxels))
    signal = X @ W
    Y = signal + noise_sd * rng.standard_normal((n + n_test, n_voxels))
    X, Y = X.astype(np.float32), Y.astype(np.float32)
    res = fit_ridge_cv(
        X[:n],
        Y[:n],
        alphas=np.logspace(-1, 5, 13),
        folds=_equal_story_folds(n, n_stories=10, n_folds=5),
        X_test=X[n:],
        Y_test=Y[n:],
        backend="torch",
    )
    # the best possible test r: the noiseless signal's correlation with the data
    ceiling = _corr(signal[n:], Y[n:].astype(np.float64))
    assert np.all(res.test_r <= ceiling + 0.01)
    # the gap left is estimation error (p / n = 0.05), largest for the noisiest voxels
    assert np.mean(ceiling - res.test_r) < 0.03
    # and CV picks nearly the best alpha of the grid in hindsight (oracle on the test set)
    oracle = np.max(
        [_corr(X[n:] @ _ridge64(X[:n], Y[:n], a), Y[n:]) for a in np.logspace(-1, 5, 13)], axis=0
    )
    assert np.all(res.test_r >= oracle - 0.02)
    assert spearmanr(noise_sd, res.alphas).statistic > 0.5


def test_story_folds_hold_out_whole_stories(rng):
    lengths = rng.integers(20, 120, size=11).tolist()
    folds = story_folds(lengths, n_folds=4)
    assert len(folds) == 4
    n = sum(lengths)
    story_of_tr = np.repeat(np.arange(len(lengths)), lengths)
    seen = np.zeros(n, dtype=int)
    for train, val in folds:
        np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(n))
        held = np.unique(story_of_tr[val])
        assert not np.isin(story_of_tr[train], held).any(), "a story was split"
        assert np.all(np.diff(held) == 1), "stories of a fold are contiguous"
        seen[val] += 1
    np.testing.assert_array_equal(seen, 1)
    sizes = [len(val) for _, val in folds]
    assert max(sizes) < 2 * min(sizes)


def test_story_folds_never_leave_a_fold_empty():
    folds = story_folds([60, 60, 60, 20], n_folds=4)
    assert [len(val) for _, val in folds] == [60, 60, 60, 20]


def test_one_story_training_set_is_a_clear_error():
    with pytest.raises(DataError, match=r"at least 2 training stories.*bootstrap"):
        story_folds([300], n_folds=5)


def test_bootstrap_chunk_folds_hold_out_contiguous_chunks():
    folds = bootstrap_chunk_folds(1000, n_boots=4, chunk_len=40, n_chunks=5, random_state=0)
    again = bootstrap_chunk_folds(1000, n_boots=4, chunk_len=40, n_chunks=5, random_state=0)
    assert len(folds) == 4
    for (train, val), (_, val_again) in zip(folds, again, strict=True):
        np.testing.assert_array_equal(val, val_again)
        assert len(val) == 200 and len(train) == 800
        chunks = val.reshape(5, 40)
        assert np.all(np.diff(chunks, axis=1) == 1) and np.all(chunks[:, 0] % 40 == 0)
    with pytest.raises(DataError, match="chunks"):
        bootstrap_chunk_folds(100, n_boots=2, chunk_len=40, n_chunks=3, random_state=0)


@pytest.mark.parametrize(("n_samples", "chunk_len"), [(27000, 40), (1000, 40), (660, 40), (95, 10)])
def test_default_bootstrap_holds_out_a_fifth_at_every_size(n_samples, chunk_len):
    n_chunks = default_n_chunks(n_samples, chunk_len)
    folds = bootstrap_chunk_folds(
        n_samples, n_boots=2, chunk_len=chunk_len, n_chunks=n_chunks, random_state=0
    )
    held_out = len(folds[0][1]) / n_samples
    # ceil: at least a fifth, and less than one chunk more
    assert 0.2 <= held_out < 0.2 + chunk_len / n_samples


@pytest.mark.parametrize("form", ["primal", "dual"])
def test_oof_predictions_equal_manual_refit(rng, backend, form):
    n, p = SHAPES[form]
    X, Y, _, _ = _data(rng, n, p, n_voxels=8, noise=1.5)
    folds = _equal_story_folds(n)
    res = fit_ridge_cv(
        X, Y, alphas=np.logspace(0, 4, 5), folds=folds, backend=backend, return_oof_pred=True
    )
    expected = np.empty(Y.shape)
    for train, val in folds:
        for v in range(Y.shape[1]):
            w = _ridge64(X[train], Y[train, v : v + 1], res.alphas[v])
            expected[val, v] = (X[val].astype(np.float64) @ w)[:, 0]
    np.testing.assert_allclose(res.oof_pred, expected, atol=2e-4 * np.abs(expected).max())


def test_oof_with_bootstrap_folds_marks_never_held_out_trs(rng):
    X, Y, _, _ = _data(rng, 130, 20, n_voxels=3)
    folds = bootstrap_chunk_folds(130, n_boots=2, chunk_len=10, n_chunks=2, random_state=1)
    res = fit_ridge_cv(X, Y, alphas=[1.0, 10.0], folds=folds, backend="numpy", return_oof_pred=True)
    held = np.zeros(130, dtype=bool)
    for _, val in folds:
        held[val] = True
    assert np.isfinite(res.oof_pred[held]).all() and np.isnan(res.oof_pred[~held]).all()


@pytest.mark.parametrize("where", ["X", "Y", "X_test"])
def test_nan_inputs_are_a_clear_error(rng, where):
    X, Y, X_test, Y_test = _data(rng, 60, 10)
    {"X": X, "Y": Y, "X_test": X_test}[where][3, 2] = np.nan
    with pytest.raises(DataError, match=rf"^{where} contains NaN"):
        fit_ridge_cv(X, Y, alphas=[1.0], folds=_equal_story_folds(60), X_test=X_test, Y_test=Y_test)


def test_overlapping_folds_are_an_error(rng):
    X, Y, _, _ = _data(rng, 40, 5)
    with pytest.raises(DataError, match="overlap"):
        fit_ridge_cv(X, Y, alphas=[1.0], folds=[(np.arange(30), np.arange(25, 40))])


@pytest.mark.parametrize("form", ["primal", "dual"])
def test_batching_does_not_change_results(rng, backend, form):
    n, p = SHAPES[form]
    X, Y, X_test, Y_test = _data(rng, n, p, n_voxels=13)
    kwargs = dict(
        alphas=np.logspace(0, 4, 6),
        folds=_equal_story_folds(n),
        X_test=X_test,
        Y_test=Y_test,
        backend=backend,
        return_weights=True,
        return_oof_pred=True,
    )
    whole = fit_ridge_cv(X, Y, n_targets_batch="auto", **kwargs)
    batched = fit_ridge_cv(X, Y, n_targets_batch=3, **kwargs)
    assert whole.batch_size == 13 and batched.batch_size == 3
    for name in ("alphas", "cv_scores_all", "test_r", "weights", "oof_pred"):
        np.testing.assert_allclose(getattr(batched, name), getattr(whole, name), atol=1e-5)


def test_batches_report_progress(rng, caplog):
    X, Y, _, _ = _data(rng, *SHAPES["primal"], n_voxels=13)
    kwargs = dict(alphas=[1.0, 10.0], folds=_equal_story_folds(150), backend="numpy")
    with caplog.at_level("INFO", logger="fmriscaling.encoding.ridge"):
        fit_ridge_cv(X, Y, n_targets_batch=5, **kwargs)
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("voxels ")]
    assert [m.split(" in ")[0] for m in progress] == [
        "voxels 5/13 (38%)",
        "voxels 10/13 (77%)",
        "voxels 13/13 (100%)",
    ]
    assert any(
        r.getMessage().startswith("4 eigendecompositions of 40 x 40") for r in caplog.records
    )
    caplog.clear()
    with caplog.at_level("INFO", logger="fmriscaling.encoding.ridge"):
        fit_ridge_cv(X, Y, n_targets_batch=13, **kwargs)  # one batch: no progress lines
    assert not [r for r in caplog.records if r.getMessage().startswith("voxels ")]


@pytest.mark.parametrize("score_block", [None, 4])
@pytest.mark.parametrize("form", ["primal", "dual"])
def test_scoring_blocks_and_alpha_chunks_do_not_change_results(rng, monkeypatch, form, score_block):
    # None: whole batches with alphas in chunks of 2 (the GPU layout); 4: CPU voxel blocks
    n, p = SHAPES[form]
    X, Y, _, _ = _data(rng, n, p, n_voxels=13)
    kwargs = dict(alphas=np.logspace(0, 4, 5), folds=_equal_story_folds(n), backend="numpy")
    reference = fit_ridge_cv(X, Y, **kwargs)  # 13 voxels: one block, one chunk
    monkeypatch.setattr(ridge_module, "_score_block", lambda name: score_block)
    monkeypatch.setattr(eigen_module, "_ALPHA_CHUNK", 2)
    res = fit_ridge_cv(X, Y, **kwargs)
    np.testing.assert_allclose(res.cv_scores_all, reference.cv_scores_all, atol=1e-6)
    np.testing.assert_array_equal(res.alphas, reference.alphas)


@pytest.mark.parametrize("form", ["primal", "dual"])
def test_test_predictions_grouped_by_alpha_equal_the_refit(rng, backend, monkeypatch, form):
    # many voxels and few test TRs: one map per distinct alpha is cheaper than projecting Y
    n, p = SHAPES[form]
    X, Y, X_test, Y_test = _data(rng, n, p, n_voxels=400, n_test=5)
    kwargs = dict(
        alphas=np.logspace(-1, 4, 6),
        folds=_equal_story_folds(n),
        X_test=X_test,
        Y_test=Y_test,
        backend=backend,
        return_test_pred=True,
    )
    calls = []
    grouped = eigen_module._RidgeProblem.test_predictions_by_alpha

    def spy(self, *args):
        calls.append(args[-1].size)
        return grouped(self, *args)

    monkeypatch.setattr(eigen_module._RidgeProblem, "test_predictions_by_alpha", spy)
    res = fit_ridge_cv(X, Y, **kwargs)
    assert calls == [400] and np.unique(res.alphas).size > 1
    # weights force the per-voxel refit; its predictions are X_test @ weights
    refit = fit_ridge_cv(X, Y, return_weights=True, **kwargs)
    assert calls == [400]
    np.testing.assert_array_equal(res.alphas, refit.alphas)
    np.testing.assert_allclose(res.test_pred, refit.test_pred, atol=1e-4)
    np.testing.assert_allclose(res.test_pred, X_test @ refit.weights, atol=1e-4)
    np.testing.assert_allclose(res.test_r, refit.test_r, atol=1e-5)


def test_out_of_memory_halves_the_batch(rng, monkeypatch):
    X, Y, _, _ = _data(rng, 60, 10, n_voxels=10)
    folds = _equal_story_folds(60)
    expected = fit_ridge_cv(X, Y, alphas=[1.0, 100.0], folds=folds, backend="numpy")
    real_scores = ridge_module._cv_scores_fold

    def scores_or_oom(backend, eig, Z, Y_val, inv_shift, **kwargs):
        if Z.shape[1] > 3:
            raise MemoryError("simulated out of memory")
        return real_scores(backend, eig, Z, Y_val, inv_shift, **kwargs)

    monkeypatch.setattr(ridge_module, "_cv_scores_fold", scores_or_oom)
    res = fit_ridge_cv(X, Y, alphas=[1.0, 100.0], folds=folds, backend="numpy", n_targets_batch=10)
    assert res.batch_size == 2
    np.testing.assert_allclose(res.cv_scores_all, expected.cv_scores_all, atol=1e-6)


@pytest.mark.parametrize(
    "error",
    [
        MemoryError("Unable to allocate 9.09 TiB for an array"),
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
            "memory: you tried to allocate 10000000000000 bytes. Error code 12"
        ),
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    ],
)
def test_retry_after_out_of_memory_mid_oof_counts_each_fold_once(rng, monkeypatch, error):
    # the error strikes after two folds' OOF predictions were added: the retry must not add twice
    X, Y, _, _ = _data(rng, 60, 10, n_voxels=6)
    kwargs = dict(alphas=[1.0, 100.0], folds=_equal_story_folds(60), return_oof_pred=True)
    expected = fit_ridge_cv(X, Y, backend="numpy", **kwargs)
    bk = numpy_backend
    real_to_numpy, calls = bk.to_numpy, []

    def fails_once(array):
        calls.append(1)
        if len(calls) == 4:  # 1: CV scores, 2-3: OOF folds 1-2, 4: OOF fold 3
            raise error
        return real_to_numpy(array)

    monkeypatch.setattr(bk, "to_numpy", fails_once)
    res = fit_ridge_cv(X, Y, backend="numpy", n_targets_batch=6, **kwargs)
    assert res.batch_size == 3 and len(calls) > 4
    np.testing.assert_allclose(res.oof_pred, expected.oof_pred, atol=1e-6)


def test_other_runtime_errors_are_not_retried(rng, monkeypatch):
    X, Y, _, _ = _data(rng, 60, 10, n_voxels=6)

    def broken(*args, **kwargs):
        raise RuntimeError("expected scalar type Float but found Half")

    monkeypatch.setattr(ridge_module, "_cv_scores_fold", broken)
    with pytest.raises(RuntimeError, match="expected scalar type"):
        fit_ridge_cv(X, Y, alphas=[1.0], folds=_equal_story_folds(60), backend="numpy")


def test_constant_voxel_scores_zero_not_nan(rng):
    X, Y, X_test, Y_test = _data(rng, 60, 10, n_voxels=3)
    Y[:, 1] = 0.0
    Y_test[:, 1] = 0.0
    res = fit_ridge_cv(
        X, Y, alphas=[1.0, 10.0], folds=_equal_story_folds(60), X_test=X_test, Y_test=Y_test
    )
    assert res.cv_scores[1] == 0 and res.test_r[1] == 0
    assert np.isfinite(res.cv_scores_all).all()


def test_alphas_from_companion():
    np.testing.assert_allclose(
        alphas_from_companion(np.logspace(1, 4, 15)), np.logspace(2, 8, 15), rtol=1e-12
    )


def test_resolve_backend_auto_picks_cuda_only_when_visible():
    import torch

    with using_backend("auto") as (module, name):
        assert name == ("torch_cuda" if torch.cuda.is_available() else "torch")
        assert module.name == name


def test_using_backend_restores_the_callers_backend_also_on_error():
    before = get_backend().name
    with pytest.raises(KeyError, match="inside the block"):
        with using_backend("torch") as (module, name):
            assert (module.name, name, get_backend().name) == ("torch", "torch", "torch")
            with using_backend("numpy"):
                assert get_backend().name == "numpy"
            assert get_backend().name == "torch"
            raise KeyError("inside the block")
    assert get_backend().name == before


def test_serial_reductions_run_torch_cpu_in_one_thread_and_restore_the_count():
    torch = pytest.importorskip("torch")
    from himalaya.backend import torch as torch_backend

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with backend_module.serial_reductions(torch_backend):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(KeyError, match="inside"):
            with backend_module.serial_reductions(torch_backend):
                raise KeyError("inside")
        assert torch.get_num_threads() == 2
        with backend_module.serial_reductions(numpy_backend):  # numpy's sums are serial anyway
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("score_dtype", ["float32", "bfloat16"])
def test_cv_sums_run_in_one_thread_and_the_gemms_in_all(rng, monkeypatch, score_dtype):
    """The per-voxel sums of the CV scores and of test r run serially (bit-reproducible from
    process to process, see serial_reductions); the GEMMs keep the fit's threads."""
    torch = pytest.importorskip("torch")
    from himalaya.backend import torch as torch_backend

    seen = {"sum": set(), "matmul": set()}
    for name in seen:
        original = getattr(torch_backend, name)

        def spy(*args, _original=original, _name=name, **kwargs):
            seen[_name].add(torch.get_num_threads())
            return _original(*args, **kwargs)

        monkeypatch.setattr(torch_backend, name, spy)
    X, Y, X_test, Y_test = _data(rng, 150, 40)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        res = fit_ridge_cv(
            X, Y, alphas=np.logspace(-1, 3, 5), folds=_equal_story_folds(150), X_test=X_test,
            Y_test=Y_test, backend="torch", score_dtype=score_dtype,
        )  # fmt: skip
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert seen == {"sum": {1}, "matmul": {2}}
    assert np.isfinite(res.test_r).all()


@pytest.mark.parametrize("solver_impl", ["fast", "himalaya"])
@pytest.mark.parametrize("caller", ["numpy", "torch"])
def test_fit_leaves_the_callers_backend_set(rng, caller, solver_impl):
    # himalaya's backend is process-wide: a fit on another backend puts the caller's back
    X, Y, _, _ = _data(rng, 60, 10)
    fit_backend = {"numpy": "torch", "torch": "numpy"}[caller]
    kwargs = dict(alphas=[1.0, 10.0], folds=_equal_story_folds(60), solver_impl=solver_impl)
    with using_backend(caller):
        res = fit_ridge_cv(X, Y, backend=fit_backend, **kwargs)
        assert get_backend().name == caller
    assert res.backend == fit_backend and np.isfinite(res.cv_scores).all()


@pytest.mark.parametrize("failure", ["mid_fit", "score_dtype"])
@pytest.mark.parametrize("caller", ["numpy", "torch"])
def test_fit_that_raises_leaves_the_callers_backend_set(rng, monkeypatch, caller, failure):
    X, Y, _, _ = _data(rng, 60, 10, n_voxels=6)
    fit_backend = {"numpy": "torch", "torch": "numpy"}[caller]
    seen = []

    def broken(*args, **kwargs):
        seen.append(get_backend().name)
        raise RuntimeError("expected scalar type Float but found Half")

    monkeypatch.setattr(ridge_module, "_cv_scores_fold", broken)
    kwargs = dict(alphas=[1.0], folds=_equal_story_folds(60), backend=fit_backend)
    with using_backend(caller):
        if failure == "mid_fit":
            with pytest.raises(RuntimeError, match="expected scalar type"):
                fit_ridge_cv(X, Y, **kwargs)
            assert seen == [fit_backend]  # it failed inside the fit, on the fit's backend
        else:  # after the backend was set: bfloat16 scoring on numpy is refused
            kwargs["backend"] = "numpy"
            with pytest.raises(ValueError, match="needs the torch"):
                fit_ridge_cv(X, Y, score_dtype="bfloat16", **kwargs)
        assert get_backend().name == caller


@pytest.mark.parametrize("backend", ["torch", pytest.param("torch_cuda", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("form", ["primal", "dual"])
def test_bfloat16_scoring_picks_the_float32_alphas_up_to_near_ties(rng, backend, form):
    n, p = {"primal": (600, 200), "dual": (360, 480)}[form]
    n_voxels, n_test = 300, 200
    X = rng.standard_normal((n + n_test, p))
    W = rng.standard_normal((p, n_voxels)) / np.sqrt(p)
    noise_sd = np.exp(rng.uniform(np.log(0.3), np.log(4.0), n_voxels))
    Y = X @ W + noise_sd * rng.standard_normal((n + n_test, n_voxels))
    X, Y = X.astype(np.float32), Y.astype(np.float32)
    # one decade per step: ties within bfloat16 noise (~1e-3 in r) are rare but not absent
    alphas = np.logspace(-1, 5, 7)
    kwargs = dict(
        alphas=alphas,
        folds=_equal_story_folds(n),
        X_test=X[n:],
        Y_test=Y[n:],
        backend=backend,
        return_oof_pred=True,
    )
    exact = fit_ridge_cv(X[:n], Y[:n], score_dtype="float32", **kwargs)
    low = fit_ridge_cv(X[:n], Y[:n], score_dtype="bfloat16", **kwargs)
    assert (exact.score_dtype, low.score_dtype) == ("float32", "bfloat16")
    voxels = np.arange(n_voxels)
    i_exact = np.searchsorted(alphas.astype(np.float32), exact.alphas)
    i_low = np.searchsorted(alphas.astype(np.float32), low.alphas)
    same = i_exact == i_low
    assert same.mean() >= 0.9
    # where bfloat16 picks another alpha, the two are tied in float32 CV score: the gap is within
    # the bfloat16 scoring error (~1e-3 in r), far below the score range over the grid
    gap = exact.cv_scores_all[i_exact, voxels] - exact.cv_scores_all[i_low, voxels]
    spread = exact.cv_scores_all.max(0) - exact.cv_scores_all.min(0)
    assert np.all(gap >= 0) and np.all(gap < 1e-3)
    assert np.median(spread[~same]) > 10 * gap.max()
    assert abs(low.test_r.mean() - exact.test_r.mean()) < 2e-3
    # the reported CV score is the bfloat16-scored one of the chosen alpha, close to float32
    np.testing.assert_array_equal(low.cv_scores, low.cv_scores_all[i_low, voxels])
    np.testing.assert_allclose(low.cv_scores_all, exact.cv_scores_all, atol=2e-3)
    assert np.abs(low.cv_scores_all - exact.cv_scores_all).max() > 0  # it did score in bf16
    # fit and predictions stay float32: identical wherever the alpha is
    np.testing.assert_allclose(low.test_r[same], exact.test_r[same], atol=1e-6)
    np.testing.assert_allclose(low.oof_pred[:, same], exact.oof_pred[:, same], atol=1e-5)


def test_bfloat16_scoring_needs_a_torch_backend(rng):
    X, Y, _, _ = _data(rng, 60, 10)
    kwargs = dict(alphas=[1.0, 10.0], folds=_equal_story_folds(60))
    with pytest.raises(ValueError, match=r"score_dtype='bfloat16' needs the torch"):
        fit_ridge_cv(X, Y, backend="numpy", score_dtype="bfloat16", **kwargs)
    with pytest.raises(ValueError, match=r"score_dtype='float16'"):
        fit_ridge_cv(X, Y, backend="numpy", score_dtype="float16", **kwargs)
    res = fit_ridge_cv(X, Y, backend="numpy", score_dtype="auto", **kwargs)
    assert res.score_dtype == "float32"


@pytest.mark.parametrize("flags", [["amx_bf16", "avx512_bf16"], ["avx512_bf16"], ["amx_bf16"]])
def test_score_dtype_auto_on_cpu_follows_its_bf16_instructions(monkeypatch, caplog, flags):
    """AMX or AVX512-BF16 (a Zen 4 has the second only) resolve to bfloat16; neither, float32;
    the log names the instruction sets behind the choice."""
    import torch

    assert resolve_score_dtype("auto", "numpy") == "float32"
    assert resolve_score_dtype("float32", "torch") == "float32"
    assert resolve_score_dtype("bfloat16", "torch") == "bfloat16"
    monkeypatch.setattr(backend_module, "_cpu_bf16_flags", lambda: [])
    assert resolve_score_dtype("auto", "torch") == "float32"
    monkeypatch.setattr(backend_module, "_cpu_bf16_flags", lambda: flags)
    fast = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    with caplog.at_level(logging.INFO, logger=backend_module.__name__):
        assert resolve_score_dtype("auto", "torch") == ("bfloat16" if fast else "float32")
    assert f"CPU bfloat16 instructions: {', '.join(flags)}" in caplog.text


def test_the_cpu_flags_are_read_from_cpuinfo(monkeypatch, tmp_path):
    import builtins

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512vl\n")
    real_open = builtins.open
    monkeypatch.setattr(
        builtins,
        "open",
        lambda path, *a, **k: real_open(cpuinfo if path == "/proc/cpuinfo" else path, *a, **k),
    )
    assert backend_module._cpu_bf16_flags() == ["avx512_bf16"]
