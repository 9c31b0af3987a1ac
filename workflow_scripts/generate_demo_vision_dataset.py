"""Rule generate_demo_vision_dataset: the synthetic vision dataset in the Algonauts layout."""

from pathlib import Path
from typing import TYPE_CHECKING

from fmriscaling._utils import limit_threads, log_to_file
from fmriscaling.demo.vision import generate_vision_dataset

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    limit_threads(smk.threads)
    p = smk.params
    generator = dict(p.generator)
    truth = generator.pop("truth")
    generate_vision_dataset(
        # the dataset root: the folder that holds ground_truth/ beside the subject folders
        Path(smk.output.ground_truth).parent,
        subjects=p.subjects,
        hemispheres=p.hemispheres,
        truth_model_dir=smk.input.truth_model,
        truth={name: truth[name] for name in ("early", "higher")},
        **generator,
    )


if __name__ == "__main__":
    main(snakemake)
