"""The gain of stacked regression over its best member, per ROI.

The paper stacks a Whisper model with a LLaMA model and finds the stack better than either
alone in auditory and mouth motor cortex. `plot_stacking_gain_by_roi` draws, per ROI, the mean
test r of the stack minus that of the member best on average in the ROI
(``gain_over_best_member`` of the stacking table, `fmriscaling.encoding.stacking.stacking_tables`,
whose voxel groups are the whole cortex, the subjects' ROIs and, on the demo, its true groups).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from matplotlib.figure import Figure

from .._utils import DataError
from ..voxel_tables import ALL_VOXELS
from ._base import get_ax, saving
from .ceiling import plot_roi_values

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["draw_stacking_figure", "plot_stacking_gain_by_roi"]


def plot_stacking_gain_by_roi(
    stacking: pd.DataFrame, ax: Axes | None = None, *, stack: str | None = None, min_voxels: int = 5
) -> Axes:
    """Stacking gain (stack minus best member, mean test r) per ROI; a point per subject.

    Parameters
    ----------
    stacking : DataFrame
        The stacking table: subject, stack, group, group_source, n_voxels,
        gain_over_best_member.
    ax : matplotlib.axes.Axes, optional
    stack : str, optional
        The stack to draw; required when the table holds several.
    min_voxels : int
        ROIs with fewer voxels (mean over subjects) are left out.

    Returns
    -------
    matplotlib.axes.Axes
    """
    stacks = sorted(stacking["stack"].unique()) if "stack" in stacking else []
    if stack is None:
        if len(stacks) != 1:
            raise DataError(f"plot_stacking_gain_by_roi: choose one of the stacks {stacks}")
        stack = stacks[0]
    rows = stacking[stacking["stack"] == stack]
    if rows.empty:
        raise DataError(f"plot_stacking_gain_by_roi: no rows of stack {stack!r} (have {stacks})")
    rows = rows.assign(
        roi=rows["group"].where(rows["group_source"] != "all", ALL_VOXELS),
        source=rows["group_source"],
    )
    ax = plot_roi_values(
        rows,
        "gain_over_best_member",
        get_ax(ax),
        min_voxels=min_voxels,
        reference=0.0,
        xlabel=f"stacking gain in mean test r ({stack} minus its best member in the ROI)",
    )
    ax.set_title(f"stack {stack}", fontsize="small")
    return ax


def draw_stacking_figure(
    stacking: pd.DataFrame, paths: Sequence[str | os.PathLike], *, min_voxels: int = 5
) -> list[Path]:
    """The stacking figure: one panel of gain per ROI for every stack.

    Parameters
    ----------
    stacking : DataFrame
        The stacking table.
    paths : sequence of path-like
        One file per format.
    min_voxels : int
        See `plot_stacking_gain_by_roi`.

    Returns
    -------
    list of pathlib.Path
    """
    stacks = sorted(stacking["stack"].unique())
    if not stacks:
        raise DataError("the stacking table has no rows: no stack to draw")
    n_groups = stacking["group"].nunique()
    fig = Figure(figsize=(6.5 * len(stacks), 1.5 + 0.26 * n_groups), layout="constrained")
    axes = fig.subplots(1, len(stacks), squeeze=False)[0]
    with saving(fig, paths) as written:
        for stack, ax in zip(stacks, axes, strict=True):
            plot_stacking_gain_by_roi(stacking, ax, stack=stack, min_voxels=min_voxels)
    return written
