"""Tiny, randomly initialised models built offline, for the demo workflow and the tests.

Each builder writes a directory that loads exactly like a hub snapshot
(``AutoModel*.from_pretrained(out_dir, local_files_only=True)``) plus a ``provenance.json``
describing how it was made. Nothing here touches the network.

Causal language models
    `train_tokenizer` trains a small byte-level BPE on the demo text; `build_tiny_causal_lm`
    builds an OPT-, LLaMA- or GPT-2-style model from its config with seeded random weights;
    `TINY_LM_PRESETS` holds three sizes for the demo's scaling curve.

Speech models are built by `fmriscaling.demo.tiny_speech`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .._utils import provenance, write_json

logger = logging.getLogger(__name__)

#: special tokens of every tiny tokenizer, in id order (0..3)
SPECIAL_TOKENS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
}

#: increasing sizes for the demo's "scaling" curve; all run in seconds on a CPU
TINY_LM_PRESETS: dict[str, dict[str, int]] = {
    "xs": {"hidden_size": 16, "num_layers": 2, "num_heads": 2},
    "s": {"hidden_size": 32, "num_layers": 3, "num_heads": 4},
    "m": {"hidden_size": 64, "num_layers": 4, "num_heads": 4},
}

_LM_ARCHS = ("opt", "llama", "gpt2")

# byte-level BPE starts from the 256 byte symbols plus the special tokens
_MIN_BPE_VOCAB = 256 + len(SPECIAL_TOKENS)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 300, seed: int = 0):
    """Train a byte-level BPE tokenizer on ``texts`` and wrap it for transformers.

    Parameters
    ----------
    texts : iterable of str
        Training text (e.g. the demo stories' words joined with spaces).
    vocab_size : int
        Target vocabulary size, at least 260 (256 bytes + 4 special tokens); the rest are merges.
    seed : int
        Recorded for provenance only: BPE training in ``tokenizers`` is deterministic.

    Returns
    -------
    tokenizer : transformers.PreTrainedTokenizerFast
        With ``<s>`` (BOS), ``</s>`` (EOS), ``<unk>`` and ``<pad>`` as ids 0-3; byte-level, so
        every string is encodable and offsets map tokens back to characters.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < _MIN_BPE_VOCAB:
        raise ValueError(f"vocab_size must be at least {_MIN_BPE_VOCAB}, got {vocab_size}")
    texts = [t for t in texts if t]
    if not texts:
        raise ValueError("train_tokenizer needs at least one non-empty text")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    # trim_offsets: a token's offsets exclude the space it carries ("Ġword" -> "word")
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    logger.info(
        "trained byte-level BPE: %d tokens from %d texts (seed %d recorded only)",
        tok.get_vocab_size(),
        len(texts),
        seed,
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)


def _causal_lm_config(
    arch: str,
    *,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    intermediate_size: int,
    vocab_size: int,
    max_positions: int,
    special_ids: dict[str, int],
):
    from transformers import GPT2Config, LlamaConfig, OPTConfig

    ids = {
        "bos_token_id": special_ids["bos_token"],
        "eos_token_id": special_ids["eos_token"],
        "pad_token_id": special_ids["pad_token"],
    }
    if arch == "opt":
        return OPTConfig(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            ffn_dim=intermediate_size,
            word_embed_proj_dim=hidden_size,
            max_position_embeddings=max_positions,
            dropout=0.0,
            **ids,
        )
    if arch == "llama":
        return LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            num_key_value_heads=num_heads,
            intermediate_size=intermediate_size,
            max_position_embeddings=max_positions,
            **ids,
        )
    if arch == "gpt2":
        return GPT2Config(
            vocab_size=vocab_size,
            n_embd=hidden_size,
            n_layer=num_layers,
            n_head=num_heads,
            n_inner=intermediate_size,
            n_positions=max_positions,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            **ids,
        )
    raise ValueError(f"arch must be one of {_LM_ARCHS}, got {arch!r}")


def build_tiny_causal_lm(
    out_dir: str | os.PathLike,
    *,
    arch: str = "opt",
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    intermediate_size: int | None = None,
    texts: Iterable[str],
    vocab_size: int = 300,
    max_positions: int = 2048,
    seed: int = 0,
) -> dict[str, Any]:
    """Build a randomly initialised causal LM and its tokenizer, saved like a hub snapshot.

    Parameters
    ----------
    out_dir : path-like
        Directory to write (``config.json``, ``model.safetensors``, tokenizer files,
        ``provenance.json``); created if needed, existing files overwritten.
    arch : {"opt", "llama", "gpt2"}
        Architecture family, built from ``OPTConfig`` / ``LlamaConfig`` / ``GPT2Config``.
    hidden_size, num_layers, num_heads : int
        Model width, depth (transformer blocks) and attention heads (must divide ``hidden_size``).
    intermediate_size : int, optional
        Feed-forward width; defaults to ``4 * hidden_size``.
    texts : iterable of str
        Text to train the tokenizer on.
    vocab_size : int
        Tokenizer vocabulary size (>= 260).
    max_positions : int
        Maximum sequence length in tokens.
    seed : int
        Seed of the random initialisation (``torch.manual_seed``).

    Returns
    -------
    info : dict
        The provenance record written to ``out_dir/provenance.json``: ``arch``, sizes,
        ``vocab_size``, ``n_params``, ``seed``, ``model_id`` (``tiny-<arch>-...``), versions.
    """
    import torch
    from transformers import AutoModelForCausalLM

    if arch not in _LM_ARCHS:
        raise ValueError(f"arch must be one of {_LM_ARCHS}, got {arch!r}")
    if hidden_size % num_heads:
        raise ValueError(f"num_heads ({num_heads}) must divide hidden_size ({hidden_size})")
    intermediate_size = intermediate_size or 4 * hidden_size
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    tokenizer = train_tokenizer(texts, vocab_size=vocab_size, seed=seed)
    special_ids = {
        name: tokenizer.convert_tokens_to_ids(tok) for name, tok in SPECIAL_TOKENS.items()
    }
    config = _causal_lm_config(
        arch,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        intermediate_size=intermediate_size,
        vocab_size=len(tokenizer),
        max_positions=max_positions,
        special_ids=special_ids,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)

    model_id = f"tiny-{arch}-h{hidden_size}-l{num_layers}"
    info = provenance(
        {
            "arch": arch,
            "hidden_size": hidden_size,
            "num_layers": num_layers,
            "num_heads": num_heads,
            "intermediate_size": intermediate_size,
            "vocab_size": len(tokenizer),
            "max_positions": max_positions,
            "seed": seed,
        },
        model_id=model_id,
        revision=None,
        arch=arch,
        n_params=n_params,
        seed=seed,
    )
    write_json(out_dir / "provenance.json", info)
    logger.info("built %s (%d parameters) in %s", model_id, n_params, out_dir)
    return info
