"""Rules extract_text_features / extract_speech_features: all layers of one model, per story."""

from pathlib import Path
from typing import TYPE_CHECKING

from fmriscaling._utils import DataError, log_to_file
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
            "n_gpus": _gpus(smk, p.model_name),
            "gpu_mem_gb": p.gpu_mem_gb,
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


def _gpus(smk, model_name: str) -> int:
    """The GPUs the model needs (resource model_gpus), if the run gave the job that many.

    Snakemake caps a job's ``gpu`` at what the run allows (``--resources gpu=N``; the default
    profile allows one), so a job whose model needs more stops here, before loading anything.
    """
    given, needed = int(smk.resources.get("gpu", 0)), int(smk.resources.get("model_gpus", 0))
    if needed > given:
        raise DataError(
            f"model {model_name!r} needs {needed} GPUs (fmriscaling.sizing, compute.gpu_mem_gb) "
            f"but this run gives its extraction job {given}: Snakemake caps a job's gpu at the "
            f"run's. Give the run your GPUs (--resources gpu={needed} or more, or `resources: "
            f"[gpu=N]` in your profile), or run it on a node that has them (SLURM asks for "
            f"--gpus={needed})"
        )
    return max(needed, 1)


def _by_story(paths) -> dict:
    # <story>.words.tsv, <story>.trs.tsv, <story>.wav: the story is the name up to its first dot
    return {Path(path).name.split(".")[0]: path for path in paths}


if __name__ == "__main__":
    main(snakemake)
