"""Rule build_tiny_model: a tiny random text, speech or vision model, saved like a hub snapshot."""

from typing import TYPE_CHECKING

from fmriscaling._utils import log_to_file
from fmriscaling.demo.tiny_lm import TINY_LM_PRESETS, build_tiny_causal_lm
from fmriscaling.demo.tiny_speech import TINY_SPEECH_PRESETS, build_tiny_speech_model
from fmriscaling.demo.tiny_vision import TINY_VISION_PRESETS, build_tiny_vision_model
from fmriscaling.textgrid import read_textgrid

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    build = dict(smk.params.build)
    arch, preset, seed = build["arch"], build["preset"], build.get("seed", 0)
    if smk.params.kind == "text":
        texts = [
            " ".join(i.text for i in read_textgrid(path).tiers[1].intervals if i.text)
            for path in smk.input.corpus
        ]
        sizes = _preset(TINY_LM_PRESETS, preset)
        info = build_tiny_causal_lm(smk.output[0], arch=arch, texts=texts, seed=seed, **sizes)
        n_layers = sizes["num_layers"]
    elif smk.params.kind == "vision":
        sizes = {**_preset(TINY_VISION_PRESETS, preset), "arch": arch}
        n_layers = build_tiny_vision_model(smk.output[0], seed=seed, **sizes)["n_layers"]
    else:
        sizes = {**_preset(TINY_SPEECH_PRESETS, preset), "arch": arch}
        info = build_tiny_speech_model(smk.output[0], seed=seed, **sizes)
        n_layers = info["n_layers"]
    if n_layers != smk.params.n_layers:
        raise ValueError(
            f"preset {preset!r} builds {n_layers} layers but the config declares "
            f"n_layers={smk.params.n_layers}; fix models.<name>.n_layers"
        )


def _preset(presets: dict, name: str) -> dict:
    if name not in presets:
        raise KeyError(f"unknown tiny-model preset {name!r}; known: {', '.join(presets)}")
    return dict(presets[name])


if __name__ == "__main__":
    main(snakemake)
