"""The gain of stacked regression over its best member, per ROI.

The paper stacks a Whisper model with a LLaMA model and finds the stack better than either
alone in auditory and mouth motor cortex. `plot_stacking_gain_by_roi` draws, per ROI, the mean
test r of the stack minus that of the member best on average in the ROI
(`fmriscaling.voxel_tables.roi_stacking_gain`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from .._utils import DataError
from ..plotting import _get_ax
from .ceiling import plot_roi_values

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["plot_stacking_gain_by_roi"]


def plot_stacking_gain_by_roi(
    gains: pd.DataFrame, ax: Axes | None = None, *, stack: str | None = None, min_voxels: int = 5
) -> Axes:
    """Stacking gain (stack minus best member, mean test r) per ROI; a point per subject.

    Parameters
    ----------
    gains : DataFrame
        From `fmriscaling.voxel_tables.roi_stacking_gain`.
    ax : matplotlib.axes.Axes, optional
    stack : str, optional
        The stack to draw; required when the table holds several.
    min_voxels : int
        ROIs with fewer voxels (mean over subjects) are left out.

    Returns
    -------
    matplotlib.axes.Axes
    """
    stacks = sorted(gains["stack"].unique()) if "stack" in gains else []
    if stack is None:
        if len(stacks) != 1:
            raise DataError(f"plot_stacking_gain_by_roi: choose one of the stacks {stacks}")
        stack = stacks[0]
    rows = gains[gains["stack"] == stack]
    if rows.empty:
        raise DataError(f"plot_stacking_gain_by_roi: no rows of stack {stack!r} (have {stacks})")
    ax = plot_roi_values(
        rows,
        "stacking_gain",
        _get_ax(ax),
        min_voxels=min_voxels,
        reference=0.0,
        xlabel=f"stacking gain in mean test r ({stack} minus its best member in the ROI)",
    )
    ax.set_title(f"stack {stack}", fontsize="small")
    return ax
