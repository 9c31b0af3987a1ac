"""fmriscaling: scaling laws of fMRI encoding models.

The library is importable without Snakemake. Modules are layered, and imports only point down
this list: ``_utils``/``config`` -> ``download``, ``textgrid``, ``stimuli``, ``responses``,
``_pycortex``, ``rois``, ``demo`` -> ``interpolation``, ``models``, ``features`` -> ``encoding``
-> ``scaling``, ``voxel_tables``, ``costs`` -> ``plotting`` -> ``figures``.
"""

__version__ = "0.1.0"

from ._utils import ConfigError, DataError, FmriScalingError

__all__ = ["ConfigError", "DataError", "FmriScalingError", "__version__"]
