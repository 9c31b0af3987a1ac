"""Rule stacking_table: stacking.csv and stacking_members.csv, per voxel group where labelled."""

from pathlib import Path
from typing import TYPE_CHECKING

from fmriscaling._utils import log_to_file
from fmriscaling.encoding.stacking import read_voxel_labels, stacking_tables
from fmriscaling.encoding.tables import write_table
from fmriscaling.rois import load_voxel_labels, roi_voxel_sets

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    p = smk.params
    entries = [dict(e, path=scores) for e, scores in zip(p.entries, smk.input.scores, strict=True)]
    labels = sets = None
    if "ground_truth" in smk.input.keys():  # the demo: its true voxel groups
        truth = Path(smk.input.ground_truth)
        labels = {s: read_voxel_labels(truth / f"{s}.npz", "voxel_group") for s in p.subjects}
    if "rois" in smk.input.keys():  # results/rois/<dataset>/<subject>.npz
        sets = {Path(f).stem: roi_voxel_sets(load_voxel_labels(f)) for f in smk.input.rois}
    stacking, members = stacking_tables(entries, labels, sets)
    write_table(stacking, smk.output.stacking)
    write_table(members, smk.output.stacking_members)


if __name__ == "__main__":
    main(snakemake)
