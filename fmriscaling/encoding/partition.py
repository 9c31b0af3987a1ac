"""Banded ridge and variance partitioning of two or three feature spaces (bands), per voxel.

The other standard answer, beside stacking (`fmriscaling.encoding.stacking`), to "which
feature space explains this voxel?" (Nunez-Elizalde, Huth & Gallant 2019; Dupré la Tour et al.
2022). One partition is two or three *bands*, each a (model, layer) feature space; the members of
the stacking stage (`fmriscaling.encoding.oof`) are its single-band fits.

* **Joint banded-ridge fit** (`fit_banded_ridge`): the bands' delayed features side by side, each
  with its own penalty per voxel, ``‖Σ_i X_i b_i − y‖² + Σ_i λ_i ‖b_i‖²``, fitted with himalaya:
  `BandedRidgeCV` in the primal when the training TRs are at least the features, else
  `MultipleKernelRidgeCV` on precomputed linear kernels (the dual). Both search the band weights
  ``γ`` on the simplex at random (``λ_i = α / γ_i``, α from the ridge stage's grid), on the ridge
  stage's time-respecting folds, on the GPU when there is one. The weights tried (`band_weight_grid`): equal weights, each single band (the
  others at 1e-6, so the search can fall back to a band alone), and seeded Dirichlet draws.
  The search maximises CV R² by default (``score="r2"``), not r as the ridge stage does: R²
  counts the prediction's scale, which a variance partition compares (alphas chosen by r leave
  it free; on the demo that made most single-band R² negative).
* **Variance partitioning** (`venn_regions`): on the test story, in R², from the R² of every
  subset of bands, each fitted by the same banded ridge (a single band: one penalty per voxel;
  a 3-band partition fits the three pairs too). The members give each band's layer (``best``:
  chosen by CV there) and are checked to be of the same test responses. With ``h(U) = R²(all) − R²(all ∖ U)`` (what
  only the bands of ``U`` can explain), the region shared by exactly the bands ``S`` is the
  Möbius inversion ``Σ_{∅≠U⊆S} (−1)^{|S|−|U|} h(U)``. With two bands A, B:
  unique(A) = R²(AB) − R²(B), unique(B) = R²(AB) − R²(A), shared = R²(A) + R²(B) − R²(AB), and
  the regions sum to R²(all) exactly. Estimates below zero are noise (a joint fit that does
  worse on the test story than a band alone); they are kept and counted, never clipped.
* The joint model's R² split across its bands with himalaya's `r2_score_split` (product
  measure: the bands' prediction cross-terms shared out, so the split sums to the joint R²).

R² throughout is ``1 − Σ(y − ŷ)² / Σ(y − ȳ)²`` over the test TRs (y centred over them, which
`r2_score_split` assumes). R² and not r, because explained variances add and correlations do
not: ``r(AB)² − r(B)²`` is a unique variance only for calibrated predictions, and ridge
predictions are shrunk.

`fit_partition` is the workflow's job (one subject, one partition); `partition_tables` and
`method_comparison` summarise its outputs per voxel group.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._utils import DataError, atomic_path, write_provenance
from ..stats import r2_columns
from .backend import _free_memory_bytes, _PeakMemory, using_backend
from .ridge import pearson_columns
from .stacking import mean_or_nan, voxel_groups

logger = logging.getLogger(__name__)

__all__ = [
    "BANDED_SOLVERS",
    "COMPARISON_COLUMNS",
    "PARTITION_COLUMNS",
    "BandedFit",
    "band_weight_grid",
    "fit_banded_ridge",
    "fit_partition",
    "method_comparison",
    "partition_tables",
    "region_label",
    "subsets_of",
    "venn_regions",
]

BANDED_SOLVERS = ("auto", "primal", "dual")
#: what the search maximises on the held-out TRs: R² (squared error: the prediction's scale
#: counts, as variance partitioning needs) or r (as the ridge stage: scale left free)
BANDED_SCORES = ("r2", "r")
#: weight of the other bands when the search tries one band alone (0 would divide by zero
#: inside himalaya's primal search, which scales the features by √γ and back)
SINGLE_BAND_FLOOR = 1e-6


# ------------------------------------------------------------------------ the partition


def subsets_of(k: int) -> list[tuple[int, ...]]:
    """Every non-empty subset of ``range(k)``, by size then in order: (0,), (1,), (0, 1), ..."""
    return [s for size in range(1, k + 1) for s in itertools.combinations(range(k), size)]


def venn_regions(
    r2: Mapping[tuple[int, ...], np.ndarray], k: int
) -> dict[tuple[int, ...], np.ndarray]:
    """The variance partition: the R² shared by exactly each subset of bands.

    Parameters
    ----------
    r2 : mapping subset -> array of shape (n_voxels,)
        Test R² of the model of every non-empty subset of ``range(k)`` (`subsets_of`).
    k : int
        Number of bands (2 or 3 in the workflow; any k >= 1 here).

    Returns
    -------
    regions : dict subset -> float64 array of shape (n_voxels,)
        ``(i,)``: unique to band i; larger subsets: shared by exactly those bands. The regions
        sum to ``r2[all bands]`` (up to float64 rounding). Negative values are kept.
    """
    every = tuple(range(k))
    missing = [s for s in subsets_of(k) if s not in r2]
    if missing:
        raise ValueError(f"R² of subsets {missing} missing; a partition needs every subset.")
    full = np.asarray(r2[every], dtype=np.float64)

    def only(subset: tuple[int, ...]) -> np.ndarray:  # h(U) = R²(all) − R²(all ∖ U)
        rest = tuple(i for i in every if i not in subset)
        return full - (np.asarray(r2[rest], dtype=np.float64) if rest else 0.0)

    regions = {}
    for subset in subsets_of(k):
        total = np.zeros_like(full)
        for size in range(1, len(subset) + 1):
            for part in itertools.combinations(subset, size):
                total += (-1) ** (len(subset) - size) * only(part)
        regions[subset] = total
    return regions


def region_label(subset: Sequence[int], bands: Sequence[str]) -> tuple[str, str]:
    """(kind, bands) of a region: ``("unique", "A")`` or ``("shared", "A+B")``."""
    names = "+".join(bands[i] for i in subset)
    return ("unique" if len(subset) == 1 else "shared"), names


def _pearson(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r per column in float64 (0 where a column is constant), as the ridge scores."""
    import himalaya.backend.numpy as numpy_backend  # the module only: the global stays as it is

    return pearson_columns(numpy_backend, np.asarray(pred, np.float64), np.asarray(y, np.float64))


