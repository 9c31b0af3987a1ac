"""Rule fit_partition: the joint banded-ridge fits and the variance partition of one subject."""

from typing import TYPE_CHECKING

from fmriscaling._utils import limit_threads, log_to_file
from fmriscaling.encoding.partition import fit_partition

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    limit_threads(smk.threads)
    p = smk.params
    fit_partition(
        member_files=list(smk.input.members),
        bands=list(p.bands["bands"]),
        kinds=list(p.bands["kinds"]),
        feature_dirs=list(smk.input.features),
        response_files=smk.input.responses,
        train_stories=list(p.train_stories),
        out_npz=smk.output[0],
        encoding=dict(p.encoding),
        partitioning=dict(p.partitioning),
        statistics=dict(p.statistics),
        params=dict(p.items()),
        meta=dict(p.labels),
    )


if __name__ == "__main__":
    main(snakemake)
