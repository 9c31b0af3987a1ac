"""Encoding fits: one feature layer, one training set, one test story, one or more subjects.

Two entry points share one core:

* `fit_encoding` fits one subject from its raw per-story response files (everything read,
  trimmed and z-scored in the fit; the reference path);
* `fit_encoding_subjects` fits every subject that shares a training set in one go, from their
  prepared responses (`fmriscaling.encoding.prepared`): one design matrix, one Gram and one
  eigendecomposition per fold and for the refit, and the subjects' voxels side by side in the
  voxel batches (`fmriscaling.encoding.targets.StackedColumns`). Per-voxel alphas make the
  subjects independent, so each subject's scores equal those of a fit of that subject alone,
  and each is written to its own ``scores.npz`` / ``scores.json``.

Both take the fit's settings as keywords (`EncodingSettings`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._utils import DataError, atomic_path, config_hash, write_json, write_provenance
from .significance import (
    alpha_edges,
    device_for,
    n_permutations_of,
    significance_of,
    warn_at_alpha_edges,
)

logger = logging.getLogger(__name__)

__all__ = ["EncodingSettings", "fit_encoding", "fit_encoding_subjects", "scores_json_path"]


def scores_json_path(out_npz: str | os.PathLike) -> Path:
    """Path of the JSON summary written beside ``out_npz`` (``scores.npz`` -> ``scores.json``)."""
    return Path(out_npz).with_suffix(".json")


@dataclass(frozen=True)
class EncodingSettings:
    """How an encoding fit is made: everything but its data, its stories and its outputs.

    Designs are built per story by `build_design` (trim, then z-score, then delay, within each
    story); the test story loses ``test_extra_trim`` TRs at its start, the training stories only
    what ``extra_trim_train`` says. Alphas are chosen per voxel by cross-validation on the
    training stories only (whole held-out stories, or contiguous bootstrap chunks), then the
    model is refit on all training stories and scored by Pearson r on the test story.

    Parameters
    ----------
    alphas : sequence of float
        Ridge penalties in himalaya's (standard λ) convention: the companion code's
        ``logspace(1, 4)`` is ``logspace(2, 8)`` here.
    delays : sequence of int, default (1, 2, 3, 4)
        FIR delays in TRs.
    cv : {"stories", "bootstrap"}, default "stories"
        Leave-stories-out folds, or bootstrap held-out chunks of contiguous TRs.
    n_folds : int, default 5
        Story folds (capped at the number of training stories).
    bootstrap : mapping, optional
        ``n_boots`` (default 15), ``chunk_len`` (default 40), ``n_chunks`` (default None:
        ``default_n_chunks``, a fifth of the training TRs), used when ``cv="bootstrap"``.
    test_extra_trim : int, default 40
        TRs dropped at the start of the test story.
    extra_trim_train : mapping story -> int, optional
        TRs dropped at the start of training stories.
    backend, solver, solver_impl, n_targets_batch
        Passed to `fmriscaling.encoding.ridge.fit_ridge_cv`.
    score_dtype : {"float32", "bfloat16", "auto"}, default "auto"
        Precision of the CV alpha search (passed to `fit_ridge_cv`; the config's default:
        bfloat16 where its GEMMs are fast); the refit and its predictions stay float32. The
        precision actually used is recorded in the summary.
    save_weights : bool, default False
        Store the ridge weights, shape (n_features * n_delays, n_voxels), in the npz.
    save_predictions : bool, default False
        Store ``test_pred``, ``test_true`` (n_test_trs, n_voxels) and ``oof_pred``
        (n_train_trs, n_voxels).
    seed : int, default 0
        Seed of the bootstrap chunks.
    statistics : mapping, optional
        The config's ``statistics``: ``n_permutations`` (0 or None: no test), ``block_trs``,
        ``fdr_q``, ``seed`` of the block permutation test of every voxel's test r
        (`fmriscaling.encoding.significance`), and ``alpha_edge_warning``, the fraction of
        voxels with a positive CV score at an end of the alpha grid above which the fit warns.
    projection : mapping, optional
        A fixed-width fit (``features.fixed_dim``): ``dim``, ``method`` ("pca" or "random")
        and ``seed`` of the projection of every layer's z-scored features to ``dim`` columns
        before the delays, fitted on the training stories only
        (`fmriscaling.encoding.width`). None: the layer's native features.
    """

    alphas: Sequence[float]
    delays: Sequence[int] = (1, 2, 3, 4)
    cv: str = "stories"
    n_folds: int = 5
    bootstrap: Mapping[str, int] | None = None
    test_extra_trim: int = 40
    extra_trim_train: Mapping[str, int] | None = None
    backend: str = "auto"
    solver: str = "auto"
    solver_impl: str = "fast"
    n_targets_batch: int | str = "auto"
    score_dtype: str = "auto"
    save_weights: bool = False
    save_predictions: bool = False
    seed: int = 0
    statistics: Mapping[str, Any] | None = None
    projection: Mapping[str, Any] | None = None

    @property
    def n_permutations(self) -> int:
        return n_permutations_of(self.statistics)


@dataclass
class _Target:
    """One subject's part of a fit: its targets, its test responses, where its results go."""

    Y: Any  # target source (n_train_trs, n_voxels): `fmriscaling.encoding.targets`
    Y_test: np.ndarray  # (n_test_trs, n_voxels)
    out_npz: Path
    meta: Mapping[str, Any]
    subject: str | None = None
    responses: Mapping[str, Any] | None = None  # what the provenance says about the responses


