"""Variance partitioning figures: the partition per ROI, and each subject's maps of it.

`plot_partition_by_roi` draws, per voxel group of ``partition.csv``
(`fmriscaling.encoding.partition.partition_tables`: the whole cortex, the subjects' ROIs and, on
the demo, its true groups), the mean test R² unique to each band and shared by the bands, and
the joint model's R² as a marker. `draw_partition_maps` draws the same regions per voxel on the
subject's flatmap (`fmriscaling.figures.brain.draw_map_panels`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from .._utils import DataError
from ..voxel_tables import ALL_VOXELS
from ._base import _check_columns, get_ax, saving
from .brain import NOT_SIGNIFICANT_OPACITY, MapPanel, draw_map_panels

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["draw_partition_figure", "draw_partition_maps", "plot_partition_by_roi"]

_REGIONS = ("unique", "shared")


def _component(measure: str, bands: str) -> str:
    return f"unique {bands}" if measure == "unique" else f"shared {bands.replace('+', ' & ')}"


def plot_partition_by_roi(
    table: pd.DataFrame,
    ax: Axes | None = None,
    *,
    partition: str | None = None,
    min_voxels: int = 5,
) -> Axes:
    """Per voxel group, the mean R² unique to each band and shared (bars: mean over subjects,
    points: subjects) and the joint model's R² (a diamond).

    Parameters
    ----------
    table : DataFrame
        ``partition.csv``: subject, partition, group, group_source, n_voxels, measure, bands,
        mean_r2.
    ax : matplotlib.axes.Axes, optional
    partition : str, optional
        Required when the table holds several partitions.
    min_voxels : int
        Groups with fewer voxels (mean over subjects) are left out.

    Returns
    -------
    matplotlib.axes.Axes
    """
    columns = ["subject", "partition", "group", "group_source", "n_voxels", "measure", "bands"]
    _check_columns(table, [*columns, "mean_r2"], "plot_partition_by_roi")
    names = sorted(table["partition"].unique())
    if partition is None:
        if len(names) != 1:
            raise DataError(f"plot_partition_by_roi: choose one of the partitions {names}")
        partition = names[0]
    rows = table[table["partition"] == partition]
    if rows.empty:
        raise DataError(f"plot_partition_by_roi: no rows of partition {partition!r} ({names})")
    # a name per group: the demo's true groups are told apart from ROIs of the same name
    roi = rows["group"].where(rows["group_source"] != "label", rows["group"] + " (true group)")
    rows = rows.assign(roi=roi.where(rows["group_source"] != "all", ALL_VOXELS))
    size = rows.groupby("roi")["n_voxels"].mean()
    rows = rows[rows["roi"].map(size) >= min_voxels]
    if rows.empty:
        raise DataError(f"plot_partition_by_roi: no voxel group has {min_voxels} voxels")
    joint = rows[rows["measure"] == "joint"].groupby("roi")["mean_r2"].mean()
    order = [ALL_VOXELS] if ALL_VOXELS in joint.index else []
    order += [r for r in joint.drop(ALL_VOXELS, errors="ignore").sort_values(ascending=False).index]
    regions = rows[rows["measure"].isin(_REGIONS)].assign(
        component=lambda df: [
            _component(m, b) for m, b in zip(df["measure"], df["bands"], strict=True)
        ]
    )
    ax = get_ax(ax)
    components = list(dict.fromkeys(regions.sort_values("measure", ascending=False)["component"]))
    palette = dict(zip(components, sns.color_palette("colorblind", len(components)), strict=True))
    sns.barplot(
        regions,
        x="mean_r2",
        y="roi",
        hue="component",
        order=order,
        hue_order=components,
        palette=palette,
        errorbar=None,
        orient="h",
        alpha=0.85,
        ax=ax,
    )
    sns.stripplot(
        regions,
        x="mean_r2",
        y="roi",
        hue="component",
        order=order,
        hue_order=components,
        dodge=True,
        palette=["black"] * len(components),
        size=2.5,
        orient="h",
        legend=False,
        ax=ax,
    )
    positions = {roi: i for i, roi in enumerate(order)}
    ax.scatter(
        joint.reindex(order).to_numpy(),
        [positions[r] for r in order],
        marker="D",
        s=22,
        color="0.2",
        zorder=4,
        label="joint model R²",
        gid="joint",
    )
    ax.axvline(0.0, color="0.3", lw=0.8)
    counts = size.reindex(order).round().astype(int)
    ax.set_yticks(range(len(order)), [f"{r} (n={n})" for r, n in zip(order, counts, strict=True)])
    ax.set_xlabel("mean test R² (unique to a band, shared; negative = noise, kept)")
    ax.set_ylabel("")
    ax.set_title(f"partition {partition}", fontsize="small")
    ax.legend(fontsize="x-small", loc="lower right")
    return ax


def draw_partition_figure(
    table: pd.DataFrame, paths: Sequence[str | os.PathLike], *, min_voxels: int = 5
) -> list[Path]:
    """The variance-partition figure: one panel per partition (`plot_partition_by_roi`)."""
    names = sorted(table["partition"].unique()) if "partition" in table else []
    if not names:
        raise DataError("the partition table has no rows: no partition to draw")
    n_groups = table[["group", "group_source"]].drop_duplicates().shape[0]
    fig = Figure(figsize=(7.0 * len(names), 2.0 + 0.36 * n_groups), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    with saving(fig, paths) as written:
        for name, ax in zip(names, axes, strict=True):
            plot_partition_by_roi(table, ax, partition=name, min_voxels=min_voxels)
    return written


def partition_panels(score_files: Sequence[str | os.PathLike], subject: str) -> list[MapPanel]:
    """The maps of a subject's partitions: each region, then the joint model's R².

    Regions share one symmetric colour range per partition (the 99th percentile of their
    absolute values), so a unique and a shared map read on the same scale; voxels the joint
    model's permutation test did not find significant are dimmed.
    """
    panels = []
    for path in score_files:
        with np.load(path, allow_pickle=False) as data:
            s = {name: data[name] for name in data.files}
        partition = Path(path).parent.name
        opacity = None
        if "joint_significant" in s:
            opacity = np.where(s["joint_significant"], 1.0, NOT_SIGNIFICANT_OPACITY)
        regions = s["component_r2"].astype(np.float64)
        finite = np.abs(regions[np.isfinite(regions)])
        top = float(np.percentile(finite, 99)) if finite.size else 1.0
        top = top if top > 0 else 1.0
        for kind, names, values in zip(
            s["component_kinds"].astype(str), s["components"].astype(str), regions, strict=True
        ):
            label = _component(kind, names)
            panels.append(
                MapPanel(
                    f"{subject} {partition}: {label} (test R²)"
                    + ("; not significant: dimmed" if opacity is not None else ""),
                    values,
                    label=f"{label} R²",
                    cmap="RdBu_r",
                    vmin=-top,
                    vmax=top,
                    opacity=opacity,
                )
            )
        joint = s["joint_r2"].astype(np.float64)
        panels.append(
            MapPanel(
                f"{subject} {partition}: joint banded ridge (test R²)"
                + ("; not significant: dimmed" if opacity is not None else ""),
                joint,
                label="joint R²",
                cmap="inferno",
                vmin=0.0,
                vmax=float(max(np.percentile(joint, 99), 1e-3)),
                opacity=opacity,
            )
        )
    return panels


def draw_partition_maps(
    score_files: Sequence[str | os.PathLike],
    paths: Sequence[str | os.PathLike],
    *,
    subject: str,
    **maps,
) -> list[Path]:
    """One subject's partition maps (`partition_panels`), drawn by `draw_map_panels` (its
    keyword arguments: db_dir, mask, reference, xfmname, with_rois, height, pixelwise)."""
    return draw_map_panels(partition_panels(score_files, subject), paths, subject=subject, **maps)
