"""Rule stacking_table: stacking.csv and stacking_members.csv, per voxel group where labelled."""

from typing import TYPE_CHECKING

from fmriscaling._utils import log_to_file
from fmriscaling.encoding.stacking import read_voxel_groups, stacking_tables
from fmriscaling.encoding.tables import write_table

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    p = smk.params
    entries = [dict(e, path=scores) for e, scores in zip(p.entries, smk.input.scores, strict=True)]
    # the demo's true voxel groups, the subjects' ROIs (results/rois/<dataset>/<subject>.npz)
    labels, sets = read_voxel_groups(
        p.subjects, smk.input.get("ground_truth"), list(smk.input.get("rois", []))
    )
    stacking, members = stacking_tables(entries, labels, sets)
    write_table(stacking, smk.output.stacking)
    write_table(members, smk.output.stacking_members)


if __name__ == "__main__":
    main(snakemake)
