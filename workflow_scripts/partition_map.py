"""Rule partition_map: flatmaps (pycortex) of one subject's variance partitions; nilearn
slices for a dataset without pycortex surfaces."""

from typing import TYPE_CHECKING

from fmriscaling._utils import log_to_file
from fmriscaling.figures.partition import draw_partition_maps

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    draw_partition_maps(
        list(smk.input.partitions),
        list(smk.output),
        subject=smk.params.subject,
        db_dir=smk.params.db_dir,
        mask=smk.input.mask,
        reference=smk.input.reference,
        xfmname=smk.params.xfmname,
        **smk.params.flatmap,
    )


if __name__ == "__main__":
    main(snakemake)
