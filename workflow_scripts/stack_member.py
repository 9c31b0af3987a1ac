"""Rule stack_member: one member's out-of-fold and test predictions (one subject, model, layer)."""

from typing import TYPE_CHECKING

from fmriscaling._utils import limit_threads, log_to_file
from fmriscaling.encoding.oof import fit_stack_member

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    limit_threads(smk.threads)
    p = smk.params
    layer = p.member["layer"]
    fit_stack_member(
        feature_dir=smk.input.features,
        layer=layer if layer == "best" else int(layer),
        layer_fits=dict(zip(p.fit_layers, smk.input.fits, strict=True)),
        response_files=smk.input.responses,  # the subject's prepared responses
        train_stories=list(p.train_stories),
        oof_dtype=p.oof_dtype,
        out_h5=smk.output[0],
        params=dict(p.items()),
        meta={"subject": p.member["subject"], "model": p.member["model"]},
        **p.encoding,
    )


if __name__ == "__main__":
    main(snakemake)
