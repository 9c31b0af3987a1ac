"""Voxelwise ridge regression with per-voxel alphas chosen by time-respecting CV.

The fast path works from the Gram matrix instead of an SVD of the data:

* dual (``n_samples < n_features``): ``K = X Xᵀ`` once; per fold one ``eigh`` of the
  training block ``K[train][:, train] = V diag(λ) Vᵀ``;
* primal (``n_samples >= n_features``): ``G = XᵀX`` once; per fold
  ``G_train = G − X_valᵀ X_val`` and one ``eigh`` of it.

In both forms the validation predictions for ridge parameter α are
``P_α = A diag(1 / (λ + α)) Z`` with ``A`` (n_val, r) a fixed map per fold (centred over the fold)
and ``Z`` (r, n_voxels) the training targets projected once per fold. Per fold, the shrunk maps
``A diag(d_α)`` of all alphas are stacked into one tall matrix, so scoring the whole alpha grid is
one GEMM with ``Z`` (in chunks of alphas on GPUs, to bound memory); the Pearson cross term and ``Σ P_α²`` per voxel are then read off those
predictions. On CPUs the voxels go through that GEMM in blocks of a few hundred so each block's
predictions stay in cache. The refit uses one ``eigh`` of the full Gram and applies each voxel's
own shrinkage elementwise in the eigenbasis.

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

import itertools
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._utils import DataError

logger = logging.getLogger(__name__)

Fold = tuple[np.ndarray, np.ndarray]

# alphas stacked into one GEMM for the validation predictions (on devices that score whole batches)
_ALPHA_CHUNK = 8
# voxels per block when scoring on a CPU: one block's predictions of all alphas stay in cache
_CPU_SCORE_BLOCK = 512
# share of free memory a voxel batch may use; the CPU is shared with other jobs
_CPU_MEMORY_FRACTION = 0.25
_GPU_MEMORY_FRACTION = 0.6


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


def resolve_backend(name: str = "auto") -> tuple[Any, str]:
    """Set the himalaya backend once and return it.

    Parameters
    ----------
    name : {"auto", "numpy", "torch", "torch_cuda", "cupy"}
        ``"auto"`` picks ``torch_cuda`` when a CUDA device is visible, else ``torch`` on CPU
        (its ``eigh`` is ~2x faster than numpy's on the CPUs we measured; GEMMs are equal).

    Returns
    -------
    backend : module
        The himalaya backend module (``backend.name`` is its name).
    name : str
        Name of the backend actually set (``set_backend`` falls back with a warning on error).
    """
    from himalaya.backend import set_backend

    if name == "auto":
        try:
            import torch
        except ImportError:  # pragma: no cover - torch is a dependency
            name = "numpy"
            logger.info("torch not installed, using numpy on CPU")
        else:
            if torch.cuda.is_available():
                name = "torch_cuda"
            else:
                name = "torch"
                logger.info("no GPU visible, using torch on CPU")
    backend = set_backend(name, on_error="warn")
    if backend.name != name:
        logger.warning("ridge backend %s unavailable, fell back to %s", name, backend.name)
    if backend.name == "torch_cuda":
        import torch

        logger.info("ridge backend: torch_cuda (%s)", torch.cuda.get_device_name())
    else:
        logger.info("ridge backend: %s (CPU, %d threads)", backend.name, os.cpu_count() or 1)
    return backend, backend.name


# ---------------------------------------------------------------------------- score dtype

SCORE_DTYPES = ("float32", "bfloat16", "auto")


def _cpu_has_amx_bf16() -> bool:
    """Whether this CPU advertises AMX-BF16 (Linux ``/proc/cpuinfo``); False when unknown."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return "amx_bf16" in line.split()
    except OSError:
        pass
    return False


def resolve_score_dtype(score_dtype: str, backend_name: str) -> str:
    """Precision of the CV alpha search: ``"float32"`` or ``"bfloat16"``.

    Parameters
    ----------
    score_dtype : {"float32", "bfloat16", "auto"}
        ``"auto"`` is ``"bfloat16"`` where bfloat16 GEMMs are fast: ``torch_cuda`` on a device with
        ``torch.cuda.is_bf16_supported()``, or ``torch`` on a CPU with oneDNN bfloat16 support and
        AMX-BF16 (there oneDNN's bf16 GEMM runs ~4-5x the float32 rate; on CPUs without AMX it is
        emulated or at best ~2x and the choice is not worth the rounding). The decision is a
        deterministic hardware check, not a timing, so the same machine always resolves the same
        way. Everything else resolves to ``"float32"``.
    backend_name : str
        The himalaya backend actually in use (after `resolve_backend`).

    Raises
    ------
    ValueError
        An unknown value, or ``"bfloat16"`` requested with a backend other than torch/torch_cuda.
    """
    if score_dtype not in SCORE_DTYPES:
        raise ValueError(f"score_dtype={score_dtype!r}: expected one of {SCORE_DTYPES}.")
    torch_backend = backend_name in ("torch", "torch_cuda")
    if score_dtype == "bfloat16":
        if not torch_backend:
            raise ValueError(
                f"score_dtype='bfloat16' needs the torch or torch_cuda backend, but the backend is "
                f"{backend_name!r} (no bfloat16 GEMMs there). Use backend 'torch' / 'torch_cuda' "
                "or score_dtype 'float32' / 'auto'."
            )
        return "bfloat16"
    if score_dtype == "float32" or not torch_backend:
        return "float32"
    import torch

    if backend_name == "torch_cuda":
        fast = bool(torch.cuda.is_bf16_supported())
    else:
        try:
            mkldnn_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # pragma: no cover - private op moved
            mkldnn_bf16 = False
        fast = torch.backends.mkldnn.is_available() and mkldnn_bf16 and _cpu_has_amx_bf16()
    resolved = "bfloat16" if fast else "float32"
    logger.info("score_dtype auto -> %s on %s", resolved, backend_name)
    return resolved


# ------------------------------------------------------------------------------------ folds


def story_folds(story_lengths: Sequence[int], n_folds: int = 5) -> list[Fold]:
    """Leave-stories-out folds: whole stories held out, stories assigned to folds contiguously.

    Stories keep their order; the j-th fold boundary is the story boundary nearest to
    ``j * n_trs / n_folds`` (every fold keeps at least one story), which balances folds by TR count.

    Parameters
    ----------
    story_lengths : sequence of int, length n_stories
        Number of TRs of each training story, in the order they are stacked in X and Y.
    n_folds : int
        Number of folds; reduced to the number of stories when there are fewer.

    Returns
    -------
    folds : list of (train_idx, val_idx)
        Integer index arrays into the stacked TRs; every TR is in exactly one ``val_idx``.

    Raises
    ------
    DataError
        Fewer than 2 stories (use `bootstrap_chunk_folds`), or a non-positive length.
    """
    lengths = np.asarray(story_lengths, dtype=np.int64)
    if lengths.ndim != 1 or lengths.size < 2:
        raise DataError(
            f"story folds need at least 2 training stories, got {lengths.size}: leave-stories-out "
            "CV cannot hold out a story from a one-story training set. Use bootstrap CV "
            "(bootstrap_chunk_folds, config cv: bootstrap) or add training stories."
        )
    if np.any(lengths <= 0):
        raise DataError(f"story lengths must be positive TR counts, got {lengths.tolist()}.")
    if int(n_folds) < 2:
        raise DataError(f"n_folds must be at least 2, got {n_folds}.")
    n_folds = min(int(n_folds), lengths.size)

    ends = np.cumsum(lengths)
    n_stories, n_trs = lengths.size, int(ends[-1])
    # cuts[j] = index of the first story of fold j
    cuts = [0]
    for j in range(1, n_folds):
        lowest, highest = cuts[-1] + 1, n_stories - (n_folds - j)
        candidates = np.arange(lowest, highest + 1)
        target = j * n_trs / n_folds
        cuts.append(int(candidates[np.argmin(np.abs(ends[candidates - 1] - target))]))
    cuts.append(n_stories)
    starts = np.concatenate([[0], ends])
    all_idx = np.arange(n_trs)
    folds = []
    for first, stop in itertools.pairwise(cuts):
        is_val = np.zeros(n_trs, dtype=bool)
        is_val[starts[first] : starts[stop]] = True
        folds.append((all_idx[~is_val], all_idx[is_val]))
    return folds


def default_n_chunks(n_samples: int, chunk_len: int) -> int:
    """Chunks that hold out a fifth of ``n_samples`` TRs: ``ceil(n_samples / 5 / chunk_len)``.

    This is how the companion code sizes its bootstrap; tying the count to the training size keeps
    the held-out fraction near 20 % across a data-subsampling sweep.
    """
    return max(1, math.ceil(int(n_samples) / 5 / int(chunk_len)))


def bootstrap_chunk_folds(
    n_samples: int,
    *,
    n_boots: int,
    chunk_len: int = 40,
    n_chunks: int,
    random_state: int | np.random.Generator | None,
) -> list[Fold]:
    """Companion-style bootstrap folds: held-out = random contiguous chunks of TRs.

    As in the companion ``bootstrap_ridge``: the TRs are cut into consecutive chunks of
    ``chunk_len`` (a trailing partial chunk is never held out), and each resample holds out
    ``n_chunks`` chunks drawn without replacement; the rest is training data.

    Parameters
    ----------
    n_samples : int
        Number of training TRs.
    n_boots : int
        Number of resamples.
    chunk_len : int
        TRs per held-out chunk.
    n_chunks : int
        Chunks held out per resample.
    random_state : int, Generator or None
        Seed of the chunk draws.

    Returns
    -------
    folds : list of (train_idx, val_idx), length n_boots
    """
    n_samples, n_boots, chunk_len, n_chunks = map(int, (n_samples, n_boots, chunk_len, n_chunks))
    if n_boots < 1 or chunk_len < 1 or n_chunks < 1:
        raise DataError(
            f"bootstrap CV needs n_boots, chunk_len, n_chunks >= 1, got {n_boots}, "
            f"{chunk_len}, {n_chunks}."
        )
    n_available = n_samples // chunk_len
    if n_chunks >= n_available:
        raise DataError(
            f"bootstrap CV holds out {n_chunks} chunks of {chunk_len} TRs but {n_samples} TRs "
            f"make only {n_available} chunks; lower n_chunks or chunk_len so training data remain."
        )
    rng = np.random.default_rng(random_state)
    all_idx = np.arange(n_samples)
    folds = []
    for _ in range(n_boots):
        chunks = np.sort(rng.choice(n_available, size=n_chunks, replace=False))
        val = (chunks[:, None] * chunk_len + np.arange(chunk_len)[None, :]).ravel()
        is_val = np.zeros(n_samples, dtype=bool)
        is_val[val] = True
        folds.append((all_idx[~is_val], val))
    return folds


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


def _check_folds(folds: Sequence[Fold], n_samples: int) -> list[Fold]:
    checked = []
    for i, (train, val) in enumerate(folds):
        train = np.asarray(train, dtype=np.int64).ravel()
        val = np.asarray(val, dtype=np.int64).ravel()
        if train.size == 0 or val.size == 0:
            raise DataError(f"fold {i} has an empty training or validation set.")
        for name, idx in (("train", train), ("val", val)):
            if idx.min() < 0 or idx.max() >= n_samples:
                raise DataError(f"fold {i} {name} indices fall outside 0..{n_samples - 1}.")
        if np.intersect1d(train, val).size:
            raise DataError(f"fold {i}: training and validation TRs overlap.")
        checked.append((train, val))
    if not checked:
        raise DataError("no CV folds given.")
    return checked


# ----------------------------------------------------------------------------- memory probes


def _free_memory_bytes(backend_name: str) -> int:
    if backend_name == "torch_cuda":
        import torch

        free, _ = torch.cuda.mem_get_info()
        # memory torch holds in its cache is free for us too
        cached = torch.cuda.memory_reserved() - torch.cuda.memory_allocated()
        return int((free + cached) * _GPU_MEMORY_FRACTION)
    try:
        import psutil

        available = psutil.virtual_memory().available
    except ImportError:  # pragma: no cover
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return int(available * _CPU_MEMORY_FRACTION)


class _PeakMemory:
    """Peak GPU allocation (torch_cuda) or peak RSS of this process (CPU)."""

    def __init__(self, backend_name: str):
        self.cuda = backend_name == "torch_cuda"
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
        else:
            try:  # "5" resets VmHWM to the current RSS (Linux)
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                pass

    def peak(self) -> int:
        if self.cuda:
            import torch

            return int(torch.cuda.max_memory_allocated())
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, MemoryError):
        return True
    try:
        import torch

        if isinstance(error, torch.cuda.OutOfMemoryError):
            return True
    except ImportError:  # pragma: no cover
        pass
    # torch's CPU allocator raises a plain RuntimeError ("DefaultCPUAllocator: can't allocate
    # memory ..."), its CUDA allocator (before OutOfMemoryError existed) "CUDA out of memory"
    message = str(error)
    return isinstance(error, RuntimeError) and (
        "out of memory" in message or "can't allocate memory" in message
    )


