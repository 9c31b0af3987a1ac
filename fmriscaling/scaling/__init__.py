"""Scaling-law fits with bootstrap confidence intervals, for the language and the vision track.

Both tracks take the same two steps and write the same tables (`fmriscaling.scaling.schema`:
a `Track` names the few columns in which they differ). For the language track, three kinds
of fit (``axis``), each for mean test r and mean CC_norm (``metric``):

- ``params``: per family, the best layer of each (subject, model) chosen by cross-validation
  (`~fmriscaling.encoding.tables.best_layers`, never the test story), averaged over subjects,
  against log10(n_params);
- ``stories`` and ``trs``: per subsampled (model, layer), the mean over subjects and random
  subsets at each training-set size (the full training set is the largest point) against
  log10(training stories) and log10(mean training TRs at that size).

A least-squares line ``y = intercept + slope * log10(x)`` gives the slope per decade (10x),
the percentage per decade (the slope over the line's value at the smallest x) and Pearson's r
of the fit. Confidence intervals are percentile intervals over bootstrap replicates that
resample voxels and subjects:

1. `bootstrap_means`: per subject, ``n_replicates`` resamples of the voxels (with replacement)
   are drawn once and shared by every fit of that subject, and each fit's mean test r and
   mean CC_norm are computed on each resample (a tidy table, built once by a rule);
2. `scaling_fits`: per replicate, subjects are drawn with replacement (one draw shared by
   every fit), the subject-level means of that replicate are averaged over the drawn
   subjects, and the line is refitted.

So a slope's interval reflects both the sampling of voxels and of subjects. With
``resample_subjects=False`` subjects are kept as they are (voxels only). The vision track
(`fmriscaling.vision.tables`) fits ``params`` and ``images`` (training images) for mean test r
and the mean noise-normalised score, over all vertices and per ROI, with the same functions.

``fmriscaling.scaling.schema``
    `Track`, `LANGUAGE`, `VISION`: the names in which the tracks differ.
``fmriscaling.scaling.resample``
    step 1: the fits to resample and their means over resampled voxels, per subject.
``fmriscaling.scaling.fits``
    step 2: subjects resampled, lines refitted, intervals, the headline table.
"""

from .fits import FIT_COLUMNS, headline_table, scaling_fits, scaling_table_files
from .resample import (
    KEY_COLUMNS,
    METRICS,
    bootstrap_means,
    bootstrap_means_file,
    check_encoding,
    entry_key,
    fits_to_resample,
    replicate_means,
    resampled_means,
    row_key,
)
from .schema import CORTEX, LANGUAGE, ROI_COLUMNS, VISION, Track

__all__ = [
    "CORTEX",
    "FIT_COLUMNS",
    "KEY_COLUMNS",
    "LANGUAGE",
    "METRICS",
    "ROI_COLUMNS",
    "VISION",
    "Track",
    "bootstrap_means",
    "bootstrap_means_file",
    "check_encoding",
    "entry_key",
    "fits_to_resample",
    "headline_table",
    "replicate_means",
    "resampled_means",
    "row_key",
    "scaling_fits",
    "scaling_table_files",
]
