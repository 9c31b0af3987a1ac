"""How much memory a feature-extraction job needs, and how many GPUs it asks for.

A model larger than one GPU is placed across the GPUs of its job (a device map,
`fmriscaling.features.lm.load_causal_lm`). How many follows from three numbers:

- the weights: parameters x bytes of the extraction dtype (``features.dtype``: ``auto`` is
  bfloat16 on a GPU, float32 on a CPU);
- the activations of one forward call: a batch of ``batch_size`` windows, each of the
  longest context (``max_words`` x `SIZING_TOKENS_PER_WORD` tokens + the window's start token
  for a language model; ``window_s`` at `SPEECH_FRAMES_PER_S` frames for a speech model),
  holding every layer's hidden states at once (they are all returned), plus one layer's
  working set (feed-forward `FFN_RATIO` x the width, attention scores of `HEAD_DIM`-wide heads,
  materialised as the eager kernel does);
- per GPU, `GPU_RESERVE_FRACTION` of its memory is kept free (CUDA context, cuBLAS
  workspace, allocator fragmentation, the device map's layer granularity).

``n_gpus = ceil((weights + activations) / (gpu_mem_gb x (1 - reserve)))``, at least 1. The job
asks for that many (resource ``gpu``, ``--gpus=N`` on SLURM) and loads the model with
``max_memory`` of `usable_gpu_bytes` per GPU. A model that needs more than
``compute.max_gpus_per_job`` GPUs, or, on a CPU, more than the job's ``mem_mb``, is refused
when the study is planned, before any job runs (`check_extraction`), with the model, what it
needs, what the job may have and the fix. The host also holds one story's features of every
layer twice (float32, a story of `SIZING_STORY_WORDS` words: the words the model saw, and the
copy with the empty words filled in), which is added to the host's share. On a GPU the weights
load straight to the device, so they are not counted on the host.

These are estimates by design: the numbers are documented here and in the README, the
extraction logs the memory it actually used, and ``benchmarks/gpu_check.sh`` measures a
7B-class model against them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._utils import ConfigError

__all__ = [
    "ExtractionSizing",
    "activation_bytes",
    "check_extraction",
    "dtype_bytes",
    "extraction_sizing",
    "text_window_tokens",
    "usable_gpu_bytes",
]

GB = 1e9
#: tokens per word in a window, for sizing: above the ~1.3 average of a byte-level BPE on
#: narrative English (`fmriscaling.workflow.facts.TOKENS_PER_WORD`), as windows vary
SIZING_TOKENS_PER_WORD = 1.5
#: frames per second of a speech model's transformer (HuBERT, WavLM, Whisper's encoder: 20 ms)
SPEECH_FRAMES_PER_S = 50
#: Whisper's encoder always sees 30 s (padded): 1,500 frames
WHISPER_FRAMES = 1500
#: the feed-forward width of a transformer block, in units of its hidden size (4 in OPT and
#: GPT; LLaMA's and Qwen's gated MLPs hold ~2 x 2.7)
FFN_RATIO = 6
#: width of an attention head, for the number of heads where the registry does not say
HEAD_DIM = 128
#: share of each GPU's memory the device map leaves free
GPU_RESERVE_FRACTION = 0.1
#: words of the longest story whose features the host holds at once (ds003020's longest
#: stories have ~2,700 words; assumed)
SIZING_STORY_WORDS = 3000
#: host memory of a job besides the model: Python, torch, transformers, the tokenizer
HOST_BASE_BYTES = 2.0 * GB


def dtype_bytes(dtype: str, on_gpu: bool) -> int:
    """Bytes per value of ``features.dtype`` (``auto``: bfloat16 on a GPU, float32 on a CPU)."""
    if dtype == "auto":
        return 2 if on_gpu else 4
    try:
        return {"float32": 4, "float16": 2, "bfloat16": 2}[dtype]
    except KeyError:
        raise ValueError(
            f"dtype must be auto, float32, float16 or bfloat16, got {dtype!r}"
        ) from None


def usable_gpu_bytes(gpu_mem_gb: float) -> float:
    """What the device map may place on one GPU of ``gpu_mem_gb`` GB (the rest is reserve)."""
    return gpu_mem_gb * GB * (1.0 - GPU_RESERVE_FRACTION)


@dataclass(frozen=True)
class ExtractionSizing:
    """The memory of one model's extraction job and the GPUs it asks for.

    Attributes
    ----------
    model : str
    n_params, n_layers, hidden_size : int
        ``hidden_size`` is the registry's, or ``sqrt(n_params / (12 n_layers))`` (``estimated``).
    on_gpu : bool
    bytes_per_value : int
        Of the weights and activations (the extraction dtype).
    weights_bytes, activation_bytes : float
        The model's weights; one forward call's activations (see the module docstring).
    host_bytes : float
        Host memory: the base, one story's features of every layer, and on a CPU the model too.
    device_bytes : float
        ``weights_bytes + activation_bytes``: what the GPUs (or, on a CPU, the host) hold.
    n_gpus : int
        GPUs the job asks for (0 on a CPU).
    estimated_hidden : bool
    """

    model: str
    n_params: int
    n_layers: int
    hidden_size: int
    on_gpu: bool
    bytes_per_value: int
    weights_bytes: float
    activation_bytes: float
    host_bytes: float
    n_gpus: int
    estimated_hidden: bool = False

    @property
    def device_bytes(self) -> float:
        return self.weights_bytes + self.activation_bytes

    def describe(self) -> str:
        """One line: weights, activations, GPUs (for logs and the plan)."""
        where = f"{self.n_gpus} GPU(s)" if self.on_gpu else "CPU"
        return (
            f"{self.model}: {self.n_params / 1e9:.2f}B parameters x {self.bytes_per_value} B = "
            f"{self.weights_bytes / GB:.1f} GB of weights + {self.activation_bytes / GB:.1f} GB "
            f"of activations -> {where}; host {self.host_bytes / GB:.1f} GB"
        )


def activation_bytes(
    n_layers: int, hidden_size: int, batch_size: int, tokens: int, bytes_per_value: int
) -> float:
    """One forward call's activations: ``batch_size`` windows of ``tokens`` holding every
    layer's hidden states, plus one layer's feed-forward (`FFN_RATIO` x the width) and eager
    attention scores (`HEAD_DIM`-wide heads)."""
    hidden_states = batch_size * tokens * hidden_size * (n_layers + 1) * bytes_per_value
    heads = max(1, hidden_size // HEAD_DIM)
    feed_forward = batch_size * tokens * hidden_size * FFN_RATIO * bytes_per_value
    scores = batch_size * heads * tokens**2 * bytes_per_value
    return float(hidden_states + feed_forward + scores)


def text_window_tokens(max_words: int) -> int:
    """Tokens of a language model's longest window: the words at `SIZING_TOKENS_PER_WORD`,
    and the window's start token."""
    return math.ceil(max_words * SIZING_TOKENS_PER_WORD) + 1


