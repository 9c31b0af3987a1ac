"""Rule stack_regression: per-voxel simplex weights of one stack for one subject, and its scores."""

from typing import TYPE_CHECKING

from fmriscaling._utils import limit_threads, log_to_file
from fmriscaling.encoding.stacking import stack_regression

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    limit_threads(smk.threads)
    p = smk.params
    stack_regression(
        member_files=list(smk.input.members),
        members=list(p.members),
        out_npz=smk.output[0],
        noise_ceiling=smk.input.ceiling,
        floor=p.floor,
        backend=p.backend,
        calibrate=p.calibrate,
        block_voxels=p.block_voxels,
        tol=p.tol,
        statistics=p.statistics,
        params=dict(p.items()),
        meta=dict(p.labels),
    )


if __name__ == "__main__":
    main(snakemake)
