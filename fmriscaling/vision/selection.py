"""Per-vertex choice of (layer, pooling size) by cross-validated ridge, then refit and test.

Matsuyama et al. 2023 (METHODS.md, section 2): for every candidate feature space -- one layer
of a vision model max-pooled to ``k x k`` -- a ridge model is fitted to every vertex with its
own alpha chosen by K-fold cross-validation over the training images (8 folds; alphas
logspace(0, 15, 30)); each vertex then takes the candidate with the best cross-validated
correlation, whose refit on all training images predicts the test images. Primal or dual
(kernel) ridge is chosen by the shape (features vs images) in
`fmriscaling.encoding.ridge.fit_ridge_cv`, which fits all vertices of a candidate at once.

The loop runs over candidates and is vectorised over vertices: memory holds one candidate's
feature matrix, the best test predictions so far and the (n_candidates, n_vertices) CV scores.

Which images train and which test, the sweep's subsets and the folds are
`fmriscaling.vision.splits`. Features and responses are z-scored with the training images'
statistics (no intercept is fitted); test data are scaled with the same statistics. Pearson r
ignores any remaining offset.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._utils import DataError, atomic_path, write_json, write_provenance
from ..encoding.folds import Fold
from ..encoding.significance import (
    alpha_edges,
    device_for,
    n_permutations_of,
    significance_of,
    warn_at_alpha_edges,
)
from ..sweep import draw_subset
from .dataset import check_image_counts, read_fmri
from .splits import image_folds, split_rows, standardize

logger = logging.getLogger(__name__)

__all__ = [
    "Selection",
    "fit_vision_ensemble",
    "fit_vision_selection",
    "fit_vision_sweep",
    "select_per_vertex",
]


# ------------------------------------------------------------------------------------- splits


# ----------------------------------------------------------------------------------- selection


@dataclass
class Selection:
    """Outcome of `select_per_vertex`.

    Attributes
    ----------
    candidates : list of (layer, k)
    best : int array of shape (n_vertices,)
        Index into ``candidates`` of each vertex's choice.
    cv_scores : float32 array of shape (n_candidates, n_vertices)
        Mean CV correlation of every candidate at its own best alpha.
    alphas : float32 array of shape (n_vertices,)
        Alpha of the chosen candidate.
    test_r : float32 array of shape (n_vertices,)
        Test correlation of the chosen candidate's refit.
    test_pred : float32 array of shape (n_test, n_vertices) or None
    fits : list of dict
        Per candidate: layer, k, n_features, solver, seconds.
    backend, score_dtype : str
    fit_seconds : float
    peak_memory_bytes : int
    cv_curve : float32 array of shape (n_alphas, n_vertices), optional
        Each vertex's CV score at every alpha, of its chosen candidate.
    """

    candidates: list[tuple[int, int]]
    best: np.ndarray
    cv_scores: np.ndarray
    alphas: np.ndarray
    test_r: np.ndarray
    test_pred: np.ndarray | None
    fits: list[dict[str, Any]] = field(default_factory=list)
    backend: str = ""
    score_dtype: str = ""
    fit_seconds: float = 0.0
    peak_memory_bytes: int = 0
    cv_curve: np.ndarray | None = None

    @property
    def layer(self) -> np.ndarray:
        """Chosen layer per vertex."""
        return np.asarray([c[0] for c in self.candidates], dtype=np.int64)[self.best]

    @property
    def pool(self) -> np.ndarray:
        """Chosen pooling size k per vertex."""
        return np.asarray([c[1] for c in self.candidates], dtype=np.int64)[self.best]


def select_per_vertex(
    candidates: Sequence[tuple[int, int]],
    load: Callable[[tuple[int, int]], tuple[np.ndarray, np.ndarray]],
    Y_train: np.ndarray,
    Y_test: np.ndarray,
    *,
    alphas: Sequence[float],
    folds: Sequence[Fold],
    backend: str = "auto",
    solver: str = "auto",
    score_dtype: str = "auto",
    return_test_pred: bool = False,
) -> Selection:
    """Fit every candidate to every vertex, keep each vertex's best by CV correlation.

    Parameters
    ----------
    candidates : sequence of (layer, k)
        Feature spaces, tried in this order (ties keep the earlier one).
    load : callable (layer, k) -> (X_train, X_test)
        Features of a candidate: arrays of shape (n_train, n_features) and (n_test,
        n_features); called once per candidate, so memory holds one at a time.
    Y_train : array of shape (n_train, n_vertices)
    Y_test : array of shape (n_test, n_vertices)
    alphas : sequence of float
        Ridge penalties (himalaya's λ; the paper's logspace(0, 15, 30)).
    folds : sequence of (train_idx, val_idx)
        CV folds over the training rows (`image_folds`).
    backend, solver, score_dtype : str
        Passed to `fmriscaling.encoding.ridge.fit_ridge_cv` (solver "auto": primal when
        images >= features, else dual).
    return_test_pred : bool
        Keep the chosen candidates' test predictions.

    Returns
    -------
    selection : Selection
    """
    from ..encoding.ridge import fit_ridge_cv

    if not candidates:
        raise DataError("no (layer, k) candidates to select from")
    started = time.perf_counter()
    Y_train, Y_test = standardize(Y_train, Y_test)
    n_vertices = Y_train.shape[1]
    cv_scores = np.empty((len(candidates), n_vertices), dtype=np.float32)
    best = np.zeros(n_vertices, dtype=np.int64)
    best_alpha = np.zeros(n_vertices, dtype=np.float32)
    test_r = np.zeros(n_vertices, dtype=np.float32)
    test_pred = np.zeros(Y_test.shape, dtype=np.float32) if return_test_pred else None
    # the chosen candidate's CV curve over the alphas (the alpha-grid diagnostic reads it)
    cv_curve = np.zeros((len(alphas), n_vertices), dtype=np.float32)
    fits: list[dict[str, Any]] = []
    backend_name = dtype_used = ""
    peak = 0
    for i, (layer, k) in enumerate(candidates):
        X_train, X_test = standardize(*load((layer, k)))
        n_features = X_train.shape[1]
        result = fit_ridge_cv(
            X_train,
            Y_train,
            alphas=alphas,
            folds=folds,
            X_test=X_test,
            Y_test=Y_test,
            backend=backend,
            solver=solver,
            score_dtype=score_dtype,
            return_test_pred=return_test_pred,
        )
        del X_train, X_test
        cv_scores[i] = result.cv_scores
        # strictly better: a tie keeps the earlier candidate
        if i == 0:
            better = np.ones(n_vertices, dtype=bool)
        else:
            better = result.cv_scores > cv_scores[best, np.arange(n_vertices)]
        best[better] = i
        best_alpha[better] = result.alphas[better]
        test_r[better] = result.test_r[better]
        if result.cv_scores_all is not None:
            cv_curve[:, better] = result.cv_scores_all[:, better]
        if test_pred is not None:
            test_pred[:, better] = result.test_pred[:, better]
        backend_name, dtype_used = result.backend, result.score_dtype
        peak = max(peak, int(result.peak_memory_bytes))
        fits.append(
            {
                "layer": int(layer),
                "k": int(k),
                "n_features": int(n_features),
                "solver": result.solver,
                "seconds": round(float(result.fit_seconds), 4),
                "mean_cv_score": float(np.mean(result.cv_scores)),
            }
        )
        logger.info(
            "candidate %d/%d layer %d k=%d: mean CV r %.4f, %s, %.2f s; %d vertices choose it",
            i + 1,
            len(candidates),
            layer,
            k,
            fits[-1]["mean_cv_score"],
            result.solver,
            result.fit_seconds,
            int(better.sum()),
        )
    return Selection(
        candidates=[(int(a), int(b)) for a, b in candidates],
        best=best,
        cv_scores=cv_scores,
        alphas=best_alpha,
        test_r=test_r,
        test_pred=test_pred,
        fits=fits,
        backend=backend_name,
        score_dtype=dtype_used,
        cv_curve=cv_curve,
        fit_seconds=time.perf_counter() - started,
        peak_memory_bytes=peak,
    )


# ---------------------------------------------------------------------------------- one fit job


def _feature_rows(feature_dir: Path, image_set: str) -> int:
    """Images of ``image_set`` in a feature folder, from its provenance."""
    record_path = feature_dir / "provenance.json"
    try:
        return int(json.loads(record_path.read_text())["image_sets"][image_set]["n_images"])
    except (OSError, ValueError, KeyError) as err:
        raise DataError(
            f"{record_path}: no image set {image_set!r} ({err}); rerun the vision feature "
            "extraction with this subject in vision.dataset.subjects"
        ) from err


def _stack_hemispheres(
    files: Mapping[str, str | os.PathLike], subject: str, n_feature_rows: int, image_set: str
) -> tuple[np.ndarray, dict[str, int]]:
    """Both hemispheres' fMRI side by side, each checked against the feature rows."""
    blocks, sizes = [], {}
    for hemi, path in files.items():
        data = read_fmri(path, subject=subject, hemi=hemi)
        check_image_counts(
            subject, hemi, n_feature_rows, data.shape[0], images=f"image set {image_set}", fmri=path
        )
        blocks.append(data)
        sizes[hemi] = int(data.shape[1])
    return np.concatenate(blocks, axis=1), sizes


