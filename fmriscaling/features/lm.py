"""Causal language model features at word times, with the paper's dynamic word context.

The context policy and the window schedule (one forward pass per window serves every word
whose context starts there) are in `fmriscaling.features.context`. A word's feature is the hidden
state (every layer, embeddings = layer 0) at the word's last sub-word token, from a forward pass
over ``[start] + tokens(context words)``.

Window start. What ``[start]`` is comes from the model's ``window_start`` (a registry key):

- ``auto`` (default): the model's BOS token if it has one (``bos``), else its document
  separator (``eos``). Qwen2.5's tokenizer defines no BOS; its config's ``bos_token_id``
  (151643, ``<|endoftext|>``) is the separator it was pretrained with between documents, so a
  window starts the way a pretraining document did.
- ``bos``: the tokenizer's BOS token, else the config's ``bos_token_id``; an error if neither.
- ``eos``: the tokenizer's EOS token, else the config's ``eos_token_id``; an error if neither.
- ``none``: no start token; a window is the context words' tokens only.
- an integer: that token id.

The token id, its string and where it came from (``tokenizer.bos_token``,
``config.bos_token_id``, ...) are recorded in ``provenance.json`` (``window_start``).

Empty words. The timing stage keeps empty TextGrid labels ("") as words. They are not shown to
the model and do not count towards the context; each gets the feature of the closest preceding
non-empty word (zeros if there is none), as in the companion code. Words are stripped of
surrounding whitespace first, so a whitespace-only word counts as empty.

Word-to-token alignment. The words of a pass are joined with single spaces and tokenised
without special tokens, with ``return_offsets_mapping``. Only each token's *start* offset is
used: the end offsets of Llama-3-style tokenizers (``ignore_merges``) were wrong in tokenizers
< 0.20.1 (``(start, start)`` for every whole-word token; huggingface/tokenizers#1553, #1688),
while their starts were right. A token belongs to the word it starts in, the joining space
counting as the start of the word after it (byte-level BPE tokens carry their leading space:
``"Ġbrain"``); a word's last token is the one before the next word's first token. Every word
must have a token that starts exactly at it (or at the space before it): a token that runs
across the space into the next word would leave a word without a last token of its own, so it
raises a `DataError` naming the model and the two words rather than reading a feature that
has seen the next word. The byte-level BPE tokenizers of GPT-2, OPT, Pythia, Qwen2.5 and
Llama-3 (whose pre-tokenisers split before every space) and LLaMA-2's SentencePiece never do.

Models larger than one device. `load_causal_lm` takes a ``device_map`` (transformers' big-model
loading through accelerate): ``"auto"`` with a ``max_memory`` per GPU, or an explicit map of
modules to GPUs, ``"cpu"`` and ``"disk"`` (weights read from disk at each forward; they are
read from the snapshot's safetensors in place, or re-saved in ``offload_folder`` when the
snapshot is not safetensors). Inputs go to the execution device of the input embeddings and
every layer's hidden states are gathered to the host, so the features equal a single-device
pass. `extract_text_model` loads a job's ``n_gpus > 1`` GPUs this way (`gpu_max_memory`).

Layers of different widths. Most models' hidden states are all ``hidden_size`` wide, but not
every model's: OPT-350m's decoder works at 1024 and projects its input embeddings up from 512
(``project_in``) and its output down to 512 (``project_out``, after the final layer norm), so
hidden states 0 .. n_layers - 1 are 1024 wide and the last one is 512. `load_causal_lm` measures
the width of every hidden state with a one-token forward pass (``LoadedLM.layer_widths``, in
the log and in ``provenance.json``) and every forward call is checked against it. The features
stay one array, ``max(layer_widths)`` wide: layer ``l``'s features are
``feats[l, :, :layer_widths[l]]`` and the columns past a narrower layer's width are NaN, so
padding can never pass for a feature (all widths equal: no padding, the array as before). The
extraction driver checks the padding exactly at word level (padding all NaN, features free of
NaN; `fmriscaling.features.io.check_layer_padding`), the Lanczos downsampling maps each column on
its own, and `fmriscaling.features.io.FeatureWriter` writes each layer file at its own width.

The module holds the loader, the pass engine and the text model's hooks into the one
extraction driver (`fmriscaling.features.extract`): all three share `LoadedLM` and the pass
schedule, and the speech track has the same shape in `fmriscaling.features.speech`.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._utils import DataError, provenance
from ..models import pick_device, pick_dtype, require_model_dir, snapshot_record
from ..sizing import activation_bytes, dtype_bytes, text_window_tokens, usable_gpu_bytes
from ..stimuli import read_words
from .context import check_context, context_starts, window_schedule
from .extract import RunRecord, extract_model

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]


@dataclass
class ExtractionStats:
    """Cost of one story's extraction.

    Attributes
    ----------
    n_words : int
        Non-empty words (the words the model saw).
    n_story_tokens : int
        Tokens of the whole story tokenised once (no window start token).
    n_tokens_processed : int
        Tokens fed to the model over all passes, start tokens included, padding excluded.
    n_passes : int
        Sequences run (windows, or words for the naive method).
    n_batches : int
        Forward calls.
    seconds : float
        Wall time of tokenisation + forward passes.
    """

    n_words: int = 0
    n_story_tokens: int = 0
    n_tokens_processed: int = 0
    n_passes: int = 0
    n_batches: int = 0
    seconds: float = 0.0

    @property
    def token_ratio(self) -> float:
        """``n_tokens_processed / n_story_tokens`` (≈ 2 for the dynamic window)."""
        return self.n_tokens_processed / self.n_story_tokens if self.n_story_tokens else 0.0

    @property
    def words_per_second(self) -> float:
        return self.n_words / self.seconds if self.seconds > 0 else float("inf")


#: the ``window_start`` policies besides an explicit token id (see the module docstring)
WINDOW_STARTS = ("auto", "bos", "eos", "none")


@dataclass(frozen=True)
class WindowStart:
    """What starts every window of a model's forward passes.

    Attributes
    ----------
    policy : str or int
        The ``window_start`` asked for: ``auto``, ``bos``, ``eos``, ``none`` or a token id.
    token_id : int or None
        The start token (None for ``none``).
    token : str or None
        Its string in the tokenizer's vocabulary.
    source : str
        Where the id came from: ``tokenizer.bos_token``, ``config.bos_token_id``,
        ``tokenizer.eos_token``, ``config.eos_token_id``, ``window_start`` (an explicit id) or
        ``none``.
    """

    policy: str | int
    token_id: int | None
    token: str | None
    source: str

    @property
    def ids(self) -> list[int]:
        """The tokens put before a window's words: ``[token_id]``, or ``[]`` for ``none``."""
        return [] if self.token_id is None else [self.token_id]


