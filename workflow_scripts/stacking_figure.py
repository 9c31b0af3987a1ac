"""Rule stacking_figure: each stack's gain over its best member, per ROI."""

from typing import TYPE_CHECKING

import pandas as pd

from fmriscaling._utils import log_to_file
from fmriscaling.figures.stacking import draw_stacking_figure

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    draw_stacking_figure(
        pd.read_csv(smk.input[0]), list(smk.output), min_voxels=smk.params.min_voxels
    )


if __name__ == "__main__":
    main(snakemake)
