"""Rules select_vision and select_vision_subset: per-vertex (layer, k) selection for one
(subject, model), on all training images or on random subsets of one size (one per seed)."""

from typing import TYPE_CHECKING

from fmriscaling._utils import limit_threads, log_to_file
from fmriscaling.vision.dataset import by_hemisphere
from fmriscaling.vision.selection import fit_vision_selection, fit_vision_sweep

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    limit_threads(smk.threads)
    p = smk.params
    selection = dict(p.selection)
    hemispheres = selection.pop("hemispheres")
    fit = dict(
        feature_dir=smk.input.features,
        subject=p.subject,
        fmri_files=dict(zip(hemispheres, smk.input.fmri, strict=True)),
        test_fmri_files=by_hemisphere(hemispheres, smk.input.test_fmri),
        layers=p.layers,
        save_predictions=p.save_predictions,
        params=dict(p.items()),
        **selection,
    )
    if p.sweep:
        fit_vision_sweep(out_npzs=list(smk.output.scores), **dict(p.sweep), **fit)
    else:
        fit_vision_selection(out_npz=smk.output.scores, **fit)


if __name__ == "__main__":
    main(snakemake)
