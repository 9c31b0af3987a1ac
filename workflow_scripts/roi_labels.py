"""Rule roi_labels: every cortical voxel's anatomical and functional ROIs (pycortex)."""

from typing import TYPE_CHECKING

from fmriscaling._utils import log_to_file
from fmriscaling.rois import label_voxels, save_voxel_labels

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    p = smk.params
    files = list(smk.input.annotations)  # (lh, rh) per atlas, in the order of p.atlases
    annotations = {atlas: files[2 * i : 2 * i + 2] for i, atlas in enumerate(p.atlases)}
    labels = label_voxels(
        p.db_dir,
        p.subject,
        smk.input.mask,
        xfmname=p.xfmname,
        annotations=annotations,
        groups=p.groups,
        functional=p.functional,
    )
    save_voxel_labels(labels, smk.output[0], params=dict(p.items()))


if __name__ == "__main__":
    main(snakemake)