@dataclass
class LoadedLM:
    """A causal LM and its tokenizer, loaded once and reused across stories.

    Attributes
    ----------
    model : transformers.PreTrainedModel
        The causal LM (its ``base_model`` is run).
    tokenizer : transformers fast tokenizer
    model_dir : Path
    device : str
        Where inputs go: the model's device, or with a device map the execution device of its
        input embeddings.
    dtype : torch.dtype
    n_layers : int
        Transformer blocks; hidden states have ``n_layers + 1`` entries.
    hidden_size : int
        The config's ``hidden_size``.
    layer_widths : tuple of int, length n_layers + 1
        Width of each hidden state (embeddings first), measured at load; all ``hidden_size``
        for most models, OPT-350m's last is its ``word_embed_proj_dim`` (see the module
        docstring).
    window_start : WindowStart
        What starts every window.
    max_positions : int or None
        The model's maximum sequence length, when its config says.
    n_params : int
    model_name : str
        The model's name (in error messages).
    device_map : dict or None
        With a device map: modules per device, ``{"cuda:0": 41, "disk": 2, ...}`` (summary of
        ``model.hf_device_map``).
    max_memory : dict or None
        The ``max_memory`` the device map was inferred under (device -> bytes or "NGiB").
    offload : dict or None
        With modules on ``"disk"``: ``folder``, ``files_written`` (weights re-saved there) and
        ``read_from`` (``snapshot``: read in place from its safetensors; ``offload_folder``).
    """

    model: Any
    tokenizer: Any
    model_dir: Path
    device: str
    dtype: torch.dtype
    n_layers: int
    hidden_size: int
    layer_widths: tuple[int, ...]
    window_start: WindowStart
    max_positions: int | None
    n_params: int
    model_name: str = ""
    device_map: dict[str, int] | None = None
    max_memory: dict[str, Any] | None = None
    offload: dict[str, Any] | None = None


def _special_id(value: Any) -> int | None:
    # configs may hold a list of EOS ids (Llama-3.1 instruct): the first is the main one
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    return None if value is None else int(value)


def resolve_window_start(
    tokenizer: Any, config: Any, window_start: str | int = "auto", *, model_name: str = "model"
) -> WindowStart:
    """What starts every window of a model (see the module docstring).

    Parameters
    ----------
    tokenizer : transformers tokenizer
    config : transformers.PretrainedConfig
        Its ``bos_token_id`` / ``eos_token_id`` are the fallbacks of the tokenizer's.
    window_start : {"auto", "bos", "eos", "none"} or int
    model_name : str
        Named in errors.

    Returns
    -------
    WindowStart

    Raises
    ------
    DataError
        The model defines no such token, or an explicit id is outside the vocabulary.
    ValueError
        An unknown policy.
    """
    if isinstance(window_start, bool) or not isinstance(window_start, int | str):
        raise ValueError(f"window_start must be one of {WINDOW_STARTS} or a token id")
    if isinstance(window_start, int):
        if not 0 <= window_start < len(tokenizer):
            raise DataError(
                f"model {model_name!r}: window_start token id {window_start} is outside its "
                f"tokenizer's vocabulary (0..{len(tokenizer) - 1}); fix the model's "
                "window_start in the config"
            )
        token = tokenizer.convert_ids_to_tokens(window_start)
        return WindowStart(window_start, window_start, token, "window_start")
    if window_start not in WINDOW_STARTS:
        raise ValueError(
            f"window_start must be one of {WINDOW_STARTS} or a token id, got {window_start!r}"
        )
    if window_start == "none":
        return WindowStart("none", None, None, "none")
    bos = [
        ("tokenizer.bos_token", tokenizer.bos_token_id),
        ("config.bos_token_id", getattr(config, "bos_token_id", None)),
    ]
    eos = [
        ("tokenizer.eos_token", tokenizer.eos_token_id),
        ("config.eos_token_id", getattr(config, "eos_token_id", None)),
    ]
    candidates = {"bos": bos, "eos": eos, "auto": bos + eos}[window_start]
    for source, value in candidates:
        token_id = _special_id(value)
        if token_id is not None:
            token = tokenizer.convert_ids_to_tokens(token_id)
            return WindowStart(window_start, token_id, token, source)
    what = {"bos": "BOS", "eos": "EOS", "auto": "BOS or EOS"}[window_start]
    raise DataError(
        f"model {model_name!r} defines no {what} token in its tokenizer or config, so "
        f"window_start: {window_start} has nothing to start each window with; set the model's "
        "window_start in the config to eos, none or a token id"
    )


