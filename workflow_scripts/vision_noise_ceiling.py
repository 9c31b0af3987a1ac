"""Rule vision_noise_ceiling: the challenge's noise ceiling of one subject's test images."""

from typing import TYPE_CHECKING

from fmriscaling._utils import log_to_file
from fmriscaling.vision.dataset import by_hemisphere
from fmriscaling.vision.scores import compute_vision_noise_ceiling

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    p = smk.params
    compute_vision_noise_ceiling(
        smk.output[0],
        ncsnr_files=list(smk.input.ncsnr),
        fmri_files=dict(zip(p.hemispheres, smk.input.fmri, strict=True)),
        test_fmri_files=by_hemisphere(p.hemispheres, smk.input.test_fmri),
        repeats_file=smk.input.repeats[0] if smk.input.repeats else None,
        n_images=p.n_images,
        test_fraction=p.test_fraction,
        default_repeats=p.default_repeats,
        params=dict(p.items()),
    )


if __name__ == "__main__":
    main(snakemake)
