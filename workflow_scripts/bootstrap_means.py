"""Rule bootstrap_means: each fit's mean r and CC_norm on voxel resamples shared per subject."""

from typing import TYPE_CHECKING

from fmriscaling._utils import log_to_file
from fmriscaling.scaling import bootstrap_means_file

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    p = smk.params
    bootstrap_means_file(
        smk.input.encoding,
        p.entries,
        smk.input.scores,
        dict(zip(p.subjects, smk.input.ceilings, strict=True)),
        smk.output[0],
        n_replicates=p.n_replicates,
        seed=p.seed,
        floor=p.floor,
        params=dict(p.items()),
    )


if __name__ == "__main__":
    main(snakemake)