def _device_name(device: Any) -> str:
    # accelerate names GPUs by index; "cpu" / "disk" / "cuda:1" are kept as they are
    return f"cuda:{device}" if isinstance(device, int) else str(device)


def _input_device(model: Any) -> str:
    """Where a dispatched model's inputs go: the execution device of its input embeddings.

    The embedding weights may be on the meta device (offloaded to CPU or disk, loaded by a hook
    at each forward), so the accelerate hook's ``execution_device`` comes first, then the
    weights' own device, then the device map's entry for the embeddings.
    """
    embeddings = model.get_input_embeddings()
    device = getattr(getattr(embeddings, "_hf_hook", None), "execution_device", None)
    if device is not None:
        return _device_name(device)
    for param in embeddings.parameters():
        if param.device.type != "meta":
            return str(param.device)
    name = next(n for n, m in model.named_modules() if m is embeddings)
    device_map = getattr(model, "hf_device_map", {})
    owners = [k for k in device_map if k == "" or name == k or name.startswith(k + ".")]
    if not owners:
        raise DataError(
            f"{getattr(model, 'name_or_path', 'the model')}: the device map "
            f"{dict(device_map)} places no module that holds the input embeddings {name!r}; "
            "add an entry for them (or for their parent module) to the device_map"
        )
    device = device_map[max(owners, key=len)]
    return "cpu" if device == "disk" else _device_name(device)


