"""Rules extract_text_features / extract_speech_features: all layers of one model, per story."""

from pathlib import Path
from typing import TYPE_CHECKING

from fmriscaling._utils import log_to_file
from fmriscaling.features.lm import extract_text_model
from fmriscaling.features.speech import extract_speech_model

if TYPE_CHECKING:
    from snakemake.script import snakemake

# model kind -> (library driver, the input holding each story's model input, its settings param)
KINDS = {
    "text": (extract_text_model, "words", "context"),
    "speech": (extract_speech_model, "audio", "window"),
}


def main(smk) -> None:
    log_to_file(smk.log[0])
    p = smk.params
    extract, input_key, settings_key = KINDS[p.kind]
    inputs, trs = _by_story(getattr(smk.input, input_key)), _by_story(smk.input.trs)
    text = {}
    if p.kind == "text":
        # a text model spans the job's GPUs when it needs several (fmriscaling.sizing)
        text = {
            "window_start": p.window_start,
            "n_gpus": _gpus(smk),
            "gpu_mem_gb": smk.resources.get("gpu_mem_mb", 80_000) / 1000,
        }
    extract(
        smk.input.model,
        {story: inputs[story] for story in p.stories},
        {story: trs[story] for story in p.stories},
        smk.output[0],
        model_name=p.model_name,
        device=p.device,
        dtype=p.dtype,
        lanczos_window=p.lanczos["window"],
        lanczos_normalize=p.lanczos["normalize"],
        expected_n_layers=p.expected_n_layers,
        params=dict(p.items()),
        **getattr(p, settings_key),
        **text,
    )


def _gpus(smk) -> int:
    """GPUs the model needs (resource model_gpus, `fmriscaling.sizing`), at least one device.

    Not the resource ``gpu``: a local run caps that at its own ``--resources gpu`` (the default
    profile: one GPU job at a time), while the job sees every GPU of the machine. Whether the
    job sees as many as its model needs is checked when the model loads
    (`fmriscaling.features.lm.extract_text_model`).
    """
    return max(int(smk.resources.get("model_gpus", 0)), 1)


def _by_story(paths) -> dict:
    # <story>.words.tsv, <story>.trs.tsv, <story>.wav: the story is the name up to its first dot
    return {Path(path).name.split(".")[0]: path for path in paths}


if __name__ == "__main__":
    main(snakemake)
