"""Rule vision_surface_maps: an Algonauts subject's maps on fsaverage5 (maps.npz and GIFTIs)."""

from typing import TYPE_CHECKING

from fmriscaling._utils import log_to_file
from fmriscaling.surface.jobs import vision_subject_job

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    p = smk.params
    rois = list(smk.input.rois)  # per class: its masks (lh, rh), then its mapping
    per_class = len(rois) // len(p.roi_classes)
    vision_subject_job(
        p.specs,
        p.subject,
        encoding=smk.input.encoding,
        scores=dict(zip(p.models, smk.input.scores, strict=True)),
        n_layers=p.n_layers,
        ceiling=smk.input.ceiling[0] if smk.input.ceiling else None,
        all_vertices=list(smk.input.fsaverage),
        hemispheres=p.hemispheres,
        roi_files={
            c: rois[i * per_class : (i + 1) * per_class] for i, c in enumerate(p.roi_classes)
        },
        out=smk.output.maps,
        giftis=list(smk.output.giftis),
        params=dict(p.items()),
    )


if __name__ == "__main__":
    main(snakemake)
