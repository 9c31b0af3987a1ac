"""Rule build_tiny_models: the demo's tiny random text, speech and vision models, each saved like
a hub snapshot (one job: the imports cost more than the models)."""

import logging
import time
from typing import TYPE_CHECKING

from fmriscaling._utils import log_to_file
from fmriscaling.demo.synthetic import story_texts
from fmriscaling.demo.tiny_lm import TINY_LM_PRESETS, build_tiny_causal_lm
from fmriscaling.demo.tiny_speech import TINY_SPEECH_PRESETS, build_tiny_speech_model
from fmriscaling.demo.tiny_vision import TINY_VISION_PRESETS, build_tiny_vision_model
from fmriscaling.textgrid import read_textgrid

if TYPE_CHECKING:
    from snakemake.script import snakemake

logger = logging.getLogger("fmriscaling.build_tiny_models")


def build(out: str, *, kind: str, build: dict, n_layers: int, texts: list[str]) -> None:
    """Build one tiny model into ``out`` and check its layer count against the config's."""
    arch, preset, seed = build["arch"], build["preset"], build.get("seed", 0)
    if kind == "text":
        sizes = _preset(TINY_LM_PRESETS, preset)
        build_tiny_causal_lm(out, arch=arch, texts=texts, seed=seed, **sizes)
        built = sizes["num_layers"]
    elif kind == "vision":
        sizes = {**_preset(TINY_VISION_PRESETS, preset), "arch": arch}
        built = build_tiny_vision_model(out, seed=seed, **sizes)["n_layers"]
    else:
        sizes = {**_preset(TINY_SPEECH_PRESETS, preset), "arch": arch}
        built = build_tiny_speech_model(out, seed=seed, **sizes)["n_layers"]
    if built != n_layers:
        raise ValueError(
            f"preset {preset!r} builds {built} layers but the config declares "
            f"n_layers={n_layers}; fix models.<name>.n_layers"
        )


def _preset(presets: dict, name: str) -> dict:
    if name not in presets:
        raise KeyError(f"unknown tiny-model preset {name!r}; known: {', '.join(presets)}")
    return dict(presets[name])


def main(smk) -> None:
    log_to_file(smk.log[0])
    builds = dict(smk.params.builds)
    # the words of the demo stories, as the generator writes them into their TextGrids; a real
    # dataset's TextGrids where the tiny models run on one
    corpus = dict(smk.params.corpus)
    if corpus:
        texts = list(story_texts(**corpus).values())
    else:
        texts = [
            " ".join(i.text for i in read_textgrid(path).tiers[1].intervals if i.text)
            for path in smk.input.textgrids
        ]
    for i, ((model, spec), out) in enumerate(zip(builds.items(), smk.output, strict=True), 1):
        start = time.perf_counter()
        build(out, texts=texts, **spec)
        logger.info(
            "[%d/%d] %s (%s, %s): built in %.1f s -> %s",
            i,
            len(builds),
            model,
            spec["kind"],
            spec["build"]["arch"],
            time.perf_counter() - start,
            out,
        )


if __name__ == "__main__":
    main(snakemake)
