"""The names of the workflow's final tables and figures: one home for the modules that write
them, the workflow's `fmriscaling.workflow.Study` that asks for them, and the tests.

A light module (no plotting imports): the workflow reads it when it parses its rules.
"""

from __future__ import annotations

__all__ = [
    "BOOTSTRAP_TABLE",
    "COST_FIGURE",
    "COST_TABLE",
    "ENCODING_TABLES",
    "NOISE_CEILING_FIGURE",
    "PARTITION_FIGURE",
    "PARTITION_TABLES",
    "PARTITION_VOXELS",
    "ROI_TABLE",
    "SCALING_FIGURES",
    "SCALING_LINES",
    "SCALING_TABLES",
    "STACKING_FIGURE",
    "STACKING_TABLES",
    "VISION_FIGURES",
    "VISION_TABLES",
    "VOXEL_TABLES",
    "scaling_figure_names",
    "vision_figure_names",
]

# ---- language track: tables (results/tables/<dataset>/<name>.csv, + .md)
#: `fmriscaling.encoding.tables.collect_encoding_scores` (rule encoding_table)
ENCODING_TABLES = ("encoding", "best_layers")
#: `fmriscaling.scaling.scaling_table_files` (rule scaling_table)
SCALING_TABLES = ("scaling", "headline")
#: the replicate lines of the scaling fits (gzipped CSV, rule scaling_table)
SCALING_LINES = "scaling_bootstrap"
#: `fmriscaling.scaling.bootstrap_means_file` (gzipped CSV, rule bootstrap_means)
BOOTSTRAP_TABLE = "bootstrap_means"
#: `fmriscaling.voxel_tables` (rule roi_tables): per voxel and ROI membership (gzipped CSV)
VOXEL_TABLES = ("voxels", "roi_voxels")
#: ... and per subject and ROI
ROI_TABLE = "rois"
#: `fmriscaling.measured_costs` (rule cost_table)
COST_TABLE = "costs"
#: `fmriscaling.encoding.stacking` (rule stacking_table)
STACKING_TABLES = ("stacking", "stacking_members")
#: `fmriscaling.encoding.partition` (rule partition_table): per voxel group, and the methods
PARTITION_TABLES = ("partition", "method_comparison")
#: ... and per voxel (gzipped CSV)
PARTITION_VOXELS = "partition_voxels"

# ---- language track: figures (results/figures/<dataset>/<name>.<fmt>)
#: `fmriscaling.figures.scaling_report`, in the order the workflow lists them
SCALING_FIGURES = (
    "model_size_scaling",
    "speech_model_size_scaling",
    "layer_profiles",
    "data_scaling",
)
#: `fmriscaling.figures.ceiling.draw_noise_ceiling_figure`
NOISE_CEILING_FIGURE = "noise_ceiling"
#: `fmriscaling.figures.costs`
COST_FIGURE = "costs"
#: `fmriscaling.figures.stacking`
STACKING_FIGURE = "stacking_gain"
#: `fmriscaling.figures.partition`
PARTITION_FIGURE = "variance_partition"

# ---- vision track (results/{tables,figures}/<vision dataset>/)
#: `fmriscaling.vision.tables.write_vision_tables`
VISION_TABLES = ("encoding", "rois", "selection", "scaling", "scaling_rois")
#: `fmriscaling.vision.plots.vision_report`
VISION_FIGURES = (
    "model_size_scaling",
    "data_scaling",
    "model_size_rois",
    "roi_scores",
    "selection",
)


def scaling_figure_names(*, speech: bool, sweep: bool) -> list[str]:
    """The scaling figures a study draws: the speech figure only with speech models, the
    data-scaling figure only with a data-size sweep."""
    skip = {"speech_model_size_scaling": not speech, "data_scaling": not sweep}
    return [name for name in SCALING_FIGURES if not skip.get(name, False)]


def vision_figure_names(*, model_sizes: bool, sweep: bool) -> list[str]:
    """The vision figures a study draws: the model-size figures only when a family has two
    sizes, the data-scaling figure only with a sweep."""
    return (
        (["model_size_scaling", "model_size_rois"] if model_sizes else [])
        + ["roi_scores", "selection"]
        + (["data_scaling"] if sweep else [])
    )
