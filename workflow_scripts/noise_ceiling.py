"""Rule noise_ceiling: CC_max, SP and TP per voxel from the test story's repeats."""

from typing import TYPE_CHECKING

from fmriscaling._utils import log_to_file
from fmriscaling.encoding.noise_ceiling import compute_noise_ceiling_file

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    p = smk.params
    compute_noise_ceiling_file(
        smk.input.repeats,
        smk.output[0],
        test_extra_trim=p.test_extra_trim,
        floor=p.floor,
        params=dict(p.items()),
    )


if __name__ == "__main__":
    main(snakemake)
