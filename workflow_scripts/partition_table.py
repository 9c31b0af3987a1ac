"""Rule partition_table: partition.csv, partition_voxels.csv.gz and method_comparison.csv."""

from typing import TYPE_CHECKING

from fmriscaling._utils import log_to_file
from fmriscaling.encoding.partition import method_comparison, partition_tables
from fmriscaling.encoding.stacking import read_voxel_groups
from fmriscaling.encoding.tables import write_table

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    p = smk.params
    partitions = [dict(e, path=f) for e, f in zip(p.partitions, smk.input.partitions, strict=True)]
    stacks = [dict(e, path=f) for e, f in zip(p.stacks, smk.input.stacks, strict=True)]
    # the demo's true voxel groups, the subjects' ROIs (results/rois/<dataset>/<subject>.npz)
    labels, sets = read_voxel_groups(
        p.subjects, smk.input.get("ground_truth"), list(smk.input.get("rois", []))
    )
    summary, voxels = partition_tables(partitions, labels, sets)
    write_table(summary, smk.output.partition)
    write_table(voxels, smk.output.partition_voxels)
    write_table(method_comparison(partitions, stacks, labels, sets), smk.output.method_comparison)


if __name__ == "__main__":
    main(snakemake)
