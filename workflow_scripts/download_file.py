"""Rule download_ds003020_file: one file of the snapshot, resumable, size and md5 verified."""

from typing import TYPE_CHECKING

from fmriscaling._utils import log_to_file
from fmriscaling.download.http import download_file

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    p = smk.params
    download_file(
        p.url,
        smk.output[0],
        size=p.entry["size"],
        md5=p.entry["md5"],
        retries=p.retries,
        chunk_size=int(p.chunk_mb * (1 << 20)),
        timeout=p.timeout_s,
        progress=True,
    )


if __name__ == "__main__":
    main(snakemake)