def fit_vision_selection(
    *,
    feature_dir: str | os.PathLike,
    subject: str,
    fmri_files: Mapping[str, str | os.PathLike],
    layers: Sequence[int],
    pooling: Sequence[int],
    alphas: Sequence[float],
    out_npz: str | os.PathLike,
    test_fmri_files: Mapping[str, str | os.PathLike] | None = None,
    n_images: int | None = None,
    test_fraction: float = 0.1,
    n_train: int | None = None,
    subset_size: int | None = None,
    subset_seed: int = 0,
    n_folds: int = 8,
    fold_seed: int = 0,
    backend: str = "auto",
    solver: str = "auto",
    score_dtype: str = "auto",
    save_predictions: bool = False,
    statistics: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Per-vertex selection for one subject and model, on all or a subset of training images.

    Parameters
    ----------
    feature_dir : path-like
        The model's features (`fmriscaling.vision.features.extract_vision_model`), with image
        sets ``<subject>_train`` (and ``<subject>_test`` with ``test_fmri_files``).
    subject : str
    fmri_files : mapping hemisphere -> path
        Training-split fMRI per hemisphere, concatenated in this order.
    layers : sequence of int
        Layers to consider.
    pooling : sequence of int
        Pooling sizes k to consider (a k not written for a layer is skipped).
    alphas : sequence of float
        Ridge penalties (himalaya's λ).
    out_npz : path-like
        ``scores.npz``: per vertex ``test_r``, ``cv_score``, ``alpha``, ``layer``, ``pool``,
        ``candidate``; ``cv_scores_all`` (n_candidates, n_vertices), ``candidates``
        (n_candidates, 2), ``train_rows``, ``test_rows``, ``alphas``, ``hemisphere_sizes``;
        ``test_pred`` with ``save_predictions``. ``scores.json`` (summary) and the provenance
        are written beside it.
    test_fmri_files : mapping hemisphere -> path, optional
        Test-split fMRI (not released by the challenge); without it the test set is held out
        of the training split (`fmriscaling.vision.splits.image_split`).
    n_images, test_fraction, n_train
        See `fmriscaling.vision.splits.image_split`.
    subset_size : int, optional
        Fit on a random subset of this many training images (`fmriscaling.sweep.draw_subset`).
    subset_seed : int
        Seed of that subset.
    n_folds, fold_seed
        See `image_folds`.
    backend, solver, score_dtype, save_predictions
        See `select_per_vertex`.
    statistics : mapping, optional
        The config's ``statistics``: with ``n_permutations`` > 0, every vertex's test r gets a
        permutation p-value (test images are exchangeable: single images permuted, not blocks),
        a Benjamini-Hochberg q over the subject's vertices and a significance flag
        (`fmriscaling.encoding.significance.significance_of`); ``alpha_edge_warning`` sets
        when the alpha-grid diagnostic warns.
    params : mapping, optional
        The rule's params, stored in the provenance.
    meta : mapping, optional
        Labels copied into the summary.

    Returns
    -------
    summary : dict
        What ``scores.json`` holds.
    """
    from .features import read_pooled, written_pooling

    n_permutations = n_permutations_of(statistics)
    feature_dir = Path(feature_dir)
    train_set = f"{subject}_train"
    Y_all, sizes = _stack_hemispheres(
        fmri_files, subject, _feature_rows(feature_dir, train_set), train_set
    )
    if test_fmri_files:
        test_set = f"{subject}_test"
        Y_test_all, test_sizes = _stack_hemispheres(
            test_fmri_files, subject, _feature_rows(feature_dir, test_set), test_set
        )
        if test_sizes != sizes:
            raise DataError(
                f"{subject}: test fMRI has {test_sizes} vertices, training fMRI {sizes}"
            )
        test_rows = np.arange(Y_test_all.shape[0])
        test_source = "test_split"
    else:
        test_set, Y_test_all, test_source = train_set, Y_all, "held_out"
    train_rows, held_out = split_rows(
        Y_all.shape[0],
        test_split=bool(test_fmri_files),
        n_images=n_images,
        test_fraction=test_fraction,
        n_train=n_train,
    )
    if held_out is not None:
        test_rows = held_out
    if subset_size is not None:
        train_rows = np.asarray(
            draw_subset(train_rows.tolist(), int(subset_size), int(subset_seed), unit="images"),
            dtype=np.int64,
        )
    Y_train, Y_test = Y_all[train_rows], Y_test_all[test_rows]

    written = written_pooling(feature_dir)
    candidates = [
        (int(layer), int(k))
        for layer in layers
        for k in sorted(pooling)
        if int(k) in written.get(int(layer), [])
    ]
    if not candidates:
        raise DataError(
            f"{feature_dir}: none of layers {list(layers)} x pooling {list(pooling)} was "
            f"extracted (written: {written}); check vision.pooling and the model's layers"
        )

    def load(candidate: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        layer, k = candidate
        train = read_pooled(feature_dir, layer, train_set, k)
        test = train if test_set == train_set else read_pooled(feature_dir, layer, test_set, k)
        return train[train_rows], test[test_rows]

    folds = image_folds(train_rows.size, n_folds, fold_seed)
    logger.info(
        "%s: %d training / %d test images (%s), %d vertices, %d candidates, %d folds",
        subject,
        train_rows.size,
        test_rows.size,
        test_source,
        Y_train.shape[1],
        len(candidates),
        len(folds),
    )
    sel = select_per_vertex(
        candidates,
        load,
        Y_train,
        Y_test,
        alphas=alphas,
        folds=folds,
        backend=backend,
        solver=solver,
        score_dtype=score_dtype,
        return_test_pred=save_predictions or n_permutations > 0,
    )
    cv_best = sel.cv_scores[sel.best, np.arange(sel.best.size)]
    where = f"{out_npz} ({subject})"
    significance = {}
    if n_permutations > 0:
        significance = significance_of(
            sel.test_pred,
            Y_test,
            statistics,
            block_trs=1,
            device=device_for(sel.backend),
            what=where,
        )
    edges = alpha_edges(sel.alphas, cv_best, alphas, sel.cv_curve, score_dtype=sel.score_dtype)
    warn_at_alpha_edges(
        edges,
        alphas,
        limit=(statistics or {}).get("alpha_edge_warning", 0.05),
        what=where,
        key="vision.selection.alphas",
    )
    arrays: dict[str, np.ndarray] = {
        "test_r": sel.test_r,
        "cv_score": cv_best.astype(np.float32),
        "alpha": sel.alphas,
        "layer": sel.layer,
        "pool": sel.pool,
        "candidate": sel.best,
        "cv_scores_all": sel.cv_scores,
        "candidates": np.asarray(sel.candidates, dtype=np.int64),
        "train_rows": train_rows.astype(np.int64),
        "test_rows": test_rows.astype(np.int64),
        "alphas": np.asarray(alphas, dtype=np.float64),
        "hemispheres": np.asarray(list(sizes)),
        "hemisphere_sizes": np.asarray(list(sizes.values()), dtype=np.int64),
    }
    if save_predictions:
        arrays["test_pred"] = sel.test_pred
    if significance:
        arrays.update({k: significance.pop(k) for k in ("test_p", "test_q", "significant")})
    with atomic_path(out_npz, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    chosen = np.bincount(sel.best, minlength=len(candidates))
    summary: dict[str, Any] = {
        **dict(meta or {}),
        "subject": subject,
        "n_train_images": int(train_rows.size),
        "n_test_images": int(test_rows.size),
        "test_source": test_source,
        "n_vertices": int(sel.test_r.size),
        "hemisphere_sizes": sizes,
        "n_candidates": len(candidates),
        "n_folds": len(folds),
        "solvers": sorted({f["solver"] for f in sel.fits}),
        "backend": sel.backend,
        "score_dtype": sel.score_dtype,
        "fit_seconds": float(sel.fit_seconds),
        "peak_memory_bytes": int(sel.peak_memory_bytes),
        "mean_test_r": float(sel.test_r.astype(np.float64).mean()),
        "median_test_r": float(np.median(sel.test_r)),
        "mean_cv_score": float(cv_best.astype(np.float64).mean()),
        "median_alpha": float(np.median(sel.alphas)),
        **edges,
        **significance,
        "candidates": [
            {**fit, "n_vertices_chosen": int(n)} for fit, n in zip(sel.fits, chosen, strict=True)
        ],
    }
    write_json(Path(out_npz).with_suffix(".json"), summary)
    write_provenance(out_npz, params, feature_dir=str(feature_dir), subject=subject)
    logger.info(
        "wrote %s: mean test r %.4f over %d vertices, %d candidates in %.1f s",
        out_npz,
        summary["mean_test_r"],
        summary["n_vertices"],
        len(candidates),
        summary["fit_seconds"],
    )
    return summary


def fit_vision_ensemble(
    *,
    score_files: Mapping[str, str | os.PathLike],
    subject: str,
    fmri_files: Mapping[str, str | os.PathLike],
    out_npz: str | os.PathLike,
    params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Average the test predictions of several models' selections and score the average.

    The paper's final submission averaged several models' predictions. Every member must have
    been fitted with ``save_predictions`` on the same test rows.

    Parameters
    ----------
    score_files : mapping model -> path
        Each member's ``scores.npz`` of `fit_vision_selection`.
    subject : str
    fmri_files : mapping hemisphere -> path
        The fMRI the members' ``test_rows`` index (training split when held out, else the
        test split).
    out_npz : path-like
        ``test_r``, ``test_pred``, ``test_rows``, ``hemisphere_sizes``; ``scores.json`` beside.
    params : mapping, optional

    Returns
    -------
    summary : dict
    """
    from ..encoding.ridge import pearson_columns

    if len(score_files) < 2:
        raise DataError(f"an ensemble needs at least 2 models, got {list(score_files)}")
    preds, test_rows, summaries = [], None, {}
    for model, path in score_files.items():
        with np.load(path, allow_pickle=False) as data:
            if "test_pred" not in data.files:
                raise DataError(
                    f"{path} has no test predictions; refit {model} with "
                    "vision.selection.save_predictions: true (set for ensemble members)"
                )
            rows = data["test_rows"]
            if test_rows is not None and not np.array_equal(rows, test_rows):
                raise DataError(f"{path}: test rows differ from the other members' ({model})")
            test_rows = rows
            preds.append(data["test_pred"].astype(np.float64))
        summaries[model] = json.loads(Path(path).with_suffix(".json").read_text())
    first = next(iter(summaries.values()))
    if first["test_source"] == "test_split":
        raise DataError("ensembles of test-split fits need the test fMRI files as fmri_files")
    Y_test = np.concatenate(
        [read_fmri(p, subject=subject, hemi=h)[test_rows] for h, p in fmri_files.items()], axis=1
    )
    mean_pred = np.mean(preds, axis=0)
    test_r = pearson_columns(np, mean_pred, Y_test.astype(np.float64)).astype(np.float32)
    with atomic_path(out_npz, suffix=".npz") as tmp:
        np.savez(
            tmp,
            test_r=test_r,
            test_pred=mean_pred.astype(np.float32),
            test_rows=test_rows,
            hemisphere_sizes=np.asarray(list(first["hemisphere_sizes"].values()), dtype=np.int64),
        )
    summary = {
        "subject": subject,
        "members": list(score_files),
        "n_train_images": int(first["n_train_images"]),
        "n_test_images": int(test_rows.size),
        "test_source": first["test_source"],
        "n_vertices": int(test_r.size),
        "mean_test_r": float(test_r.astype(np.float64).mean()),
        "member_mean_test_r": {m: s["mean_test_r"] for m, s in summaries.items()},
    }
    write_json(Path(out_npz).with_suffix(".json"), summary)
    write_provenance(out_npz, params, members={m: str(p) for m, p in score_files.items()})
    logger.info(
        "ensemble of %s: mean test r %.4f (members %s)",
        list(score_files),
        summary["mean_test_r"],
        {m: round(v, 4) for m, v in summary["member_mean_test_r"].items()},
    )
    return summary


def fit_vision_sweep(
    *,
    sizes: Sequence[int],
    seeds: Sequence[int],
    out_npzs: Sequence[str | os.PathLike],
    **fit: Any,
) -> list[dict[str, Any]]:
    """`fit_vision_selection` on a random subset of training images per (size, seed).

    Parameters
    ----------
    sizes : sequence of int
        Training-set sizes of the data-scaling sweep.
    seeds : sequence of int
        One subset per seed and size (`fmriscaling.sweep.draw_subset`).
    out_npzs : sequence of path-like
        The ``scores.npz`` of each (size, seed), sizes outer, seeds inner.
    **fit
        The other arguments of `fit_vision_selection`.

    Returns
    -------
    summaries : list of dict
    """
    pairs = [(int(n), int(seed)) for n in sizes for seed in seeds]
    if len(pairs) != len(out_npzs):
        raise ValueError(f"{len(pairs)} (size, seed) pairs but {len(out_npzs)} output files")
    meta = dict(fit.pop("meta", None) or {})
    return [
        fit_vision_selection(
            subset_size=n,
            subset_seed=seed,
            out_npz=out,
            meta={**meta, "n_train": n, "seed": seed},
            **fit,
        )
        for (n, seed), out in zip(pairs, out_npzs, strict=True)
    ]
