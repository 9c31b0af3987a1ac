"""Rule partition_table: partition.csv, partition_voxels.csv.gz and method_comparison.csv."""

from pathlib import Path
from typing import TYPE_CHECKING

from fmriscaling._utils import log_to_file
from fmriscaling.encoding.partition import method_comparison, partition_tables
from fmriscaling.encoding.stacking import read_voxel_labels
from fmriscaling.encoding.tables import write_table
from fmriscaling.rois import load_voxel_labels, roi_voxel_sets

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    p = smk.params
    partitions = [dict(e, path=f) for e, f in zip(p.partitions, smk.input.partitions, strict=True)]
    stacks = [dict(e, path=f) for e, f in zip(p.stacks, smk.input.stacks, strict=True)]
    labels = sets = None
    if "ground_truth" in smk.input.keys():  # the demo: its true voxel groups
        truth = Path(smk.input.ground_truth)
        labels = {s: read_voxel_labels(truth / f"{s}.npz", "voxel_group") for s in p.subjects}
    if "rois" in smk.input.keys():  # results/rois/<dataset>/<subject>.npz
        sets = {Path(f).stem: roi_voxel_sets(load_voxel_labels(f)) for f in smk.input.rois}
    summary, voxels = partition_tables(partitions, labels, sets)
    write_table(summary, smk.output.partition)
    write_table(voxels, smk.output.partition_voxels)
    write_table(method_comparison(partitions, stacks, labels, sets), smk.output.method_comparison)


if __name__ == "__main__":
    main(snakemake)
