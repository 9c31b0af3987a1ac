"""Rules group_maps, vision_group_maps: the mean across subjects on fsaverage5, GIFTIs and
group_rois.csv."""

from typing import TYPE_CHECKING

from fmriscaling._utils import log_to_file
from fmriscaling.surface.jobs import group_job

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    p = smk.params
    group_job(
        p.specs,
        dict(zip(p.subjects, smk.input, strict=True)),
        out=smk.output.maps,
        giftis=list(smk.output.giftis),
        table=smk.output.table,
        roi_groups=p.roi_groups,
        params=dict(p.items()),
    )


if __name__ == "__main__":
    main(snakemake)
