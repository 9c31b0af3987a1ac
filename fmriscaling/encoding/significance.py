"""Per-voxel significance of a test correlation: a block permutation test and FDR control.

The test story's TRs are autocorrelated, so shuffling single TRs makes the null distribution of
r too narrow and the test anti-conservative. `block_orders` cuts the test TRs into blocks of
``block_trs`` consecutive TRs and shuffles the whole blocks; when the length is not a multiple,
the ``n_trs % block_trs`` TRs left over at the end stay where they are, aligned with their own
responses in every permutation (a slightly conservative choice: 1 TR of ds003020's 291).
`block_permutations` spells the resulting TR orders out. `permutation_pvalues` recomputes every
voxel's Pearson r between the permuted prediction and the response for each permutation and
reports the one-sided ``p = (1 + #{r_perm >= r}) / (1 + n_perm)``, never 0. With blocks it
needs no permuted copy of the data: per voxel, the products of every prediction block with every
response block (an ``n_blocks x n_blocks`` table) make each permutation's r a sum of
``n_blocks`` entries, so all permutations of a voxel batch are one matrix product (torch when it
is there, on the GPU when asked). With ``block_trs=1`` (the vision track's exchangeable test
images) the permuted predictions are gathered in batches that fit ``memory_mb``.

`fdr` applies Benjamini-Hochberg over one subject's voxels with
`scipy.stats.false_discovery_control`: the q-value of each voxel and whether it is at most the
chosen level. `significance_of` is both in one call, as the fit jobs of both tracks make it.

`alpha_edges` is the alpha-grid diagnostic of a fit: the fractions of the voxels with a positive
CV score whose CV-best alpha is the smallest or the largest of the grid while their CV curve
still rises toward it (voxels without signal rightly pick the largest, on a flat curve, so they
are not counted); `warn_at_alpha_edges` logs a WARNING that names the fit, the edge, the
fraction and the config key to widen.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "alpha_edges",
    "block_orders",
    "block_permutations",
    "device_for",
    "fdr",
    "n_permutations_of",
    "permutation_pvalues",
    "significance_of",
    "warn_at_alpha_edges",
]

logger = logging.getLogger(__name__)


def block_orders(
    n_trs: int, *, block_trs: int = 10, n_permutations: int = 1000, seed: int = 0
) -> np.ndarray:
    """The order of the whole blocks in each permutation.

    Parameters
    ----------
    n_trs : int
        Length of the series.
    block_trs : int
        TRs per block (1: every TR on its own). The ``n_trs % block_trs`` TRs left over at the
        end are not shuffled.
    n_permutations : int
    seed : int
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    order : int array of shape (n_permutations, n_trs // block_trs)
        ``order[k, j]`` is the block placed at slot ``j`` in permutation ``k``.
    """
    n_trs, block_trs = int(n_trs), int(block_trs)
    if n_trs < 2:
        raise ValueError(f"a permutation test needs at least 2 TRs, got {n_trs}")
    if block_trs < 1:
        raise ValueError(f"block_trs must be >= 1, got {block_trs}")
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be >= 1, got {n_permutations}")
    n_blocks = n_trs // block_trs
    if n_blocks < 2:
        raise ValueError(
            f"{n_trs} TRs in blocks of {block_trs} make fewer than two whole blocks: nothing "
            "to permute; lower statistics.block_trs"
        )
    rng = np.random.default_rng(seed)
    return rng.permuted(np.tile(np.arange(n_blocks), (int(n_permutations), 1)), axis=1)


def block_permutations(
    n_trs: int, *, block_trs: int = 10, n_permutations: int = 1000, seed: int = 0
) -> np.ndarray:
    """Row orders of the block-shuffled series (`block_orders` spelled out per TR).

    Returns
    -------
    order : int array of shape (n_permutations, n_trs)
        Each row a permutation of ``range(n_trs)``: whole blocks in a random order, then the
        TRs left over, in place.
    """
    blocks = block_orders(n_trs, block_trs=block_trs, n_permutations=n_permutations, seed=seed)
    return _tr_orders(blocks, block_trs, n_trs)


def _tr_orders(blocks: np.ndarray, block_trs: int, n_trs: int) -> np.ndarray:
    """TR orders of `block_orders`: each slot's block spelled out, then the TRs left over."""
    n_perm, n_blocks = blocks.shape
    full = n_blocks * block_trs
    rows = (blocks[:, :, None] * block_trs + np.arange(block_trs)).reshape(n_perm, full)
    tail = np.broadcast_to(np.arange(full, n_trs), (n_perm, n_trs - full))
    return np.concatenate([rows, tail], axis=1)


def _zscore_columns(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns centred and scaled to population unit variance (a dot product over rows divided
    by n is Pearson's r); the mask of constant columns (left at zero)."""
    a = np.asarray(a, dtype=np.float64)
    centred = a - a.mean(axis=0)
    sd = np.sqrt((centred**2).mean(axis=0))
    constant = sd <= 1e-12 * np.maximum(np.abs(a).max(axis=0), 1.0)
    z = np.where(constant, 0.0, centred / np.where(constant, 1.0, sd))
    return z.astype(np.float32), constant


def permutation_pvalues(
    pred: np.ndarray,
    resp: np.ndarray,
    *,
    block_trs: int = 10,
    n_permutations: int = 1000,
    seed: int = 0,
    device: str = "cpu",
    memory_mb: float = 512.0,
    what: str = "",
) -> dict[str, Any]:
    """One-sided block permutation p-value of each voxel's test correlation.

    Parameters
    ----------
    pred, resp : arrays of shape (n_trs, n_voxels)
        Test predictions and responses, rows in time order.
    block_trs, n_permutations, seed
        See `block_orders`; the same permutations for every voxel.
    device : str
        "cpu", "cuda" or "numpy" (no torch).
    memory_mb : float
        Budget of one batch's intermediate arrays (float32).
    what : str
        Which fit, for the log line.

    Returns
    -------
    result : dict
        ``r`` (n_voxels,) the observed Pearson r; ``p`` (n_voxels,) ``(1 + #{r_perm >= r}) /
        (1 + n_permutations)``, 1.0 where the prediction or the response is constant (no
        permutation can tell it from noise); ``constant`` the mask of those voxels;
        ``n_permutations``, ``block_trs``, ``seed``, ``seconds``, ``device``, ``method``
        ("blocks": the block-product matrix product; "gather": permuted copies).
    """
    pred, resp = np.asarray(pred), np.asarray(resp)
    if pred.shape != resp.shape or pred.ndim != 2:
        raise ValueError(f"pred {pred.shape} and resp {resp.shape} must be equal 2-D arrays")
    start = time.perf_counter()
    n_trs, n_voxels = pred.shape
    zp, const_p = _zscore_columns(pred)
    zr, const_r = _zscore_columns(resp)
    constant = const_p | const_r
    blocks = block_orders(n_trs, block_trs=block_trs, n_permutations=n_permutations, seed=seed)
    n_blocks = blocks.shape[1]
    arrays = _Arrays(device)
    # blocks: n_blocks^2 products per voxel instead of n_trs gathered values per permutation
    method = "blocks" if n_blocks * n_blocks <= 4 * n_trs else "gather"
    if method == "blocks":
        per_voxel = 4 * (n_blocks * n_blocks + int(n_permutations) + block_trs * n_blocks * 2)
    else:
        per_voxel = 4 * int(min(n_permutations, 64)) * n_trs
    b = int(max(1, min(n_voxels, memory_mb * 2**20 // per_voxel)))
    observed = np.empty(n_voxels, dtype=np.float64)
    exceed = np.empty(n_voxels, dtype=np.int64)
    for v0 in range(0, n_voxels, b):
        cols = slice(v0, min(v0 + b, n_voxels))
        count = _count_blocks if method == "blocks" else _count_gather
        observed[cols], exceed[cols] = count(
            arrays, zp[:, cols], zr[:, cols], blocks, block_trs, memory_mb
        )
    p = (1.0 + exceed) / (1.0 + n_permutations)
    p[constant] = 1.0
    seconds = time.perf_counter() - start
    logger.info(
        "%spermutation test: %d voxels x %d permutations of %d TRs in blocks of %d "
        "(%s, %d voxels a batch) in %.1f s on %s",
        f"{what}: " if what else "",
        n_voxels,
        n_permutations,
        n_trs,
        block_trs,
        method,
        b,
        seconds,
        device,
    )
    return {
        "r": observed,
        "p": p,
        "constant": constant,
        "n_permutations": int(n_permutations),
        "block_trs": int(block_trs),
        "seed": int(seed),
        "seconds": seconds,
        "device": device,
        "method": method,
    }


class _Arrays:
    """Where the counting runs: numpy, or torch on a device; ``to`` moves a numpy array there,
    ``back`` brings a result home as numpy."""

    def __init__(self, device: str):
        if device == "numpy":
            self.xp = np
            self.to = np.asarray
            self.back = np.asarray
            return
        import torch

        dev = torch.device(device)
        self.xp = torch
        self.to = lambda a: torch.as_tensor(a, device=dev)
        self.back = lambda t: t.cpu().numpy()


def _count_blocks(ar: _Arrays, zp, zr, blocks, block_trs, memory_mb):
    """Observed r and the count of permutations with r_perm >= r, for a batch of voxels, from
    the table of block products C[a, b, v] = sum_i zp[a L + i, v] zr[b L + i, v]."""
    n_trs, n_v = zp.shape
    n_perm, n_blocks = blocks.shape
    full = n_blocks * block_trs
    # slot j of permutation k holds block blocks[k, j]: one-hot rows over the (a, b) table
    onehot = np.zeros((n_perm, n_blocks * n_blocks), dtype=np.float32)
    slots = np.arange(n_blocks)
    onehot[np.arange(n_perm)[:, None], blocks * n_blocks + slots] = 1.0
    diag = np.zeros((1, n_blocks * n_blocks), dtype=np.float32)
    diag[0, slots * n_blocks + slots] = 1.0
    tail = (zp[full:].astype(np.float64) * zr[full:]).sum(axis=0)
    p_b = ar.to(zp[:full]).reshape(n_blocks, block_trs, n_v)
    r_b = ar.to(zr[:full]).reshape(n_blocks, block_trs, n_v)
    table = ar.xp.einsum("aiv,biv->abv", p_b, r_b).reshape(n_blocks * n_blocks, n_v)
    observed = (ar.back(ar.to(diag) @ table)[0].astype(np.float64) + tail) / n_trs
    r_perm = (ar.to(onehot) @ table + ar.to(tail.astype(np.float32))) / n_trs
    exceed = (r_perm >= ar.to(observed.astype(np.float32)) - 1e-6).sum(0)
    return observed, ar.back(exceed)


def _count_gather(ar: _Arrays, zp, zr, blocks, block_trs, memory_mb):
    """The same count from permuted copies of the predictions (for many small blocks)."""
    n_trs, n_v = zp.shape
    n_perm = blocks.shape[0]
    order = ar.to(_tr_orders(blocks, block_trs, n_trs))
    k = int(max(1, min(n_perm, memory_mb * 2**20 // (4 * n_trs * n_v))))
    observed = (zp.astype(np.float64) * zr).sum(axis=0) / n_trs
    p_t, r_t = ar.to(zp), ar.to(zr)
    obs = ar.to(observed.astype(np.float32))
    exceed = ar.to(np.zeros(n_v, dtype=np.int64))
    for k0 in range(0, n_perm, k):
        r_perm = ar.xp.einsum("ktv,tv->kv", p_t[order[k0 : k0 + k]], r_t) / n_trs
        exceed += (r_perm >= obs - 1e-6).sum(0)
    return observed, ar.back(exceed)


def fdr(p: np.ndarray, *, q: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Benjamini-Hochberg q-values of one subject's voxels and the voxels at most ``q``.

    `scipy.stats.false_discovery_control` (method "bh") on every voxel's p.

    Returns
    -------
    q_values : array of the shape of ``p``
    significant : bool array, ``q_values <= q``
    """
    from scipy.stats import false_discovery_control

    p = np.asarray(p, dtype=np.float64)
    if not 0 < q < 1:
        raise ValueError(f"the FDR level must be in (0, 1), got {q}")
    if p.size == 0:
        return p.copy(), np.zeros(0, bool)
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1:
        raise ValueError("p-values must be finite and in [0, 1]")
    q_values = false_discovery_control(p, method="bh")
    return q_values, q_values <= q


def n_permutations_of(statistics: Mapping[str, Any] | None) -> int:
    """Permutations the config's ``statistics`` asks for (0: no test)."""
    return int((statistics or {}).get("n_permutations") or 0)


def device_for(backend: str) -> str:
    """Where a fit's permutation test runs: on the GPU when the fit ran there."""
    return "cuda" if "cuda" in str(backend) else "cpu"


def significance_of(
    pred: np.ndarray,
    resp: np.ndarray,
    statistics: Mapping[str, Any] | None,
    *,
    block_trs: int | None = None,
    device: str = "cpu",
    what: str = "",
) -> dict[str, Any]:
    """`permutation_pvalues` and `fdr` of one subject's fit, as arrays and summary fields.

    Parameters
    ----------
    pred, resp : arrays of shape (n_test, n_voxels)
    statistics : mapping
        The config's ``statistics`` (``n_permutations``, ``block_trs``, ``fdr_q``, ``seed``).
    block_trs : int, optional
        Overrides ``statistics["block_trs"]`` (1 for exchangeable test images).
    device, what
        See `permutation_pvalues`.

    Returns
    -------
    dict
        Arrays ``test_p``, ``test_q`` (float32) and ``significant`` (bool) per voxel, and the
        summary's ``n_significant``, ``fraction_significant``, ``n_permutations``,
        ``block_trs``, ``fdr_q``, ``permutation_seconds``.
    """
    stats = dict(statistics or {})
    test = permutation_pvalues(
        pred,
        resp,
        block_trs=int(block_trs if block_trs is not None else stats.get("block_trs", 10)),
        n_permutations=int(stats.get("n_permutations", 1000)),
        seed=int(stats.get("seed", 0)),
        device=device,
        what=what,
    )
    level = float(stats.get("fdr_q", 0.05))
    q, significant = fdr(test["p"], q=level)
    return {
        "test_p": test["p"].astype(np.float32),
        "test_q": q.astype(np.float32),
        "significant": significant,
        "n_significant": int(significant.sum()),
        "fraction_significant": float(significant.mean()) if significant.size else float("nan"),
        "n_permutations": test["n_permutations"],
        "block_trs": test["block_trs"],
        "fdr_q": level,
        "permutation_seconds": float(test["seconds"]),
    }


#: a CV curve within this of its neighbour at an end of the grid is flat there (the penalty no
#: longer changes the prediction's correlation), by the precision of the scores the alphas were
#: chosen from: float32, or bfloat16 (each score within 1e-3 of float32: a difference of two,
#: 2e-3; `fmriscaling.encoding.ridge`)
EDGE_TOLERANCE = {"float32": 1e-4, "bfloat16": 2e-3}


def alpha_edges(
    best_alpha: np.ndarray,
    cv_score: np.ndarray,
    grid: Sequence[float],
    cv_scores_all: np.ndarray | None = None,
    *,
    score_dtype: str = "float32",
) -> dict[str, float]:
    """Fractions of the voxels with a positive CV score whose CV-best alpha is the smallest
    (``fraction_alpha_min``) or the largest (``fraction_alpha_max``) of the grid while their CV
    curve still rises toward that end, and how many voxels have a positive CV score
    (``n_voxels_cv_positive``); NaN fractions when none has.

    A voxel at an end of the grid with a flat curve there (its CV score within
    ``EDGE_TOLERANCE[score_dtype]`` of the next alpha inward) is not counted: its penalty no longer matters, so a wider grid would
    not change it. That is every noise voxel at the large end (a strongly penalised
    prediction keeps its correlation while it shrinks) and well-determined voxels at the small
    end (the fit is already unpenalised). Without ``cv_scores_all`` (n_alphas, n_voxels) every
    voxel at an end is counted.
    """
    grid = np.asarray(grid, dtype=np.float64)
    alpha = np.asarray(best_alpha, dtype=np.float64)
    positive = np.asarray(cv_score) > 0
    n = int(positive.sum())
    if n == 0:
        nan = float("nan")
        return {"n_voxels_cv_positive": 0, "fraction_alpha_min": nan, "fraction_alpha_max": nan}
    order = np.argsort(grid)
    at_min = np.isclose(alpha, grid[order[0]], rtol=1e-5)
    at_max = np.isclose(alpha, grid[order[-1]], rtol=1e-5)
    if cv_scores_all is not None and grid.size > 1:
        tol = EDGE_TOLERANCE[str(score_dtype)]
        curves = np.asarray(cv_scores_all, dtype=np.float64)
        if curves.shape != (grid.size, alpha.size):
            raise ValueError(f"CV curves {curves.shape}, expected {(grid.size, alpha.size)}")
        at_min &= curves[order[0]] - curves[order[1]] > tol
        at_max &= curves[order[-1]] - curves[order[-2]] > tol
    return {
        "n_voxels_cv_positive": n,
        "fraction_alpha_min": float(at_min[positive].mean()),
        "fraction_alpha_max": float(at_max[positive].mean()),
    }


def warn_at_alpha_edges(
    edges: Mapping[str, float],
    grid: Sequence[float],
    *,
    limit: float = 0.05,
    what: str,
    key: str,
) -> list[str]:
    """Log a WARNING per end of the grid that more than ``limit`` of the voxels with a positive
    CV score chose; returns the messages."""
    grid = np.asarray(grid, dtype=np.float64)
    messages = []
    for edge, field, value, advice in (
        ("smallest", "fraction_alpha_min", grid.min(), "lower its start"),
        ("largest", "fraction_alpha_max", grid.max(), "raise its end"),
    ):
        fraction = edges[field]
        if np.isfinite(fraction) and fraction > float(limit):
            message = (
                f"{what}: {100 * fraction:.1f} % of the {edges['n_voxels_cv_positive']} voxels "
                f"with a positive CV score chose the {edge} alpha of the grid ({value:.3g}): "
                f"their best penalty may lie beyond it; widen {key} ({advice})"
            )
            logger.warning("%s", message)
            messages.append(message)
    return messages
