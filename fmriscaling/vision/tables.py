"""Tidy tables of the vision track: fits, ROI summaries, selected candidates, scaling fits.

One row per fit (``encoding.csv``), per fit and ROI (``rois.csv``), per full fit, ROI and
selected (layer, k) (``selection.csv``), and the log-linear scaling fits in the columns of the
language track's ``scaling.csv`` (`fmriscaling.scaling.FIT_COLUMNS`), so that a summary can
stack both: ``axis="params"`` per family (each model's full fit vs model parameters) and
``axis="images"`` per model (vs training images; ``layer`` is empty: each vertex has its own),
for mean test r and the mean noise-normalised score (``metric``), with ``kind="vision"``.
``scaling_rois.csv`` repeats the fits per ROI.

Intervals are the language track's two-level percentile bootstrap
(`fmriscaling.scaling`): per subject, ``n_replicates`` resamples of the vertices (of each ROI)
with replacement, drawn once from a stream seeded by (seed, subject[, ROI]) and shared by every
fit of that subject; per replicate, subjects drawn with replacement (one draw for every fit),
the replicate means averaged over the drawn subjects and the line refitted.
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
from ..outputs import VISION_TABLES
from ..scaling.fits import (
    FIT_COLUMNS as SCALING_COLUMNS,
)
from ..scaling.fits import (
    fit_point,
    lines_of_replicates,
    mean_over_drawn_subjects,
    subject_draws,
    with_interval,
)
from ..scaling.resample import resampled_means, subject_stream
from .scores import load_vision_noise_ceiling, noise_normalized_score, summarize

logger = logging.getLogger(__name__)

__all__ = [
    "FIT_COLUMNS",
    "SCALING_COLUMNS",
    "VertexReplicates",
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


#: what a scaling fit of the vision track is: one kind of model, told apart from text and speech
MODEL_KIND = "vision"
#: the whole-cortex "ROI" of the replicates (the encoding table's rows)
CORTEX = ("cortex", "cortex")
_METRICS = ("mean_r", "mean_noise_norm")


class VertexReplicates:
    """Means of each fit over shared vertex resamples, per subject and ROI (step 1 of the
    bootstrap).

    ``values[(subject, model, n_train_images, seed, roi_group, roi)]`` holds an array of shape
    (2, n_replicates): mean test r and mean noise-normalised score (over the resampled
    vertices that have a ceiling) of each replicate. `CORTEX` stands for all vertices.
    """

    def __init__(self, n_replicates: int, seed: int):
        self.n_replicates = int(n_replicates)
        self.seed = int(seed)
        self.values: dict[tuple, np.ndarray] = {}

    def add_subject(
        self,
        subject: str,
        keys: Sequence[tuple],
        test_r: np.ndarray,
        score: np.ndarray,
        masks: Mapping[tuple[str, str], np.ndarray],
    ) -> None:
        """Resample the vertices of one subject's fits (rows of ``test_r`` / ``score``, one per
        key (model, n_train_images, seed)), over all vertices and within every ROI."""
        for roi, mask in {CORTEX: None, **masks}.items():
            r = test_r if mask is None else test_r[:, mask]
            s = score if mask is None else score[:, mask]
            if r.shape[1] == 0:
                continue  # an empty ROI has no means; its scaling fits are skipped
            stream = subject_stream(self.seed, "/".join((subject, *roi)))
            mean_r, mean_s = resampled_means(r, s, self.n_replicates, stream)
            for key, a, b in zip(keys, mean_r, mean_s, strict=True):
                self.values[(subject, *key, *roi)] = np.stack([a, b])

    def get(self, subject: str, model: str, n_train: int, seed: int, roi, metric: str):
        key = (subject, model, int(n_train), int(seed), *roi)
        if key not in self.values:
            raise DataError(
                f"no vertex resamples of {subject} {model} ({n_train} images, seed {seed}) in "
                f"ROI {'/'.join(roi)}: the fit is missing from the vision table's inputs"
            )
        return self.values[key][_METRICS.index(metric)]


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
        ``"replicates"`` (`VertexReplicates`).
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
            keys.append((labels["model"], labels["n_train_images"], labels["seed"]))
            rs.append(test_r)
            scores.append(score)
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
    tables: dict[str, Any] = {
        "encoding": encoding,
        "rois": pd.DataFrame.from_records(rois),
        "selection": pd.DataFrame.from_records(selection),
    }
    if bootstrap is not None:
        replicates = VertexReplicates(bootstrap["n_replicates"], bootstrap["seed"])
        for subject, (keys, rs, scores) in per_vertex.items():
            shapes = {r.shape for r in rs}
            if len(shapes) != 1:
                raise DataError(f"{subject}: fits of different vertex counts {sorted(shapes)}")
            replicates.add_subject(
                subject, keys, np.stack(rs), np.stack(scores), roi_masks[subject]
            )
        tables["replicates"] = replicates
    return tables


def vision_scaling(
    table: pd.DataFrame,
    replicates: VertexReplicates,
    *,
    by: Sequence[str] = (),
    metrics: Sequence[str] = _METRICS,
    ci: float = 0.95,
    seed: int = 0,
    resample_subjects: bool = True,
) -> pd.DataFrame:
    """Log-linear scaling fits of the vision track, with percentile bootstrap intervals.

    - ``axis="params"``, per family with >= 2 model sizes: each model's full-training-set fit,
      ``metric`` averaged over subjects, against ``log10(n_params)``.
    - ``axis="images"``, per model with >= 2 training-set sizes: ``metric`` averaged over seeds
      per subject, then over subjects, per number of training images (the full fit is the
      largest size), against ``log10(n_train_images)``.

    A line needs every subject at every point with a finite value; one that lacks any (an ROI
    without vertices, no noise ceiling for the score) is left out, with a log line saying so.

    Parameters
    ----------
    table : DataFrame
        ``encoding.csv`` (whole-cortex rows) or ``rois.csv`` (with ``by=("roi_group",
        "roi")``); ensembles are left out.
    replicates : VertexReplicates
        The vertex resamples of the same fits (`collect_vision_tables` with ``bootstrap``).
    by : sequence of str
        ``()`` for the whole cortex, or ``("roi_group", "roi")``: one fit per ROI, its labels
        kept as columns.
    metrics : sequence of str
        ``"mean_r"`` and / or ``"mean_noise_norm"``.
    ci : float
        Coverage of the intervals.
    seed : int
        Seed of the subject draws (`fmriscaling.scaling.fits.subject_draws`).
    resample_subjects : bool
        Draw subjects with replacement in each replicate (else keep them all).

    Returns
    -------
    fits : DataFrame
        `SCALING_COLUMNS`, then the ``by`` columns.
    """
    by = list(by)
    if by not in ([], ["roi_group", "roi"]):
        raise ValueError(f"by must be () or ('roi_group', 'roi'), got {by}")
    fits = table[table["kind"].isin(["full", "subsample"])] if len(table) else table
    subjects = sorted(str(v) for v in fits["subject"].unique()) if len(fits) else []
    n_rep = replicates.n_replicates
    draws = subject_draws(n_rep, len(subjects), seed, resample_subjects)
    common = dict(n_subjects=len(subjects), n_replicates=n_rep, ci=ci)
    rows: list[dict[str, Any]] = []

    def line(axis, metric, points, roi, **labels):
        """One fit over ``points`` (frames of one x value each, all subjects' rows)."""
        what = f"{axis} fit of {metric} for {labels} in ROI {'/'.join(roi)}"
        xs, point_y, per_subject = [], [], []
        for x, rows_at in points:
            by_subject = rows_at.groupby("subject")
            if sorted(by_subject.groups) != subjects or not np.isfinite(rows_at[metric]).all():
                logger.info("%s: left out (a subject or a finite value missing at %s)", what, x)
                return
            xs.append(float(x))
            point_y.append(by_subject[metric].mean().mean())
            per_subject.append(
                [
                    np.mean(
                        [
                            replicates.get(s, r.model, r.n_train_images, r.seed, roi, metric)
                            for r in group.itertuples()
                        ],
                        axis=0,
                    )
                    for s, group in sorted(by_subject, key=lambda item: item[0])
                ]
            )
        x, y = np.array(xs), np.array(point_y)
        fit = fit_point(axis, metric, x, y, kind=MODEL_KIND, layer=None, **labels)
        y_rep = mean_over_drawn_subjects(np.array(per_subject).transpose(1, 0, 2), draws)
        slopes, intercepts = lines_of_replicates(x, y_rep)
        rows.append(
            with_interval(fit, slopes, intercepts, ci)
            | common
            | (dict(roi_group=roi[0], roi=roi[1]) if by else {})
        )

    groups = fits.groupby(by, sort=True) if by else [(CORTEX, fits)]
    for roi, group in groups:
        roi = tuple(roi)
        for metric in metrics:
            full = group[group["full_train"].astype(bool)]
            for family, members in full.groupby("family", sort=True):
                sizes = members.groupby("model")["n_params"].first().dropna().sort_values()
                if sizes.nunique() < 2:
                    continue
                points = [(sizes[m], members[members["model"] == m]) for m in sizes.index]
                line("params", metric, points, roi, family=family)
            for (family, model), members in group.groupby(["family", "model"], sort=True):
                if members["n_train_images"].nunique() < 2:
                    continue
                points = list(members.groupby("n_train_images", sort=True))
                line("images", metric, points, roi, family=family, model=model)
    columns = [*SCALING_COLUMNS, *by]
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
        ``encoding``, ``rois``, ``selection``, ``scaling``, ``scaling_rois`` CSV paths.
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
    tables["scaling"] = vision_scaling(tables["encoding"], tables["replicates"], **options)
    tables["scaling_rois"] = vision_scaling(
        tables["rois"], tables["replicates"], by=("roi_group", "roi"), **options
    )
    unknown = sorted(set(outputs) - set(VISION_TABLES))
    if unknown:
        raise ValueError(f"write_vision_tables: unknown tables {unknown}; known: {VISION_TABLES}")
    for name, path in outputs.items():
        write_table(tables[name], path)
    return tables
