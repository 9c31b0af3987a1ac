"""Figures beyond the scaling curves of `fmriscaling.plotting`, drawn from tidy tables.

``fmriscaling.figures.brain``
    pycortex flatmaps of per-voxel values (nilearn slices where a dataset has no pycortex
    surfaces) and the per-subject map figure.
``fmriscaling.figures.ceiling``
    the noise ceiling: CC_max distribution, r against CC_max, CC_norm per ROI.
``fmriscaling.figures.stacking``
    the gain of stacked regression per ROI.
``fmriscaling.figures.costs``
    extraction and fit time and peak memory against model size.

As in `fmriscaling.plotting`, every ``plot_*`` function draws into ``ax`` (the current Axes when
None) and returns it; only the ``draw_*`` functions create, save and close figures.
"""
