"""Rules group_figures, vision_group_figures: a figure (nilearn, inflated fsaverage5) and an
interactive page (nilearn view_surf) per group map."""

from typing import TYPE_CHECKING

from fmriscaling._utils import log_to_file
from fmriscaling.surface.plots import draw_group_maps

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    p = smk.params
    draw_group_maps(
        smk.input[0],
        p.specs,
        figures=p.figures,
        pages=p.pages,
        dataset=p.dataset,
        n_subjects=p.n_subjects,
    )


if __name__ == "__main__":
    main(snakemake)
