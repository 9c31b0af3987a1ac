"""Voxelwise ridge regression with per-voxel alphas chosen by time-respecting CV.

`fit_ridge_cv` checks the inputs, runs on the himalaya backend it is given and leaves the caller's
backend as it was (`fmriscaling.encoding.backend.using_backend`), sets the eigen-problems up once
(`fmriscaling.encoding.eigen`: one Gram, one ``eigh`` per fold and one for the refit) and sends
the voxels through them in batches sized to the free device memory, halving a batch that runs
out of memory. Per batch: the CV correlations of the whole alpha grid in every fold, each
voxel's best alpha, the optional out-of-fold predictions, and the refit (weights, test
predictions, test r) at each voxel's own alpha. ``solver_impl="himalaya"`` runs himalaya's own
estimators instead, as a cross-check. The folds come from `fmriscaling.encoding.folds`.

The targets may be an array or a target source (`fmriscaling.encoding.targets`) that hands out
column blocks: several subjects side by side, each read from its prepared-responses file batch
by batch. A batch never straddles two of a source's segments (subjects), so every subject's
voxels go through the batches a fit of that subject alone would give them.

Scoring precision (``score_dtype``): with ``"float32"`` the whole alpha search is float32. With
``"bfloat16"`` (torch backends only) the alpha search runs on bfloat16 inputs with float32
accumulation inside the GEMMs: the per-fold projections ``Z = Vᵀ Y_train`` (from bfloat16 copies
of the eigenvectors and the targets) and the prediction GEMMs (the shrunk maps formed in float32,
then rounded); the predictions are cast to float32 before the sums. On a CPU with AMX-BF16 those
GEMMs run ~3-6x the float32 rate, which makes a CPU fit ~2.5x faster. The rounding (relative
~2⁻⁹ per input, unbiased) moves CV correlations by ~1e-4 (at most ~1e-3), so it can only change
which alpha wins a near-tie. The Gram, the ``eigh`` calls, the refit (weights, test predictions,
test r) and the OOF predictions stay float32. ``cv_scores`` and ``cv_scores_all`` are the scores
the alphas were chosen from, i.e. bfloat16-scored in that mode.

Alpha convention: ``alphas`` are himalaya / scikit-learn λ (``‖XW − Y‖² + λ‖W‖²``). The companion
code of Antonello et al. shrinks singular values by ``S / (S² + a²)``, so its ``a`` is ``√λ``: use
`alphas_from_companion` to convert (companion ``logspace(1, 4)`` is ``logspace(2, 8)`` here).

No intercept is fitted: X and Y are expected z-scored (per story) beforehand, as in the companion
code. Pearson r ignores offsets in the validation and test data.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._utils import DataError
from .backend import (
    SCORE_DTYPES,
    _empty_device_cache,
    _free_memory_bytes,
    _is_out_of_memory,
    _PeakMemory,
    resolve_score_dtype,
    serial_reductions,
    using_backend,
)
from .eigen import _cv_scores_fold, _RidgeProblem
from .folds import Fold, _check_folds
from .targets import ArrayColumns

logger = logging.getLogger(__name__)

__all__ = ["RidgeResult", "alphas_from_companion", "fit_ridge_cv"]

# voxels per block when scoring on a CPU: one block's predictions of all alphas stay in cache
_CPU_SCORE_BLOCK = 512


@dataclass
class RidgeResult:
    """Outcome of `fit_ridge_cv`.

    Attributes
    ----------
    alphas : array of shape (n_voxels,)
        Ridge parameter (himalaya λ convention) chosen per voxel.
    cv_scores : array of shape (n_voxels,) or None
        Mean CV correlation over folds at the chosen alpha (None with ``fixed_alpha``).
    cv_scores_all : array of shape (n_alphas, n_voxels) or None
        Mean CV correlation over folds for every alpha.
    test_r : array of shape (n_voxels,) or None
        Pearson r between test predictions and ``Y_test``.
    weights : array of shape (n_features, n_voxels) or None
        Refit weights on all training data, each voxel at its own alpha.
    test_pred : array of shape (n_test, n_voxels) or None
        Predictions of the refit model on ``X_test``.
    oof_pred : array of shape (n_samples, n_voxels) or None
        Out-of-fold predictions on the training data at each voxel's chosen alpha; each TR is
        predicted by the fold(s) that held it out (averaged when bootstrap folds overlap, NaN
        where no fold held it out).
    solver : {"primal", "dual"}
    backend : str
        himalaya backend name.
    fit_seconds : float
        Wall time of the whole fit.
    peak_memory_bytes : int
        Peak GPU memory allocated (torch_cuda) or peak resident memory of the process (CPU).
    batch_size : int
        Voxels per batch in the last batch loop (after any out-of-memory halving).
    score_dtype : {"float32", "bfloat16"}
        Precision of the alpha search actually used (``"auto"`` resolved). With ``"bfloat16"``,
        ``cv_scores`` and ``cv_scores_all`` are the bfloat16-scored values the alphas were chosen
        from (within ~1e-3 of float32).
    """

    alphas: np.ndarray
    cv_scores: np.ndarray | None
    cv_scores_all: np.ndarray | None
    test_r: np.ndarray | None
    weights: np.ndarray | None
    test_pred: np.ndarray | None
    oof_pred: np.ndarray | None
    solver: str
    backend: str
    fit_seconds: float
    peak_memory_bytes: int
    batch_size: int = 0
    score_dtype: str = "float32"


def alphas_from_companion(companion_alphas: Any) -> np.ndarray:
    """Convert companion-code ridge parameters to himalaya / scikit-learn λ.

    The companion code (Huth lab ``ridge.py``) shrinks each singular value ``S`` of the stimulus by
    ``S / (S² + a²)``, i.e. it solves ridge with penalty ``a²``; himalaya's ``alpha`` is the
    penalty itself. So ``λ = a²``: companion ``logspace(1, 4, 15)`` is ``logspace(2, 8, 15)`` here.

    Parameters
    ----------
    companion_alphas : array-like of shape (n_alphas,)
        Companion ``alphas`` (``a``).

    Returns
    -------
    alphas : array of shape (n_alphas,)
        ``a ** 2``, float64.
    """
    return np.asarray(companion_alphas, dtype=np.float64) ** 2


# ------------------------------------------------------------------------------ validation


def _as_host_float32(name: str, array: Any, ndim_2: bool = True) -> np.ndarray:
    """Cast once to a float32 numpy array and refuse non-finite values."""
    if hasattr(array, "detach"):  # a torch tensor
        array = array.detach().cpu().numpy()
    array = np.asarray(array, dtype=np.float32)
    if ndim_2 and array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise DataError(f"{name} must be 2-D (n_trs, n_columns), got shape {array.shape}.")
    # chunked check keeps the temporary boolean array small for 95k voxels
    step = max(1, 2**26 // max(1, array.shape[0]))
    for start in range(0, array.shape[1], step):
        block = array[:, start : start + step]
        if not np.isfinite(block).all():
            bad = np.argwhere(~np.isfinite(block))[0]
            raise DataError(
                f"{name} contains NaN or infinite values (first at row {bad[0]}, column "
                f"{bad[1] + start}); ridge would give NaN scores. Mask or impute them first."
            )
    return array


def pearson_columns(backend, pred, y):
    """Pearson r per column of (n, b) arrays; 0 where either column is constant.

    The sums run in one CPU thread (`serial_reductions`), so the same columns give the same r
    bit for bit in every process."""
    with serial_reductions(backend):
        pred_c = pred - pred.mean(0)[None]
        y_c = y - y.mean(0)[None]
        cross = backend.sum(pred_c * y_c, 0)
        denom = backend.sqrt(backend.sum(pred_c * pred_c, 0) * backend.sum(y_c * y_c, 0))
    return cross / (denom + (denom == 0))


# --------------------------------------------------------------------------------- the fit


def _score_block(backend_name: str) -> int | None:
    """Voxels per scoring block: small on CPUs (cache), whole batches on GPUs (big kernels)."""
    return None if backend_name in ("torch_cuda", "cupy") else _CPU_SCORE_BLOCK


def fit_ridge_cv(
    X: Any,
    Y: Any,
    *,
    alphas: Any,
    folds: Sequence[Fold] | None,
    X_test: Any = None,
    Y_test: Any = None,
    backend: str = "auto",
    solver: str = "auto",
    score: str = "r",
    n_targets_batch: int | str = "auto",
    return_weights: bool = False,
    return_test_pred: bool = False,
    return_oof_pred: bool = False,
    fixed_alpha: float | None = None,
    solver_impl: str = "fast",
    score_dtype: str = "auto",
) -> RidgeResult:
    """Fit voxelwise ridge with a per-voxel alpha chosen by CV correlation, then refit.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
        Training features (z-scored; no intercept is fitted).
    Y : array of shape (n_samples, n_voxels), or a target source
        Training responses, or a `fmriscaling.encoding.targets.TargetSource` of that shape that
        hands out column blocks (e.g. several subjects' prepared responses side by side, read
        from disk batch by batch). A source's ``segments`` (one per subject) are never
        straddled by a voxel batch, so each subject's voxels go through the same batches as in a
        fit of that subject alone; per-voxel alphas make the subjects independent.
    alphas : array of shape (n_alphas,)
        Ridge parameters, himalaya λ convention (see `alphas_from_companion`).
    folds : list of (train_idx, val_idx), or None
        Time-respecting CV splits, from `story_folds` or `bootstrap_chunk_folds`. May be None
        only with ``fixed_alpha`` and without ``return_oof_pred``.
    X_test : array of shape (n_test, n_features), optional
    Y_test : array of shape (n_test, n_voxels), optional
        Held-out test data; ``test_r`` needs both.
    backend : str
        himalaya backend, see `resolve_backend`. Set for this fit only: himalaya's global
        backend is left as the caller had it, also when the fit raises (`using_backend`).
    solver : {"auto", "primal", "dual"}
        ``"auto"``: primal when ``n_samples >= n_features`` else dual (kernel).
    score : {"r"}
        CV score: Pearson correlation per voxel, averaged over folds.
    n_targets_batch : int or "auto"
        Voxels per batch; ``"auto"`` sizes it from free device memory. On out-of-memory the batch
        is halved and retried.
    return_weights, return_test_pred, return_oof_pred : bool
        Also return the refit weights, the test predictions, the out-of-fold predictions.
    fixed_alpha : float, optional
        Skip the alpha search and use this alpha for every voxel.
    solver_impl : {"fast", "himalaya"}
        ``"himalaya"`` runs himalaya's ``RidgeCV`` / ``KernelRidgeCV`` instead (reference path,
        no OOF predictions and no ``cv_scores_all``).
    score_dtype : {"float32", "bfloat16", "auto"}, default "auto"
        Precision of the CV alpha search (per-fold projections and prediction GEMMs; see the
        module docstring). ``"bfloat16"`` needs the torch / torch_cuda backend (a ValueError
        otherwise); ``"auto"`` picks it where bfloat16 GEMMs are fast (see
        `resolve_score_dtype`). Only the choice of alpha can change (near-ties) and the CV scores
        move by ~1e-4; the refit, its weights, test predictions and test r, and the OOF
        predictions stay float32.

    Returns
    -------
    result : RidgeResult
    """
    start_time = time.perf_counter()
    if score != "r":
        raise ValueError(f"score={score!r}: only 'r' (Pearson correlation) is implemented.")
    if solver not in ("auto", "primal", "dual"):
        raise ValueError(f"solver={solver!r}: expected 'auto', 'primal' or 'dual'.")
    if solver_impl not in ("fast", "himalaya"):
        raise ValueError(f"solver_impl={solver_impl!r}: expected 'fast' or 'himalaya'.")
    if score_dtype not in SCORE_DTYPES:
        raise ValueError(f"score_dtype={score_dtype!r}: expected one of {SCORE_DTYPES}.")

    X = _as_host_float32("X", X)
    # a target source (subjects side by side, prepared responses on disk) is read in batches;
    # an array is checked and cast once
    Y = Y if hasattr(Y, "read") else ArrayColumns(_as_host_float32("Y", Y))
    n_samples, n_features = X.shape
    n_voxels = Y.shape[1]
    if Y.shape[0] != n_samples:
        raise DataError(f"X has {n_samples} TRs but Y has {Y.shape[0]}.")
    if (X_test is None) != (Y_test is None) and Y_test is not None:
        raise DataError("Y_test given without X_test.")
    if X_test is not None:
        X_test = _as_host_float32("X_test", X_test)
        if X_test.shape[1] != n_features:
            raise DataError(f"X_test has {X_test.shape[1]} features, X has {n_features}.")
    if Y_test is not None:
        Y_test = _as_host_float32("Y_test", Y_test)
        if Y_test.shape != (X_test.shape[0], n_voxels):
            raise DataError(
                f"Y_test shape {Y_test.shape} does not match ({X_test.shape[0]}, {n_voxels})."
            )
    alphas = np.asarray(alphas, dtype=np.float64).ravel()
    if fixed_alpha is not None:
        alphas = np.asarray([fixed_alpha], dtype=np.float64)
    if alphas.size == 0 or not np.all(np.isfinite(alphas)) or np.any(alphas <= 0):
        raise DataError(f"alphas must be positive and finite, got {alphas}.")
    if folds is None:
        if fixed_alpha is None or return_oof_pred:
            raise DataError("folds are needed to choose alphas or to make OOF predictions.")
        folds = []
    else:
        folds = _check_folds(folds, n_samples)

    if solver == "auto":
        solver = "primal" if n_samples >= n_features else "dual"
        logger.info(
            "solver: %s (%d samples %s %d features)",
            solver,
            n_samples,
            ">=" if solver == "primal" else "<",
            n_features,
        )
    with using_backend(backend) as (bk, backend_name):
        score_dtype = resolve_score_dtype(score_dtype, backend_name)
        peak = _PeakMemory(backend_name)

        if solver_impl == "himalaya":
            if return_oof_pred:
                raise ValueError("solver_impl='himalaya' does not make OOF predictions.")
            if score_dtype != "float32":
                score_dtype = "float32"  # himalaya scores in float32
                logger.info("solver_impl='himalaya' scores alphas in float32")
            Y_all = Y.read(slice(0, n_voxels))
            result = _fit_himalaya(bk, X, Y_all, alphas, folds, X_test, Y_test, solver, fixed_alpha)
        else:
            result = _fit_fast(
                bk,
                X,
                Y,
                alphas,
                folds,
                X_test,
                Y_test,
                solver,
                n_targets_batch,
                return_weights,
                return_oof_pred,
                fixed_alpha is not None,
                score_dtype,
            )
        if not return_weights:
            result["weights"] = None
        if not return_test_pred:
            result["test_pred"] = None
        fit_seconds = time.perf_counter() - start_time
        logger.info(
            "ridge fit: %d TRs x %d features -> %d voxels in %.1f s (%s, %s, %s scoring)",
            n_samples,
            n_features,
            n_voxels,
            fit_seconds,
            solver,
            backend_name,
            score_dtype,
        )
        return RidgeResult(
            solver=solver,
            backend=backend_name,
            score_dtype=score_dtype,
            fit_seconds=fit_seconds,
            peak_memory_bytes=peak.peak(),
            **result,
        )


def _fit_fast(
    bk,
    X,
    Y,
    alphas,
    folds,
    X_test,
    Y_test,
    solver,
    n_targets_batch,
    return_weights,
    return_oof_pred,
    fixed,
    score_dtype="float32",
) -> dict[str, Any]:
    n_samples, n_features = X.shape
    n_voxels = Y.shape[1]
    n_alphas = alphas.size
    low = None
    if score_dtype == "bfloat16" and not fixed:
        import torch

        low = torch.bfloat16
    setup_start = time.perf_counter()
    problem = _RidgeProblem(bk, X, X_test, folds, solver, return_weights, low=low)
    cv_folds = problem.folds if not fixed else []
    gram_size = n_features if solver == "primal" else n_samples
    logger.info(
        "%d eigendecompositions of %d x %d Grams in %.1f s",
        len(problem.folds) + 1,
        gram_size,
        gram_size,
        time.perf_counter() - setup_start,
    )
    block = _score_block(bk.name)

    # 1 / (λ + α) per fold, (n_alphas, r)
    alphas_dev = bk.asarray(alphas.astype(np.float32))
    inv_shift = [1.0 / (f.lam[None] + alphas_dev[:, None]) for f in cv_folds]

    out_alphas = np.empty(n_voxels, dtype=np.float32)
    cv_all = None if fixed else np.empty((n_alphas, n_voxels), dtype=np.float32)
    test_r = None if Y_test is None else np.empty(n_voxels, dtype=np.float32)
    test_pred = None if X_test is None else np.empty((X_test.shape[0], n_voxels), np.float32)
    weights = np.empty((n_features, n_voxels), np.float32) if return_weights else None
    oof_sum = oof_count = None
    if return_oof_pred:
        oof_sum = np.zeros((n_samples, n_voxels), dtype=np.float32)
        oof_count = np.zeros(n_samples, dtype=np.float32)
        for fold in problem.folds:
            oof_count[fold.val_np] += 1

    if n_targets_batch == "auto":
        per_voxel = problem.bytes_per_voxel(n_alphas, return_oof_pred, return_weights, block)
        batch = int(np.clip(_free_memory_bytes(bk.name) // per_voxel, 1, n_voxels))
    else:
        batch = max(1, min(int(n_targets_batch), n_voxels))
    logger.info(
        "%d folds, %d alphas, rank %d; %d voxels (%d target group(s)) in batches of %d",
        len(cv_folds),
        n_alphas,
        problem.rank,
        n_voxels,
        len(Y.segments),
        batch,
    )

    def run_batch(cols: slice) -> None:
        Y_b = bk.asarray(Y.read(cols))
        XtY_b = bk.matmul(problem.X.T, Y_b) if solver == "primal" else None
        n_b = Y_b.shape[1]
        kept_Z = []
        if fixed:
            alpha_b = np.full(n_b, alphas[0], dtype=np.float32)
        else:
            # low-precision scoring: the projections run in bf16, the dual targets cast once
            Y_low = Y_b.to(low) if low is not None and solver == "dual" else None
            score_sum = 0.0
            for fold, shift in zip(cv_folds, inv_shift, strict=True):
                Z = problem.project(fold, Y_b, XtY_b, low=low is not None, Y_low=Y_low)
                score_sum = score_sum + _cv_scores_fold(
                    bk, fold, Z, Y_b[fold.val], shift, low=low, block=block
                )
                if return_oof_pred and low is None:
                    kept_Z.append(Z)
                del Z
            del Y_low
            scores = bk.to_numpy(score_sum) / len(cv_folds)
            best = np.argmax(scores, axis=0)
            cv_all[:, cols] = scores
            alpha_b = alphas[best].astype(np.float32)
        out_alphas[cols] = alpha_b
        alpha_dev = bk.asarray(alpha_b)

        if return_oof_pred:
            # float32 projections (kept from scoring, or recomputed after bf16 scoring); the
            # columns are reset first so that a batch retried after out-of-memory adds once
            oof_sum[:, cols] = 0.0
            for i, fold in enumerate(problem.folds):
                Z = kept_Z[i] if kept_Z else problem.project(fold, Y_b, XtY_b)
                coef = Z / (fold.lam[:, None] + alpha_dev[None])
                del Z
                pred = bk.matmul(fold.val_map_c + fold.val_mean, coef)
                oof_sum[fold.val_np, cols] += bk.to_numpy(pred)
                del pred, coef
            del kept_Z

        if X_test is None and not return_weights:
            return
        if X_test is not None and not return_weights and problem.group_test_by_alpha(alpha_b):
            # test predictions only: one (n_test, n) map per alpha beats projecting every voxel
            pred = problem.test_predictions_by_alpha(Y_b, XtY_b, alpha_b)
        else:
            # refit: each voxel's shrinkage is elementwise in the eigenbasis of the full Gram
            Z = problem.project(problem.full, Y_b, XtY_b)
            coef = Z / (problem.full.lam[:, None] + alpha_dev[None])
            del Z
            pred = None if X_test is None else bk.matmul(problem.test_map, coef)
            if return_weights:
                weights[:, cols] = bk.to_numpy(bk.matmul(problem.weight_map, coef))
            del coef
        if pred is not None:
            test_pred[:, cols] = bk.to_numpy(pred)
            if Y_test is not None:
                y_test = bk.asarray(np.ascontiguousarray(Y_test[:, cols]))
                test_r[cols] = bk.to_numpy(pearson_columns(bk, pred, y_test))

    # a batch ends at the end of its segment (subject): each subject's voxels see the batches
    # a fit of that subject alone would give them
    segment_ends = np.cumsum(Y.segments)
    start = 0
    loop_start = time.perf_counter()
    while start < n_voxels:
        segment_end = int(segment_ends[np.searchsorted(segment_ends, start, side="right")])
        cols = slice(start, min(start + batch, segment_end))
        try:
            run_batch(cols)
        except Exception as error:
            if not _is_out_of_memory(error) or batch == 1:
                raise
            batch = max(1, batch // 2)
            logger.warning("out of memory on a voxel batch; retrying with batches of %d", batch)
            _empty_device_cache(bk.name)
            continue
        start = cols.stop
        if start < n_voxels or cols.start > 0:
            elapsed = time.perf_counter() - loop_start
            logger.info(
                "voxels %d/%d (%.0f%%) in %.1f s, about %.0f s left",
                start,
                n_voxels,
                100 * start / n_voxels,
                elapsed,
                elapsed * (n_voxels - start) / start,
            )

    result: dict[str, Any] = {
        "alphas": out_alphas,
        "cv_scores_all": cv_all,
        "cv_scores": (None if fixed else cv_all[np.argmax(cv_all, axis=0), np.arange(n_voxels)]),
        "test_r": test_r,
        "weights": weights,
        "test_pred": test_pred,
        "oof_pred": None,
        "batch_size": batch,
    }
    if return_oof_pred:
        with np.errstate(invalid="ignore", divide="ignore"):
            result["oof_pred"] = oof_sum / oof_count[:, None]
    return result


def _fit_himalaya(bk, X, Y, alphas, folds, X_test, Y_test, solver, fixed_alpha) -> dict[str, Any]:
    """Reference path through himalaya's own estimators (per-fold SVD / eigh, no batching)."""
    from himalaya.kernel_ridge import KernelRidge, KernelRidgeCV
    from himalaya.ridge import Ridge, RidgeCV
    from himalaya.scoring import correlation_score

    params = {"score_func": correlation_score}
    if fixed_alpha is not None:
        model = (Ridge if solver == "primal" else KernelRidge)(alpha=float(fixed_alpha))
    elif solver == "primal":
        model = RidgeCV(alphas=alphas, cv=list(folds), solver_params=params)
    else:
        model = KernelRidgeCV(alphas=alphas, cv=list(folds), solver_params=params)
    model.fit(X, Y)
    if solver == "primal":
        weights = bk.to_numpy(model.coef_)
    else:
        weights = X.T @ bk.to_numpy(model.dual_coef_)
    n_voxels = Y.shape[1]
    if fixed_alpha is not None:
        best, cv_scores = np.full(n_voxels, fixed_alpha, np.float32), None
    else:
        best = bk.to_numpy(model.best_alphas_).astype(np.float32)
        cv_scores = bk.to_numpy(model.cv_scores_).astype(np.float32)
    test_pred = test_r = None
    if X_test is not None:
        test_pred = X_test @ weights
        if Y_test is not None:
            test_r = bk.to_numpy(pearson_columns(bk, bk.asarray(test_pred), bk.asarray(Y_test)))
    return {
        "alphas": best,
        "cv_scores": cv_scores,
        "cv_scores_all": None,
        "test_r": test_r,
        "weights": weights.astype(np.float32),
        "test_pred": test_pred,
        "oof_pred": None,
        "batch_size": n_voxels,
    }
