"""Rule vision_figures: the vision track's figures, drawn from its tables."""

from typing import TYPE_CHECKING

import pandas as pd

from fmriscaling._utils import log_to_file
from fmriscaling.vision.plots import vision_report

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    tables = {name: pd.read_csv(smk.input[name]) for name in ("encoding", "rois", "selection")}
    outputs = {name: list(smk.output[name]) for name in smk.params.names}
    written = vision_report(tables, outputs, data_model=smk.params.data_model)
    missing = [name for name in smk.params.names if not written.get(name)]
    if missing:
        raise RuntimeError(f"the vision tables have no rows for figures {missing}")


if __name__ == "__main__":
    main(snakemake)