def load_causal_lm(
    model_dir: str | os.PathLike,
    *,
    device: str = "auto",
    dtype: str = "auto",
    model_name: str | None = None,
    window_start: str | int = "auto",
    device_map: str | Mapping[str, Any] | None = None,
    max_memory: Mapping[Any, Any] | None = None,
    offload_folder: str | os.PathLike | None = None,
) -> LoadedLM:
    """Load a causal LM snapshot offline for feature extraction.

    Parameters
    ----------
    model_dir : path-like
        Snapshot directory (``config.json``, weights, tokenizer files).
    device : str
        ``"auto"`` (CUDA when visible), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ... Without a
        ``device_map``, the model goes there; with one, it only picks the ``auto`` dtype.
    dtype : {"auto", "float32", "float16", "bfloat16"}
        ``auto`` = bf16/fp16 on GPU, fp32 on CPU (`fmriscaling.models.pick_dtype`).
    model_name : str, optional
        Name used in error messages (defaults to the directory name).
    window_start : {"auto", "bos", "eos", "none"} or int
        What starts every window (`resolve_window_start`, the module docstring).
    device_map : None, str or dict, optional
        None: the whole model on ``device``. ``"auto"`` (or ``"balanced"``, ``"sequential"``):
        placed by accelerate within ``max_memory``. A dict: module name -> GPU index,
        ``"cuda:N"``, ``"cpu"`` or ``"disk"`` (transformers' ``device_map``).
    max_memory : dict, optional
        Device (GPU index, ``"cpu"``) -> bytes or a string such as ``"70GiB"``, for a string
        ``device_map``. Modules are never placed on a device it leaves out: a model that does
        not fit is an error, not a silent offload.
    offload_folder : path-like, optional
        Where weights of ``"disk"`` modules are re-saved when the snapshot is not safetensors
        (safetensors are read in place). Required when the map has ``"disk"`` entries.

    Returns
    -------
    LoadedLM

    Raises
    ------
    DataError
        No snapshot, no fast tokenizer, no window start token, or a model that does not fit
        ``max_memory``.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    model_dir = require_model_dir(model_dir, model_name)
    name = model_name or model_dir.name
    device = pick_device(device)
    torch_dtype = pick_dtype(dtype, device)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    if not getattr(tokenizer, "is_fast", False):
        raise DataError(
            f"the tokenizer in {model_dir} is not a fast (Rust) tokenizer, so it cannot map "
            "tokens to words with offsets; add a tokenizer.json to the snapshot"
        )
    # the window start is settled before the weights load: a 70B model should not load to fail
    config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
    start = resolve_window_start(tokenizer, config, window_start, model_name=name)
    placement: dict[str, Any] = {}
    if device_map is None:
        if max_memory is not None or offload_folder is not None:
            raise ValueError("max_memory and offload_folder need a device_map")
        if device.startswith("cuda"):
            # straight to the GPU: without a device, transformers would hold the whole model in
            # host memory first (a 32B model: 65 GB of a job's host memory for nothing)
            placement = {"device_map": {"": device}}
    else:
        placement = _placement(device_map, max_memory, offload_folder, name)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            model_dir, local_files_only=True, dtype=torch_dtype, **placement
        )
    except ValueError as err:
        if device_map is None or "offload" not in str(err):
            raise
        raise DataError(
            f"model {name!r} ({model_dir}) needs weights on disk under device_map "
            f"{device_map!r} (max_memory {max_memory}): {err}. Fix: pass an offload_folder, "
            "or give the map more memory (more GPUs, or max_memory for 'cpu')"
        ) from err
    device_counts = offload = None
    if device_map is None:
        model.to(device)  # a no-op after a direct load to the GPU
    else:
        device_counts, offload = _check_placement(model, device_map, max_memory, placement, name)
        device = _input_device(model)
    model.eval()
    config = model.config
    max_positions = getattr(config, "max_position_embeddings", None) or getattr(
        config, "n_positions", None
    )
    n_layers = int(config.num_hidden_layers)
    layer_widths = _measure_layer_widths(model, device, start, n_layers, model_dir)
    lm = LoadedLM(
        model=model,
        tokenizer=tokenizer,
        model_dir=model_dir,
        device=device,
        dtype=torch_dtype,
        n_layers=n_layers,
        hidden_size=int(config.hidden_size),
        layer_widths=layer_widths,
        window_start=start,
        max_positions=int(max_positions) if max_positions else None,
        n_params=sum(p.numel() for p in model.parameters()),
        model_name=name,
        device_map=device_counts,
        max_memory=None if max_memory is None else {str(k): v for k, v in max_memory.items()},
        offload=offload,
    )
    logger.info(
        "loaded %s: %d layers, hidden %d (hidden-state widths %s), %.3g parameters, %s on %s%s, "
        "windows start with %s (id %s, %s)",
        model_dir,
        lm.n_layers,
        lm.hidden_size,
        _describe_widths(layer_widths),
        lm.n_params,
        torch_dtype,
        device,
        f" (device map: {device_counts})" if device_counts else "",
        start.token,
        start.token_id,
        start.source,
    )
    if len(set(layer_widths)) > 1:
        logger.info(
            "%s: hidden states differ in width (%s); features are NaN-padded to %d and each "
            "layer file is written at its own width",
            name,
            _describe_widths(layer_widths),
            max(layer_widths),
        )
    return lm


def _hidden_states(model: Any, device: str, ids: torch.Tensor, mask: torch.Tensor) -> tuple:
    """Every hidden state of ``model.base_model`` over a batch (embeddings first)."""
    import torch

    with torch.inference_mode():
        out = model.base_model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            output_hidden_states=True,
            use_cache=False,
            return_dict=True,
        )
    return out.hidden_states


def _measure_layer_widths(
    model: Any, device: str, start: WindowStart, n_layers: int, model_dir: Path
) -> tuple[int, ...]:
    """Width of each hidden state, from a forward pass over one token (the window start)."""
    import torch

    # any token will do: the widths do not depend on it
    ids = torch.tensor([start.ids or [0]], dtype=torch.long)
    hidden = _hidden_states(model, device, ids, torch.ones_like(ids))
    if len(hidden) != n_layers + 1:
        raise DataError(
            f"{model_dir}: the model returned {len(hidden)} hidden states, expected "
            f"num_hidden_layers + 1 = {n_layers + 1}; this architecture is not supported"
        )
    return tuple(int(h.shape[-1]) for h in hidden)


def _describe_widths(widths: Sequence[int]) -> str:
    """``"16 (layers 0-2)"``, or ``"32 (layers 0-2), 16 (layer 3)"``: runs of equal widths."""
    runs, first = [], 0
    for k in range(1, len(widths) + 1):
        if k == len(widths) or widths[k] != widths[first]:
            layers = f"layer {first}" if k - first == 1 else f"layers {first}-{k - 1}"
            runs.append(f"{widths[first]} ({layers})")
            first = k
    return ", ".join(runs)


def _layer_array(widths: Sequence[int], n_words: int) -> np.ndarray:
    """Zeros of shape (len(widths), n_words, max(widths)), float32, with NaN past each layer's
    width (padding of the narrower layers; none when all widths are equal)."""
    feats = np.zeros((len(widths), n_words, max(widths, default=0)), dtype=np.float32)
    for li, width in enumerate(widths):
        feats[li, :, width:] = np.nan
    return feats


def _placement(
    device_map: str | Mapping[str, Any],
    max_memory: Mapping[Any, Any] | None,
    offload_folder: str | os.PathLike | None,
    name: str,
) -> dict[str, Any]:
    """``from_pretrained`` keywords of a device map, checked."""
    if isinstance(device_map, str):
        if device_map not in ("auto", "balanced", "balanced_low_0", "sequential"):
            raise ValueError(
                "device_map must be None, 'auto', 'balanced', 'balanced_low_0', 'sequential' "
                f"or a dict of module -> device, got {device_map!r}"
            )
    else:
        device_map = dict(device_map)
        if "disk" in device_map.values() and offload_folder is None:
            raise ValueError(
                f"model {name!r}: the device_map puts modules on 'disk'; pass an offload_folder "
                "(where their weights are re-saved when the snapshot is not safetensors)"
            )
    placement: dict[str, Any] = {"device_map": device_map}
    if max_memory is not None:
        placement["max_memory"] = dict(max_memory)
    if offload_folder is not None:
        placement["offload_folder"] = str(offload_folder)
    return placement


def _check_placement(
    model: Any,
    device_map: str | Mapping[str, Any],
    max_memory: Mapping[Any, Any] | None,
    placement: Mapping[str, Any],
    name: str,
) -> tuple[dict[str, int], dict[str, Any] | None]:
    """Summarise where the modules went; refuse an inferred map that left ``max_memory``."""
    placed = [_device_name(d) for d in getattr(model, "hf_device_map", {"": "cpu"}).values()]
    counts = {d: placed.count(d) for d in sorted(set(placed))}
    if isinstance(device_map, str) and max_memory is not None:
        allowed = {_device_name(d) for d in max_memory}
        outside = {d: n for d, n in counts.items() if d not in allowed}
        if outside:
            raise DataError(
                f"model {name!r} does not fit max_memory {dict(max_memory)}: device_map "
                f"{device_map!r} put {sum(outside.values())} module(s) on {sorted(outside)} "
                f"(placement: {counts}). Fix: the sizing under-counted this model; lower "
                "compute.gpu_mem_gb (the job then asks for more GPUs) or "
                "features.text.batch_size"
            )
    offload = None
    if "disk" in counts:
        folder = Path(placement["offload_folder"])
        written = sum(1 for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0
        offload = {
            "folder": str(folder),
            "files_written": written,
            "read_from": "offload_folder" if written else "snapshot",
        }
    return counts, offload


# ---------------------------------------------------------------------------- engine


@dataclass
class _Pass:
    input_ids: list[int]  # start token (if any) + tokens
    positions: list[int]  # token position of each served word's last token
    served: list[int]  # indices (into the non-empty words) of the served words


def _tokenize_pass(lm: LoadedLM, words: Sequence[str], start: int, first: int, stop: int) -> _Pass:
    """Tokenise ``words[start:stop]`` and locate the last token of words ``first .. stop-1``.

    Only the tokens' start offsets are used (see the module docstring): token ``t`` belongs to
    the word it starts in, the joining space counting towards the next word, and a word's last
    token is the one before the next word's first.
    """
    ctx = words[start:stop]
    word_starts, pos = [], 0
    for w in ctx:
        word_starts.append(pos)
        pos += len(w) + 1
    word_ends = [a + len(w) for a, w in zip(word_starts, ctx, strict=True)]
    text = " ".join(ctx)
    enc = lm.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"]
    token_starts = [int(a) for a, _ in enc["offset_mapping"]]
    if any(b < a for a, b in itertools.pairwise(token_starts)) or not all(
        0 <= a < len(text) for a in token_starts
    ):
        raise DataError(
            f"model {lm.model_name!r}: its tokenizer returned offsets that are not increasing "
            f"positions in the text ({token_starts[:20]}...), so tokens cannot be mapped to "
            "words; use a tokenizer.json that maps offsets (a fast tokenizer of tokenizers "
            ">= 0.20.1)"
        )
    first_token = [-1] * len(ctx)
    for t, a in enumerate(token_starts):
        j = bisect.bisect_right(word_starts, a) - 1
        if a >= word_ends[j]:
            j += 1  # the joining space starts the next word's first token ("Ġbrain")
        if first_token[j] < 0:
            first_token[j] = t
    for j, t in enumerate(first_token):
        if t < 0 or token_starts[t] not in (word_starts[j], word_starts[j] - 1):
            _misaligned(lm, words, start, j, ids, token_starts, word_starts)
    last_token = [t - 1 for t in first_token[1:]] + [len(ids) - 1]
    n_start = len(lm.window_start.ids)
    served = list(range(first, stop))
    positions = [last_token[i - start] + n_start for i in served]
    return _Pass([*lm.window_start.ids, *ids], positions, served)


def _misaligned(
    lm: LoadedLM,
    words: Sequence[str],
    start: int,
    j: int,
    ids: list[int],
    token_starts: list[int],
    word_starts: list[int],
) -> None:
    """Raise the `DataError` of word ``start + j``, which no token starts at."""
    i = start + j
    # the token that holds the word's beginning: the last one starting before it
    t = bisect.bisect_left(token_starts, word_starts[j] - (1 if j else 0)) - 1
    if j and t >= 0:
        token = lm.tokenizer.convert_ids_to_tokens(ids[t])
        raise DataError(
            f"model {lm.model_name!r}: its tokenizer merges across the space between words "
            f"{i - 1} and {i} ({words[i - 1]!r} and {words[i]!r}; token {token!r}), so "
            f"{words[i - 1]!r} has no last token of its own and its feature would see "
            f"{words[i]!r}. This tokenizer cannot be aligned to words; use a model whose "
            "tokenizer splits at spaces"
        )
    raise DataError(
        f"model {lm.model_name!r}: word {i} ({words[i]!r}) got no token from its tokenizer; "
        "check the words table for unusual characters"
    )


def _run_passes(
    lm: LoadedLM,
    passes: list[_Pass],
    n_words: int,
    layer_idx: list[int],
    batch_size: int,
    progress: ProgressFn | None,
) -> tuple[np.ndarray, int, int]:
    """Run ``passes`` in batches; gather the served words' hidden states.

    Returns (features (n_sel_layers, n_words, max width) float32, NaN past a narrower layer's
    width; tokens processed; batches).
    """
    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for p in passes:
        if lm.max_positions is not None and len(p.input_ids) > lm.max_positions:
            raise DataError(
                f"a context of {len(p.input_ids)} tokens (start token included) exceeds the model's "
                f"{lm.max_positions} positions ({lm.model_dir}); lower max_words / reset_words "
                "for this model in the config"
            )
    widths = [lm.layer_widths[layer] for layer in layer_idx]
    feats = _layer_array(widths, n_words)
    pad_id = lm.tokenizer.pad_token_id
    if pad_id is None:
        # masked out, its value never matters
        pad_id = next(
            (i for i in (lm.window_start.token_id, lm.tokenizer.eos_token_id) if i is not None), 0
        )
    # longest first: batches of similar lengths waste little on padding
    order = sorted(range(len(passes)), key=lambda k: -len(passes[k].input_ids))
    n_tokens = n_batches = n_done = 0
    for lo in range(0, len(order), batch_size):
        batch = [passes[k] for k in order[lo : lo + batch_size]]
        length = max(len(p.input_ids) for p in batch)
        ids = torch.full((len(batch), length), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), length), dtype=torch.long)
        for b, p in enumerate(batch):
            ids[b, : len(p.input_ids)] = torch.tensor(p.input_ids)
            mask[b, : len(p.input_ids)] = 1
        # right padding: real tokens never attend to the pads after them (causal mask)
        hidden = _hidden_states(lm.model, lm.device, ids, mask)
        got = tuple(int(h.shape[-1]) for h in hidden)
        if got != lm.layer_widths:
            raise DataError(
                f"{lm.model_dir}: the model returned hidden states of widths "
                f"{_describe_widths(got)}, not the {_describe_widths(lm.layer_widths)} measured "
                "when it was loaded; this architecture is not supported"
            )
        rows = torch.tensor([b for b, p in enumerate(batch) for _ in p.positions])
        cols = torch.tensor([t for p in batch for t in p.positions])
        served = np.array([i for p in batch for i in p.served], dtype=np.int64)
        for li, layer in enumerate(layer_idx):
            # under a device map each layer's states stay on the device that ran the layer
            h = hidden[layer]
            h = h[rows.to(h.device), cols.to(h.device)]
            feats[li, served, : widths[li]] = h.float().cpu().numpy()
        n_tokens += int(mask.sum())
        n_batches += 1
        n_done += len(served)
        if progress is not None:
            progress(n_done, n_words)
        del hidden
    return feats, n_tokens, n_batches


def _layer_indices(layers: Sequence[int] | None, n_layers: int) -> list[int]:
    if layers is None:
        return list(range(n_layers + 1))
    idx = [int(layer) for layer in layers]
    bad = [layer for layer in idx if not 0 <= layer <= n_layers]
    if bad:
        raise ValueError(f"layers {bad} out of range 0..{n_layers} (0 = embeddings)")
    return idx


def _clean_words(words: Sequence[Any]) -> list[str]:
    # pandas may read "" as NaN; anything that is not a string counts as empty
    return [w.strip() if isinstance(w, str) else "" for w in words]


def lm_features_and_stats(
    lm: LoadedLM,
    words: Sequence[str],
    *,
    naive: bool = False,
    max_words: int = 512,
    reset_words: int = 256,
    batch_size: int = 8,
    layers: Sequence[int] | None = None,
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, ExtractionStats]:
    """The features of `extract_lm_features` (or `naive_lm_features`) and what they cost.

    Parameters
    ----------
    lm : LoadedLM
        A model loaded with `load_causal_lm`.
    words : sequence of str, length n_words
        The story's words in order; "" (empty) words are allowed, see the module docstring.
    naive : bool
        One pass per word over exactly its own context (`naive_lm_features`) instead of one
        pass per window of the schedule (`extract_lm_features`).
    max_words, reset_words, batch_size, layers, progress
        As in `extract_lm_features`.

    Returns
    -------
    feats : array of shape (n_layers + 1, n_words, max(layer_widths)), float32
        (``len(layers)`` rows when ``layers`` is given.) Layer ``l``'s features are
        ``feats[l, :, :layer_widths[l]]``, NaN past it (``LoadedLM.layer_widths``; the
        module docstring); all widths are ``hidden_size`` for most models.
    stats : ExtractionStats
        Words, tokens, passes, forward calls and seconds.
    """
    check_context(max_words, reset_words)
    layer_idx = _layer_indices(layers, lm.n_layers)
    clean = _clean_words(words)
    kept = np.flatnonzero([bool(w) for w in clean])
    real = [clean[i] for i in kept]
    n = len(real)
    t0 = time.perf_counter()
    if naive:
        starts = context_starts(n, max_words, reset_words)
        schedule = [(int(starts[i]), i, i + 1) for i in range(n)]
    else:
        schedule = window_schedule(n, max_words, reset_words)
    passes = [_tokenize_pass(lm, real, *w) for w in schedule]
    feats_real, n_tokens, n_batches = _run_passes(lm, passes, n, layer_idx, batch_size, progress)
    seconds = time.perf_counter() - t0
    n_story_tokens = (
        len(lm.tokenizer(" ".join(real), add_special_tokens=False)["input_ids"]) if n else 0
    )
    stats = ExtractionStats(
        n_words=n,
        n_story_tokens=n_story_tokens,
        n_tokens_processed=n_tokens,
        n_passes=len(passes),
        n_batches=n_batches,
        seconds=seconds,
    )

    # empty words carry the previous non-empty word's feature (zeros before the first)
    feats = _layer_array([lm.layer_widths[layer] for layer in layer_idx], len(clean))
    if n:
        owner = np.full(len(clean), -1, dtype=np.int64)
        owner[kept] = np.arange(n)
        owner = np.maximum.accumulate(owner)
        has = owner >= 0
        feats[:, has] = feats_real[:, owner[has]]
    logger.debug(
        "%s extraction: %d words, %d passes, %d tokens (%.2fx story), %.1f s",
        "naive" if naive else "dynamic",
        n,
        stats.n_passes,
        n_tokens,
        stats.token_ratio,
        seconds,
    )
    return feats, stats


def _as_loaded(model: str | os.PathLike | LoadedLM, device: str, dtype: str) -> LoadedLM:
    return (
        model if isinstance(model, LoadedLM) else load_causal_lm(model, device=device, dtype=dtype)
    )


def extract_lm_features(
    model: str | os.PathLike | LoadedLM,
    words: Sequence[str],
    *,
    max_words: int = 512,
    reset_words: int = 256,
    batch_size: int = 8,
    device: str = "auto",
    dtype: str = "auto",
    layers: Sequence[int] | None = None,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """Hidden states of every layer at each word, with the dynamic word context.

    One forward pass per window of the schedule (see the module docstring); each word's
    feature equals that of a pass over exactly its own context (`naive_lm_features`).
    `lm_features_and_stats` also returns what the extraction cost.

    Parameters
    ----------
    model : path-like or LoadedLM
        Snapshot directory, or a model already loaded with `load_causal_lm` (then ``device``
        and ``dtype`` are ignored).
    words : sequence of str, length n_words
        The story's words in order; "" (empty) words are allowed, see the module docstring.
    max_words : int
        Longest context, in words (512 in the paper).
    reset_words : int
        Context length, in words, right after a reset (256 in the paper).
    batch_size : int
        Windows per forward call (right-padded).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ...
    dtype : {"auto", "float32", "float16", "bfloat16"}
    layers : sequence of int, optional
        Hidden-state indices to keep (0 = embeddings); default all.
    progress : callable (n_done_words, n_words) -> None, optional
        Called after every forward call.

    Returns
    -------
    feats : array of shape (n_layers + 1, n_words, max(layer_widths)), float32
        (``len(layers)`` rows when ``layers`` is given.) Layer ``l``'s features are
        ``feats[l, :, :layer_widths[l]]``, NaN past it (``LoadedLM.layer_widths``; the
        module docstring); all widths are ``hidden_size`` for most models.
    """
    feats, _ = lm_features_and_stats(
        _as_loaded(model, device, dtype),
        words,
        max_words=max_words,
        reset_words=reset_words,
        batch_size=batch_size,
        layers=layers,
        progress=progress,
    )
    return feats


def naive_lm_features(
    model: str | os.PathLike | LoadedLM,
    words: Sequence[str],
    *,
    max_words: int = 512,
    reset_words: int = 256,
    batch_size: int = 1,
    device: str = "auto",
    dtype: str = "auto",
    layers: Sequence[int] | None = None,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """Reference: one forward pass per word over exactly its own context.

    Word ``i``'s context start comes from `context_starts` (the policy applied word by word);
    its pass is ``[start] + tokens(words[start:i+1])``. Same parameters and return value as
    `extract_lm_features`; ``batch_size`` defaults to 1 (no padding at all).
    """
    feats, _ = lm_features_and_stats(
        _as_loaded(model, device, dtype),
        words,
        naive=True,
        max_words=max_words,
        reset_words=reset_words,
        batch_size=batch_size,
        layers=layers,
        progress=progress,
    )
    return feats


# ---------------------------------------------------------------------------- driver


@dataclass
class _TextExtraction:
    """The causal-LM part of `fmriscaling.features.extract.extract_model`."""

    model: LoadedLM
    model_name: str
    context: dict[str, int]  # max_words, reset_words, batch_size
    totals: ExtractionStats = field(default_factory=ExtractionStats)
    stories: list[str] = field(default_factory=list)

    def read_input(self, story: str, path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
        """The story's words (cleaned, see `extract_lm_features`) and their times, (n_words,)."""
        words_df = read_words(path)
        words = _clean_words(list(words_df["word"]))
        if not any(words):
            raise DataError(
                f"story {story!r} has no words in {path}; check its TextGrid word "
                "tier and re-run the stimulus timing stage"
            )
        return words, np.asarray(words_df["time"], dtype=np.float64)

    def story_features(
        self,
        story: str,
        story_input: tuple[list[str], np.ndarray],
        tr_times: np.ndarray,
        rows: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, ExtractionStats]:
        words, word_times = story_input
        feats, stats = lm_features_and_stats(self.model, words, **self.context)
        return feats, word_times, stats

    def story_written(self, story: str, stats: ExtractionStats, n_rows: int, progress: str) -> None:
        for name in ("n_words", "n_story_tokens", "n_tokens_processed", "n_passes"):
            setattr(self.totals, name, getattr(self.totals, name) + getattr(stats, name))
        self.totals.seconds += stats.seconds
        self.stories.append(story)
        logger.info(
            "%s %s: %d words -> %d TRs, %.1f words/s, %.2fx story tokens",
            progress,
            story,
            stats.n_words,
            n_rows,
            stats.words_per_second,
            stats.token_ratio,
        )

    def provenance_record(self, run: RunRecord) -> dict[str, Any]:
        # the per-story costs are in stats; the loop's wall time is not recorded for LMs
        lm = self.model
        return provenance(
            run.params,
            model_name=self.model_name,
            model_dir=str(lm.model_dir),
            **snapshot_record(lm.model_dir),
            dtype=str(lm.dtype).removeprefix("torch."),
            device=lm.device,
            n_params=lm.n_params,
            n_layers=lm.n_layers,
            hidden_size=lm.hidden_size,
            layer_widths=list(lm.layer_widths),
            window_start=asdict(lm.window_start),
            device_map=lm.device_map,
            max_memory=lm.max_memory,
            offload=lm.offload,
            stats=asdict(self.totals),
            **self.context,
            lanczos_window=run.lanczos_window,
            lanczos_normalize=run.lanczos_normalize,
            stories=self.stories,
        )


