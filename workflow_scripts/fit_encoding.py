"""Rules fit_encoding and fit_encoding_subset: delayed ridge for one (subject, model, layer)."""

from pathlib import Path
from typing import TYPE_CHECKING

from fmriscaling._utils import limit_threads, log_to_file
from fmriscaling.encoding.fit import fit_encoding
from fmriscaling.features.io import layer_path

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    limit_threads(smk.threads)
    enc = dict(smk.params.encoding)
    responses = {Path(path).stem: path for path in smk.input.responses}
    fit_encoding(
        feature_file=layer_path(smk.input.features, smk.params.layer),
        response_files=responses,
        train_stories=list(smk.params.train_stories),
        out_npz=smk.output.scores,
        params={"train_stories": list(smk.params.train_stories), **enc},
        **enc,
    )


if __name__ == "__main__":
    main(snakemake)
