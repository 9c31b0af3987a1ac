"""Rule brain_map: flatmaps (pycortex) of the best model's r and CC_norm and of CC_max;
nilearn slices for a dataset without pycortex surfaces."""

from typing import TYPE_CHECKING

import pandas as pd

from fmriscaling._utils import log_to_file
from fmriscaling.encoding.stacking import speech_weights
from fmriscaling.figures.brain import draw_brain_maps

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    draw_brain_maps(
        pd.read_csv(smk.input.voxels),
        list(smk.output),
        subject=smk.params.subject,
        db_dir=smk.params.db_dir,
        mask=smk.input.mask,
        reference=smk.input.reference,
        xfmname=smk.params.xfmname,
        stacking_weights=speech_weights(smk.input.stacks),
        **smk.params.flatmap,
    )


if __name__ == "__main__":
    main(snakemake)
