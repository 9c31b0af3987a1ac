"""fmriscaling: scaling laws of fMRI encoding models.

The library is importable without Snakemake. Its modules are layered, and every import (module
level or inside a function) points to the same or an earlier layer of this list
(`tests/test_packaging.py` checks it):

1. ``_utils``, ``cost``, ``stats``, ``sweep``, ``outputs`` (final names), ``sizing`` (GPUs a job)
2. ``config``, ``_hdf5``, ``_pycortex``, ``models``, ``interpolation``, ``textgrid``
3. ``download``, ``responses``, ``stimuli``
4. ``rois``, ``features``
5. ``encoding``
6. ``scaling``, ``voxel_tables``, ``measured_costs``
7. ``figures``
8. ``vision``, ``surface`` (group maps on fsaverage5, both tracks), ``viewers``
9. ``demo`` (the embedded demo's generators and tiny models)
10. ``workflow`` (the workflow's own logic: a configured study's paths, jobs and targets)
11. ``plan`` (what a study costs)
"""

__version__ = "0.1.0"

from ._utils import ConfigError, DataError, FmriScalingError

__all__ = ["ConfigError", "DataError", "FmriScalingError", "__version__"]
