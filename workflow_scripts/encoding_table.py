"""Rule encoding_table: the tidy table of every fit and the best layers (by CV)."""

from typing import TYPE_CHECKING

from fmriscaling._utils import log_to_file
from fmriscaling.encoding.tables import best_layers, collect_encoding_scores, write_table
from fmriscaling.encoding.width import native_rows
from fmriscaling.features.io import recorded_n_params

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    p = smk.params
    features = dict(zip(p.models, smk.input.features, strict=True))
    entries = [
        _with_n_params(dict(entry, path=scores), features[entry["model"]])
        for entry, scores in zip(p.entries, smk.input.scores, strict=True)
    ]
    ceilings = dict(zip(p.subjects, smk.input.ceilings, strict=True))
    table = collect_encoding_scores(entries, ceilings, floor=p.floor)
    write_table(table, smk.output.encoding)
    # the best layer of each model's native features (the ROI tables and maps read it)
    write_table(best_layers(native_rows(table[table["full_train"]])), smk.output.best_layers)


def _with_n_params(entry: dict, features_dir: str) -> dict:
    """Fill a missing n_params from the parameter count recorded by feature extraction."""
    if entry.get("n_params") is None:
        entry["n_params"] = recorded_n_params(features_dir)
    return entry


if __name__ == "__main__":
    main(snakemake)