# ------------------------------------------------------------------------ the eigen problems


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


def _pearson(backend, pred, y):
    """Pearson r per column of (n, b) arrays; 0 where either column is constant."""
    pred_c = pred - pred.mean(0)[None]
    y_c = y - y.mean(0)[None]
    cross = backend.sum(pred_c * y_c, 0)
    denom = backend.sqrt(backend.sum(pred_c * pred_c, 0) * backend.sum(y_c * y_c, 0))
    return cross / (denom + (denom == 0))


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
    score_dtype: str = "float32",
) -> RidgeResult:
    """Fit voxelwise ridge with a per-voxel alpha chosen by CV correlation, then refit.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
        Training features (z-scored; no intercept is fitted).
    Y : array of shape (n_samples, n_voxels)
        Training responses.
    alphas : array of shape (n_alphas,)
        Ridge parameters, himalaya λ convention (see `alphas_from_companion`).
    folds : list of (train_idx, val_idx), or None
        Time-respecting CV splits, from `story_folds` or `bootstrap_chunk_folds`. May be None
        only with ``fixed_alpha`` and without ``return_oof_pred``.
    X_test : array of shape (n_test, n_features), optional
    Y_test : array of shape (n_test, n_voxels), optional
        Held-out test data; ``test_r`` needs both.
    backend : str
        himalaya backend, see `resolve_backend`.
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
    score_dtype : {"float32", "bfloat16", "auto"}
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
    Y = _as_host_float32("Y", Y)
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
    bk, backend_name = resolve_backend(backend)
    score_dtype = resolve_score_dtype(score_dtype, backend_name)
    peak = _PeakMemory(backend_name)

    if solver_impl == "himalaya":
        if return_oof_pred:
            raise ValueError("solver_impl='himalaya' does not make OOF predictions.")
        if score_dtype != "float32":
            score_dtype = "float32"  # himalaya scores in float32
            logger.info("solver_impl='himalaya' scores alphas in float32")
        result = _fit_himalaya(bk, X, Y, alphas, folds, X_test, Y_test, solver, fixed_alpha)
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
        "%d folds, %d alphas, rank %d; %d voxels in batches of %d",
        len(cv_folds),
        n_alphas,
        problem.rank,
        n_voxels,
        batch,
    )

    def run_batch(cols: slice) -> None:
        Y_b = bk.asarray(np.ascontiguousarray(Y[:, cols]))
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
                test_r[cols] = bk.to_numpy(_pearson(bk, pred, y_test))

    start = 0
    loop_start = time.perf_counter()
    while start < n_voxels:
        cols = slice(start, min(start + batch, n_voxels))
        try:
            run_batch(cols)
        except Exception as error:
            if not _is_out_of_memory(error) or batch == 1:
                raise
            batch = max(1, batch // 2)
            logger.warning("out of memory on a voxel batch; retrying with batches of %d", batch)
            if bk.name == "torch_cuda":
                import torch

                torch.cuda.empty_cache()
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
            test_r = bk.to_numpy(_pearson(bk, bk.asarray(test_pred), bk.asarray(Y_test)))
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
