"""Tidy per-voxel and per-ROI tables: the best model's r, CC_max, CC_norm, ROIs.

Tables (one row per ...):

- `voxel_table`: subject x voxel, for the subject's best model (the model and layer with the
  highest cross-validation score, never a test score): test r, CC_max, CC_norm, hemisphere
  and atlas labels;
- `roi_voxel_table`: subject x ROI x voxel (membership, long);
- `roi_summary`: subject x ROI: voxels, mean r, mean CC_max, mean CC_norm (plus a ``cortex``
  row over every voxel);
- `voxel_tables_files` also adds each stack's gain per ROI (`add_stacking_gain`, from the
  stacking table, `fmriscaling.encoding.stacking.stacking_tables`).

Voxel indices are the columns of the responses: the mask's voxels in pycortex's (z, y, x) C
order.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ._utils import DataError, write_provenance
from .encoding.noise_ceiling import normalized_correlation
from .rois import VoxelLabels

logger = logging.getLogger(__name__)

__all__ = [
    "best_model_row",
    "roi_summary",
    "roi_voxel_table",
    "unfloored_cc_max",
    "voxel_table",
    "voxel_tables_files",
]

#: The ROI row that averages every voxel of the mask.
ALL_VOXELS = "cortex"


def best_model_row(best_layers: pd.DataFrame, subject: str) -> pd.Series:
    """The (model, layer) of a subject with the highest mean CV score.

    Parameters
    ----------
    best_layers : DataFrame
        One row per (subject, model): its best layer by CV (`best_layers`).
    subject : str

    Returns
    -------
    pandas.Series
        That row.

    Raises
    ------
    DataError
        When the subject has no row.
    """
    rows = best_layers[best_layers["subject"] == subject]
    if rows.empty:
        raise DataError(f"the best-layers table has no row for subject {subject}")
    return rows.loc[rows["mean_cv_score"].idxmax()]


def voxel_table(
    subject: str,
    *,
    model: str,
    layer: int,
    test_r: np.ndarray,
    cc_max: np.ndarray,
    floor: float | None = None,
    labels: VoxelLabels | None = None,
    significance: Mapping[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """One row per voxel of a subject: its best model's test r, the ceiling, CC_norm, labels.

    Parameters
    ----------
    subject : str
    model : str
    layer : int
    test_r : array of shape (n_voxels,)
    cc_max : array of shape (n_voxels,)
        The noise ceiling (unfloored, `unfloored_cc_max`); NaN where a voxel has none.
    floor : float, optional
        Floor on CC_max when normalising (``cc_norm = r / max(cc_max, floor)``).
    labels : VoxelLabels, optional
        Adds ``hemisphere``, ``distance_mm`` and one column per atlas.
    significance : mapping, optional
        ``test_p``, ``test_q``, ``significant`` of the fit (its permutation test): columns
        beside ``test_r``.

    Returns
    -------
    DataFrame
        subject, voxel, model, layer, test_r[, test_p, test_q, significant], cc_max,
        has_ceiling, cc_norm[, hemisphere, distance_mm, <atlas>...].
    """
    test_r = np.asarray(test_r, dtype=np.float64)
    cc_max = np.asarray(cc_max, dtype=np.float64)
    if test_r.shape != cc_max.shape or test_r.ndim != 1:
        raise DataError(
            f"{subject}: test r {test_r.shape} and CC_max {cc_max.shape} must be (n_voxels,)"
        )
    table = pd.DataFrame(
        {
            "subject": subject,
            "voxel": np.arange(test_r.size),
            "model": model,
            "layer": int(layer),
            "test_r": test_r,
            **{
                name: np.asarray(values)
                for name, values in (significance or {}).items()
                if name in ("test_p", "test_q", "significant")
            },
            "cc_max": cc_max,
            "has_ceiling": np.isfinite(cc_max) & (cc_max > 0),
            "cc_norm": normalized_correlation(test_r, cc_max, floor=floor),
        }
    )
    if labels is not None:
        if labels.n_voxels != test_r.size:
            raise DataError(
                f"{subject}: the ROI labels cover {labels.n_voxels} voxels, the scores "
                f"{test_r.size}; rebuild the labels from the subject's mask"
            )
        table["hemisphere"] = labels.hemisphere
        table["distance_mm"] = labels.distance_mm
        for atlas, names in sorted(labels.atlas_labels.items()):
            table[atlas] = names
    return table


def roi_voxel_table(labels: VoxelLabels) -> pd.DataFrame:
    """The voxels of each ROI of a subject, one row per (ROI, voxel).

    Parameters
    ----------
    labels : VoxelLabels

    Returns
    -------
    DataFrame
        subject, roi, source, voxel (nullable integers): an ROI without any voxel of this
        subject's grid (a small functional ROI on a coarse grid) has one row with an empty
        voxel, so that the ROI table still lists it, with zero voxels.
    """
    parts = [
        pd.DataFrame(
            {
                "subject": labels.subject,
                "roi": roi,
                "source": source,
                "voxel": pd.array(np.flatnonzero(inside) if inside.any() else [pd.NA], "Int64"),
            }
        )
        for roi, source, inside in zip(
            labels.roi_names, labels.roi_sources, labels.membership, strict=True
        )
    ]
    columns = ["subject", "roi", "source", "voxel"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def roi_summary(voxels: pd.DataFrame, roi_voxels: pd.DataFrame) -> pd.DataFrame:
    """Per subject and ROI: voxel count, mean test r, mean CC_max and mean CC_norm.

    Parameters
    ----------
    voxels : DataFrame
        From `voxel_table`.
    roi_voxels : DataFrame
        From `roi_voxel_table`.

    Returns
    -------
    DataFrame
        subject, roi, source, model, layer, n_voxels, n_voxels_ceiling, mean_r, mean_cc_max,
        mean_cc_norm, fraction_significant (of the ROI's voxels, FDR-controlled over the
        subject's voxels; NaN without a permutation test); ``cc_max`` and ``cc_norm`` are
        averaged over voxels with a ceiling.
        ROI ``cortex`` (source ``all``) is every voxel; ROIs without voxels are kept, with NaN
        means.
    """
    cortex = voxels.assign(roi=ALL_VOXELS, source="all")
    # an empty voxel marks an ROI without voxels (`roi_voxel_table`): it matches no voxel
    roi_voxels = roi_voxels.astype({"voxel": "Int64"})
    members = roi_voxels.merge(
        voxels.astype({"voxel": "Int64"}), on=["subject", "voxel"], how="left", validate="m:1"
    )
    both = pd.concat([cortex, members], ignore_index=True)
    ceiling = both["has_ceiling"].astype(bool)
    both["cc_max_valid"] = both["cc_max"].where(ceiling)
    both["cc_norm_valid"] = both["cc_norm"].where(ceiling)
    # NaN when the fit had no permutation test
    both["significant_or_nan"] = (
        both["significant"].astype(float) if "significant" in both else np.nan
    )
    table = (
        both.groupby(["subject", "roi", "source"], sort=False)
        .agg(
            model=("model", "first"),
            layer=("layer", "first"),
            n_voxels=("voxel", "count"),
            n_voxels_ceiling=("has_ceiling", "sum"),
            mean_r=("test_r", "mean"),
            mean_cc_max=("cc_max_valid", "mean"),
            mean_cc_norm=("cc_norm_valid", "mean"),
            fraction_significant=("significant_or_nan", "mean"),
        )
        .reset_index()
    )
    # ROIs of the labels without any voxel: a row with zero voxels, not a missing row
    empty = roi_voxels[["subject", "roi", "source"]].drop_duplicates()
    table = table.merge(empty, how="outer", on=["subject", "roi", "source"])
    table["n_voxels"] = table["n_voxels"].fillna(0).astype(int)
    table["n_voxels_ceiling"] = table["n_voxels_ceiling"].fillna(0).astype(int)
    order = {"all": 0, "anatomical": 1, "functional": 2}
    return table.sort_values(
        ["subject", "source", "roi"], key=lambda c: c.map(order) if c.name == "source" else c
    ).reset_index(drop=True)[
        [
            "subject",
            "roi",
            "source",
            "model",
            "layer",
            "n_voxels",
            "n_voxels_ceiling",
            "mean_r",
            "mean_cc_max",
            "mean_cc_norm",
            "fraction_significant",
        ]
    ]


def unfloored_cc_max(ceiling) -> np.ndarray:
    """The noise ceiling without the floor the stored CC_max may carry.

    ``CC_max = 1 / sqrt(1 + (TP / SP - 1) / N)`` (METHODS.md) from the stored powers, so the
    distribution of ceilings is not piled up at the floor; CC_norm still uses the floor.

    Parameters
    ----------
    ceiling : NoiseCeiling
        From `fmriscaling.encoding.noise_ceiling.load_noise_ceiling`.

    Returns
    -------
    array of shape (n_voxels,)
        NaN where the signal power is not positive.
    """
    out = np.full(ceiling.sp.shape, np.nan)
    valid = np.asarray(ceiling.valid, dtype=bool)
    out[valid] = 1.0 / np.sqrt(
        1.0 + (ceiling.tp[valid] / ceiling.sp[valid] - 1.0) / ceiling.n_repeats
    )
    return out


def voxel_tables_files(
    best_layers_csv: str | os.PathLike,
    fits: Sequence[Mapping[str, Any]],
    score_files: Sequence[str | os.PathLike],
    ceilings: Mapping[str, str | os.PathLike],
    labels: Mapping[str, str | os.PathLike],
    *,
    voxels: str | os.PathLike,
    roi_voxels: str | os.PathLike,
    rois: str | os.PathLike,
    floor: float | None = None,
    stacking: str | os.PathLike | None = None,
    params: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """The voxel, ROI-membership and ROI tables of every subject, from the files on disk.

    Parameters
    ----------
    best_layers_csv : path-like
        The best-layers table (one row per subject x model, chosen by CV).
    fits : sequence of mapping
        Full-training-set fit entries (subject, model, layer), in the order of
        ``score_files``.
    score_files : sequence of path-like
    ceilings : mapping of str to path-like
        Subject -> noise-ceiling npz.
    labels : mapping of str to path-like
        Subject -> ROI labels npz (`fmriscaling.rois.save_voxel_labels`); empty for a
        dataset without pycortex surfaces (then only the ``cortex`` row per subject).
    voxels, roi_voxels, rois : path-like
        Outputs (.csv.gz, .csv.gz, .csv).
    floor : float, optional
        Floor on CC_max when normalising.
    stacking : path-like, optional
        The stacking table (``stacking.csv``): each stack's gain per ROI joins the ROI table
        (`add_stacking_gain`).
    params : mapping, optional
        Recorded in the provenance sidecars of the outputs.

    Returns
    -------
    DataFrame
        The ROI table.
    """
    from .encoding.noise_ceiling import load_noise_ceiling
    from .encoding.tables import write_table
    from .rois import load_voxel_labels

    best = pd.read_csv(best_layers_csv)
    scores = {
        (str(f["subject"]), str(f["model"]), int(f["layer"])): p
        for f, p in zip(fits, score_files, strict=True)
    }
    voxel_parts, member_parts = [], []
    for subject, ceiling_file in ceilings.items():
        row = best_model_row(best, subject)
        key = (subject, str(row["model"]), int(row["layer"]))
        with np.load(scores[key], allow_pickle=False) as f:
            test_r = f["test_r"]
            significance = {n: f[n] for n in ("test_p", "test_q", "significant") if n in f.files}
        subject_labels = load_voxel_labels(labels[subject]) if subject in labels else None
        voxel_parts.append(
            voxel_table(
                subject,
                model=key[1],
                layer=key[2],
                test_r=test_r,
                cc_max=unfloored_cc_max(load_noise_ceiling(ceiling_file)),
                floor=floor,
                labels=subject_labels,
                significance=significance,
            )
        )
        if subject_labels is not None:
            member_parts.append(roi_voxel_table(subject_labels))
    if not labels:
        logger.info(
            "no ROI labels (no pycortex surfaces): the ROI table has whole-cortex rows only"
        )
    all_voxels = pd.concat(voxel_parts, ignore_index=True)
    members = (
        pd.concat(member_parts, ignore_index=True)
        if member_parts
        else pd.DataFrame(columns=["subject", "roi", "source", "voxel"])
    )
    summary = roi_summary(all_voxels, members)
    if stacking is not None:
        summary = add_stacking_gain(summary, pd.read_csv(stacking))
    write_table(all_voxels, voxels)
    write_table(members, roi_voxels)
    write_table(summary, rois)
    for out in (voxels, roi_voxels, rois):
        write_provenance(out, params, floor=floor)
    return summary


def add_stacking_gain(rois: pd.DataFrame, stacking: pd.DataFrame) -> pd.DataFrame:
    """The ROI table with one ``stacking_gain:<stack>`` column per stack.

    The gain is the stack's mean test r in the ROI minus that of its member best on average
    there (``gain_over_best_member`` of the stacking table, whose groups are the ROIs and the
    whole cortex, ``all``).

    Parameters
    ----------
    rois : DataFrame
        From `roi_summary` (subject, roi, source, ...).
    stacking : DataFrame
        The stacking table (subject, stack, group, group_source, gain_over_best_member, ...).

    Returns
    -------
    DataFrame
        ``rois`` with the columns added (NaN for an ROI a stack has no row for).

    Raises
    ------
    DataError
        The stacking table lacks the columns, or has no row for some subject's whole cortex.
    """
    needed = {"subject", "stack", "group", "group_source", "gain_over_best_member"}
    if not needed <= set(stacking):
        raise DataError(f"the stacking table lacks {sorted(needed - set(stacking))}")
    gains = stacking.assign(
        roi=stacking["group"].where(stacking["group_source"] != "all", ALL_VOXELS),
        source=stacking["group_source"],
    ).pivot_table(
        index=["subject", "roi", "source"], columns="stack", values="gain_over_best_member"
    )
    missing = sorted(set(rois["subject"]) - set(gains.index.get_level_values("subject")))
    if missing:
        raise DataError(f"the stacking table has no rows for subjects {missing}")
    gains.columns = [f"stacking_gain:{stack}" for stack in gains.columns]
    return rois.merge(gains.reset_index(), on=["subject", "roi", "source"], how="left")