def gpu_max_memory(n_gpus: int, gpu_mem_gb: float, activation_bytes: float) -> dict[int, int]:
    """``max_memory`` of a device map over GPUs ``0 .. n_gpus - 1``: bytes of weights per GPU.

    Each GPU may take ``usable - activation_bytes / n_gpus`` of weights, where ``usable`` is
    what `fmriscaling.sizing.usable_gpu_bytes` leaves of ``gpu_mem_gb`` (its reserve covers the
    CUDA context, the allocator and one layer's working set). The activations of a forward call
    are mostly every layer's hidden states, each kept on the GPU that ran the layer, so each GPU
    keeps an equal share of them free. The sizing asks for
    ``ceil((weights + activations) / usable)`` GPUs, so the weights fit these limits whenever
    the job has the GPUs the sizing asked for.

    Parameters
    ----------
    n_gpus : int
        GPUs of the job (>= 1).
    gpu_mem_gb : float
        Memory of one GPU, GB (``compute.gpu_mem_gb``).
    activation_bytes : float
        One forward call's activations (`fmriscaling.sizing.ExtractionSizing.activation_bytes`).

    Returns
    -------
    max_memory : dict of int -> int
        GPU index -> bytes.
    """
    if n_gpus < 1:
        raise ValueError(f"n_gpus must be >= 1, got {n_gpus}")
    per_gpu = usable_gpu_bytes(gpu_mem_gb) - activation_bytes / n_gpus
    if per_gpu <= 0:
        raise DataError(
            f"one forward call's activations (~{activation_bytes / 1e9:.1f} GB) leave no room "
            f"for weights on {n_gpus} GPU(s) of {gpu_mem_gb:g} GB; lower "
            "features.text.batch_size or raise compute.gpu_mem_gb"
        )
    return {i: int(per_gpu) for i in range(n_gpus)}