# ------------------------------------------------------------------------- the joint fit


def band_weight_grid(
    k: int, n_iter: int, concentration: Sequence[float] | float = (0.1, 1.0), seed: int = 0
) -> np.ndarray:
    """The band weights ``γ`` (rows on the simplex) the random search tries.

    Row 0: equal weights; rows 1..k: each band alone (the others at `SINGLE_BAND_FLOOR`), so the
    joint model can always fall back to one band where the others only add noise; the rest:
    himalaya's seeded Dirichlet draws (``concentration`` cycled, as himalaya does).

    Returns
    -------
    gammas : float64 array of shape (max(n_iter, k + 1), k); (n_iter, 1) for one band
    """
    from himalaya.kernel_ridge import generate_dirichlet_samples

    if k < 1 or n_iter < 1:
        raise ValueError(f"k={k}, n_iter={n_iter}: expected both >= 1.")
    alone = np.full((k, k), SINGLE_BAND_FLOOR) + np.eye(k) * (1 - k * SINGLE_BAND_FLOOR)
    rows = [np.full((1, k), 1.0 / k)] + ([alone] if k > 1 else [])
    n_draws = n_iter - sum(len(r) for r in rows)
    if n_draws > 0:
        concentration = list(np.atleast_1d(concentration).astype(float))
        rows.append(
            generate_dirichlet_samples(
                n_samples=n_draws, n_kernels=k, concentration=concentration, random_state=seed
            )
        )
    return np.concatenate(rows).astype(np.float64)


@dataclass
class BandedFit:
    """Outcome of `fit_banded_ridge`.

    Attributes
    ----------
    pred : float32 array of shape (k, n_test, n_voxels)
        Each band's part of the joint test prediction (they sum to it).
    band_weights : float32 array of shape (k, n_voxels)
        The chosen ``γ`` per voxel (on the simplex).
    alphas : float32 array of shape (n_voxels,)
        The chosen α per voxel (band i's penalty is ``α / γ_i``).
    cv_score : float32 array of shape (n_voxels,)
        Mean CV score (R² or r) at the chosen weights and α.
    solver : {"primal", "dual"}
    backend : str
    n_iter : int
        Band weights tried.
    n_targets_batch, n_alphas_batch : int
        Voxels and alphas per batch of the CV search.
    seconds : float
    peak_memory_bytes : int
    """

    pred: np.ndarray
    band_weights: np.ndarray
    alphas: np.ndarray
    cv_score: np.ndarray
    solver: str
    backend: str
    n_iter: int
    n_targets_batch: int
    n_alphas_batch: int
    seconds: float
    peak_memory_bytes: int


