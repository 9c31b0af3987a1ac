"""Rule roi_tables: per-voxel table of each subject's best model, ROI membership, ROI summary."""

from pathlib import Path
from typing import TYPE_CHECKING

from fmriscaling._utils import log_to_file
from fmriscaling.voxel_tables import voxel_tables_files

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    p = smk.params
    voxel_tables_files(
        smk.input.best_layers,
        p.fits,
        smk.input.scores,
        dict(zip(p.subjects, smk.input.ceilings, strict=True)),
        {Path(f).stem: f for f in smk.input.rois},  # results/rois/<dataset>/<subject>.npz
        voxels=smk.output.voxels,
        roi_voxels=smk.output.roi_voxels,
        rois=smk.output.rois,
        floor=p.floor,
        stacking=smk.input.stacking[0] if smk.input.stacking else None,
        params=dict(p.items()),
    )


if __name__ == "__main__":
    main(snakemake)