def _multi_gpu_placement(
    model_dir: str | os.PathLike,
    *,
    model_name: str,
    n_gpus: int,
    gpu_mem_gb: float,
    dtype: str,
    max_words: int,
    batch_size: int,
) -> dict[str, Any]:
    """``device_map="auto"`` over the job's visible GPUs with `gpu_max_memory` limits."""
    import torch
    from transformers import AutoConfig

    visible = torch.cuda.device_count()
    if visible < n_gpus:
        raise DataError(
            f"model {model_name!r} needs {n_gpus} GPUs (fmriscaling.sizing at "
            f"compute.gpu_mem_gb) but its extraction job sees {visible} "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}). Fix: run it on "
            f"a node with {n_gpus} GPUs (SLURM asks for --gpus={n_gpus}), or set "
            "compute.max_gpus_per_job to the GPUs you have, so that a model too big for them "
            "is refused before any job runs"
        )
    config = AutoConfig.from_pretrained(
        require_model_dir(model_dir, model_name), local_files_only=True
    )
    activations = activation_bytes(
        config.num_hidden_layers,
        config.hidden_size,
        batch_size,
        text_window_tokens(max_words),
        dtype_bytes(dtype, on_gpu=True),
    )
    max_memory = gpu_max_memory(n_gpus, gpu_mem_gb, activations)
    logger.info(
        "%s: device_map auto over %d GPUs, max_memory %.1f GB each (%g GB GPUs; %.1f GB of "
        "activations per forward call)",
        model_name,
        n_gpus,
        max_memory[0] / 1e9,
        gpu_mem_gb,
        activations / 1e9,
    )
    return {"device_map": "auto", "max_memory": max_memory}


