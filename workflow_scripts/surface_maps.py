"""Rule surface_maps: a ds003020 subject's maps on fsaverage5 (maps.npz and GIFTIs)."""

from typing import TYPE_CHECKING

from fmriscaling._utils import log_to_file
from fmriscaling.surface.jobs import language_subject_job

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    p = smk.params
    annotations = list(smk.input.annotations)  # per atlas (sorted), lh then rh
    language_subject_job(
        p.specs,
        p.subject,
        best_layers=smk.input.best_layers,
        scores={
            (m, int(layer)): f
            for (m, layer), f in zip(p.score_labels, smk.input.scores, strict=True)
        },
        ceiling=smk.input.ceiling,
        floor=p.floor,
        stacks=dict(zip(p.stacks, smk.input.stacks, strict=True)),
        db_dir=p.db_dir,
        xfmname=p.xfmname,
        mask=smk.input.mask,
        spheres=list(smk.input.spheres),
        annotations={a: annotations[2 * i : 2 * i + 2] for i, a in enumerate(p.atlases)},
        sampler=p.sampler,
        out=smk.output.maps,
        giftis=list(smk.output.giftis),
        params=dict(p.items()),
    )


if __name__ == "__main__":
    main(snakemake)
