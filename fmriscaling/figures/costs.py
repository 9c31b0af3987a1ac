"""The cost figure: wall seconds and peak memory of extraction and fit jobs against model size.

No paper reports what its scaling study cost to run; this figure does, from Snakemake's
``benchmark:`` files (`fmriscaling.measured_costs.benchmark_table`).
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
from ._base import _check_columns, _log_count_axis, get_ax, saving

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["COST_LABELS", "draw_cost_figure", "plot_costs"]

#: Axis labels of the cost columns.
COST_LABELS = {
    "seconds": "wall time per job (s)",
    "cpu_seconds": "CPU time per job (s)",
    "max_rss_mb": "peak memory per job (MB)",
}


def plot_costs(costs: pd.DataFrame, y: str = "seconds", ax: Axes | None = None) -> Axes:
    """One job per point against its model's size, a line through the medians of each rule and
    family (a size sweep).

    Parameters
    ----------
    costs : DataFrame
        The cost table (columns rule, model, n_params and ``y``).
    y : {"seconds", "cpu_seconds", "max_rss_mb"}
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
        Points have ``gid="jobs:<rule>"``, median lines ``gid="median:<rule>:<family>"``.
    """
    _check_columns(costs, ["rule", "model", "family", "n_params", y], "plot_costs")
    rows = costs.dropna(subset=["n_params", y])
    if rows.empty:
        raise DataError(f"plot_costs: no job has both n_params and {y}")
    ax = get_ax(ax)
    rules = sorted(rows["rule"].unique())
    colors = dict(zip(rules, sns.color_palette("colorblind", len(rules)), strict=True))
    for rule in rules:
        jobs = rows[rows["rule"] == rule]
        ax.scatter(
            jobs["n_params"],
            jobs[y],
            s=14,
            alpha=0.5,
            color=colors[rule],
            linewidths=0,
            gid=f"jobs:{rule}",
        )
        label = f"{rule} ({len(jobs)} jobs; medians)"
        for family, sweep in jobs.groupby("family", sort=True):
            medians = sweep.groupby("n_params")[y].median().sort_index()
            ax.plot(
                medians.index, medians.to_numpy(), marker="o", color=colors[rule], label=label,
                gid=f"median:{rule}:{family}",
            )  # fmt: skip
            label = "_nolegend_"
    if (rows[y] > 0).all() and rows[y].max() / rows[y].min() > 20:
        ax.set_yscale("log")
    _log_count_axis(ax)
    ax.set_xlabel("model parameters")
    ax.set_ylabel(COST_LABELS.get(y, y))
    ax.legend(fontsize="small", frameon=False)
    return ax


def draw_cost_figure(costs: pd.DataFrame, paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Wall time and peak memory of every benchmarked job against model size (two panels).

    Parameters
    ----------
    costs : DataFrame
        The cost table.
    paths : sequence of path-like
        One file per format.

    Returns
    -------
    list of pathlib.Path
    """
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    with saving(fig, paths) as written:
        plot_costs(costs, "seconds", axes[0])
        plot_costs(costs, "max_rss_mb", axes[1])
        total = np.nansum(costs["seconds"])
        fig.suptitle(
            f"cost of the study: {len(costs)} jobs, {total / 60:.1f} job-minutes in all",
            fontsize="medium",
        )
    return written