def extract_text_model(
    model_dir: str | os.PathLike,
    words_tables: Mapping[str, str | os.PathLike],
    trs_tables: Mapping[str, str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    model_name: str,
    max_words: int = 512,
    reset_words: int = 256,
    batch_size: int = 8,
    device: str = "auto",
    dtype: str = "auto",
    window_start: str | int = "auto",
    n_gpus: int = 1,
    gpu_mem_gb: float = 80,
    device_map: str | Mapping[str, Any] | None = None,
    max_memory: Mapping[Any, Any] | None = None,
    offload_folder: str | os.PathLike | None = None,
    **options: Any,
) -> list[Path]:
    """Extract a causal LM's features for every story and write them per layer at TR times.

    `fmriscaling.features.extract.extract_model` with a causal LM: every story's words table
    is read first (a story without words is an error), then per story `extract_lm_features`
    at the word times, downsampled to the TRs with ``response_row >= 0`` and appended to
    ``layer-<l>.h5``, each at its layer's width (``LoadedLM.layer_widths``). Writes
    ``out_dir/provenance.json`` (with the window start, the layer widths and, under a device
    map, where the modules went).

    Parameters
    ----------
    model_dir : path-like
        Offline model snapshot.
    words_tables : mapping story -> path
        Words tables (columns word, start, end, time), read with `fmriscaling.stimuli.read_words`.
    trs_tables : mapping story -> path
        TR tables (columns tr_index, time, response_row; -1 = dropped), read with
        `fmriscaling.stimuli.read_trs`. Same stories as ``words_tables``.
    out_dir : path-like
        Output directory for ``layer-0.h5 .. layer-<n_layers>.h5`` and ``provenance.json``.
    model_name : str
        The model's name in the config.
    max_words, reset_words, batch_size, device, dtype
        As in `extract_lm_features`.
    window_start : {"auto", "bos", "eos", "none"} or int
        What starts every window (the model's registry entry; see the module docstring).
    n_gpus : int
        GPUs of the job (the rule's ``gpu`` resource). With more than one and ``device``
        ``auto`` or ``cuda``, the model is loaded with ``device_map="auto"`` over GPUs
        ``0 .. n_gpus - 1`` and `gpu_max_memory` limits; otherwise on one device as usual.
    gpu_mem_gb : float
        Memory of one GPU, GB (``compute.gpu_mem_gb``), for those limits.
    device_map, max_memory, offload_folder
        An explicit placement, as in `load_causal_lm` (instead of the one ``n_gpus`` picks).
    **options
        ``expected_n_layers``, ``lanczos_window``, ``lanczos_normalize``, ``params``: as in
        `fmriscaling.features.extract.extract_model`.

    Returns
    -------
    paths : list of Path
        The layer files, layer 0 first.
    """

    def load() -> _TextExtraction:
        placement = {
            "device_map": device_map,
            "max_memory": max_memory,
            "offload_folder": offload_folder,
        }
        if device_map is None and n_gpus > 1:
            if device == "cpu":
                logger.warning("%s: %d GPUs given but features.device is cpu", model_name, n_gpus)
            else:
                placement = _multi_gpu_placement(
                    model_dir,
                    model_name=model_name,
                    n_gpus=n_gpus,
                    gpu_mem_gb=gpu_mem_gb,
                    dtype=dtype,
                    max_words=max_words,
                    batch_size=batch_size,
                )
        lm = load_causal_lm(
            model_dir,
            device=device,
            dtype=dtype,
            model_name=model_name,
            window_start=window_start,
            **placement,
        )
        context = {"max_words": max_words, "reset_words": reset_words, "batch_size": batch_size}
        return _TextExtraction(lm, model_name, context)

    return extract_model(
        load,
        words_tables,
        trs_tables,
        out_dir,
        input_name="a words table",
        model_name=model_name,
        **options,
    )