def fit_encoding(
    *,
    feature_file: str | os.PathLike,
    response_files: Mapping[str, str | os.PathLike],
    train_stories: Sequence[str],
    test_story: str,
    out_npz: str | os.PathLike,
    params: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Fit a voxelwise ridge encoding model of one subject from its raw response files.

    Features of every story come from one layer file (`fmriscaling.features.io.read_layer`),
    responses from one file per story (`fmriscaling.responses.read_responses`), read, trimmed
    and z-scored here. `fit_encoding_subjects` does the same fit from prepared responses, for
    several subjects at once.

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
    out_npz : path-like
        ``scores.npz``: per-voxel ``test_r``, ``alpha``, ``cv_score`` (float32) and the alpha
        grid ``alphas``, plus the optional arrays. ``scores.json`` (summary) and
        ``scores.npz.provenance.json`` are written beside it.
    params : mapping, optional
        Rule params stored in the provenance.
    meta : mapping, optional
        Labels (subject, model, layer, seed, ...) copied into the JSON summary.
    **settings
        The fit's settings, `EncodingSettings` (``alphas`` is required).

    Returns
    -------
    summary : dict
        What ``scores.json`` holds: n_train_stories, n_train_trs, n_test_trs, train_stories,
        test_story, n_voxels, n_features, delays, cv, n_folds, solver, solver_impl, backend,
        score_dtype, fit_seconds, peak_memory_bytes, shared_with (empty here), mean_test_r,
        median_test_r, median_alpha, mean_cv_score, plus ``meta``; a fixed-width fit adds
        ``projection`` (method, dim, seed, projected, n_features_native, n_fit_rows,
        explained_variance_ratio: `fmriscaling.encoding.width.project_design`).

    Raises
    ------
    DataError
        Missing files or stories, TR-count mismatches, a one-story training set with story
        folds, non-finite inputs or scores.
    """
    from .inputs import prepare_fit
    from .targets import ArrayColumns

    settings = EncodingSettings(**settings)
    train_stories, test_story = [str(s) for s in train_stories], str(test_story)
    prepared = prepare_fit(
        feature_file,
        response_files,
        train_stories,
        test_story,
        delays=settings.delays,
        alphas=settings.alphas,
        cv=settings.cv,
        n_folds=settings.n_folds,
        bootstrap=settings.bootstrap,
        seed=settings.seed,
        test_extra_trim=settings.test_extra_trim,
        extra_trim_train=settings.extra_trim_train,
        projection=settings.projection,
    )
    design = prepared.design
    target = _Target(ArrayColumns(design.Y_train), design.Y_test, Path(out_npz), dict(meta or {}))
    (summary,) = _fit_and_write(
        settings, design.X_train, prepared.folds, design.X_test, [target], train_stories,
        test_story, feature_file=feature_file, params=params, projection=prepared.projection,
    )  # fmt: skip
    return summary


def fit_encoding_subjects(
    *,
    feature_file: str | os.PathLike,
    prepared_files: Mapping[str, str | os.PathLike],
    train_stories: Sequence[str],
    test_story: str,
    out_npz: Mapping[str, str | os.PathLike],
    params: Mapping[str, Any] | None = None,
    meta: Mapping[str, Mapping[str, Any]] | None = None,
    stale_hint: str | None = None,
    **settings: Any,
) -> dict[str, dict[str, Any]]:
    """Fit several subjects that share a training set in one fit, from prepared responses.

    The design matrix depends on the features and the stories only, so it, its Gram and every
    eigendecomposition are computed once for all subjects; the subjects' voxels then go through
    the voxel batches side by side (a batch never straddles two subjects), each voxel with its
    own alpha. Every subject gets the outputs `fit_encoding` would have written for it, with the
    same numbers up to float rounding (bit for bit where the voxel batches are the same).

    Each subject's responses come from its prepared file, opened with `open_prepared`: a file
    that is incomplete, damaged, built from other raw files than the ones on disk now, or
    trimmed otherwise than this fit asks is refused (`StaleResponsesError`), never used.

    Parameters
    ----------
    feature_file : path-like
        ``layer-{l}.h5`` with one dataset per story, shape (n_trs, n_features).
    prepared_files : mapping subject -> path-like
        Prepared responses of each subject (`prepare_responses`), holding every training story
        and the test story.
    train_stories : sequence of str
        Training stories of every subject (concatenated in this order).
    test_story : str
        Held-out story (must not be a training story).
    out_npz : mapping subject -> path-like
        ``scores.npz`` of each subject (same keys as ``prepared_files``); ``scores.json`` and
        the provenance are written beside each, as by `fit_encoding`.
    params : mapping, optional
        Rule params stored in every subject's provenance.
    meta : mapping subject -> mapping, optional
        Labels copied into each subject's JSON summary.
    stale_hint : str, optional
        Appended to the error of a refused prepared file: how to rebuild it (the workflow
        names the rule that made it and the command). The file is never deleted here.
    **settings
        The fit's settings, `EncodingSettings` (``alphas`` is required).

    Returns
    -------
    summaries : dict subject -> dict
        What each ``scores.json`` holds (see `fit_encoding`); fit_seconds and
        peak_memory_bytes are those of the whole shared fit, and ``shared_with`` lists the
        other subjects it fitted.

    Raises
    ------
    StaleResponsesError
        A prepared file is refused (see `open_prepared`).
    DataError
        As `fit_encoding`: missing stories, TR-count mismatches between the features and the
        responses' raw files, non-finite scores, ...
    """
    from .folds import cv_folds
    from .inputs import check_story_lists, feature_design, opened_prepared
    from .prepared import explaining_stale

    settings = EncodingSettings(**settings)
    subjects = [str(s) for s in prepared_files]
    if not subjects or set(subjects) != {str(s) for s in out_npz}:
        raise DataError(
            f"fit_encoding_subjects: subjects of prepared_files {subjects} and out_npz "
            f"{sorted(out_npz)} must be the same, non-empty set."
        )
    train_stories, test_story = [str(s) for s in train_stories], str(test_story)
    check_story_lists(train_stories, test_story, None, settings.cv)
    features = feature_design(
        feature_file,
        train_stories,
        test_story,
        delays=settings.delays,
        test_extra_trim=settings.test_extra_trim,
        extra_trim_train=settings.extra_trim_train,
        projection=settings.projection,
    )
    X_train, X_test = features.X_train, features.X_test
    meta = meta or {}
    with explaining_stale(stale_hint), contextlib.ExitStack() as stack:
        targets = []
        for subject in subjects:
            prepared = stack.enter_context(
                opened_prepared(prepared_files[subject], features, feature_file)
            )
            targets.append(
                _Target(
                    prepared.columns(train_stories),
                    prepared.read(test_story),
                    Path(out_npz[subject]),
                    dict(meta.get(subject, {})),
                    subject=subject,
                    responses={
                        "prepared_responses": str(prepared.path),
                        "prepared_record_hash": config_hash(prepared.record),
                    },
                )
            )
        folds = cv_folds(
            features.story_lengths,
            cv=settings.cv,
            n_folds=settings.n_folds,
            bootstrap=settings.bootstrap,
            seed=settings.seed,
        )
        result = _fit(settings, X_train, folds, X_test, targets)
    summaries = _write(
        settings, result, X_train, X_test, targets, train_stories, test_story,
        feature_file=feature_file, params=params, projection=features.projection,
    )  # fmt: skip
    return dict(zip(subjects, summaries, strict=True))


def _fit(settings, X_train, folds, X_test, targets: Sequence[_Target]):
    """One ridge fit of every target's voxels on one design; returns (result, n_folds)."""
    from .inputs import alpha_grid
    from .ridge import fit_ridge_cv
    from .targets import StackedColumns

    n_folds = len(folds)
    alphas = alpha_grid(settings.alphas)
    Y = targets[0].Y if len(targets) == 1 else StackedColumns([t.Y for t in targets])
    Y_test = np.concatenate([t.Y_test for t in targets], axis=1)
    logger.info(
        "fitting %d train TRs x %d features -> %d voxels of %d subject(s); cv=%s (%d folds)",
        X_train.shape[0],
        X_train.shape[1],
        Y.shape[1],
        len(targets),
        settings.cv,
        n_folds,
    )
    result = fit_ridge_cv(
        X_train,
        Y,
        alphas=alphas,
        folds=folds,
        X_test=X_test,
        Y_test=Y_test,
        backend=settings.backend,
        solver=settings.solver,
        solver_impl=settings.solver_impl,
        n_targets_batch=settings.n_targets_batch,
        score_dtype=settings.score_dtype,
        return_weights=settings.save_weights,
        return_test_pred=settings.save_predictions or settings.n_permutations > 0,
        return_oof_pred=settings.save_predictions,
    )
    return result, n_folds


def _fit_and_write(settings, X_train, folds, X_test, targets, train_stories, test_story, **kw):
    result = _fit(settings, X_train, folds, X_test, targets)
    return _write(settings, result, X_train, X_test, targets, train_stories, test_story, **kw)


def _write(
    settings: EncodingSettings,
    fitted,
    X_train: np.ndarray,
    X_test: np.ndarray,
    targets: Sequence[_Target],
    train_stories: list[str],
    test_story: str,
    *,
    feature_file: str | os.PathLike,
    params: Mapping[str, Any] | None,
    projection: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Each target's columns of the fit: checked, then its npz, summary and provenance
    (``projection``: the fixed-width projection's record, `project_design`)."""
    result, n_folds = fitted
    subjects = [t.subject for t in targets]
    summaries = []
    start = 0
    for target in targets:
        cols = slice(start, start + target.Y.shape[1])
        start = cols.stop
        test_r = np.asarray(result.test_r[cols], dtype=np.float32)
        best_alpha = np.asarray(result.alphas[cols], dtype=np.float32)
        cv_score = np.asarray(result.cv_scores[cols], dtype=np.float32)
        _check_finite_scores(target.out_npz, test_r, best_alpha, cv_score, test_story, feature_file)
        arrays: dict[str, np.ndarray] = {
            "test_r": test_r,
            "alpha": best_alpha,
            "cv_score": cv_score,
            "alphas": np.asarray(settings.alphas, dtype=np.float64),
        }
        if settings.save_weights:
            arrays["weights"] = np.asarray(result.weights[:, cols], dtype=np.float32)
        if settings.save_predictions:
            arrays["test_pred"] = np.asarray(result.test_pred[:, cols], dtype=np.float32)
            arrays["test_true"] = target.Y_test
            arrays["oof_pred"] = np.asarray(result.oof_pred[:, cols], dtype=np.float32)
        where = _fit_name(target, test_story)
        significance = {}
        if settings.n_permutations > 0:
            significance = significance_of(
                result.test_pred[:, cols],
                target.Y_test,
                settings.statistics,
                device=device_for(result.backend),
                what=where,
            )
            arrays.update({k: significance.pop(k) for k in ("test_p", "test_q", "significant")})
        curves = None if result.cv_scores_all is None else result.cv_scores_all[:, cols]
        edges = alpha_edges(
            best_alpha, cv_score, settings.alphas, curves, score_dtype=result.score_dtype
        )
        warn_at_alpha_edges(
            edges,
            settings.alphas,
            limit=(settings.statistics or {}).get("alpha_edge_warning", 0.05),
            what=where,
            key="encoding.alphas",
        )
        with atomic_path(target.out_npz, suffix=".npz") as tmp:
            np.savez(tmp, **arrays)
        summary: dict[str, Any] = {
            **dict(target.meta),
            "n_train_stories": len(train_stories),
            "n_train_trs": int(X_train.shape[0]),
            "n_test_trs": int(X_test.shape[0]),
            "train_stories": train_stories,
            "test_story": test_story,
            "n_voxels": int(test_r.size),
            "n_features": int(X_train.shape[1]),
            "delays": [int(d) for d in settings.delays],
            "cv": settings.cv,
            "n_folds": int(n_folds),
            "solver": str(result.solver),
            "solver_impl": settings.solver_impl,
            "backend": str(result.backend),
            "score_dtype": str(result.score_dtype),
            "fit_seconds": float(result.fit_seconds),
            "peak_memory_bytes": int(result.peak_memory_bytes),
            "shared_with": [s for s in subjects if s is not None and s != target.subject],
            "mean_test_r": float(test_r.astype(np.float64).mean()),
            "median_test_r": float(np.median(test_r)),
            "median_alpha": float(np.median(best_alpha)),
            "mean_cv_score": float(cv_score.astype(np.float64).mean()),
            **edges,
            **significance,
        }
        if projection is not None:
            # method, d, seed, whether the layer was projected, the variance PCA kept
            summary["projection"] = dict(projection)
        write_json(scores_json_path(target.out_npz), summary)
        write_provenance(
            target.out_npz,
            params,
            feature_file=str(feature_file),
            test_story=test_story,
            train_stories=train_stories,
            settings=asdict(settings),
            **({"projection": dict(projection)} if projection is not None else {}),
            **dict(target.responses or {}),
        )
        logger.info(
            "wrote %s: mean test r %.4f, median alpha %.3g, %s/%s, %.1f s",
            target.out_npz,
            summary["mean_test_r"],
            summary["median_alpha"],
            summary["solver"],
            summary["backend"],
            summary["fit_seconds"],
        )
        summaries.append(summary)
    return summaries


def _fit_name(target: _Target, test_story: str) -> str:
    """A fit in messages: its scores file (dataset, subject, model, layer and subset are in
    the path) and its test story."""
    return f"{target.out_npz} (test story {test_story})"


def _check_finite_scores(out_npz, test_r, best_alpha, cv_score, test_story, feature_file) -> None:
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
