"""Tiny, randomly initialised models built offline, for the demo workflow and the tests.

Each builder writes a directory that loads exactly like a hub snapshot
(``AutoModel*.from_pretrained(out_dir, local_files_only=True)``) plus a ``provenance.json``
describing how it was made. Nothing here touches the network.

Causal language models
    `train_tokenizer` trains a small byte-level BPE on the demo text; `build_tiny_causal_lm`
    builds an OPT-, LLaMA- or GPT-2-style model from its config with seeded random weights;
    `TINY_LM_PRESETS` holds three sizes for the demo's scaling curve. Two newer families
    come with their own tokenizer style, as on the hub:

    - ``qwen2`` (Qwen2.5): ``Qwen2Config`` with grouped-query attention and tied embeddings;
      a byte-level BPE pre-tokenised with Qwen's regex split (digits one by one), NFC
      normalisation, and no BOS token (``<|endoftext|>`` is its EOS, pad and the config's
      ``bos_token_id``).
    - ``llama3`` (Llama-3.x): ``LlamaConfig`` with grouped-query attention and Llama-3 RoPE
      scaling; a tiktoken-style byte-level BPE (the cl100k regex split, up to 3 digits per
      token, ``ignore_merges``) whose post-processor prepends ``<|begin_of_text|>``.

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

#: the special tokens of the Qwen2.5 and Llama-3 tokenizer styles, in id order
QWEN2_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
LLAMA3_SPECIAL_TOKENS = ("<|begin_of_text|>", "<|end_of_text|>")

#: the pre-tokeniser splits of Qwen2.5's and Llama-3's tokenizer.json (Llama-3's is tiktoken's
#: cl100k pattern; Qwen's differs only in splitting digits one by one)
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

_LM_ARCHS = ("opt", "llama", "gpt2", "qwen2", "llama3")
#: the tokenizer style of each architecture
_TOKENIZER_STYLE = {
    "opt": "gpt2",
    "llama": "gpt2",
    "gpt2": "gpt2",
    "qwen2": "qwen2",
    "llama3": "llama3",
}
_STYLE_SPECIALS = {
    "gpt2": tuple(SPECIAL_TOKENS.values()),
    "qwen2": QWEN2_SPECIAL_TOKENS,
    "llama3": LLAMA3_SPECIAL_TOKENS,
}
_TOKENIZER_STYLES = tuple(_STYLE_SPECIALS)
# what the transformers wrapper calls them (Qwen2.5: no BOS, no UNK; Llama-3: no pad, no UNK)
_STYLE_ROLES: dict[str, dict[str, Any]] = {
    "gpt2": dict(SPECIAL_TOKENS),
    "qwen2": {
        "bos_token": None,
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
    },
    "llama3": {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"},
}


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = 300, seed: int = 0, style: str = "gpt2"
):
    """Train a byte-level BPE tokenizer on ``texts`` and wrap it for transformers.

    Parameters
    ----------
    texts : iterable of str
        Training text (e.g. the demo stories' words joined with spaces).
    vocab_size : int
        Target vocabulary size, at least 256 bytes + the special tokens; the rest are merges.
    seed : int
        Recorded for provenance only: BPE training in ``tokenizers`` is deterministic.
    style : {"gpt2", "qwen2", "llama3"}
        ``gpt2``: GPT-2's byte-level pre-tokeniser, ``<s>`` (BOS), ``</s>`` (EOS), ``<unk>``
        and ``<pad>`` as ids 0-3, offsets trimmed of the space a token carries. ``qwen2``:
        Qwen2.5's NFC normaliser and regex split (`QWEN2_SPLIT`), `QWEN2_SPECIAL_TOKENS` and no
        BOS; offsets keep the leading space (as Qwen's ``trim_offsets: false``). ``llama3``:
        Llama-3's regex split (`LLAMA3_SPLIT`), ``ignore_merges``, `LLAMA3_SPECIAL_TOKENS` with
        ``<|begin_of_text|>`` as BOS, prepended by the post-processor.

    Returns
    -------
    tokenizer : transformers.PreTrainedTokenizerFast
        Byte-level, so every string is encodable and offsets map tokens back to characters.
    """
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    if style not in _TOKENIZER_STYLES:
        raise ValueError(f"style must be one of {_TOKENIZER_STYLES}, got {style!r}")
    specials = _STYLE_SPECIALS[style]
    min_vocab = 256 + len(specials)  # byte-level BPE starts from the 256 byte symbols
    if vocab_size < min_vocab:
        raise ValueError(f"vocab_size must be at least {min_vocab}, got {vocab_size}")
    texts = [t for t in texts if t]
    if not texts:
        raise ValueError("train_tokenizer needs at least one non-empty text")
    if style == "gpt2":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        # trim_offsets: a token's offsets exclude the space it carries ("Ġword" -> "word")
        tok.post_processor = processors.ByteLevel(trim_offsets=True)
    else:
        split = QWEN2_SPLIT if style == "qwen2" else LLAMA3_SPLIT
        tok = Tokenizer(models.BPE(ignore_merges=style == "llama3"))
        if style == "qwen2":
            tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(split), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    if style == "llama3":
        bos = LLAMA3_SPECIAL_TOKENS[0]
        tok.post_processor = processors.Sequence(
            [
                processors.ByteLevel(trim_offsets=False),
                processors.TemplateProcessing(
                    single=f"{bos} $A",
                    pair=f"{bos} $A {bos} $B",
                    special_tokens=[(bos, tok.token_to_id(bos))],
                ),
            ]
        )
    logger.info(
        "trained byte-level BPE (%s style): %d tokens from %d texts (seed %d recorded only)",
        style,
        tok.get_vocab_size(),
        len(texts),
        seed,
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, **_STYLE_ROLES[style])


def _causal_lm_config(
    arch: str,
    *,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    intermediate_size: int,
    vocab_size: int,
    max_positions: int,
    ids: dict[str, int],
    word_embed_proj_dim: int | None = None,
):
    from transformers import GPT2Config, LlamaConfig, OPTConfig, Qwen2Config

    if word_embed_proj_dim is not None and arch != "opt":
        raise ValueError(f"word_embed_proj_dim is an OPT option, not one of arch {arch!r}")
    if arch == "opt":
        return OPTConfig(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            ffn_dim=intermediate_size,
            word_embed_proj_dim=word_embed_proj_dim or hidden_size,
            max_position_embeddings=max_positions,
            dropout=0.0,
            **ids,
        )
    # what the LLaMA-style decoders (LLaMA-2, Qwen2.5, Llama-3) share
    decoder = dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_positions,
        **ids,
    )
    if arch == "llama":
        return LlamaConfig(num_key_value_heads=num_heads, **decoder)
    if arch == "qwen2":
        # as Qwen2.5-0.5B..3B: grouped-query attention, tied embeddings, q/k/v biases
        return Qwen2Config(
            num_key_value_heads=max(1, num_heads // 2),
            tie_word_embeddings=True,
            use_sliding_window=False,
            rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
            **decoder,
        )
    if arch == "llama3":
        # as Llama-3.1/3.2: grouped-query attention and the llama3 RoPE frequency scaling
        return LlamaConfig(
            num_key_value_heads=max(1, num_heads // 2),
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 500_000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                # Llama-3.1's is 8192 of 131072 positions; it must be below max_positions
                "original_max_position_embeddings": max(1, max_positions // 4),
            },
            **decoder,
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
    word_embed_proj_dim: int | None = None,
) -> dict[str, Any]:
    """Build a randomly initialised causal LM and its tokenizer, saved like a hub snapshot.

    Parameters
    ----------
    out_dir : path-like
        Directory to write (``config.json``, ``model.safetensors``, tokenizer files,
        ``provenance.json``); created if needed, existing files overwritten.
    arch : {"opt", "llama", "gpt2", "qwen2", "llama3"}
        Architecture family, built from ``OPTConfig`` / ``LlamaConfig`` / ``GPT2Config`` /
        ``Qwen2Config`` / ``LlamaConfig`` (Llama-3 style), with its tokenizer style
        (`train_tokenizer`). ``qwen2`` and ``llama3`` use half as many key/value heads as
        query heads.
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
    word_embed_proj_dim : int, optional
        ``opt`` only: the width of the token embeddings and of the last hidden state, projected
        from and to ``hidden_size`` (as OPT-350m: 512 around a 1024-wide decoder). Default:
        ``hidden_size`` (no projections).

    Returns
    -------
    info : dict
        The provenance record written to ``out_dir/provenance.json``: ``arch``, sizes,
        ``vocab_size``, ``n_params``, ``seed``, ``model_id`` (``tiny-<arch>-...``, ending in
        ``-p<word_embed_proj_dim>`` when it is given), versions.
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

    style = _TOKENIZER_STYLE[arch]
    tokenizer = train_tokenizer(texts, vocab_size=vocab_size, seed=seed, style=style)
    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if style == "qwen2":
        # Qwen2.5's config.json: bos_token_id = eos_token_id = <|endoftext|>, no pad_token_id
        ids = {"bos_token_id": tokenizer.eos_token_id, "eos_token_id": tokenizer.eos_token_id}
    config = _causal_lm_config(
        arch,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        intermediate_size=intermediate_size,
        vocab_size=len(tokenizer),
        max_positions=max_positions,
        ids=ids,
        word_embed_proj_dim=word_embed_proj_dim,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)

    model_id = f"tiny-{arch}-h{hidden_size}-l{num_layers}"
    sizes: dict[str, Any] = {"hidden_size": hidden_size}
    if word_embed_proj_dim is not None:
        model_id += f"-p{word_embed_proj_dim}"
        sizes["word_embed_proj_dim"] = word_embed_proj_dim
    info = provenance(
        {
            "arch": arch,
            **sizes,
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
