"""Rules fit_encoding and fit_encoding_subset: delayed ridge for one (model, layer) and every
subject of a group that shares the training set, from their prepared responses."""

from typing import TYPE_CHECKING

from fmriscaling._utils import limit_threads, log_to_file
from fmriscaling.encoding.fit import fit_encoding_subjects
from fmriscaling.features.io import layer_path

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    limit_threads(smk.threads)
    subjects = list(smk.params.subjects)
    enc = dict(smk.params.encoding)
    fit_encoding_subjects(
        feature_file=layer_path(smk.input.features, smk.params.layer),
        prepared_files=dict(zip(subjects, smk.input.responses, strict=True)),
        out_npz=dict(zip(subjects, smk.output.scores, strict=True)),
        train_stories=list(smk.params.train_stories),
        params={"train_stories": list(smk.params.train_stories), **enc},
        # a refused prepared file is another rule's output: name it, delete nothing
        stale_hint="(It is the output of rule prepare_responses.)",
        **enc,
    )


if __name__ == "__main__":
    main(snakemake)