def _tokens_per_window(kind: str, arch: str | None, features: Mapping[str, Any]) -> int:
    if kind == "text":
        return text_window_tokens(features["text"]["max_words"])
    if arch == "whisper":
        return WHISPER_FRAMES
    return math.ceil(features["speech"]["window_s"] * SPEECH_FRAMES_PER_S)


def extraction_sizing(
    model: str,
    spec: Mapping[str, Any],
    features: Mapping[str, Any],
    compute: Mapping[str, Any],
) -> ExtractionSizing | None:
    """The memory and GPUs of ``model``'s extraction job (None without ``n_params``).

    Parameters
    ----------
    model : str
        The model's name in the registry.
    spec : mapping
        Its registry entry (``kind``, ``n_params``, ``n_layers``, ``hidden_size``, ``source``).
    features : mapping
        The config's ``features`` (``dtype``, ``text.max_words`` and ``batch_size``,
        ``speech.window_s`` and ``batch_size``).
    compute : mapping
        The config's ``compute`` (``gpu``, ``gpu_mem_gb``).

    Returns
    -------
    ExtractionSizing or None
        None for a model whose registry entry gives no ``n_params`` (a tiny built model, a
        local snapshot): it is not sized and asks for one GPU where GPUs are used.
    """
    n_params = spec.get("n_params")
    if not n_params:
        return None
    n_params = int(n_params)
    n_layers = int(spec["n_layers"])
    hidden = spec.get("hidden_size")
    estimated = hidden is None
    if estimated:
        hidden = max(1, round(math.sqrt(n_params / (12 * n_layers))))
    kind = spec["kind"]
    arch = (spec.get("source", {}).get("build") or {}).get("arch") or (
        "whisper" if "whisper" in str(spec.get("source", {}).get("hub", "")).lower() else None
    )
    on_gpu = bool(compute["gpu"])
    nbytes = dtype_bytes(features["dtype"], on_gpu)
    batch = int(features["text" if kind == "text" else "speech"]["batch_size"])
    tokens = _tokens_per_window(kind, arch, features)
    activations = activation_bytes(n_layers, hidden, batch, tokens, nbytes)
    weights = float(n_params * nbytes)
    # float32 features of a story on the host, twice: the words the model saw and the copy
    # with the empty words filled in (`fmriscaling.features.lm.lm_features_and_stats`)
    story = 2 * 4.0 * SIZING_STORY_WORDS * hidden * (n_layers + 1)
    host = HOST_BASE_BYTES + story + (0.0 if on_gpu else weights + activations)
    n_gpus = 0
    if on_gpu:
        n_gpus = max(
            1, math.ceil((weights + activations) / usable_gpu_bytes(compute["gpu_mem_gb"]))
        )
    return ExtractionSizing(
        model=model,
        n_params=n_params,
        n_layers=n_layers,
        hidden_size=int(hidden),
        on_gpu=on_gpu,
        bytes_per_value=nbytes,
        weights_bytes=weights,
        activation_bytes=activations,
        host_bytes=host,
        n_gpus=n_gpus,
        estimated_hidden=estimated,
    )


