"""Tidy tables of the vision track: fits, ROI summaries, selected candidates, scaling fits.

One row per fit (``encoding.csv``), per fit and ROI (``rois.csv``), per full fit, ROI and
selected (layer, k) (``selection.csv``), and the log-linear scaling fits in the exact columns
of the language track's ``scaling.csv`` (`fmriscaling.encoding.tables.scaling_summary`), so
that a summary can stack both: ``kind="params"`` per family (mean test r over all vertices vs
model parameters) and ``kind="data"`` per model (vs training images; ``layer`` is empty: each
vertex has its own). ``scaling_rois.csv`` repeats the fits per ROI and metric.
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
from ..encoding.tables import SCALING_COLUMNS, _fit_row
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
    "n_candidates",
    "median_alpha",
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
) -> dict[str, pd.DataFrame]:
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

    Returns
    -------
    tables : dict
        ``"encoding"`` (`FIT_COLUMNS`), ``"rois"`` (the labels, ``roi_group``, ``roi``,
        ``n_vertices``, ``mean_r``, ``median_r``, ``mean_noise_norm``, ``median_noise_norm``,
        ``n_vertices_no_ceiling``) and ``"selection"`` (full fits: ``roi_group``, ``roi``,
        ``layer``, ``k``, ``n_vertices``, ``fraction``).
    """
    fits, rois, selection = [], [], []
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
        whole_r, whole_s = summarize(test_r), summarize(score)
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
                "n_candidates": summary.get("n_candidates"),
                "median_alpha": summary.get("median_alpha", np.nan),
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
    return {
        "encoding": encoding,
        "rois": pd.DataFrame.from_records(rois),
        "selection": pd.DataFrame.from_records(selection),
    }


def vision_scaling(
    table: pd.DataFrame, *, metrics: Sequence[str] = ("mean_r",), by: Sequence[str] = ()
) -> pd.DataFrame:
    """Log-linear scaling fits of the vision track.

    - ``kind="params"``, per family with >= 2 model sizes: each model's full-training-set fit,
      ``metric`` averaged over subjects, against ``log10(n_params)``.
    - ``kind="data"``, per model with >= 2 training-set sizes: ``metric`` averaged over
      subjects and seeds per number of training images (the full fit is the largest size),
      against ``log10(n_train_images)``.

    Parameters
    ----------
    table : DataFrame
        ``encoding.csv`` (whole-cortex rows) or ``rois.csv`` (with ``by=("roi_group",
        "roi")``); ensembles are left out.
    metrics : sequence of str
        Columns to fit; with one metric and no ``by`` the result has exactly the columns of
        the language track's ``scaling.csv`` (`SCALING_COLUMNS`).
    by : sequence of str
        Extra grouping columns (one fit per group), kept as columns.

    Returns
    -------
    fits : DataFrame
        `SCALING_COLUMNS`, then ``by`` and ``metric`` when asked for more than the default.
    """
    by = list(by)
    rows: list[dict[str, Any]] = []
    fits = table[table["kind"].isin(["full", "subsample"])] if len(table) else table
    for metric in metrics:
        groups = fits.groupby(by, sort=True) if by else [((), fits)]
        for key, group in groups:
            labels = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
            full = group[group["full_train"].astype(bool)].dropna(subset=[metric])
            per_model = (
                full.groupby(["family", "model"], sort=True)
                .agg(n_params=("n_params", "first"), value=(metric, "mean"))
                .reset_index()
                .dropna(subset=["n_params"])
            )
            for family, models in per_model.groupby("family", sort=True):
                if models["n_params"].nunique() >= 2:
                    rows.append(
                        {
                            **_fit_row(
                                "params", models["n_params"], models["value"], family=family
                            ),
                            **labels,
                            "metric": metric,
                        }
                    )
            per_size = (
                group.dropna(subset=[metric])
                .groupby(["family", "model", "n_train_images"], sort=True)[metric]
                .mean()
                .reset_index()
            )
            for (family, model), sizes in per_size.groupby(["family", "model"], sort=True):
                if sizes["n_train_images"].nunique() >= 2:
                    rows.append(
                        {
                            **_fit_row(
                                "data",
                                sizes["n_train_images"],
                                sizes[metric],
                                family=family,
                                model=model,
                            ),
                            **labels,
                            "metric": metric,
                        }
                    )
    extra = [*by, "metric"] if (by or len(metrics) > 1) else []
    columns = [*SCALING_COLUMNS, *extra]
    return pd.DataFrame.from_records(rows, columns=columns)[columns]


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
) -> dict[str, pd.DataFrame]:
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
        ``encoding``, ``rois``, ``selection``, ``scaling``, ``scaling_rois`` CSV paths.

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
    tables = collect_vision_tables(filled, ceilings=ceilings, roi_masks=masks)
    tables["scaling"] = vision_scaling(tables["encoding"])
    tables["scaling_rois"] = vision_scaling(
        tables["rois"], metrics=("mean_r", "mean_noise_norm"), by=("roi_group", "roi")
    )
    for name, path in outputs.items():
        write_table(tables[name], path)
    return tables
