"""Rule extract_text_features: all layers of a causal LM, downsampled to TRs, per story."""

from pathlib import Path
from typing import TYPE_CHECKING

from fmriscaling._utils import log_to_file
from fmriscaling.features.lm import extract_text_model

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    p = smk.params
    by_stem = {Path(path).name.split(".")[0]: path for path in smk.input.words}
    trs = {Path(path).name.split(".")[0]: path for path in smk.input.trs}
    extract_text_model(
        smk.input.model,
        {story: by_stem[story] for story in p.stories},
        {story: trs[story] for story in p.stories},
        smk.output[0],
        model_name=p.model_name,
        max_words=p.context["max_words"],
        reset_words=p.context["reset_words"],
        batch_size=p.context["batch_size"],
        device=p.device,
        dtype=p.dtype,
        lanczos_window=p.lanczos["window"],
        lanczos_normalize=p.lanczos["normalize"],
        expected_n_layers=p.expected_n_layers,
        params=dict(p.items()),
    )


if __name__ == "__main__":
    main(snakemake)
