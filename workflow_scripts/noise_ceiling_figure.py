"""Rule noise_ceiling_figure: CC_max distribution, r against CC_max, CC_norm per ROI."""

from typing import TYPE_CHECKING

import pandas as pd

from fmriscaling._utils import log_to_file
from fmriscaling.figures.ceiling import draw_noise_ceiling_figure

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    draw_noise_ceiling_figure(
        pd.read_csv(smk.input.voxels),
        pd.read_csv(smk.input.rois),
        list(smk.output),
        min_voxels=smk.params.min_voxels,
    )


if __name__ == "__main__":
    main(snakemake)
