"""Rule generate_demo_dataset: the synthetic demo dataset in the ds003020 layout."""

from pathlib import Path
from typing import TYPE_CHECKING

from fmriscaling._utils import log_to_file
from fmriscaling.demo.synthetic import generate_dataset

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    p = smk.params
    # the dataset root: the folder that holds ground_truth/ beside derivative/ and stimuli/
    root = Path(smk.output.ground_truth).parent
    generate_dataset(root, subjects=p.subjects, test_story=p.test_story, tr=p.tr, **p.generator)


if __name__ == "__main__":
    main(snakemake)
