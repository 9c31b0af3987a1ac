"""Rule subject_viewer: pycortex's WebGL viewer of a subject's maps (served by make view)."""

from typing import TYPE_CHECKING

import pandas as pd

from fmriscaling._utils import log_to_file
from fmriscaling.encoding.stacking import speech_weights
from fmriscaling.viewers import subject_viewer

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    p = smk.params
    subject_viewer(
        pd.read_csv(smk.input.voxels),
        smk.output[0],
        subject=p.subject,
        db_dir=p.db_dir,
        xfmname=p.xfmname,
        mask=smk.input.mask,
        stacking_weights=speech_weights(smk.input.stacks),
        params=dict(p.items()),
    )


if __name__ == "__main__":
    main(snakemake)
