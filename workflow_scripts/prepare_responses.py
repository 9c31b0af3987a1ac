"""Rule prepare_responses: a subject's responses trimmed, z-scored and float32, in one file."""

from pathlib import Path
from typing import TYPE_CHECKING

from fmriscaling._utils import log_to_file
from fmriscaling.encoding.prepared import prepare_responses

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    prepare_responses(
        {Path(path).stem: path for path in smk.input.responses},
        smk.output[0],
        stories=list(smk.params.stories),
        extra_trim={smk.params.test_story: smk.params.test_extra_trim},
        subject=smk.params.subject,
        expected_sizes=dict(smk.params.expected_sizes),
        params=dict(smk.params.items()),
    )


if __name__ == "__main__":
    main(snakemake)
