"""Quadratic programs on the simplex for every voxel at once: the weights of stacked regression.

Per voxel, stacked regression (Lin, Naselaris, Kay & Wehbe) solves

    minimise  αᵀ R α   subject to  α ≥ 0,  Σ α = 1,

with ``R`` (k x k) the cross-products of the k members' out-of-fold residuals. `solve_simplex_qp`
solves a batch of these problems (one per voxel, ``R`` of shape (n_voxels, k, k)) with array
operations on the himalaya backend (numpy, torch on CPU, torch_cuda): the Python loops run over
iterations and over supports, never over voxels.

Algorithm
---------
1. **Normalisation.** Adding ``c·11ᵀ`` to ``R`` changes ``αᵀRα`` by the constant ``c`` on the
   simplex, and scaling ``R`` scales the objective, so neither moves the minimiser. Each voxel's
   ``R`` is mapped to ``Q = (R − c·11ᵀ) / s`` with ``c`` the mean entry of ``R`` and ``s`` the
   largest ``|R_ij − c|``. Residuals of similar models give ``R ≈ c·11ᵀ`` plus small
   differences: ``Q`` keeps only the differences, at unit scale, so one absolute tolerance fits
   every voxel.
2. **Support by block exchanges, then a batched primal active set.** A few rounds of block
   principal pivoting (solve the face problem of the current free set, then swap every member
   whose weight is negative or whose multiplier is negative at once) usually find the optimal
   support in 2-3 solves; their last iterate, clipped to the simplex, starts the primal active
   set (Nocedal & Wright, Algorithm 16.3), which is monotone and finite where exchanges may
   cycle; voxels the exchanges settled at a certified KKT point skip it. An active-set
   iteration solves, for every unfinished voxel at once, the equality-constrained problem on its
   current face (free members, ``Σα = 1``) from its bordered KKT system (one batched ``solve``
   of (k+1) x (k+1) systems), then either steps towards that face's minimiser, stopping at the
   first weight that reaches 0 (which leaves the free set), or, at the face's minimiser, frees
   the member whose multiplier ``μ_i = g_i − λ`` is most negative; a voxel whose multipliers are
   all ``≥ −tol/4`` is done. A tiny ridge
   (``ridge`` · I on ``Q``) makes every face problem strictly convex, so identical members
   (singular ``R``) get equal weights instead of an arbitrary split.
3. **Exact optimality check** per voxel, on the unregularised problem: the Frank-Wolfe duality
   gap ``gap = αᵀg − min_i g_i`` with ``g = 2Rα``. For a feasible ``α`` (weights clipped at 0 and
   renormalised, so ``α ≥ 0`` and ``Σα = 1`` hold to rounding) it is zero exactly at the KKT
   points, and it bounds the suboptimality: ``αᵀRα − min ≤ gap``. A voxel is *certified* when
   ``gap ≤ tol · s``.
4. **Exact fallback** for the voxels the active set did not finish within ``max_iter``
   iterations or could not certify: every support (non-empty subset of members, ``2^k − 1`` of
   them, in chunks) gets its face problem solved for all those voxels at once; the optimum's
   support is among them and its face solution is feasible, so the feasible face solution with
   the least objective is the optimum. Its cost grows as ``2^k``; it runs for at most
   ``max_fallback_members`` members (20: a million supports).

Degenerate cases
----------------
- **One member**: the weight is 1; nothing is solved.
- **Identical members** (``R`` singular): the ridge splits the weight of a group of identical
  members evenly; the objective is that of one of them.
- **Flat problem** (``s ≈ 0``, i.e. ``R = c·11ᵀ``: every member has the same residuals, e.g. all
  members identical, or a constant voxel whose residuals are all zero, ``R = 0``): the objective
  is the same everywhere on the simplex, every feasible ``α`` is optimal;
  the weights are uniform (``1/k``) and the voxel is flagged ``degenerate``.
- Non-finite ``R`` is an error naming the voxels.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._utils import DataError
from .backend import using_backend

logger = logging.getLogger(__name__)

__all__ = ["SimplexQPResult", "solve_simplex_qp", "solve_simplex_qp_on", "solver_backend"]

# a problem is flat (every α optimal) when R − c·11ᵀ is below this share of R
_FLAT = 1e-13
# elements per chunk of (voxels x supports x (k+1)^2) KKT systems in the fallback
_FALLBACK_CHUNK = 2**22


@dataclass
class SimplexQPResult:
    """Outcome of `solve_simplex_qp`.

    Attributes
    ----------
    weights : array of shape (n_problems, k), float64
        ``α`` per problem: ``α ≥ 0``, ``Σα = 1``.
    objective : array of shape (n_problems,)
        ``αᵀRα``.
    gap : array of shape (n_problems,)
        Frank-Wolfe duality gap ``αᵀg − min g`` (``g = 2Rα``): an upper bound on
        ``αᵀRα − min_α αᵀRα``, 0 at the optimum.
    certified : bool array of shape (n_problems,)
        ``gap ≤ tol · s`` (``s`` the problem's scale, see the module docstring); True for
        degenerate problems.
    n_iter : int array of shape (n_problems,)
        Face problems solved: block-exchange rounds plus active-set iterations.
    fallback : bool array of shape (n_problems,)
        Solved by the exact support enumeration.
    degenerate : bool array of shape (n_problems,)
        Flat problems (every feasible ``α`` optimal): uniform weights.
    backend : str
        himalaya backend the solve ran on.
    seconds : float
        Wall time.
    """

    weights: np.ndarray
    objective: np.ndarray
    gap: np.ndarray
    certified: np.ndarray
    n_iter: np.ndarray
    fallback: np.ndarray
    degenerate: np.ndarray
    backend: str
    seconds: float


def solve_simplex_qp(R: Any, *, backend: str = "auto", **options: Any) -> SimplexQPResult:
    """Minimise ``αᵀRα`` over the simplex for a batch of problems at once.

    Parameters
    ----------
    R : array of shape (n_problems, k, k)
        Symmetric positive semi-definite matrices (one per voxel).
    backend : {"auto", "numpy", "torch", "torch_cuda", "cupy"}, default "auto"
        himalaya backend for the solve (`using_backend`: the caller's backend is restored);
        ``"auto"`` is a GPU backend when one is visible, else numpy (`solver_backend`).
    **options
        ``tol``, ``max_iter``, ``ridge``, ``max_fallback_members``, ``exchange_rounds``: see
        `solve_simplex_qp_on`.

    Returns
    -------
    result : SimplexQPResult
        Host (numpy) arrays.
    """
    with using_backend(backend) as (bk, _):
        return solve_simplex_qp_on(solver_backend(bk) if backend == "auto" else bk, R, **options)


def solver_backend(bk):
    """The backend the solver runs on for ridge backend ``bk``: the GPU one, or numpy on a CPU.

    The solver's arrays are many tiny (k+1) x (k+1) systems: on a CPU, torch's intra-op threads
    add synchronisation and no speed (measured 1.7-2.6x slower than numpy with 2 threads on a
    shared 2-core machine, equal with 1; benchmarks/RESULTS.md), and numpy's batched LAPACK
    calls are single-threaded and predictable. GPU backends (torch_cuda, cupy) are kept.
    """
    if bk.name in ("torch_cuda", "cupy"):
        return bk
    import himalaya.backend.numpy as numpy_backend  # the module only: the global stays as it is

    return numpy_backend


def solve_simplex_qp_on(
    bk,
    R: Any,
    *,
    tol: float = 1e-9,
    max_iter: int | None = None,
    ridge: float = 1e-10,
    max_fallback_members: int = 20,
    exchange_rounds: int = 3,
) -> SimplexQPResult:
    """`solve_simplex_qp` on a himalaya backend module the caller has already set.

    For a loop over voxel blocks that sets the backend once (`using_backend`) and calls this per
    block.

    Parameters
    ----------
    bk : module
        The himalaya backend (``bk.name``: numpy, torch, torch_cuda, cupy).
    R : array of shape (n_problems, k, k)
        Symmetric positive semi-definite matrices (one per voxel); cast to float64 and
        symmetrised.
    tol : float, default 1e-9
        Certification threshold on the duality gap, relative to each problem's scale.
    max_iter : int, optional
        Active-set iterations before the fallback; default ``4 k + 20``.
    ridge : float, default 1e-10
        Ridge added to the normalised face problems (splits ties between identical members).
    max_fallback_members : int, default 20
        Largest ``k`` for which the exact fallback enumerates supports; above it, problems the
        active set did not certify keep its last iterate (``certified`` False, logged).
    exchange_rounds : int, default 3
        Block-exchange rounds that find the support before the active set (0: start the active
        set at the simplex centre).

    Returns
    -------
    result : SimplexQPResult
        Host (numpy) arrays.

    Raises
    ------
    DataError
        ``R`` has non-finite entries.
    ValueError
        ``R`` is not of shape (n, k, k).
    """
    start = time.perf_counter()
    ops = _Ops(bk)
    R = bk.asarray(R, dtype="float64")
    if R.ndim != 3 or R.shape[1] != R.shape[2] or R.shape[1] < 1:
        raise ValueError(f"R must have shape (n_problems, k, k), got {tuple(R.shape)}.")
    n, k = int(R.shape[0]), int(R.shape[1])
    finite = bk.all(bk.all(~bk.isnan(R) & ~bk.isinf(R), 2), 1)
    if not bool(bk.all(finite)):
        bad = bk.to_numpy(bk.flatnonzero(~finite))
        raise DataError(
            f"{bad.size} of {n} stacking problems have non-finite residual cross-products "
            f"(first: {bad[:5].tolist()}); expected finite out-of-fold predictions. Refit the "
            "members of those voxels."
        )
    R = (R + R.swapaxes(1, 2)) / 2
    if max_iter is None:
        max_iter = 4 * k + 20

    weights = ops.full((n, k), 1.0 / k)
    n_iter = np.zeros(n, dtype=np.int64)
    fallback = np.zeros(n, dtype=bool)
    if k == 1 or n == 0:
        degenerate = np.full(n, k == 1)
        return _finish(bk, ops, R, weights, np.ones(n), tol, n_iter, fallback, degenerate, start)

    shift = R.sum(2).sum(1) / k**2
    Q = R - shift[:, None, None]
    spread = bk.max(bk.max(bk.abs(Q), 2), 1)
    size = bk.max(bk.max(bk.abs(R), 2), 1)
    flat = spread <= _FLAT * size
    degenerate = bk.to_numpy(flat).astype(bool)
    scale = ops.where(flat, ops.ones_like(spread), spread)
    Q /= scale[:, None, None]  # in place: one (n, k, k) copy of R besides R itself

    todo = bk.flatnonzero(~flat)
    if int(todo.shape[0]):
        q = Q if int(todo.shape[0]) == n else Q[todo]
        del Q
        qr = q + ridge * ops.eye(k)[None]
        alpha, free, rounds, settled = _exchange_start(ops, qr, tol / 4, exchange_rounds)
        # the active set takes over where the exchanges did not reach a certified KKT point
        rest = bk.asarray(np.flatnonzero(~settled | bk.to_numpy(_gap(ops, q, alpha) > tol)))
        if int(rest.shape[0]):
            alpha[rest], iters = _active_set(
                ops, qr[rest], tol / 4, max_iter, (alpha[rest], free[rest])
            )
            rounds[bk.to_numpy(rest)] += iters
        weights[todo] = alpha
        n_iter[bk.to_numpy(todo)] = rounds
        gap = _gap(ops, q, alpha)
        failed = bk.flatnonzero(gap > tol)
        if int(failed.shape[0]):
            if k <= max_fallback_members:
                logger.info(
                    "simplex QP: %d of %d problems not certified after %d active-set "
                    "iterations; solving them by support enumeration (%d supports)",
                    int(failed.shape[0]),
                    n,
                    max_iter,
                    2**k - 1,
                )
                rows = todo[failed]
                weights[rows] = _enumerate_supports(ops, q[failed] + ridge * ops.eye(k)[None])
                fallback[bk.to_numpy(rows)] = True
            else:
                logger.warning(
                    "simplex QP: %d of %d problems not certified after %d iterations and k=%d "
                    "members is above max_fallback_members=%d: they keep the last iterate "
                    "(certified False). Raise max_iter.",
                    int(failed.shape[0]),
                    n,
                    max_iter,
                    k,
                    max_fallback_members,
                )
    return _finish(
        bk, ops, R, weights, bk.to_numpy(scale), tol, n_iter, fallback, degenerate, start
    )


class _Ops:
    """The few array operations the solver needs beyond himalaya's backend API."""

    def __init__(self, bk):
        self.bk = bk
        if bk.name.startswith("torch"):
            import torch

            self._xp, self._linalg = torch, torch.linalg
        elif bk.name == "cupy":  # pragma: no cover - needs a GPU with cupy
            import cupy

            self._xp, self._linalg = cupy, cupy.linalg
        else:
            self._xp, self._linalg = np, np.linalg

    def full(self, shape, value):
        return self.bk.asarray(np.full(shape, value, dtype=np.float64))

    def ones_like(self, x):
        return self.bk.ones_like(x)

    def eye(self, k):
        return self.bk.asarray(np.eye(k, dtype=np.float64))

    def arange(self, n):
        return self.bk.asarray(np.arange(n, dtype=np.int64))

    def where(self, cond, a, b):
        return self._xp.where(cond, a, b)

    def solve(self, A, b):
        return self._linalg.solve(A, b[..., None])[..., 0]

    def bmv(self, A, x):
        """Batched matrix-vector products: (n, k, k) x (n, k) -> (n, k)."""
        return self.bk.matmul(A, x[..., None])[..., 0]


def _face_minimisers(ops: _Ops, Q, free):
    """Minimiser of ``αᵀQα`` on the face ``{α_i = 0 for fixed i, Σα = 1}``, for each problem.

    ``Q`` (m, k, k) or broadcastable, ``free`` (m, k) float 0/1. The bordered KKT system
    ``[Q_FF 1; 1ᵀ 0] [α_F; ν] = [0; 1]`` is embedded in (k+1) x (k+1) with identity rows for
    the fixed members (so their weight solves to exactly 0).
    """
    k = free.shape[-1]
    shape = free.shape[:-1]
    K = ops.bk.zeros((*shape, k + 1, k + 1), dtype="float64")
    K[..., :k, :k] = Q * (free[..., :, None] * free[..., None, :])
    diagonal = ops.arange(k)
    K[..., diagonal, diagonal] += 1 - free
    K[..., :k, k] = free
    K[..., k, :k] = free
    rhs = ops.bk.zeros_like(K[..., 0])
    rhs[..., k] = 1.0
    return ops.solve(K, rhs)[..., :k] * free


def _exchange_start(ops: _Ops, Qr, mu_tol: float, rounds: int):
    """A feasible start and free set for `_active_set`, from a few block exchanges.

    Block principal pivoting (Kim & Park's idea for NNLS, here with the simplex's equality):
    solve the face problem of the current free set, then swap *every* violated member at once
    (free members with a negative weight leave, fixed members with a negative multiplier
    join) instead of one per iteration. Usually 2-3 rounds find the optimal support; exchanges
    can cycle, so their result only starts the active set, which is monotone and finite.

    Returns
    -------
    alpha : (m, k) feasible weights (the last face solution clipped at 0, renormalised)
    free : (m, k) 0/1 free set (members with a positive weight)
    rounds : int array (m,), exchange rounds run per problem
    settled : bool array (m,), problems whose last face solution violated nothing (a KKT point)
    """
    bk = ops.bk
    m, k = int(Qr.shape[0]), int(Qr.shape[1])
    free = bk.ones_like(ops.full((m, k), 1.0))
    alpha = ops.full((m, k), 1.0 / k)
    used = np.zeros(m, dtype=np.int64)
    rows = np.arange(m)
    settled_all = np.zeros(m, dtype=bool)
    inf = float("inf")
    for _ in range(rounds):
        if rows.size == 0:
            break
        index = bk.asarray(rows)
        q, f = Qr[index], free[index]
        x = _face_minimisers(ops, q, f)
        g = 2 * ops.bmv(q, x)
        mu = ops.where(f > 0, inf, g - (x * g).sum(1)[:, None])
        leave = (f > 0) & (x < 0)
        join = mu < -mu_tol
        settled = bk.to_numpy(~bk.any(leave | join, 1)).astype(bool)
        alpha[index] = x
        free[index] = ops.where(leave | join, 1 - f, f)
        used[rows] += 1
        settled_all[rows[settled]] = True
        rows = rows[~settled]
    alpha = bk.clip(alpha, 0, None)
    alpha = alpha / alpha.sum(1)[:, None]
    return alpha, ops.where(alpha > 0, 1.0, 0.0), used, settled_all


def _active_set(ops: _Ops, Qr, mu_tol: float, max_iter: int, start=None):
    """Batched primal active-set method; returns (alpha, iterations).

    ``start`` is a feasible ``(alpha, free)`` pair (`_exchange_start`); without it every
    problem starts at the simplex centre with every member free.

    Finished problems stay in the working arrays (iterating on them changes nothing: they are
    at their face minimiser with non-negative multipliers) until a quarter of the rows are
    finished; then the working arrays are compacted, so gathers stay rare.
    """
    bk = ops.bk
    m, k = int(Qr.shape[0]), int(Qr.shape[1])
    if start is None:
        alpha = ops.full((m, k), 1.0 / k)
        free = bk.ones_like(alpha)
    else:
        alpha, free = start
    iters = np.zeros(m, dtype=np.int64)
    rows = np.arange(m)  # rows of the working arrays in the full arrays
    q, a, f = Qr, bk.copy(alpha), bk.copy(free)
    running = np.ones(m, dtype=bool)
    inf = float("inf")
    for _ in range(max_iter):
        if not running.any():
            break
        if running.sum() < 0.75 * len(rows):
            keep = bk.asarray(np.flatnonzero(running))
            alpha[bk.asarray(rows)] = a
            free[bk.asarray(rows)] = f
            rows, running = rows[running], running[running]
            q, a, f = q[keep], a[keep], f[keep]
        step = _face_minimisers(ops, q, f) - a
        at_face_min = bk.max(bk.abs(step), 1) <= 1e-12
        # at the face minimiser: multipliers of the fixed members, μ_i = g_i − λ (λ = αᵀg)
        g = 2 * ops.bmv(q, a)
        mu = ops.where(f > 0, inf, g - (a * g).sum(1)[:, None])
        done = at_face_min & (bk.min(mu, 1) >= -mu_tol)
        # elsewhere: step towards the face minimiser, stopping where a weight reaches 0
        shrinking = (f > 0) & (step < 0) & ~at_face_min[:, None]
        ratio = ops.where(shrinking, a / ops.where(shrinking, -step, ops.ones_like(step)), inf)
        t = ops.where(at_face_min, 0.0, bk.clip(bk.min(ratio, 1), 0, 1))
        a = bk.clip(a + t[:, None] * step, 0, None)
        blocked = bk.flatnonzero(~at_face_min & (t < 1))
        if int(blocked.shape[0]):
            hit = bk.argmax(-ratio[blocked], 1)
            a[blocked, hit] = 0.0
            f[blocked, hit] = 0.0
        freed = bk.flatnonzero(at_face_min & ~done)
        if int(freed.shape[0]):
            f[freed, bk.argmax(-mu[freed], 1)] = 1.0
        a = a / a.sum(1)[:, None]
        iters[rows[running]] += 1
        running &= ~bk.to_numpy(done).astype(bool)
    alpha[bk.asarray(rows)] = a
    free[bk.asarray(rows)] = f
    return alpha, iters


def _gap(ops: _Ops, Q, alpha):
    """Frank-Wolfe gap ``αᵀg − min g`` with ``g = 2Qα``, per problem (>= 0 up to rounding)."""
    g = 2 * ops.bmv(Q, alpha)
    return (alpha * g).sum(1) - ops.bk.min(g, 1)


def _enumerate_supports(ops: _Ops, Qr):
    """Exact minimisers by trying every support: (m, k, k) -> (m, k)."""
    bk = ops.bk
    m, k = int(Qr.shape[0]), int(Qr.shape[1])
    supports = np.array(list(itertools.product((0.0, 1.0), repeat=k))[1:])  # (2^k - 1, k)
    per_chunk = max(1, _FALLBACK_CHUNK // max(1, m * (k + 1) ** 2))
    best = ops.full((m, k), 1.0 / k)
    best_obj = ops.full((m,), float("inf"))
    for first in range(0, len(supports), per_chunk):
        free = bk.asarray(supports[first : first + per_chunk])  # (s, k)
        s = int(free.shape[0])
        free = bk.zeros((m, s, k), dtype="float64") + free[None]
        alpha = _face_minimisers(ops, Qr[:, None], free)  # (m, s, k)
        feasible = bk.min(alpha, 2) >= -1e-12
        alpha = bk.clip(alpha, 0, None)
        alpha = alpha / alpha.sum(2)[..., None]
        obj = (alpha * bk.matmul(Qr[:, None], alpha[..., None])[..., 0]).sum(2)
        obj = ops.where(feasible, obj, float("inf"))
        pick = bk.argmax(-obj, 1)
        rows = ops.arange(m)
        cand_obj, cand = obj[rows, pick], alpha[rows, pick]
        better = cand_obj < best_obj
        best = ops.where(better[:, None], cand, best)
        best_obj = ops.where(better, cand_obj, best_obj)
    return best


def _finish(bk, ops, R, weights, scale, tol, n_iter, fallback, degenerate, start):
    objective = (weights * ops.bmv(R, weights)).sum(1)
    gap = _gap(ops, R, weights)
    result = SimplexQPResult(
        weights=bk.to_numpy(weights),
        objective=bk.to_numpy(objective),
        gap=np.maximum(bk.to_numpy(gap), 0.0),
        certified=np.zeros(len(n_iter), dtype=bool),
        n_iter=n_iter,
        fallback=fallback,
        degenerate=degenerate,
        backend=bk.name,
        seconds=time.perf_counter() - start,
    )
    result.certified = degenerate | (result.gap <= tol * np.asarray(scale))
    return result
