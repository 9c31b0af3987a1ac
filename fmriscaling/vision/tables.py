"""Tidy tables of the vision track: fits, ROI summaries, selected candidates, scaling fits.

One row per fit (``encoding.csv``), per fit and ROI (``rois.csv``), per full fit, ROI and
selected (layer, k) (``selection.csv``), and the log-linear scaling fits in the columns of the
language track's ``scaling.csv`` (`fmriscaling.scaling.FIT_COLUMNS`), so that a summary can
stack both: ``axis="params"`` per family (each model's full fit vs model parameters) and
``axis="images"`` per model (vs training images; ``layer`` is empty: each vertex has its own),
for mean test r and the mean noise-normalised score (``metric``), with ``kind="vision"``.
``scaling_rois.csv`` repeats the fits per ROI.

Intervals are the language track's two-level percentile bootstrap, computed by the same
functions (`fmriscaling.scaling.replicate_means`, `fmriscaling.scaling.scaling_fits` with
`fmriscaling.scaling.VISION`): per subject, ``n_replicates`` resamples of the vertices (of each
ROI) with replacement, drawn once from a stream seeded by (seed, subject[/ROI]) and shared by
every fit of that subject; per replicate, subjects drawn with replacement (one draw for every
fit), the replicate means averaged over the drawn subjects and the line refitted. Like the
language track, the vision track writes that bootstrap table (``bootstrap_means.csv.gz``) and
the replicate lines (``scaling_bootstrap.csv.gz``) beside its tables.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._utils import DataError
from ..outputs import BOOTSTRAP_TABLE, SCALING_LINES, VISION_TABLES
from ..scaling import FIT_COLUMNS as SCALING_COLUMNS
from ..scaling import ROI_COLUMNS, VISION, replicate_means, scaling_fits
from .scores import load_vision_noise_ceiling, noise_normalized_score, summarize

logger = logging.getLogger(__name__)

__all__ = [
    "FIT_COLUMNS",
    "SCALING_COLUMNS",
    "collect_vision_tables",
    "vision_scaling",
    "write_vision_tables",
]

#: columns of encoding.csv, one row per fit
FIT_COLUMNS: tuple[str, ...] = (
    "subject",
    "model",
    "family",
    "n_params",
    "kind",
    "full_train",
    "n_train_images",
    "n_test_images",
    "seed",
    "test_source",
    "mean_r",
    "median_r",
    "mean_noise_norm",
    "median_noise_norm",
    "mean_cv_score",
    "n_vertices",
    "n_vertices_no_ceiling",
    "n_significant",
    "fraction_significant",
    "n_candidates",
    "median_alpha",
    "fraction_alpha_min",
    "fraction_alpha_max",
    "solvers",
    "backend",
    "score_dtype",
    "fit_seconds",
    "peak_memory_mb",
)
_LABELS = ("subject", "model", "family", "n_params", "kind", "full_train", "n_train_images", "seed")


def _read_fit(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    if not path.is_file():
        raise DataError(f"vision scores {path} do not exist; run the rule that writes them")
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files if name != "test_pred"}
    if "test_r" not in arrays:
        raise DataError(f"{path} lacks 'test_r'; delete it and rerun the fit")
    if not np.all(np.isfinite(arrays["test_r"])):
        raise DataError(f"{path}: non-finite test r; expected finite scores. Refit.")
    summary_path = path.with_suffix(".json")
    if not summary_path.is_file():
        raise DataError(f"{summary_path} (summary of {path}) does not exist; rerun the fit")
    return arrays, json.loads(summary_path.read_text())


def collect_vision_tables(
    entries: Sequence[Mapping[str, Any]],
    *,
    ceilings: Mapping[str, str | os.PathLike] | None,
    roi_masks: Mapping[str, Mapping[tuple[str, str], np.ndarray]],
    bootstrap: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Read every fit of the vision track into its tables.

    Parameters
    ----------
    entries : sequence of mapping
        One per fit: ``subject``, ``model``, ``family``, ``n_params``, ``kind`` ("full",
        "subsample" or "ensemble"), ``n_train`` (None for all training images), ``seed`` and
        ``path`` (its ``scores.npz``; ``scores.json`` beside it).
    ceilings : mapping subject -> path, or None
        Noise ceilings (`fmriscaling.vision.scores.write_vision_noise_ceiling`); None = no
        noise-normalised scores (NaN columns).
    roi_masks : mapping subject -> {(group, roi): bool array}
        From `fmriscaling.vision.dataset.roi_masks`.
    bootstrap : mapping, optional
        ``n_replicates`` and ``seed`` of the vertex resamples of the scaling fits' intervals
        (full and subsample fits); None: no resamples.

    Returns
    -------
    tables : dict
        ``"encoding"`` (`FIT_COLUMNS`), ``"rois"`` (the labels, ``roi_group``, ``roi``,
        ``n_vertices``, ``mean_r``, ``median_r``, ``mean_noise_norm``, ``median_noise_norm``,
        ``n_vertices_no_ceiling``) and ``"selection"`` (full fits: ``roi_group``, ``roi``,
        ``layer``, ``k``, ``n_vertices``, ``fraction``); with ``bootstrap``, also
        ``"bootstrap_means"``: the bootstrap table of both tracks
        (`fmriscaling.scaling.replicate_means`), over all vertices and per ROI.
    """
    fits, rois, selection = [], [], []
    # per subject, the per-vertex scores of its full and subsample fits, for the bootstrap
    per_vertex: dict[str, tuple[list, list, list]] = {}
    nc_cache: dict[str, np.ndarray | None] = {}
    for entry in entries:
        path = Path(entry["path"])
        arrays, summary = _read_fit(path)
        subject = entry["subject"]
        if subject not in nc_cache:
            nc_cache[subject] = (
                None if ceilings is None else load_vision_noise_ceiling(ceilings[subject])
            )
        test_r = arrays["test_r"].astype(np.float64)
        nc = nc_cache[subject]
        if nc is None:
            score = np.full(test_r.shape, np.nan)
        elif nc.shape != test_r.shape:
            raise DataError(
                f"{path}: {test_r.size} vertices, but the noise ceiling of {subject} has "
                f"{nc.size}; rerun the out-of-date one"
            )
        else:
            score = noise_normalized_score(test_r, nc)
        labels = {
            "subject": subject,
            "model": entry["model"],
            "family": entry.get("family"),
            "n_params": entry.get("n_params"),
            "kind": entry["kind"],
            "full_train": entry.get("n_train") is None,
            "n_train_images": int(summary["n_train_images"]),
            "seed": int(entry.get("seed", -1)),
        }
        if bootstrap is not None and entry["kind"] in ("full", "subsample"):
            keys, rs, scores = per_vertex.setdefault(subject, ([], [], []))
            keys.append(labels)
            rs.append(test_r)
            scores.append(score)
        whole_r, whole_s = summarize(test_r), summarize(score)
        significant = arrays.get("significant")
        cv = arrays.get("cv_score")
        fits.append(
            {
                **labels,
                "n_test_images": int(summary["n_test_images"]),
                "test_source": summary.get("test_source"),
                "mean_r": whole_r["mean"],
                "median_r": whole_r["median"],
                "mean_noise_norm": whole_s["mean"],
                "median_noise_norm": whole_s["median"],
                "mean_cv_score": float(np.mean(cv)) if cv is not None else np.nan,
                "n_vertices": int(test_r.size),
                "n_vertices_no_ceiling": whole_s["n_missing"],
                # the permutation test (NaN: none, e.g. the ensemble)
                "n_significant": summary.get("n_significant", np.nan),
                "fraction_significant": summary.get("fraction_significant", np.nan),
                "n_candidates": summary.get("n_candidates"),
                "median_alpha": summary.get("median_alpha", np.nan),
                "fraction_alpha_min": summary.get("fraction_alpha_min", np.nan),
                "fraction_alpha_max": summary.get("fraction_alpha_max", np.nan),
                "solvers": "+".join(summary.get("solvers", [])) or None,
                "backend": summary.get("backend"),
                "score_dtype": summary.get("score_dtype"),
                "fit_seconds": summary.get("fit_seconds", np.nan),
                "peak_memory_mb": float(summary.get("peak_memory_bytes", np.nan)) / 1e6,
            }
        )
        masks = roi_masks[subject]
        for (group, roi), mask in masks.items():
            if mask.shape != test_r.shape:
                raise DataError(
                    f"{subject}: ROI masks cover {mask.size} vertices, {path} {test_r.size}"
                )
            r_roi, s_roi = summarize(test_r, mask), summarize(score, mask)
            rois.append(
                {
                    **labels,
                    "roi_group": group,
                    "roi": roi,
                    "n_vertices": int(mask.sum()),
                    "mean_r": r_roi["mean"],
                    "median_r": r_roi["median"],
                    "mean_noise_norm": s_roi["mean"],
                    "median_noise_norm": s_roi["median"],
                    "n_vertices_no_ceiling": s_roi["n_missing"],
                    "fraction_significant": (
                        float(significant[mask].mean())
                        if significant is not None and mask.any()
                        else np.nan
                    ),
                }
            )
        if entry["kind"] == "full" and "candidates" in arrays:
            chosen = arrays["candidate"]
            for (group, roi), mask in masks.items():
                if group == "category" or not mask.any():
                    continue
                counts = np.bincount(chosen[mask], minlength=len(arrays["candidates"]))
                for (layer, k), n in zip(arrays["candidates"].tolist(), counts, strict=True):
                    selection.append(
                        {
                            **labels,
                            "roi_group": group,
                            "roi": roi,
                            "layer": int(layer),
                            "k": int(k),
                            "n_vertices": int(n),
                            "fraction": float(n / mask.sum()),
                        }
                    )
    encoding = pd.DataFrame.from_records(fits, columns=list(FIT_COLUMNS))
    sort = ["subject", "model", "n_train_images", "seed"]
    encoding = encoding.sort_values(sort, kind="stable").reset_index(drop=True)
    tables: dict[str, Any] = {
        "encoding": encoding,
        "rois": pd.DataFrame.from_records(rois),
        "selection": pd.DataFrame.from_records(selection),
    }
    if bootstrap is not None:
        means = []
        for subject, (keys, rs, scores) in sorted(per_vertex.items()):
            shapes = {r.shape for r in rs}
            if len(shapes) != 1:
                raise DataError(f"{subject}: fits of different vertex counts {sorted(shapes)}")
            means.append(
                replicate_means(
                    pd.DataFrame.from_records(keys),
                    np.stack(rs),
                    np.stack(scores),
                    track=VISION,
                    n_replicates=bootstrap["n_replicates"],
                    seed=bootstrap["seed"],
                    rois=roi_masks[subject],
                )
            )
        tables[BOOTSTRAP_TABLE] = pd.concat(means, ignore_index=True) if means else None
    return tables


