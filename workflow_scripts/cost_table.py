"""Rule cost_table: seconds and peak memory of every extraction and fit job (benchmarks)."""

from typing import TYPE_CHECKING

from fmriscaling._utils import log_to_file
from fmriscaling.measured_costs import cost_table_file

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    cost_table_file(smk.params.records, smk.input.encoding, smk.output[0])


if __name__ == "__main__":
    main(snakemake)
