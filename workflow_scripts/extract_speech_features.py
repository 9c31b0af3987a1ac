"""Rule extract_speech_features: all layers of a speech model (causal windows), per story."""

from pathlib import Path
from typing import TYPE_CHECKING

from fmriscaling._utils import log_to_file
from fmriscaling.features.speech import extract_speech_model

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    p = smk.params
    wavs = {Path(path).stem: path for path in smk.input.audio}
    trs = {Path(path).name.split(".")[0]: path for path in smk.input.trs}
    extract_speech_model(
        smk.input.model,
        {story: wavs[story] for story in p.stories},
        {story: trs[story] for story in p.stories},
        smk.output[0],
        model_name=p.model_name,
        window_s=p.window["window_s"],
        stride_s=p.window["stride_s"],
        batch_size=p.window["batch_size"],
        device=p.device,
        dtype=p.dtype,
        lanczos_window=p.lanczos["window"],
        lanczos_normalize=p.lanczos["normalize"],
        expected_n_layers=p.expected_n_layers,
        params=dict(p.items()),
    )


if __name__ == "__main__":
    main(snakemake)
