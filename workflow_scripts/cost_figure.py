"""Rule cost_figure: extraction and fit time and peak memory against model size."""

from typing import TYPE_CHECKING

import pandas as pd

from fmriscaling._utils import log_to_file
from fmriscaling.figures.costs import draw_cost_figure

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    draw_cost_figure(pd.read_csv(smk.input[0]), list(smk.output))


if __name__ == "__main__":
    main(snakemake)
