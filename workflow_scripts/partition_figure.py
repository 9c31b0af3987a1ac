"""Rule partition_figure: each partition's unique and shared R², per voxel group."""

from typing import TYPE_CHECKING

import pandas as pd

from fmriscaling._utils import log_to_file
from fmriscaling.figures.partition import draw_partition_figure

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    draw_partition_figure(
        pd.read_csv(smk.input[0]), list(smk.output), min_voxels=smk.params.min_voxels
    )


if __name__ == "__main__":
    main(snakemake)
