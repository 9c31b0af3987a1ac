"""The diagonalised ridge problem behind `fit_ridge_cv`: Grams, eigendecompositions, scoring.

`_RidgeProblem` works from the Gram matrix instead of an SVD of the data, set up once per fit:

* dual (``n_samples < n_features``): ``K = X Xᵀ`` once; per fold one ``eigh`` of the
  training block ``K[train][:, train] = V diag(λ) Vᵀ``;
* primal (``n_samples >= n_features``): ``G = XᵀX`` once; per fold
  ``G_train = G − X_valᵀ X_val`` and one ``eigh`` of it.

In both forms the validation predictions for ridge parameter α are
``P_α = A diag(1 / (λ + α)) Z`` with ``A`` (n_val, r) a fixed map per fold (centred over the fold)
and ``Z`` (r, n_voxels) the training targets projected once per fold (`_RidgeProblem.project`).
Per fold, `_cv_scores_fold` stacks the shrunk maps ``A diag(d_α)`` of all alphas into one tall
matrix, so scoring the whole alpha grid is one GEMM with ``Z`` (in chunks of alphas on GPUs, to
bound memory); the Pearson cross term and ``Σ P_α²`` per voxel are then read off those
predictions. On CPUs the voxels go through that GEMM in blocks of a few hundred so each block's
predictions stay in cache. The refit uses one ``eigh`` of the full Gram and applies each voxel's
own shrinkage elementwise in the eigenbasis.

With a low scoring dtype (bfloat16, torch only; see `fmriscaling.encoding.ridge` for what it
changes) the projections and the prediction GEMMs take inputs in that dtype and accumulate in
float32; the Grams and the ``eigh`` calls stay float32.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from .backend import serial_reductions

logger = logging.getLogger(__name__)

# alphas stacked into one GEMM for the validation predictions (on devices that score whole batches)
_ALPHA_CHUNK = 8


@dataclass
class _Eig:
    """One diagonalised ridge problem: predictions = out_map @ (1 / (lam + α) ∘ Z).

    ``lam`` (r,) eigenvalues of the training Gram; ``vecs`` its eigenvectors, (n_train, r) in
    dual or (n_features, r) in primal form; ``val_map_c`` (n_val, r) maps eigen-coefficients to
    validation predictions centred over the fold, ``val_mean`` (1, r) the removed column means
    (validation predictions = ``(val_map_c + val_mean) @ coef``). None for the full refit.
    """

    lam: Any
    vecs: Any
    train: Any = None
    val: Any = None
    val_np: np.ndarray | None = None
    val_map_c: Any = None
    val_mean: Any = None
    x_val: Any = None  # primal: X[val], to downdate XᵀY
    complement: bool = True  # train ∪ val covers all TRs (primal downdate is valid)
    vecs_low: Any = None  # vecs in the low scoring dtype (bfloat16 scoring only)


def _eigh(backend, gram) -> tuple[Any, Any]:
    lam, vecs = backend.eigh(gram)
    # float32 round-off can make the Gram's smallest eigenvalues slightly negative
    lam[lam < 0] = 0
    return lam, vecs


class _RidgeProblem:
    """Gram matrices and per-fold eigendecompositions, set up once; voxels come in batches."""

    def __init__(self, backend, X, X_test, folds, solver, need_weights, low=None):
        self.backend = backend
        self.solver = solver
        self.low = low
        n_samples, n_features = X.shape
        self.n_samples, self.n_features = n_samples, n_features
        self.X = backend.asarray(X)
        self.X_test = None if X_test is None else backend.asarray(X_test)
        self.folds: list[_Eig] = []

        if solver == "dual":
            gram = backend.matmul(self.X, self.X.T)  # K (n_samples, n_samples)
            for train, val in folds:
                tr, va = backend.asarray(train), backend.asarray(val)
                lam, vecs = _eigh(backend, gram[tr][:, tr])
                val_map = backend.matmul(gram[va][:, tr], vecs)
                self.folds.append(self._fold(lam, vecs, tr, va, val, val_map))
            lam, vecs = _eigh(backend, gram)
            del gram
            self.full = _Eig(lam=lam, vecs=vecs)
            self.test_map = (
                None
                if self.X_test is None
                else backend.matmul(backend.matmul(self.X_test, self.X.T), vecs)
            )
            self.weight_map = backend.matmul(self.X.T, vecs) if need_weights else None
        else:
            gram = backend.matmul(self.X.T, self.X)  # G (n_features, n_features)
            for train, val in folds:
                tr, va = backend.asarray(train), backend.asarray(val)
                x_val = self.X[va]
                complement = len(train) + len(val) == n_samples
                if complement:
                    gram_train = gram - backend.matmul(x_val.T, x_val)
                else:
                    x_train = self.X[tr]
                    gram_train = backend.matmul(x_train.T, x_train)
                lam, vecs = _eigh(backend, gram_train)
                del gram_train
                fold = self._fold(lam, vecs, tr, va, val, backend.matmul(x_val, vecs))
                fold.x_val, fold.complement = x_val, complement
                self.folds.append(fold)
            lam, vecs = _eigh(backend, gram)
            del gram
            self.full = _Eig(lam=lam, vecs=vecs)
            self.test_map = None if self.X_test is None else backend.matmul(self.X_test, vecs)
            self.weight_map = vecs if need_weights else None

    @staticmethod
    def _fold(lam, vecs, tr, va, val_np, val_map) -> _Eig:
        # keep only the centred map (one n_val x r copy per fold on the device)
        val_mean = val_map.mean(0)[None]
        return _Eig(lam, vecs, tr, va, val_np, val_map - val_mean, val_mean)

    def _low_vecs(self, eig: _Eig):
        """``eig.vecs`` in the scoring dtype, cast once per fold and kept."""
        if eig.vecs_low is None:
            eig.vecs_low = eig.vecs.to(self.low)
        return eig.vecs_low

    @property
    def rank(self) -> int:
        return int(self.full.lam.shape[0])

    def project(self, eig: _Eig, Y_b, XtY_b, *, low=False, Y_low=None):
        """Z (r, b): training targets in the eigenbasis of ``eig``.

        With ``low`` the projection runs in the problem's low scoring dtype and Z comes back in it
        (for scoring only). ``Y_low`` is ``Y_b`` already cast to that dtype (dual form), so that a
        batch is cast once rather than once per fold.
        """
        backend = self.backend
        if self.solver == "dual":
            y = Y_b
            if low:
                y = Y_b.to(self.low) if Y_low is None else Y_low
            y_train = y if eig.train is None else y[eig.train]
            return backend.matmul((self._low_vecs(eig) if low else eig.vecs).T, y_train)
        if eig.train is None:
            xty = XtY_b
        elif eig.complement:
            xty = XtY_b - backend.matmul(eig.x_val.T, Y_b[eig.val])
        else:
            xty = backend.matmul(self.X[eig.train].T, Y_b[eig.train])
        if low:
            return backend.matmul(self._low_vecs(eig).T, xty.to(self.low))
        return backend.matmul(eig.vecs.T, xty)

    def group_test_by_alpha(self, alpha_b: np.ndarray) -> bool:
        """Whether `test_predictions_by_alpha` costs fewer flops than projecting the batch."""
        if self.test_map is None:
            return False
        n_test, rank = self.test_map.shape
        n_rows = self.n_features if self.solver == "primal" else self.n_samples
        n_b, n_unique = alpha_b.size, np.unique(alpha_b).size
        grouped = n_unique * n_test * rank * n_rows + n_test * n_rows * n_b
        projected = rank * n_rows * n_b + n_test * rank * n_b
        return grouped < projected

    def test_predictions_by_alpha(self, Y_b, XtY_b, alpha_b: np.ndarray):
        """Refit test predictions (n_test, b) without projecting every voxel.

        For each distinct alpha, the map ``T diag(1 / (λ + α)) Vᵀ`` (``T`` the test map of the full
        eigenbasis) takes the training targets (dual) or ``XᵀY`` (primal) of that alpha's voxels
        straight to test predictions. Same numbers as the per-voxel refit, in float32.
        """
        backend = self.backend
        rhs = XtY_b if self.solver == "primal" else Y_b
        pred = backend.zeros_like(rhs, shape=(self.test_map.shape[0], alpha_b.size))
        for alpha in np.unique(alpha_b):
            idx = backend.asarray(np.flatnonzero(alpha_b == alpha))
            shrunk = self.test_map / (self.full.lam[None] + float(alpha))
            pred[:, idx] = backend.matmul(backend.matmul(shrunk, self.full.vecs.T), rhs[:, idx])
        return pred

    def bytes_per_voxel(self, n_alphas, keep_oof, need_weights, block=None) -> int:
        """Device bytes a voxel of a batch needs at the peak of a fit (a generous estimate)."""
        r = max(int(f.lam.shape[0]) for f in self.folds) if self.folds else self.rank
        n_val = max(int(f.val_map_c.shape[0]) for f in self.folds) if self.folds else 0
        n_train = self.n_samples - min((int(f.val_map_c.shape[0]) for f in self.folds), default=0)
        n_test = 0 if self.test_map is None else int(self.test_map.shape[0])
        low = self.low is not None
        f32 = 4
        total = f32 * self.n_samples  # Y_b
        if self.solver == "primal":
            total += f32 * 2 * self.n_features  # XᵀY and its downdate
        if self.folds:
            zsize = 2 if low else f32
            if low and self.solver == "dual":
                total += zsize * self.n_samples  # Y_low: the batch's targets in bfloat16
            total += zsize * (n_train + r)  # gathered training targets, Z
            total += f32 * (2 * n_val + 4 * n_alphas)  # y_c, scores, cross, Σ P², sum over folds
            if block is None:  # one chunk of validation predictions per voxel
                chunk = min(n_alphas, _ALPHA_CHUNK)
                total += chunk * n_val * (f32 + (2 if low else 0)) * 2
            if keep_oof and not low:
                total += f32 * len(self.folds) * r  # Z kept for the OOF predictions
            if keep_oof:
                total += f32 * (r + n_val)  # coef and one fold's predictions
        total += f32 * (2 * self.rank + 2 * n_test)  # refit Z and coef, test predictions
        if need_weights:
            total += f32 * self.n_features
        return int(total)


def _cv_scores_fold(backend, eig, Z, Y_val, inv_shift, *, low=None, block=None):
    """Mean-centred validation correlations for all alphas, shape (n_alphas, b).

    ``inv_shift`` (n_alphas, r) holds ``1 / (lam + α)``. The validation predictions of a chunk of
    alphas come from one GEMM of the stacked shrunk maps ``A_c diag(d_α)`` with ``Z``; the cross
    term and the sum of squares per voxel are taken from those same predictions. ``low`` (a torch
    dtype, torch tensors only) runs that GEMM with inputs in that dtype (float32 accumulation;
    ``Z`` may already be in it) and casts the predictions to float32 before the sums. ``block``
    walks the voxels in column blocks of that size, which keeps each block's predictions in the CPU
    cache (None: one block).
    """
    with serial_reductions(backend):  # bit-reproducible sums (see serial_reductions)
        y_c = Y_val - Y_val.mean(0)[None]
        y_ss = backend.sum(y_c * y_c, 0)  # (b,)
    n_val, rank = eig.val_map_c.shape
    n_alphas, n_b = inv_shift.shape[0], Z.shape[1]
    if low is not None and Z.dtype != low:
        Z = Z.to(low)
    block = n_b if block is None else max(1, int(block))
    chunk = n_alphas if block < n_b else _ALPHA_CHUNK
    cross = backend.zeros_like(y_ss, shape=(n_alphas, n_b))
    pred_ss = backend.zeros_like(y_ss, shape=(n_alphas, n_b))
    for a0 in range(0, n_alphas, chunk):
        shift = inv_shift[a0 : a0 + chunk]
        n_a = shift.shape[0]
        stacked = (shift[:, None, :] * eig.val_map_c[None]).reshape(-1, rank)
        if low is not None:
            stacked = stacked.to(low)
        for v0 in range(0, n_b, block):
            cols = slice(v0, min(v0 + block, n_b))
            pred = backend.matmul(stacked, Z[:, cols])  # (n_a * n_val, block)
            # the products and sums in one thread: bit-reproducible from process to process
            # (see serial_reductions); the GEMM above keeps every thread
            with serial_reductions(backend):
                if low is not None:
                    pred = pred.float()
                pred = pred.reshape(n_a, n_val, -1)
                cross[a0 : a0 + n_a, cols] = backend.sum(pred * y_c[None, :, cols], 1)
                pred *= pred
                pred_ss[a0 : a0 + n_a, cols] = backend.sum(pred, 1)
            del pred
        del stacked
    denom = backend.sqrt(pred_ss * y_ss[None])
    return cross / (denom + (denom == 0))
