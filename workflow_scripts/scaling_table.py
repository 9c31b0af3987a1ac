"""Rule scaling_table: log-linear scaling fits with bootstrap intervals, and the headline table."""

from typing import TYPE_CHECKING

from fmriscaling._utils import log_to_file
from fmriscaling.scaling import scaling_table_files

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    p = smk.params
    scaling_table_files(
        smk.input.encoding,
        smk.input.means,
        scaling=smk.output.scaling,
        headline=smk.output.headline,
        lines=smk.output.lines,
        ci=p.ci,
        seed=p.seed,
        resample_subjects=p.resample_subjects,
        paper=p.paper,
        aliases=p.aliases,
        params=dict(p.items()),
    )


if __name__ == "__main__":
    main(snakemake)
