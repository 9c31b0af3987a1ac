"""Rule vision_table: the vision track's tidy tables and scaling fits."""

from typing import TYPE_CHECKING

from fmriscaling._utils import log_to_file
from fmriscaling.vision.tables import write_vision_tables

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    p = smk.params
    write_vision_tables(
        entries=[dict(e, path=s) for e, s in zip(p.entries, smk.input.scores, strict=True)],
        ceilings=dict(zip(p.subjects, smk.input.ceilings, strict=True)) or None,
        roi_files=list(smk.input.rois),
        subjects=p.subjects,
        roi_classes=p.roi_classes,
        n_hemispheres=p.n_hemispheres,
        feature_dirs=dict(zip(p.models, smk.input.features, strict=True)),
        outputs={name: smk.output[name] for name in smk.output.keys()},
        bootstrap=p.bootstrap,
        ci=p.ci,
    )


if __name__ == "__main__":
    main(snakemake)
