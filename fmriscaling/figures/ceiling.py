"""Noise-ceiling figures: the CC_max distribution, r against CC_max, and CC_norm per ROI.

The paper's reading: voxelwise performance is near the noise ceiling (CC_norm near 1) in the
precuneus and higher auditory cortex, and well below it in the angular gyrus and parts of
prefrontal cortex. `plot_cc_norm_by_roi` is that view: mean CC_norm per ROI with one point
per subject and the ceiling (CC_norm = 1) marked.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import ScaledTranslation

from .._utils import DataError
from ._base import _check_columns, get_ax, saving

if TYPE_CHECKING:
    from matplotlib.axes import Axes

logger = logging.getLogger(__name__)

#: Legend of the ROI bars by the ``source`` of the ROI.
SOURCE_LABELS = {
    "all": "every cortical voxel",
    "anatomical": "anatomical ROI (FreeSurfer labels)",
    "functional": "functional ROI (overlays.svg)",
    "label": "the demo's true voxel group",
}
#: Short names of the sources, added to an ROI's tick label where two sources share its name.
SOURCE_SHORT = {"all": "all", "anatomical": "anat.", "functional": "func.", "label": "truth"}

__all__ = [
    "draw_noise_ceiling_figure",
    "plot_cc_max_distribution",
    "plot_cc_norm_by_roi",
    "plot_cc_norm_vs_ceiling",
    "plot_noise_ceiling_hist",
    "plot_roi_values",
]


def plot_cc_max_distribution(
    voxels: pd.DataFrame, ax: Axes | None = None, *, bins: int = 40
) -> Axes:
    """Histogram of the noise ceiling CC_max over voxels that have one, one line per subject.

    Parameters
    ----------
    voxels : DataFrame
        The voxel table (columns subject, cc_max, has_ceiling).
    ax : matplotlib.axes.Axes, optional
    bins : int
        Bins between 0 and 1.

    Returns
    -------
    matplotlib.axes.Axes
        The title counts the voxels without a ceiling (SP <= 0), never averaged in.
    """
    _check_columns(voxels, ["subject", "cc_max", "has_ceiling"], "plot_cc_max_distribution")
    ax = get_ax(ax)
    valid = voxels[voxels["has_ceiling"].astype(bool)]
    sns.histplot(
        data=valid, x="cc_max", hue="subject", bins=np.linspace(0, 1, bins + 1),
        element="step", fill=False, ax=ax, palette="colorblind",
    )  # fmt: skip
    ax.set_xlim(0, 1)
    ax.set_xlabel("noise ceiling CC_max")
    ax.set_ylabel("voxels")
    n_without = int((~voxels["has_ceiling"].astype(bool)).sum())
    ax.set_title(
        f"{len(valid)} voxels with a ceiling, {n_without} without (SP ≤ 0)", fontsize="small"
    )
    return ax


def plot_roi_values(
    rois: pd.DataFrame,
    value: str,
    ax: Axes | None = None,
    *,
    min_voxels: int = 5,
    reference: float | None = None,
    reference_label: str | None = None,
    xlabel: str | None = None,
) -> Axes:
    """One bar per ROI (the mean over subjects) of a per-ROI value, a point per subject.

    ROIs are sorted by the mean; the whole-cortex row (source ``all``) is drawn first, in grey.

    Parameters
    ----------
    rois : DataFrame
        Per (subject, roi) rows with columns subject, roi, source, n_voxels and ``value``.
    value : str
        Column to draw.
    ax : matplotlib.axes.Axes, optional
    min_voxels : int
        ROIs with fewer voxels (mean over subjects) are left out.
    reference : float, optional
        A vertical line (e.g. the ceiling, CC_norm = 1).
    reference_label : str, optional
    xlabel : str, optional

    Returns
    -------
    matplotlib.axes.Axes
        Tick labels read ``"<roi> (n=<voxels>)"``.

    Raises
    ------
    DataError
        When no ROI has ``min_voxels`` voxels.
    """
    _check_columns(rois, ["subject", "roi", "source", "n_voxels", value], "plot_roi_values")
    ax = get_ax(ax)
    per_roi = (
        rois.groupby(["roi", "source"], sort=False)
        .agg(mean=(value, "mean"), n_voxels=("n_voxels", "mean"))
        .reset_index()
    )
    per_roi = per_roi[(per_roi["n_voxels"] >= min_voxels) & per_roi["mean"].notna()]
    if per_roi.empty:
        raise DataError(f"plot_roi_values: no ROI has {min_voxels} voxels with a {value}")
    everything = per_roi[per_roi["source"] == "all"]
    regions = per_roi[per_roi["source"] != "all"].sort_values("mean", ascending=False)
    ordered = pd.concat([everything, regions], ignore_index=True)
    positions = np.arange(len(ordered))
    colorblind = sns.color_palette("colorblind")
    palette = {
        "all": "0.6", "anatomical": colorblind[0], "functional": colorblind[2],
        "label": colorblind[1],
    }  # fmt: skip
    colors = [palette.get(s, colorblind[3]) for s in ordered["source"]]
    ax.barh(positions, ordered["mean"], color=colors, alpha=0.8, gid="bars")
    points = rois.merge(ordered[["roi", "source"]].reset_index(), on=["roi", "source"])
    ax.scatter(points[value], points["index"], s=12, color="black", zorder=3, gid="subjects")
    ax.set_yticks(positions)
    shared = ordered["roi"].duplicated(keep=False)  # e.g. the demo's "auditory" group and ROI
    ax.set_yticklabels(
        [
            f"{r} ({SOURCE_SHORT.get(src, src)}, n={n:.0f})" if dup else f"{r} (n={n:.0f})"
            for r, src, n, dup in zip(
                ordered["roi"], ordered["source"], ordered["n_voxels"], shared, strict=True
            )
        ]
    )
    ax.tick_params(axis="y", labelsize="small")
    ax.invert_yaxis()
    handles = [
        Patch(color=palette[s], alpha=0.8, label=SOURCE_LABELS[s])
        for s in SOURCE_LABELS
        if s in set(ordered["source"])
    ]
    handles.append(
        Line2D([], [], marker="o", linestyle="none", color="black", markersize=4, label="subjects")
    )
    if reference is not None:
        ax.axvline(reference, color="tab:red", linewidth=1)
        if reference_label:
            handles.append(Line2D([], [], color="tab:red", linewidth=1, label=reference_label))
    ax.set_xlabel(xlabel or value)
    # in one row under the x label (0.45 inch below the Axes): the bars keep the whole width
    below = ax.transAxes + ScaledTranslation(0, -0.45, ax.figure.dpi_scale_trans)
    # two columns at most: a wider legend would squeeze the Axes under constrained layout
    ax.legend(
        handles=handles, fontsize="small", frameon=False, loc="upper center",
        bbox_to_anchor=(0.5, 0), bbox_transform=below, ncol=min(2, len(handles)),
    )  # fmt: skip
    return ax


def plot_cc_norm_by_roi(rois: pd.DataFrame, ax: Axes | None = None, *, min_voxels: int = 5) -> Axes:
    """Mean CC_norm per ROI (bars: mean over subjects; points: subjects), ceiling at 1.

    Parameters
    ----------
    rois : DataFrame
        The ROI table (`fmriscaling.voxel_tables.roi_summary`).
    ax : matplotlib.axes.Axes, optional
    min_voxels : int
        ROIs with fewer voxels (mean over subjects) are left out.

    Returns
    -------
    matplotlib.axes.Axes
    """
    model = (
        ", ".join(sorted(rois["model"].dropna().astype(str).unique())) if "model" in rois else ""
    )
    return plot_roi_values(
        rois,
        "mean_cc_norm",
        ax,
        min_voxels=min_voxels,
        reference=1.0,
        reference_label="at the noise ceiling",
        xlabel=f"mean CC_norm of the best model ({model})" if model else "mean CC_norm",
    )


def draw_noise_ceiling_figure(
    voxels: pd.DataFrame,
    rois: pd.DataFrame,
    paths: Sequence[str | os.PathLike],
    *,
    min_voxels: int = 5,
) -> list[Path]:
    """The noise-ceiling figure: CC_max histogram, r against CC_max, CC_norm per ROI.

    Parameters
    ----------
    voxels : DataFrame
        The voxel table (all subjects).
    rois : DataFrame
        The ROI table.
    paths : sequence of path-like
        One file per format.
    min_voxels : int
        See `plot_cc_norm_by_roi`.

    Returns
    -------
    list of pathlib.Path
    """
    n_rois = rois.loc[rois["n_voxels"] >= min_voxels, "roi"].nunique()
    fig = Figure(figsize=(12, 4.5 + 0.22 * max(n_rois, 4)), layout="constrained")
    axes = fig.subplot_mosaic(
        [["hist", "scatter"], ["rois", "rois"]], height_ratios=[4.5, 0.22 * max(n_rois, 4)]
    )
    with saving(fig, paths) as written:
        plot_cc_max_distribution(voxels, axes["hist"])
        valid = voxels["has_ceiling"].astype(bool).to_numpy()
        plot_cc_norm_vs_ceiling(
            voxels["test_r"].to_numpy(),
            np.nan_to_num(voxels["cc_max"].to_numpy()),
            valid,
            axes["scatter"],
        )
        axes["scatter"].set_title(
            "every voxel of every subject: best model's test r", fontsize="small"
        )
        if n_rois:
            plot_cc_norm_by_roi(rois, axes["rois"], min_voxels=min_voxels)
        else:
            axes["rois"].set_axis_off()
            axes["rois"].text(
                0.5,
                0.5,
                "no ROIs (no pycortex surfaces)",
                ha="center",
                transform=axes["rois"].transAxes,
            )
    return written


# --------------------------------------------------------------------------------------------
# noise ceiling
# --------------------------------------------------------------------------------------------
def _check_voxel_vectors(**arrays: Any) -> dict[str, np.ndarray]:
    out = {name: np.asarray(value) for name, value in arrays.items()}
    shapes = {name: value.shape for name, value in out.items()}
    if len(set(shapes.values())) != 1 or any(len(s) != 1 for s in shapes.values()):
        raise ValueError(f"expected 1-D arrays of shape (n_voxels,) of equal length, got {shapes}")
    return out


def plot_noise_ceiling_hist(
    cc_max: Any, valid: Any, ax: Axes | None = None, *, bins: int = 50
) -> Axes:
    """Histogram of the per-voxel noise ceiling CC_max over voxels that have one.

    Parameters
    ----------
    cc_max : array of shape (n_voxels,)
        Noise ceiling per voxel (undefined where ``valid`` is False).
    valid : array of bool, shape (n_voxels,)
        True where the signal power is positive and CC_max is defined.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; defaults to the current Axes.
    bins : int
        Number of bins between 0 and 1.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn into; the text in its title counts voxels without a ceiling.
    """
    arrays = _check_voxel_vectors(cc_max=cc_max, valid=valid)
    valid = arrays["valid"].astype(bool)
    values = arrays["cc_max"][valid].astype(float)
    ax = get_ax(ax)
    ax.hist(values, bins=np.linspace(0.0, 1.0, bins + 1), color="0.4")
    ax.set_xlabel("noise ceiling CC_max")
    ax.set_ylabel("voxels")
    ax.set_title(
        f"{valid.sum()} voxels with a ceiling, {valid.size - valid.sum()} without",
        fontsize="small",
    )
    return ax


def plot_cc_norm_vs_ceiling(r: Any, cc_max: Any, valid: Any, ax: Axes | None = None) -> Axes:
    """Per-voxel test correlation against the noise ceiling, with the y = x line.

    Voxels on the line are predicted as well as their noise allows (CC_norm = 1); voxels far
    below it leave explainable variance unexplained.

    Parameters
    ----------
    r : array of shape (n_voxels,)
        Test correlation (CC_abs) per voxel.
    cc_max : array of shape (n_voxels,)
        Noise ceiling per voxel.
    valid : array of bool, shape (n_voxels,)
        True where CC_max is defined; other voxels are not drawn.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; defaults to the current Axes.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn into; the voxel scatter has ``gid="voxels"``, the line ``"identity"``.
    """
    arrays = _check_voxel_vectors(r=r, cc_max=cc_max, valid=valid)
    valid = arrays["valid"].astype(bool)
    ax = get_ax(ax)
    # rasterized: a vector PDF of ~90k points is slow to open
    ax.scatter(
        arrays["cc_max"][valid],
        arrays["r"][valid],
        s=2,
        alpha=0.3,
        color="0.2",
        linewidths=0,
        rasterized=True,
        gid="voxels",
    )
    ax.plot([0, 1], [0, 1], color="tab:red", linewidth=1.0, label="r = CC_max", gid="identity")
    ax.set_xlim(0, 1)
    ax.set_ylim(min(0.0, float(np.nanmin(arrays["r"][valid], initial=0.0))), 1)
    ax.set_xlabel("noise ceiling CC_max")
    ax.set_ylabel("test correlation r")
    ax.legend(fontsize="small", frameon=False, loc="upper left")
    return ax
