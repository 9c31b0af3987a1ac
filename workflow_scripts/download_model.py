"""Rule download_model: snapshot a hub model at its pinned revision into results/models/."""

from typing import TYPE_CHECKING

from fmriscaling._utils import log_to_file
from fmriscaling.download.hub import snapshot_model

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    p = smk.params
    snapshot_model(p.repo_id, p.revision, smk.output[0], gated=p.gated)


if __name__ == "__main__":
    main(snakemake)
