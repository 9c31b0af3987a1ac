"""Rule scaling_figures: model-size, data-size and layer figures, drawn from the tables."""

from typing import TYPE_CHECKING

import pandas as pd

from fmriscaling._utils import log_to_file
from fmriscaling.figures import scaling_report

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    outputs = {name: list(smk.output[name]) for name in smk.params.names}
    encoding = pd.read_csv(smk.input.encoding)
    metrics = ["mean_r", "mean_cc_norm"]
    # with the permutation test (statistics.n_permutations > 0): a row of the fraction of
    # voxels significant at the FDR level, against the same axes
    if encoding.get("fraction_significant", pd.Series(dtype=float)).notna().any():
        metrics.append("fraction_significant")
    written = scaling_report(
        encoding,
        outputs,
        metrics=metrics,
        fits=pd.read_csv(smk.input.scaling),
        bootstrap=pd.read_csv(smk.input.lines),
    )
    missing = [name for name in smk.params.names if not written.get(name)]
    if missing:
        raise RuntimeError(f"the table {smk.input.encoding} has no rows for figures {missing}")


if __name__ == "__main__":
    main(snakemake)