def vision_scaling(
    table: pd.DataFrame,
    means: pd.DataFrame,
    *,
    by: Sequence[str] = (),
    ci: float = 0.95,
    seed: int = 0,
    resample_subjects: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The vision track's scaling fits: `fmriscaling.scaling.scaling_fits` with
    `fmriscaling.scaling.VISION` on its full and subsample fits (ensembles are left out).

    - ``axis="params"``, per family with >= 2 model sizes: each model's full-training-set fit,
      ``metric`` averaged over subjects, against ``log10(n_params)``.
    - ``axis="images"``, per model with >= 2 training-set sizes: ``metric`` averaged over the
      fits at each number of training images (the full fit is the largest size), against
      ``log10(n_train_images)``.

    Parameters
    ----------
    table : DataFrame
        ``encoding.csv`` (whole-cortex rows) or ``rois.csv`` (with ``by=("roi_group",
        "roi")``).
    means : DataFrame
        The bootstrap table of the same fits (`collect_vision_tables` with ``bootstrap``).
    by, ci, seed, resample_subjects
        See `fmriscaling.scaling.scaling_fits`.

    Returns
    -------
    fits, lines : DataFrame
        `SCALING_COLUMNS` then the ``by`` columns; the replicate lines.
    """
    fits = table[table["kind"].isin(["full", "subsample"])] if len(table) else table
    return scaling_fits(
        fits,
        means,
        track=VISION,
        by=by,
        ci=ci,
        seed=seed,
        resample_subjects=resample_subjects,
    )


def write_vision_tables(
    *,
    entries: Sequence[Mapping[str, Any]],
    ceilings: Mapping[str, str | os.PathLike] | None,
    roi_files: Sequence[str | os.PathLike],
    subjects: Sequence[str],
    roi_classes: Sequence[str],
    n_hemispheres: int,
    feature_dirs: Mapping[str, str | os.PathLike],
    outputs: Mapping[str, str | os.PathLike],
    bootstrap: Mapping[str, Any] | None = None,
    ci: float = 0.95,
) -> dict[str, Any]:
    """Build every vision table and write each as CSV + markdown.

    Parameters
    ----------
    entries : sequence of mapping
        See `collect_vision_tables`; a null ``n_params`` is filled from the model's feature
        provenance (`fmriscaling.features.io.recorded_n_params`).
    ceilings : mapping subject -> path, or None
    roi_files : sequence of path-like
        Per subject, per ROI class: its ``n_hemispheres`` mask files, then its mapping file.
    subjects, roi_classes : sequence of str
        The order of ``roi_files``.
    n_hemispheres : int
    feature_dirs : mapping model -> path
        Feature folders of the vision models.
    outputs : mapping table name -> path
        ``encoding``, ``rois``, ``selection``, ``scaling``, ``scaling_rois`` CSV paths, and
        the gzipped ``bootstrap_means`` and ``scaling_bootstrap`` (the whole-cortex lines and
        the ROIs' lines, with ROI columns).
    bootstrap : mapping, optional
        ``n_replicates``, ``seed``, ``resample_subjects`` of the intervals (the config's
        ``scaling.bootstrap``, shared with the language track); default 1000, 0, true.
    ci : float
        Coverage of the intervals.

    Returns
    -------
    tables : dict name -> DataFrame
    """
    from ..encoding.tables import write_table
    from ..features.io import recorded_n_params
    from .dataset import read_roi_labels, roi_masks

    per_class = n_hemispheres + 1
    expected = len(subjects) * len(roi_classes) * per_class
    if len(roi_files) != expected:
        raise ValueError(f"expected {expected} ROI files, got {len(roi_files)}")
    masks: dict[str, dict[tuple[str, str], np.ndarray]] = {}
    for i_subject, subject in enumerate(subjects):
        labels = {}
        for i_class, roi_class in enumerate(roi_classes):
            start = (i_subject * len(roi_classes) + i_class) * per_class
            files = roi_files[start : start + per_class]
            labels[roi_class] = read_roi_labels(files[:-1], files[-1], roi_class=roi_class)
        masks[subject] = roi_masks(labels)
    filled = []
    for entry in entries:
        entry = dict(entry)
        if entry.get("n_params") is None and entry["model"] in feature_dirs:
            entry["n_params"] = recorded_n_params(feature_dirs[entry["model"]])
        filled.append(entry)
    boot = {"n_replicates": 1000, "seed": 0, "resample_subjects": True, **(bootstrap or {})}
    tables = collect_vision_tables(filled, ceilings=ceilings, roi_masks=masks, bootstrap=boot)
    options = dict(ci=ci, seed=boot["seed"], resample_subjects=boot["resample_subjects"])
    means = tables[BOOTSTRAP_TABLE]
    if means is None:
        raise DataError("the vision table has no full or subsample fit to resample")
    tables["scaling"], whole = vision_scaling(tables["encoding"], means, **options)
    tables["scaling_rois"], per_roi = vision_scaling(
        tables["rois"], means, by=ROI_COLUMNS, **options
    )
    tables[SCALING_LINES] = pd.concat(
        [whole.assign(roi_group="cortex", roi="cortex"), per_roi], ignore_index=True
    )
    known = (*VISION_TABLES, BOOTSTRAP_TABLE, SCALING_LINES)
    unknown = sorted(set(outputs) - set(known))
    if unknown:
        raise ValueError(f"write_vision_tables: unknown tables {unknown}; known: {known}")
    for name, path in outputs.items():
        write_table(tables[name], path)
    return tables
