"""Rule vision_ensemble: the average of several models' test predictions, scored."""

from typing import TYPE_CHECKING

from fmriscaling._utils import log_to_file
from fmriscaling.vision.selection import fit_vision_ensemble

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    p = smk.params
    # the members' test rows index the test split's fMRI when that is the test set
    fmri = smk.input.test_fmri or smk.input.fmri
    fit_vision_ensemble(
        score_files=dict(zip(p.members, smk.input.scores, strict=True)),
        subject=p.subject,
        fmri_files=dict(zip(p.hemispheres, fmri, strict=True)),
        out_npz=smk.output.scores,
        params=dict(p.items()),
    )


if __name__ == "__main__":
    main(snakemake)
