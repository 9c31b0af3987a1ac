"""The study's figures, drawn from tidy tables.

``fmriscaling.figures.scaling``
    score against model size and against training-data size (with bootstrap confidence bands),
    layer profiles, and `scaling_report`, which draws and saves them all.
``fmriscaling.figures.brain``
    pycortex flatmaps of per-voxel values (nilearn slices where a dataset has no pycortex
    surfaces) and the per-subject map figure.
``fmriscaling.figures.ceiling``
    the noise ceiling: CC_max distribution, r against CC_max, CC_norm per ROI.
``fmriscaling.figures.stacking``
    the gain of stacked regression per ROI.
``fmriscaling.figures.costs``
    extraction and fit time and peak memory against model size.
``fmriscaling.figures._base``
    what they share: metric labels, family colours, axis formatters (`format_params`), the
    Axes to draw into (`get_ax`), atomic saving; public for the vision track's figures too.

Every ``plot_*`` function draws into ``ax`` (the current Axes when None) and returns it; only
`save_figure`, `scaling_report` and the ``draw_*`` functions create, save and close figures.
"""

from ._base import (
    METRIC_LABELS,
    METRIC_UNITS,
    format_params,
    get_ax,
    save_figure,
    save_figure_files,
    saving,
)
from .brain import plot_brain_map, unmask_values
from .ceiling import plot_cc_norm_vs_ceiling, plot_noise_ceiling_hist
from .scaling import (
    plot_data_scaling,
    plot_layer_profiles,
    plot_model_size_scaling,
    scaling_report,
)

__all__ = [
    "METRIC_LABELS",
    "METRIC_UNITS",
    "format_params",
    "get_ax",
    "plot_brain_map",
    "plot_cc_norm_vs_ceiling",
    "plot_data_scaling",
    "plot_layer_profiles",
    "plot_model_size_scaling",
    "plot_noise_ceiling_hist",
    "save_figure",
    "save_figure_files",
    "saving",
    "scaling_report",
    "unmask_values",
]