def _batches(
    solver: str,
    n_train: int,
    n_test: int,
    n_features: int,
    n_voxels: int,
    n_alphas: int,
    backend_name: str,
    n_targets_batch: int | str,
) -> tuple[int, int, bool]:
    """(voxels, alphas) per batch of the search, and whether the responses stay on the host,
    from a share of the free memory.

    himalaya moves all the training responses to the device unless told to keep them on the
    host: they are counted first, and kept on the host when they would take more than half.
    Per alpha of a batch the primal search holds an (n_features x n_train) map and its product
    with a fold's validation rows (~n_train / 4 x n_train); the dual one (n_train x n_train).
    Half of the rest goes to alphas, half to the voxels: per voxel, its validation predictions
    at a batch of alphas, its refit weights at each of those alphas and their copy (himalaya
    forms a batch's weights at every alpha of the batch, n_features or n_train each), and its
    responses.
    """
    free = _free_memory_bytes(backend_name)
    responses = 4 * n_train * n_voxels
    on_host = responses > free // 2
    budget = (free - (0 if on_host else responses)) // 2
    n_val = max(n_train // 4, 1)
    width = n_features if solver == "primal" else n_train
    per_alpha = 4 * n_train * (width + n_val)
    n_alphas_batch = int(np.clip(budget // max(per_alpha, 1), 1, n_alphas))
    if n_targets_batch == "auto":
        per_voxel = 4 * n_alphas_batch * (n_val + 2 * width) + 8 * (n_train + n_test)
        n_targets_batch = int(np.clip(budget // per_voxel, 1, n_voxels))
    return int(n_targets_batch), n_alphas_batch, on_host


def fit_banded_ridge(
    X_train: Sequence[np.ndarray],
    Y_train: np.ndarray,
    X_test: Sequence[np.ndarray],
    *,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    alphas: Sequence[float],
    n_iter: int | np.ndarray = 20,
    concentration: Sequence[float] | float = (0.1, 1.0),
    seed: int = 0,
    solver: str = "auto",
    backend: str = "auto",
    n_targets_batch: int | str = "auto",
    score: str = "r2",
) -> BandedFit:
    """Fit banded ridge (one penalty per band and voxel) with himalaya, and predict the test TRs.

    Parameters
    ----------
    X_train : sequence of k float arrays of shape (n_train, p_i)
        Each band's delayed, z-scored training features (no intercept is fitted).
    Y_train : float array of shape (n_train, n_voxels)
    X_test : sequence of k float arrays of shape (n_test, p_i)
    folds : sequence of (train_idx, val_idx)
        The ridge stage's time-respecting CV folds (`fmriscaling.encoding.folds.cv_folds`).
    alphas : sequence of float
        The α grid (himalaya λ convention, the ridge stage's ``encoding.alphas``).
    n_iter : int or array of shape (n, k)
        Band weights to try: a count (`band_weight_grid`) or the weights themselves.
    concentration, seed
        Dirichlet concentration(s) and seed of the draws (`band_weight_grid`).
    solver : {"auto", "primal", "dual"}
        ``"auto"``: primal (`BandedRidgeCV`) when n_train >= Σ p_i, else dual
        (`MultipleKernelRidgeCV` on precomputed linear kernels).
    backend : str
        himalaya backend for this fit (`fmriscaling.encoding.backend.using_backend`).
    n_targets_batch : int or "auto"
        Voxels per batch of the CV search and of the refit (``"auto"``: from free memory).
    score : {"r2", "r"}
        What the search maximises per voxel, averaged over folds (`BANDED_SCORES`). With one
        band and ``"r"`` this is the ridge stage's fit (`fmriscaling.encoding.ridge`).

    Returns
    -------
    fit : BandedFit
    """
    from himalaya.kernel_ridge import MultipleKernelRidgeCV
    from himalaya.ridge import BandedRidgeCV
    from himalaya.scoring import correlation_score, r2_score

    start = time.perf_counter()
    if score not in BANDED_SCORES:
        raise ValueError(f"score={score!r}: expected one of {BANDED_SCORES}.")
    k = len(X_train)
    if k < 1 or len(X_test) != k:
        raise ValueError(f"{k} training bands and {len(X_test)} test bands; expected k >= 1 each.")
    if solver not in BANDED_SOLVERS:
        raise ValueError(f"solver={solver!r}: expected one of {BANDED_SOLVERS}.")
    X_train = [np.ascontiguousarray(x, dtype=np.float32) for x in X_train]
    X_test = [np.ascontiguousarray(x, dtype=np.float32) for x in X_test]
    Y_train = np.ascontiguousarray(Y_train, dtype=np.float32)
    n_train, n_voxels = Y_train.shape
    n_test = X_test[0].shape[0]
    bad = [i for i in range(k) if X_train[i].shape[0] != n_train or X_test[i].shape[0] != n_test]
    if bad:
        raise ValueError(
            f"bands {bad} have other TR counts than Y_train ({n_train}) and band 0's test "
            f"features ({n_test}); every band must be built on the same TRs."
        )
    n_features = sum(x.shape[1] for x in X_train)
    if solver == "auto":
        solver = "primal" if n_train >= n_features else "dual"
    gammas = (
        band_weight_grid(k, int(n_iter), concentration, seed)
        if np.ndim(n_iter) == 0
        else np.asarray(n_iter, dtype=np.float64)
    )
    if (
        gammas.ndim != 2
        or gammas.shape[1] != k
        or np.any(gammas < 0)
        or not np.allclose(gammas.sum(1), 1.0)
    ):
        raise ValueError(
            f"band weights of shape {gammas.shape}: expected rows of {k} weights >= 0 that "
            "sum to 1 (the simplex), or a count (band_weight_grid)."
        )
    alphas = np.asarray(alphas, dtype=np.float32)
    with using_backend(backend) as (bk, backend_name):
        peak = _PeakMemory(backend_name)
        voxel_batch, alpha_batch, y_on_host = _batches(
            solver,
            n_train,
            n_test,
            n_features,
            n_voxels,
            len(alphas),
            backend_name,
            n_targets_batch,
        )
        logger.info(
            "banded ridge (%s, %s, CV %s): %d bands (%s features), %d training TRs, %d voxels; "
            "%d band weights x %d alphas, %d voxels and %d alphas per batch",
            solver,
            backend_name,
            score,
            k,
            "+".join(str(x.shape[1]) for x in X_train),
            n_train,
            n_voxels,
            len(gammas),
            len(alphas),
            voxel_batch,
            alpha_batch,
        )
        solver_params = dict(
            n_iter=gammas,
            alphas=alphas,
            score_func=r2_score if score == "r2" else correlation_score,
            n_targets_batch=voxel_batch,
            n_targets_batch_refit=voxel_batch,
            n_alphas_batch=alpha_batch,
            progress_bar=False,
        )
        folds = [(np.asarray(tr), np.asarray(va)) for tr, va in folds]
        if solver == "primal":
            model = BandedRidgeCV(
                groups="input",
                solver="random_search",
                solver_params=solver_params,
                cv=folds,
                Y_in_cpu=y_on_host,
            )
            model.fit(X_train, Y_train)
            pred = model.predict(X_test, split=True)
        else:
            kernels = np.stack([x @ x.T for x in X_train])
            model = MultipleKernelRidgeCV(
                kernels="precomputed",
                solver="random_search",
                solver_params=solver_params,
                cv=folds,
                random_state=seed,
                Y_in_cpu=y_on_host,
            )
            model.fit(kernels, Y_train)
            del kernels
            test_kernels = np.stack([xt @ x.T for xt, x in zip(X_test, X_train, strict=True)])
            pred = model.predict(test_kernels, split=True)
        deltas = bk.to_numpy(model.deltas_).astype(np.float64)
        cv_scores = bk.to_numpy(model.cv_scores_)
        pred = bk.to_numpy(pred).astype(np.float32)
        peak_bytes = peak.peak()
    # γ ∝ exp(δ): each voxel's band weights on the simplex, α = 1 / Σ exp(δ)
    shifted = np.exp(deltas - deltas.max(0))
    weights = shifted / shifted.sum(0)
    alpha = 1.0 / np.exp(deltas).sum(0)
    return BandedFit(
        pred=pred,
        band_weights=weights.astype(np.float32),
        alphas=alpha.astype(np.float32),
        cv_score=np.max(cv_scores, axis=0).astype(np.float32),
        solver=solver,
        backend=backend_name,
        n_iter=len(gammas),
        n_targets_batch=voxel_batch,
        n_alphas_batch=alpha_batch,
        seconds=time.perf_counter() - start,
        peak_memory_bytes=int(peak_bytes),
    )


# ------------------------------------------------------------------------------ the job


def _band_designs(
    feature_files: Sequence[str | os.PathLike],
    responses: Mapping[str, str | os.PathLike] | str | os.PathLike,
    train_stories: Sequence[str],
    settings: Mapping[str, Any],
):
    """Every band's design, the responses (read once from a prepared-responses file), the
    ridge stage's folds and alpha grid (`fmriscaling.encoding.inputs.prepare_fit`'s)."""
    from .folds import cv_folds
    from .inputs import alpha_grid, check_story_lists, feature_design, opened_prepared, prepare_fit

    test_story = str(settings["test_story"])
    design_keys = ("delays", "test_extra_trim")
    extra = {"extra_trim_train": settings.get("extra_trim_train")}
    if not isinstance(responses, str | os.PathLike):  # one response file per story
        keys = ("alphas", "cv", "n_folds", *design_keys)
        fits = [
            prepare_fit(
                f,
                responses,
                train_stories,
                test_story,
                **{k: settings[k] for k in keys},
                bootstrap=settings.get("bootstrap"),
                seed=settings.get("seed", 0),
                **extra,
            )
            for f in feature_files
        ]
        first = fits[0]
        designs = [fit.design for fit in fits]
        Y_train, Y_test = first.design.Y_train, first.design.Y_test
        return designs, Y_train, Y_test, first.folds, first.alphas
    check_story_lists(list(train_stories), test_story, None, settings["cv"])
    designs = [
        feature_design(
            f, train_stories, test_story, **{k: settings[k] for k in design_keys}, **extra
        )
        for f in feature_files
    ]
    first = designs[0]
    for f, design in zip(feature_files, designs, strict=True):
        if design.story_lengths != first.story_lengths or design.n_trs != first.n_trs:
            raise DataError(
                f"{f}: TRs per story {design.n_trs} differ from {feature_files[0]}'s "
                f"{first.n_trs}; every band must come from the same stimulus timing. Rerun "
                "the out-of-date feature extraction."
            )
    with opened_prepared(responses, first, feature_files[0]) as prepared:
        Y_train = prepared.columns(list(train_stories)).read(slice(None))
        Y_test = prepared.read(test_story)
    folds = cv_folds(
        first.story_lengths,
        cv=settings["cv"],
        n_folds=settings["n_folds"],
        bootstrap=settings.get("bootstrap"),
        seed=settings.get("seed", 0),
    )
    return designs, Y_train, Y_test, folds, alpha_grid(settings["alphas"])


def fit_partition(
    *,
    member_files: Sequence[str | os.PathLike],
    bands: Sequence[str],
    kinds: Sequence[str],
    feature_dirs: Sequence[str | os.PathLike],
    response_files: Mapping[str, str | os.PathLike] | str | os.PathLike,
    train_stories: Sequence[str],
    out_npz: str | os.PathLike,
    encoding: Mapping[str, Any],
    partitioning: Mapping[str, Any] | None = None,
    statistics: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One subject's partition: the joint fits, the variance partition and the R² split.

    Parameters
    ----------
    member_files : sequence of k path-likes
        The bands' stack-member files (`fmriscaling.encoding.oof`): the resolved layer of each
        band (``"best"`` chosen there by CV) and its single-band test predictions.
    bands : sequence of k str
        Band labels (tables, figures).
    kinds : sequence of k str
        Each band's model kind (``speech``, ``text``).
    feature_dirs : sequence of k path-likes
        Each band's model feature folder (``layer-{l}.h5``).
    response_files : path-like, or mapping story -> path-like
        The subject's prepared responses (as the workflow's fits read them), or one response
        file per story.
    train_stories : sequence of str
    out_npz : path-like
        ``scores.npz`` (arrays below), written atomically, with a ``.provenance.json``.
    encoding : mapping
        The ridge stage's settings: ``test_story``, ``delays``, ``alphas``, ``cv``,
        ``n_folds``, ``test_extra_trim``, ``backend`` (and ``bootstrap``, ``seed`` for
        bootstrap CV, ``extra_trim_train``).
    partitioning : mapping, optional
        The config's ``partitioning``: ``n_iter``, ``concentration``, ``seed``, ``solver``,
        ``n_targets_batch``, ``score``.
    statistics : mapping, optional
        The config's ``statistics``: the joint model's test r gets a block permutation p, a
        Benjamini-Hochberg q and a significance flag (`fmriscaling.encoding.significance`).
    params, meta : mapping, optional
        Rule params (provenance) and labels (subject, partition).

    Returns
    -------
    summary : dict

    Notes
    -----
    Every subset of bands is fitted with the same estimator (`fit_banded_ridge`, scored by
    ``partitioning.score``; a single band is a ridge with one penalty per voxel), so that the
    regions compare like with like. The members' own test predictions (the ridge stage's fits,
    alphas chosen by r, which leaves their scale free and costs them R²) are kept beside as
    ``member_r`` and ``member_r2``.

    Arrays of ``scores.npz`` (k bands, m = 2^k − 1 subsets, v voxels): ``bands``,
    ``band_models``, ``band_kinds``, ``band_layers`` (k,); ``subsets`` (m,) as "A+B" labels and
    ``subset_r2`` (m, v); ``components``, ``component_kinds`` (m,) and ``component_r2`` (m, v)
    (the `venn_regions`, same order as ``subsets``); ``single_r``, ``member_r``,
    ``member_r2`` (k, v); ``joint_r``, ``joint_r2``, ``joint_alpha``, ``joint_cv_score`` (v,);
    ``split_r2`` and ``band_weights`` (k, v); with the permutation test ``joint_p``,
    ``joint_q``, ``joint_significant`` (v,).
    """
    from himalaya.scoring import r2_score_split

    from .oof import MemberPredictions
    from .significance import device_for, n_permutations_of, significance_of

    start = time.perf_counter()
    k = len(member_files)
    if not 2 <= k == len(bands) == len(kinds) == len(feature_dirs):
        raise ValueError(
            f"{k} member files, {len(bands)} band labels, {len(kinds)} kinds, "
            f"{len(feature_dirs)} feature folders; "
            "expected the same number (2 or more) of each."
        )
    opts = dict(partitioning or {})
    # the members: the layer of each band (chosen there by CV for "best") and, for the record,
    # their own test predictions (the ridge stage's fits, alphas chosen by r)
    member_pred, layers, models = [], [], []
    with contextlib.ExitStack() as stack:
        members = [stack.enter_context(MemberPredictions(p)) for p in member_files]
        for member in members:
            member_pred.append(np.asarray(member.test_block(slice(None))[0], np.float32))
            layers.append(int(member.attrs["layer"]))
            models.append(str(member.attrs["model"]))
        test_sha = {m.attrs["test_true_sha256"] for m in members}
    spaces = list(zip(models, layers, strict=True))
    if len(set(spaces)) < k:
        raise DataError(
            f"the members {[str(p) for p in member_files]} are the feature spaces {spaces}: "
            "two bands resolved to the same model and layer (e.g. layer best and the number "
            "it chose), so the partition would call all their variance shared. Give the bands "
            "different layers or models in the config's partitions."
        )
    from ..features.io import layer_path

    feature_files = [layer_path(d, lay) for d, lay in zip(feature_dirs, layers, strict=True)]
    designs, Y_train, Y_test, folds, alphas = _band_designs(
        feature_files, response_files, train_stories, encoding
    )
    Y_test = np.ascontiguousarray(Y_test, dtype=np.float32)
    sha = hashlib.sha256(Y_test.tobytes()).hexdigest()
    if test_sha != {sha}:
        raise DataError(
            f"the member files {[str(p) for p in member_files]} were fitted on other test "
            f"responses than {response_files} give now (checksums {sorted(test_sha)} vs "
            f"{sha}); rerun their stack_member jobs."
        )
    y_c = Y_test.astype(np.float64) - Y_test.mean(0, dtype=np.float64)
    n_voxels = Y_test.shape[1]
    score = str(opts.get("score", "r2"))
    # every subset of bands with one estimator: banded ridge scored by `score` (a single band:
    # one ridge penalty per voxel, no band weights to search)
    r2: dict[tuple[int, ...], np.ndarray] = {}
    fits: dict[tuple[int, ...], BandedFit] = {}
    for subset in subsets_of(k):
        logger.info("fit of %s", " + ".join(bands[i] for i in subset))
        fit = fit_banded_ridge(
            [designs[i].X_train for i in subset],
            Y_train,
            [designs[i].X_test for i in subset],
            folds=folds,
            alphas=alphas,
            n_iter=int(opts.get("n_iter", 20)) if len(subset) > 1 else 1,
            concentration=opts.get("concentration", (0.1, 1.0)),
            seed=int(opts.get("seed", 0)),
            solver=opts.get("solver", "auto"),
            backend=encoding.get("backend", "auto"),
            n_targets_batch=opts.get("n_targets_batch", "auto"),
            score=score,
        )
        fits[subset] = fit
        r2[subset] = r2_columns(fit.pred.sum(0), y_c)
        logger.info(
            "  %s solver, %.1f s, mean test R² %.4f", fit.solver, fit.seconds, r2[subset].mean()
        )
    del Y_train, designs
    every = tuple(range(k))
    joint = fits[every]
    joint_pred = joint.pred.sum(0)
    regions = venn_regions(r2, k)
    subsets = subsets_of(k)
    labels = [region_label(s, bands) for s in subsets]
    with using_backend("numpy"), np.errstate(divide="ignore", invalid="ignore"):
        split = np.asarray(r2_score_split(y_c, joint.pred.astype(np.float64)))
    split[:, (y_c * y_c).sum(0) == 0] = 0.0  # a constant test response: R² 0, as r2_columns
    out: dict[str, np.ndarray] = {
        "bands": np.array(bands),
        "band_models": np.array(models),
        "band_kinds": np.array([str(kind) for kind in kinds]),
        "band_layers": np.array(layers, dtype=np.int64),
        "subsets": np.array(["+".join(bands[i] for i in s) for s in subsets]),
        "subset_r2": np.stack([r2[s] for s in subsets]).astype(np.float32),
        "components": np.array([names for _, names in labels]),
        "component_kinds": np.array([kind for kind, _ in labels]),
        "component_r2": np.stack([regions[s] for s in subsets]).astype(np.float32),
        "single_r": np.stack([_pearson(fits[(i,)].pred[0], Y_test) for i in range(k)]).astype(
            np.float32
        ),
        "member_r": np.stack([_pearson(p, Y_test) for p in member_pred]).astype(np.float32),
        "member_r2": np.stack([r2_columns(p, y_c) for p in member_pred]).astype(np.float32),
        "joint_r": _pearson(joint_pred, Y_test).astype(np.float32),
        "joint_r2": r2[every].astype(np.float32),
        "split_r2": split.astype(np.float32),
        "band_weights": joint.band_weights,
        "joint_alpha": joint.alphas,
        "joint_cv_score": joint.cv_score,
    }
    significance: dict[str, Any] = {}
    if n_permutations_of(statistics) > 0:
        significance = significance_of(
            joint_pred,
            Y_test,
            statistics,
            device=device_for(joint.backend),
            what=f"{out_npz} (joint banded ridge)",
        )
        renamed = {"test_p": "joint_p", "test_q": "joint_q", "significant": "joint_significant"}
        out.update({new: significance.pop(old) for old, new in renamed.items()})
    out_npz = Path(out_npz)
    with atomic_path(out_npz, suffix=".npz") as tmp:
        np.savez(tmp, **out)
    summary = {
        **dict(meta or {}),
        "bands": list(bands),
        "layers": layers,
        "n_voxels": n_voxels,
        "n_test_trs": int(Y_test.shape[0]),
        "mean_joint_r2": float(out["joint_r2"].mean(dtype=np.float64)),
        "mean_single_r2": [float(r2[(i,)].mean()) for i in range(k)],
        "mean_components": {
            names: float(regions[s].mean()) for s, (_, names) in zip(subsets, labels, strict=True)
        },
        "fraction_negative": {
            names: float(np.mean(regions[s] < 0))
            for s, (_, names) in zip(subsets, labels, strict=True)
        },
        "fits": {
            "+".join(bands[i] for i in s): {
                "solver": f.solver,
                "backend": f.backend,
                "n_iter": f.n_iter,
                "n_targets_batch": f.n_targets_batch,
                "n_alphas_batch": f.n_alphas_batch,
                "seconds": f.seconds,
                "peak_memory_bytes": f.peak_memory_bytes,
            }
            for s, f in fits.items()
        },
        "seconds": time.perf_counter() - start,
        **significance,
    }
    write_provenance(
        out_npz,
        params,
        summary=summary,
        member_files=[str(p) for p in member_files],
        feature_files=[str(f) for f in feature_files],
    )
    logger.info(
        "wrote %s: mean joint R² %.4f; %s",
        out_npz,
        summary["mean_joint_r2"],
        ", ".join(f"{n} {v:.4f}" for n, v in summary["mean_components"].items()),
    )
    return summary


# ----------------------------------------------------------------------------- tables

#: partition.csv: per subject, partition and voxel group, the mean of each measure
PARTITION_COLUMNS = (
    "subject",
    "partition",
    "group",
    "group_source",
    "n_voxels",
    "measure",
    "bands",
    "mean_r2",
    "fraction_negative",
)
#: method_comparison.csv: per subject and voxel group, each method's mean test r and R²
COMPARISON_COLUMNS = (
    "subject",
    "group",
    "group_source",
    "n_voxels",
    "method",
    "name",
    "mean_r",
    "mean_r2",
    "fraction_significant",
)


def _load(path: str | os.PathLike, rule: str) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist; run the {rule} rule for it.")
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def partition_tables(
    entries: Sequence[Mapping[str, Any]],
    voxel_labels: Mapping[str, np.ndarray] | None = None,
    voxel_sets: Mapping[str, Sequence[tuple[str, str, np.ndarray]]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``partition.csv`` (per voxel group) and the per-voxel table of every partition.

    Parameters
    ----------
    entries : sequence of mapping
        ``subject``, ``partition`` and ``path`` (its ``scores.npz``, `fit_partition`).
    voxel_labels, voxel_sets
        As `fmriscaling.encoding.stacking.stacking_tables` takes them.

    Returns
    -------
    summary : DataFrame
        `PARTITION_COLUMNS`; ``measure`` is ``unique`` / ``shared`` (the regions), ``joint``
        (the joint model's R²), ``single`` (a band alone) or ``split`` (`r2_score_split`).
    voxels : DataFrame
        subject, partition, voxel, measure, bands, value: the same measures per voxel, and
        ``joint_r``, ``band_weight``, ``joint_p``, ``joint_q``, ``joint_significant``.
    """
    rows, voxel_frames = [], []
    for entry in entries:
        path = Path(entry["path"])
        s = _load(path, "fit_partition")
        bands = s["bands"].astype(str)
        everything = "+".join(bands)
        measures = [
            *zip(
                s["component_kinds"].astype(str),
                s["components"].astype(str),
                s["component_r2"],
                strict=True,
            ),
            ("joint", everything, s["joint_r2"]),
            *(("single", b, s["subset_r2"][i]) for i, b in enumerate(bands)),
            *(("split", b, s["split_r2"][i]) for i, b in enumerate(bands)),
        ]
        n_voxels = s["joint_r2"].size
        keys = {"subject": entry["subject"], "partition": entry["partition"]}
        for group, source, voxels in voxel_groups(
            path, entry["subject"], n_voxels, voxel_labels, voxel_sets
        ):
            for measure, names, values in measures:
                chosen = np.asarray(values[voxels], dtype=np.float64)
                rows.append(
                    {
                        **keys,
                        "group": group,
                        "group_source": source,
                        "n_voxels": int(voxels.sum()),
                        "measure": measure,
                        "bands": names,
                        "mean_r2": mean_or_nan(chosen),
                        "fraction_negative": mean_or_nan((chosen < 0).astype(np.float64)),
                    }
                )
        per_voxel = [
            *measures,
            ("joint_r", everything, s["joint_r"]),
            *(("band_weight", b, s["band_weights"][i]) for i, b in enumerate(bands)),
            *(
                (name, everything, s[name].astype(np.float64))
                for name in ("joint_p", "joint_q", "joint_significant")
                if name in s
            ),
        ]
        voxel_frames += [
            pd.DataFrame(
                {
                    **keys,
                    "voxel": np.arange(n_voxels),
                    "measure": measure,
                    "bands": names,
                    "value": np.asarray(values, dtype=np.float64),
                }
            )
            for measure, names, values in per_voxel
        ]
    summary = pd.DataFrame(rows, columns=list(PARTITION_COLUMNS))
    voxels = (
        pd.concat(voxel_frames, ignore_index=True)
        if voxel_frames
        else pd.DataFrame(columns=["subject", "partition", "voxel", "measure", "bands", "value"])
    )
    return summary, voxels


def method_comparison(
    partitions: Sequence[Mapping[str, Any]],
    stacks: Sequence[Mapping[str, Any]],
    voxel_labels: Mapping[str, np.ndarray] | None = None,
    voxel_sets: Mapping[str, Sequence[tuple[str, str, np.ndarray]]] | None = None,
) -> pd.DataFrame:
    """Which method explains a voxel group best: single bands, stacks, joint banded ridge.

    Per subject and voxel group, one row per method, named by feature space
    (``<model>/layer-<L>``) or by stack / partition:

    * ``single``: a band alone, fitted as the partition fits it (the search's score, R² by
      default), once per feature space however many partitions hold it;
    * ``member``: the same feature space as the ridge stage fits it (its stack member: alphas
      chosen by r, which leaves the prediction's scale free and costs R²);
    * ``best single``: the ``single`` row with the highest mean test r in that group, chosen on
      the test story per group, as the stacking table picks its best member (an optimistic
      baseline for the methods chosen by cross-validation);
    * ``stack`` (each stack, `fmriscaling.encoding.stacking`, whose members are calibrated) and
      ``banded`` (each partition's joint model),

    with the mean test r and R² over the group's voxels and the fraction significant (NaN where
    the method has no permutation test).

    Parameters
    ----------
    partitions : sequence of mapping
        ``subject``, ``partition``, ``path`` (`fit_partition`'s ``scores.npz``).
    stacks : sequence of mapping
        ``subject``, ``stack``, ``path`` (`stack_regression`'s ``scores.npz``).
    voxel_labels, voxel_sets
        As in `partition_tables`.

    Returns
    -------
    DataFrame
        `COMPARISON_COLUMNS`.

    Raises
    ------
    DataError
        A missing file, a stack written before ``stack_r2`` existed, or files of one subject
        with different voxel counts (naming the file to rerun).
    """
    rows = []
    Method = tuple[str, str, np.ndarray, np.ndarray, "np.ndarray | None", Path]
    by_subject: dict[str, list[Method]] = {}
    for entry in partitions:
        path = Path(entry["path"])
        s = _load(path, "fit_partition")
        methods = by_subject.setdefault(entry["subject"], [])
        sig = s.get("joint_significant")
        methods.append(("banded", str(entry["partition"]), s["joint_r"], s["joint_r2"], sig, path))
        for i, (model, layer) in enumerate(zip(s["band_models"], s["band_layers"], strict=True)):
            space = f"{model}/layer-{int(layer)}"
            if any(m[:2] == ("single", space) for m in methods):
                continue
            methods.append(("single", space, s["single_r"][i], s["subset_r2"][i], None, path))
            methods.append(("member", space, s["member_r"][i], s["member_r2"][i], None, path))
    for entry in stacks:
        path = Path(entry["path"])
        s = _load(path, "stack_regression")
        if "stack_r2" not in s:
            raise DataError(
                f"{path} has no stack_r2 (written by an older version); rerun its "
                "stack_regression job."
            )
        methods = by_subject.setdefault(entry["subject"], [])
        sig = s.get("stack_significant")
        methods.append(("stack", str(entry["stack"]), s["stack_r"], s["stack_r2"], sig, path))
    for subject, methods in by_subject.items():
        n_voxels = methods[0][2].size
        for *_, r, _r2, _sig, path in methods:
            if r.size != n_voxels:
                raise DataError(
                    f"{path} has {r.size} voxels, {methods[0][5]} has {n_voxels}; both must "
                    f"come from subject {subject}'s current responses. Rerun the out-of-date one."
                )
        for group, source, voxels in voxel_groups(
            methods[0][5], subject, n_voxels, voxel_labels, voxel_sets
        ):
            keys = {
                "subject": subject,
                "group": group,
                "group_source": source,
                "n_voxels": int(voxels.sum()),
            }
            group_rows = [
                {
                    **keys,
                    "method": method,
                    "name": name,
                    "mean_r": mean_or_nan(r[voxels]),
                    "mean_r2": mean_or_nan(r2[voxels]),
                    "fraction_significant": (
                        mean_or_nan(sig[voxels].astype(np.float64))
                        if sig is not None
                        else float("nan")
                    ),
                }
                for method, name, r, r2, sig, _ in methods
            ]
            singles = [row for row in group_rows if row["method"] == "single"]
            if singles and keys["n_voxels"]:
                best = max(singles, key=lambda row: row["mean_r"])
                group_rows.append({**best, "method": "best single"})
            rows += group_rows
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))
