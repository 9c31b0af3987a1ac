"""Rule encoding_table: the tidy table of every fit, the best layers and the scaling fits."""

import json
from pathlib import Path
from typing import TYPE_CHECKING

from fmriscaling._utils import log_to_file
from fmriscaling.encoding.tables import (
    best_layers,
    collect_encoding_scores,
    scaling_summary,
    write_table,
)

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    entries = [_with_n_params(dict(e)) for e in smk.params.entries]
    table = collect_encoding_scores(entries, smk.params.ceilings, floor=smk.params.floor)
    write_table(table, smk.output.encoding)
    write_table(best_layers(table[table["full_train"]]), smk.output.best_layers)
    write_table(scaling_summary(table), smk.output.scaling)


def _with_n_params(entry: dict) -> dict:
    """Fill a missing n_params from the parameter count recorded by feature extraction."""
    if entry.get("n_params") is None:
        record = json.loads((Path(entry["features_dir"]) / "provenance.json").read_text())
        entry["n_params"] = record["n_params"]
    return entry


if __name__ == "__main__":
    main(snakemake)