def check_extraction(sizing: ExtractionSizing | None, compute: Mapping[str, Any]) -> None:
    """Refuse a model its extraction job cannot hold, before any job runs.

    Raises
    ------
    ConfigError
        On GPUs: the model needs more than ``compute.max_gpus_per_job`` GPUs of
        ``compute.gpu_mem_gb``. On GPUs or a CPU: the host part needs more than
        ``compute.extract_mem_mb``. The message names the model, what it needs, what the job
        may have and the fixes.
    """
    if sizing is None:
        return
    name = sizing.model
    need = sizing.device_bytes / GB
    if sizing.on_gpu and sizing.n_gpus > compute["max_gpus_per_job"]:
        per_gpu = usable_gpu_bytes(compute["gpu_mem_gb"]) / GB
        raise ConfigError(
            f"model {name!r} needs ~{need:.0f} GB on GPUs ({sizing.weights_bytes / GB:.0f} GB "
            f"of weights at {sizing.bytes_per_value} bytes a parameter + "
            f"{sizing.activation_bytes / GB:.1f} GB of activations), that is "
            f"{sizing.n_gpus} GPUs of {compute['gpu_mem_gb']:g} GB ({per_gpu:.0f} GB usable "
            f"each), but a job may have at most compute.max_gpus_per_job = "
            f"{compute['max_gpus_per_job']}. Fix: raise compute.max_gpus_per_job (if your nodes "
            "have that many GPUs) or compute.gpu_mem_gb (if they are larger), lower "
            "features.text.batch_size / features.speech.batch_size, "
            + ("use features.dtype: bfloat16, " if sizing.bytes_per_value > 2 else "")
            + f"or take {name!r} out of run_models"
        )
    mem_mb = compute["extract_mem_mb"]
    if sizing.host_bytes > mem_mb * 1e6:
        what = (
            f"the model in float{8 * sizing.bytes_per_value} ({need:.1f} GB with its "
            "activations) and"
            if not sizing.on_gpu
            else ""
        )
        fixes = (
            "run it on GPUs (compute.gpu: true), or use features.dtype: bfloat16, or "
            if not sizing.on_gpu
            else ""
        )
        raise ConfigError(
            f"model {name!r} needs ~{sizing.host_bytes / 1e6:,.0f} MB of host memory "
            f"({what} one story's features of its {sizing.n_layers + 1} layers), but an "
            f"extraction job has compute.extract_mem_mb = {mem_mb:,} MB. Fix: {fixes}raise "
            f"compute.extract_mem_mb to at least {math.ceil(sizing.host_bytes / 1e6):,}, or "
            f"take {name!r} out of run_models"
        )
