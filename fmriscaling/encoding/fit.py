"""One encoding fit: one subject, one feature layer, one training set, one test story."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._utils import DataError, atomic_path, write_json, write_provenance

logger = logging.getLogger(__name__)

__all__ = ["fit_encoding", "scores_json_path"]


def scores_json_path(out_npz: str | os.PathLike) -> Path:
    """Path of the JSON summary written beside ``out_npz`` (``scores.npz`` -> ``scores.json``)."""
    return Path(out_npz).with_suffix(".json")


def fit_encoding(
    *,
    feature_file: str | os.PathLike,
    response_files: Mapping[str, str | os.PathLike],
    train_stories: Sequence[str],
    test_story: str,
    delays: Sequence[int] = (1, 2, 3, 4),
    alphas: Sequence[float],
    cv: str = "stories",
    n_folds: int = 5,
    bootstrap: Mapping[str, int] | None = None,
    extra_trim_test: int = 40,
    extra_trim_train: Mapping[str, int] | None = None,
    backend: str = "auto",
    solver: str = "auto",
    solver_impl: str = "fast",
    n_targets_batch: int | str = "auto",
    score_dtype: str = "auto",
    save_weights: bool = False,
    save_predictions: bool = False,
    seed: int = 0,
    out_npz: str | os.PathLike,
    params: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Fit a voxelwise ridge encoding model and score it on the test story.

    Features of every story come from one layer file (`fmriscaling.features.io.read_layer`),
    responses from one file per story (`fmriscaling.responses.read_responses`). Designs are
    built per story by `build_design` (trim, then z-score, then delay, within each story);
    the test story loses ``extra_trim_test`` TRs at its start, the training stories only what
    ``extra_trim_train`` says. Alphas are chosen per voxel by cross-validation on the training
    stories only (whole held-out stories, or contiguous bootstrap chunks), then the model is
    refit on all training stories and scored by Pearson r on the test story.

    Parameters
    ----------
    feature_file : path-like
        ``layer-{l}.h5`` with one dataset per story, shape (n_trs, n_features).
    response_files : mapping story -> path-like
        Response file of each story (training and test).
    train_stories : sequence of str
        Training stories (concatenated in this order).
    test_story : str
        Held-out story (must not be a training story).
    delays : sequence of int, default (1, 2, 3, 4)
        FIR delays in TRs.
    alphas : sequence of float
        Ridge penalties in himalaya's (standard λ) convention: the companion code's
        ``logspace(1, 4)`` is ``logspace(2, 8)`` here.
    cv : {"stories", "bootstrap"}, default "stories"
        Leave-stories-out folds, or bootstrap held-out chunks of contiguous TRs.
    n_folds : int, default 5
        Story folds (capped at the number of training stories).
    bootstrap : mapping, optional
        ``n_boots`` (default 15), ``chunk_len`` (default 40), ``n_chunks`` (default None:
        ``default_n_chunks``, a fifth of the training TRs), used when ``cv="bootstrap"``.
    extra_trim_test : int, default 40
        TRs dropped at the start of the test story.
    extra_trim_train : mapping story -> int, optional
        TRs dropped at the start of training stories.
    backend, solver, solver_impl, n_targets_batch
        Passed to `fmriscaling.encoding.ridge.fit_ridge_cv`.
    score_dtype : {"float32", "bfloat16", "auto"}, default "auto" (the config's default: bfloat16 where its GEMMs are fast)
        Precision of the CV alpha search (passed to `fit_ridge_cv`); the refit and its
        predictions stay float32. The precision actually used is recorded in the summary.
    save_weights : bool, default False
        Store the ridge weights, shape (n_features * n_delays, n_voxels), in the npz.
    save_predictions : bool, default False
        Store ``test_pred``, ``test_true`` (n_test_trs, n_voxels) and ``oof_pred``
        (n_train_trs, n_voxels).
    seed : int, default 0
        Seed of the bootstrap chunks.
    out_npz : path-like
        ``scores.npz``: per-voxel ``test_r``, ``alpha``, ``cv_score`` (float32) and the alpha
        grid ``alphas``, plus the optional arrays. ``scores.json`` (summary) and
        ``scores.npz.provenance.json`` are written beside it.
    params : mapping, optional
        Rule params stored in the provenance.
    meta : mapping, optional
        Labels (subject, model, layer, seed, ...) copied into the JSON summary.

    Returns
    -------
    summary : dict
        What ``scores.json`` holds: n_train_stories, n_train_trs, n_test_trs, train_stories,
        test_story, n_voxels, n_features, solver, solver_impl, backend, score_dtype,
        fit_seconds, peak_memory_bytes,
        mean_test_r, median_test_r, median_alpha, mean_cv_score, cv, n_folds, plus ``meta``.

    Raises
    ------
    DataError
        Missing files or stories, TR-count mismatches, a one-story training set with story
        folds, non-finite inputs or scores.
    """
    from .inputs import prepare_fit
    from .ridge import fit_ridge_cv

    train_stories = [str(s) for s in train_stories]
    test_story = str(test_story)
    prepared = prepare_fit(
        feature_file,
        response_files,
        train_stories,
        test_story,
        delays=delays,
        alphas=alphas,
        cv=cv,
        n_folds=n_folds,
        bootstrap=bootstrap,
        seed=seed,
        extra_trim_test=extra_trim_test,
        extra_trim_train=extra_trim_train,
    )
    design, folds, alphas = prepared.design, prepared.folds, prepared.alphas
    X_train, Y_train, X_test, Y_test = design.X_train, design.Y_train, design.X_test, design.Y_test
    n_folds_used = len(folds)
    del design, prepared
    logger.info(
        "fitting %d train TRs (%d stories) x %d features -> %d voxels; cv=%s (%d folds)",
        X_train.shape[0],
        len(train_stories),
        X_train.shape[1],
        Y_train.shape[1],
        cv,
        n_folds_used,
    )
    result = fit_ridge_cv(
        X_train,
        Y_train,
        alphas=alphas,
        folds=folds,
        X_test=X_test,
        Y_test=Y_test,
        backend=backend,
        solver=solver,
        solver_impl=solver_impl,
        n_targets_batch=n_targets_batch,
        score_dtype=score_dtype,
        return_weights=save_weights,
        return_test_pred=save_predictions,
        return_oof_pred=save_predictions,
    )

    test_r = np.asarray(result.test_r, dtype=np.float32)
    best_alpha = np.asarray(result.alphas, dtype=np.float32)
    cv_score = np.asarray(result.cv_scores, dtype=np.float32)
    for name, values in (("test r", test_r), ("alpha", best_alpha), ("CV score", cv_score)):
        bad = ~np.isfinite(values)
        if bad.any():
            raise DataError(
                f"{out_npz}: {int(bad.sum())} of {values.size} voxels have a non-finite "
                f"{name} (first: {np.flatnonzero(bad)[:5].tolist()}); test story "
                f"{test_story!r}, features {feature_file}. Expected finite scores: a voxel "
                "that is constant in a story or a NaN in the inputs causes this; mask such "
                "voxels out of the response files."
            )

    arrays: dict[str, np.ndarray] = {
        "test_r": test_r,
        "alpha": best_alpha,
        "cv_score": cv_score,
        "alphas": alphas,
    }
    if save_weights:
        arrays["weights"] = np.asarray(result.weights, dtype=np.float32)
    if save_predictions:
        arrays["test_pred"] = np.asarray(result.test_pred, dtype=np.float32)
        arrays["test_true"] = Y_test
        arrays["oof_pred"] = np.asarray(result.oof_pred, dtype=np.float32)
    out_npz = Path(out_npz)
    with atomic_path(out_npz, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)

    summary: dict[str, Any] = {
        **dict(meta or {}),
        "n_train_stories": len(train_stories),
        "n_train_trs": int(X_train.shape[0]),
        "n_test_trs": int(X_test.shape[0]),
        "train_stories": train_stories,
        "test_story": test_story,
        "n_voxels": int(test_r.size),
        "n_features": int(X_train.shape[1]),
        "delays": [int(d) for d in delays],
        "cv": cv,
        "n_folds": int(n_folds_used),
        "solver": str(result.solver),
        "solver_impl": solver_impl,
        "backend": str(result.backend),
        "score_dtype": str(result.score_dtype),
        "fit_seconds": float(result.fit_seconds),
        "peak_memory_bytes": int(result.peak_memory_bytes),
        "mean_test_r": float(test_r.astype(np.float64).mean()),
        "median_test_r": float(np.median(test_r)),
        "median_alpha": float(np.median(best_alpha)),
        "mean_cv_score": float(cv_score.astype(np.float64).mean()),
    }
    write_json(scores_json_path(out_npz), summary)
    write_provenance(
        out_npz,
        params,
        feature_file=str(feature_file),
        test_story=test_story,
        train_stories=train_stories,
    )
    logger.info(
        "wrote %s: mean test r %.4f, median alpha %.3g, %s/%s, %.1f s",
        out_npz,
        summary["mean_test_r"],
        summary["median_alpha"],
        summary["solver"],
        summary["backend"],
        summary["fit_seconds"],
    )
    return summary
