"""Figures of the vision track, drawn from its tables, in the language track's style.

Every ``plot_*`` function draws into a given Axes (``ax=None`` uses the current one) and returns
it; `vision_report` creates, saves and closes the figures. Lines are fitted with
`fmriscaling.encoding.tables.fit_log_linear` and labelled with their slope per 10x, as in
`fmriscaling.figures.scaling`, whose model-size figure is reused for the whole-cortex curve.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from .._utils import DataError
from ..figures import METRIC_LABELS as _LANGUAGE_LABELS
from ..figures import format_params, get_ax, save_figure_files
from ..figures.scaling import plot_model_size_scaling
from ..outputs import VISION_FIGURES
from ..stats import fit_log_linear

if TYPE_CHECKING:
    from matplotlib.axes import Axes

logger = logging.getLogger(__name__)

__all__ = [
    "VISION_FIGURES",
    "plot_roi_scaling",
    "plot_roi_scores",
    "plot_selection",
    "vision_report",
]

METRIC_LABELS = {
    **_LANGUAGE_LABELS,
    "median_r": "median test correlation r",
    "mean_noise_norm": "mean noise-normalised score (%)",
    "median_noise_norm": "median noise-normalised score (%)",
}
_X_LABELS = {"n_train_images": "training images", "n_params": "model parameters"}


def _roi_order(rois: pd.DataFrame) -> list[tuple[str, str]]:
    """(group, roi) in reading order: all, the streams, the categories."""
    pairs = rois[["roi_group", "roi"]].drop_duplicates()
    rank = {"all": 0, "stream": 1, "category": 2}
    pairs = pairs.assign(_rank=pairs["roi_group"].map(rank).fillna(3))
    # keep the table's order within a group (stream labels ascend from early to parietal)
    return [
        tuple(p) for p in pairs.sort_values("_rank", kind="stable")[["roi_group", "roi"]].to_numpy()
    ]


def plot_roi_scaling(
    rois: pd.DataFrame,
    *,
    x: str = "n_train_images",
    metric: str = "mean_r",
    groups: Sequence[str] = ("all", "stream"),
    ax: Axes | None = None,
) -> Axes:
    """One log-linear scaling curve per ROI: ``metric`` against training images or parameters.

    Points are the mean over subjects (and seeds) at each x, with error bars of one sd over
    seeds (data scaling) or subjects (model size); each ROI's line is fitted to those means and
    its legend gives the slope per 10x and the fit's r. The whole-cortex curve is black.

    Parameters
    ----------
    rois : DataFrame
        Rows of ``rois.csv`` for one model (``x="n_train_images"``) or one family's full fits
        (``x="n_params"``).
    x : {"n_train_images", "n_params"}
    metric : str
        A column of ``rois.csv``.
    groups : sequence of str
        ROI groups drawn.
    ax : Axes, optional

    Returns
    -------
    Axes
        Lines carry ``gid="fit:<roi>"``, points ``gid="data:<roi>"``.
    """
    ax = get_ax(ax)
    rows = rois[rois["roi_group"].isin(groups)].dropna(subset=[metric])
    if rows.empty:
        raise DataError(f"plot_roi_scaling: no rows with {metric} for ROI groups {list(groups)}")
    spread_over = "seed" if x == "n_train_images" else "subject"
    order = [pair for pair in _roi_order(rows)]
    palette = sns.color_palette("colorblind", n_colors=max(len(order), 2))
    for i, (group, roi) in enumerate(order):
        sub = rows[(rows["roi_group"] == group) & (rows["roi"] == roi)]
        # subjects first (a seed's subsets differ across subjects), then the spread
        per = sub.groupby([x, spread_over], sort=True)[metric].mean().reset_index()
        stats = per.groupby(x, sort=True)[metric].agg(["mean", "std"]).reset_index()
        color = "black" if group == "all" else palette[i % len(palette)]
        xs = stats[x].to_numpy(dtype=float)
        label = str(roi)
        if np.unique(xs).size >= 2:
            slope, intercept, r = fit_log_linear(xs, stats["mean"].to_numpy(dtype=float))
            line = np.array([xs.min(), xs.max()])
            ax.plot(line, intercept + slope * np.log10(line), color=color,
                    linewidth=2.0 if group == "all" else 1.2, gid=f"fit:{roi}")  # fmt: skip
            base = intercept + slope * np.log10(xs.min())
            pct = f"{100 * slope / base:+.0f}%, " if base > 0 else ""
            label = f"{roi}: {slope:+.3f} per 10x ({pct}r={r:.2f})"
        container = ax.errorbar(
            xs,
            stats["mean"].to_numpy(dtype=float),
            yerr=stats["std"].fillna(0.0).to_numpy(dtype=float),
            color=color,
            marker="o",
            markersize=4,
            linestyle="none",
            capsize=2,
            label=label,
        )
        container.lines[0].set_gid(f"data:{roi}")
    ax.set_xscale("log")
    # tick the sizes that were fitted (model sizes as 125M, 1.3B; image counts as numbers)
    ax.set_xticks(np.unique(rows[x].to_numpy(dtype=float)))
    label = format_params if x == "n_params" else (lambda value, _pos: f"{value:g}")
    ax.xaxis.set_major_formatter(FuncFormatter(label))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(_X_LABELS.get(x, x))
    ax.set_ylabel(f"{METRIC_LABELS.get(metric, metric)} (mean ± sd over {spread_over}s)")
    ax.legend(fontsize="x-small", frameon=False)
    return ax


def plot_roi_scores(
    rois: pd.DataFrame, *, metric: str = "mean_noise_norm", ax: Axes | None = None
) -> Axes:
    """Grouped bars: ``metric`` per ROI (streams, then categories) for every model, full fits.

    Parameters
    ----------
    rois : DataFrame
        Rows of ``rois.csv``; fits on all training images and ensembles are drawn, each the
        mean over subjects.
    metric : str
    ax : Axes, optional

    Returns
    -------
    Axes
        Bars of model ``m`` carry ``gid="bars:<m>"``.
    """
    ax = get_ax(ax)
    rows = rois[rois["full_train"].astype(bool) & rois["roi_group"].isin(["stream", "category"])]
    rows = rows[rows["n_vertices"] > 0].dropna(subset=[metric])
    if rows.empty:
        raise DataError(f"plot_roi_scores: no full-fit ROI rows with {metric}")
    order = _roi_order(rows)
    # models by family and size, the ensemble last
    ordered = rows.assign(_last=rows["kind"] == "ensemble")
    models = list(dict.fromkeys(ordered.sort_values(["_last", "family", "n_params"])["model"]))
    means = rows.groupby(["model", "roi_group", "roi"])[metric].mean()
    width = 0.8 / len(models)
    palette = sns.color_palette("colorblind", n_colors=max(len(models), 2))
    positions = np.arange(len(order))
    for i, model in enumerate(models):
        values = [means.get((model, g, roi), np.nan) for g, roi in order]
        ax.bar(positions + (i - (len(models) - 1) / 2) * width, values, width=width,
               color=palette[i % len(palette)], label=model, gid=f"bars:{model}")  # fmt: skip
    ax.set_xticks(positions)
    ax.set_xticklabels([roi for _, roi in order], rotation=45, ha="right", fontsize="small")
    n_streams = sum(g == "stream" for g, _ in order)
    if 0 < n_streams < len(order):
        ax.axvline(n_streams - 0.5, color="0.6", linewidth=0.8)
    ax.set_ylabel(f"{METRIC_LABELS.get(metric, metric)} (mean over subjects)")
    ax.legend(fontsize="x-small", frameon=False)
    return ax


def plot_selection(selection: pd.DataFrame, *, model: str, ax: Axes | None = None) -> Axes:
    """Heatmap of which (layer, k) the vertices of each stream ROI chose, for one model.

    Parameters
    ----------
    selection : DataFrame
        Rows of ``selection.csv``.
    model : str
    ax : Axes, optional

    Returns
    -------
    Axes
        The image carries ``gid="selection:<model>"``; cells hold the fraction of the ROI's
        vertices (mean over subjects).
    """
    ax = get_ax(ax)
    rows = selection[selection["model"] == model]
    if rows.empty:
        raise DataError(f"plot_selection: no selection rows for model {model!r}")
    table = (
        rows.groupby(["roi_group", "roi", "layer", "k"], sort=False)["fraction"]
        .mean()
        .reset_index()
    )
    order = _roi_order(table)
    candidates = sorted({(int(a), int(b)) for a, b in table[["layer", "k"]].to_numpy()})
    grid = np.zeros((len(order), len(candidates)))
    index = {c: j for j, c in enumerate(candidates)}
    for row in table.itertuples(index=False):
        grid[order.index((row.roi_group, row.roi)), index[(int(row.layer), int(row.k))]] = (
            row.fraction
        )
    image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=1, aspect="auto", gid=f"selection:{model}")
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            if grid[i, j] >= 0.1:  # ".73": two digits fit a narrow cell
                ax.text(j, i, f"{grid[i, j]:.2f}".lstrip("0"), ha="center", va="center",
                        fontsize=6, color="black" if grid[i, j] > 0.6 else "white")  # fmt: skip
    ax.set_xticks(range(len(candidates)))
    ax.set_xticklabels([f"L{a} k{b}" for a, b in candidates], rotation=90, fontsize=6)
    ax.set_yticks(range(len(order)))
    ax.set_yticklabels([roi for _, roi in order], fontsize=7)
    ax.set_title(model, fontsize="small")
    ax.figure.colorbar(image, ax=ax, fraction=0.04, label="fraction of vertices")
    return ax


def vision_report(
    tables: Mapping[str, pd.DataFrame],
    outputs: Mapping[str, Sequence[str | os.PathLike]],
    *,
    data_model: str | None = None,
) -> dict[str, list[Path]]:
    """Draw and save the vision figures from the tables, each to the files asked for.

    Figures (`VISION_FIGURES`): ``model_size_scaling`` (whole-cortex mean r vs parameters per
    family, `fmriscaling.figures.plot_model_size_scaling`), ``data_scaling`` (per stream ROI
    vs training images, for ``data_model``), ``model_size_rois`` (per stream ROI vs parameters,
    the family with the most sizes), ``roi_scores`` (noise-normalised score per ROI and model,
    r when there is no ceiling), ``selection`` (chosen (layer, k) per stream ROI, one panel per
    model). With the permutation test's columns, the model-size and data-scaling figures gain a
    second panel: the fraction of vertices significant at the FDR level. A figure without rows
    is skipped with a warning.

    Parameters
    ----------
    tables : mapping
        ``encoding``, ``rois`` and ``selection`` DataFrames (`collect_vision_tables`).
    outputs : mapping figure name -> files (one per format)
    data_model : str, optional
        Model of the data-scaling sweep.

    Returns
    -------
    dict figure name -> files written
    """
    unknown = sorted(set(outputs) - set(VISION_FIGURES))
    if unknown:
        raise ValueError(f"vision_report: unknown figures {unknown}; known: {VISION_FIGURES}")
    encoding, rois, selection = tables["encoding"], tables["rois"], tables["selection"]
    written: dict[str, list[Path]] = {}

    def draw(name: str, plot, size=(6.4, 4.8), n_panels: int = 1) -> None:
        if name not in outputs:
            return
        fig = Figure(figsize=size, layout="constrained")
        axes = fig.subplots(1, n_panels, squeeze=False)[0]
        try:
            plot(axes)
        except DataError as err:
            plt.close(fig)
            logger.warning("vision_report: skipping %s (%s)", name, err)
            return
        written[name] = save_figure_files(fig, outputs[name])

    # with the permutation test: a second panel, the fraction of vertices significant (FDR)
    significance = (
        "fraction_significant" in encoding and encoding["fraction_significant"].notna().any()
    )
    n_sig = 2 if significance else 1

    def model_size(axes) -> None:
        full = encoding[encoding["kind"] == "full"].assign(kind="full", layer=0)
        plot_model_size_scaling(full, metric="mean_r", ax=axes[0])
        axes[0].set_ylabel("mean test correlation r (per-vertex layer and pooling)")
        if significance:
            plot_model_size_scaling(full, metric="fraction_significant", ax=axes[1])
            axes[1].set_ylabel("fraction of vertices significant (FDR)")

    def data_scaling(axes) -> None:
        rows = rois[(rois["model"] == data_model) & (rois["kind"] != "ensemble")]
        plot_roi_scaling(rows, x="n_train_images", ax=axes[0])
        axes[0].set_title(f"{data_model}: held-out images fixed", fontsize="small")
        if significance:
            plot_roi_scaling(rows, x="n_train_images", metric="fraction_significant", ax=axes[1])
            axes[1].set_title(f"{data_model}: vertices significant (FDR)", fontsize="small")

    def model_size_rois(axes) -> None:
        full = rois[rois["kind"] == "full"]
        sizes = full.groupby("family")["n_params"].nunique()
        if sizes.empty or sizes.max() < 2:
            raise DataError("no family has two model sizes")
        family = sizes.idxmax()
        plot_roi_scaling(full[full["family"] == family], x="n_params", ax=axes[0])
        axes[0].set_title(f"{family}: model size", fontsize="small")

    def roi_scores(axes) -> None:
        metric = "mean_noise_norm" if rois["mean_noise_norm"].notna().any() else "mean_r"
        plot_roi_scores(rois, metric=metric, ax=axes[0])

    models = list(dict.fromkeys(selection["model"])) if len(selection) else []

    def selection_panels(axes) -> None:
        if not models:
            raise DataError("no selection rows")
        for ax, model in zip(axes, models, strict=True):
            plot_selection(selection, model=model, ax=ax)

    draw("model_size_scaling", model_size, size=(6.4 * n_sig, 4.8), n_panels=n_sig)
    draw("data_scaling", data_scaling, size=(6.4 * n_sig, 4.8), n_panels=n_sig)
    draw("model_size_rois", model_size_rois)
    draw("roi_scores", roi_scores, size=(7.5, 4.2))
    n_panels = max(len(models), 1)
    draw("selection", selection_panels, size=(4.2 * n_panels, 3.8), n_panels=n_panels)
    return written
