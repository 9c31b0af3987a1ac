"""Tiny, randomly initialised speech models for tests and the demo workflow.

They have the architecture of the real ones (wav2vec2-family conv front end at 50 Hz, or a
Whisper encoder over 10 ms log-mel frames) but a few thousand parameters, and are saved like
a downloaded snapshot, so the feature code runs on them unchanged and offline.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from .._utils import provenance, write_json

logger = logging.getLogger(__name__)

SPEECH_ARCHS = ("hubert", "wavlm", "wav2vec2", "whisper")

# standard wav2vec2 conv front end: 320 samples per frame (50 Hz at 16 kHz), 400-sample receptive field
_CONV_KERNEL = (10, 3, 3, 3, 3, 2, 2)
_CONV_STRIDE = (5, 2, 2, 2, 2, 2, 2)

TINY_SPEECH_PRESETS: dict[str, dict[str, Any]] = {
    "tiny-whisper": {
        "arch": "whisper",
        "hidden_size": 32,
        "num_layers": 2,
        "num_heads": 2,
        "max_source_positions": 250,
    },
    "tiny-hubert": {"arch": "hubert", "hidden_size": 32, "num_layers": 2, "num_heads": 2},
}
"""Demo models: one Whisper-like (5 s chunks, for the demo's 4 s windows), one HuBERT-like."""


def build_tiny_speech_model(
    out_dir: str | os.PathLike,
    *,
    arch: str = "hubert",
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    intermediate_size: int | None = None,
    conv_dim: int = 32,
    max_source_positions: int = 500,
    sample_rate: int = 16000,
    seed: int = 0,
    **config_overrides: Any,
) -> dict[str, Any]:
    """Build a randomly initialised speech model and save it as a local snapshot.

    Parameters
    ----------
    out_dir : path-like
        Directory to write (``config.json``, ``model.safetensors``,
        ``preprocessor_config.json``, ``provenance.json``).
    arch : {"hubert", "wavlm", "wav2vec2", "whisper"}
        Model family.
    hidden_size, num_layers, num_heads : int
        Width, number of (encoder) transformer layers and attention heads.
    intermediate_size : int, optional
        Feed-forward width; defaults to ``2 * hidden_size``.
    conv_dim : int
        Channels of each of the 7 conv layers of the wav2vec2-family front end (strides stay
        the standard ones, so the frame rate stays 50 Hz).
    max_source_positions : int
        Whisper only: number of encoder frames (20 ms each); the feature extractor's chunk
        is ``max_source_positions * 0.02`` s (500 -> 10 s; real models: 1500 -> 30 s).
    sample_rate : int
        Sampling rate of the feature extractor.
    seed : int
        Seed of the random initialisation.
    **config_overrides
        Passed to the transformers config.

    Returns
    -------
    info : dict
        ``model_dir``, ``arch``, ``n_params``, ``n_layers`` (transformer layers) and the
        config values used.
    """
    import torch
    from transformers import (
        AutoModel,
        HubertConfig,
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        WavLMConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
    )

    if arch not in SPEECH_ARCHS:
        raise ValueError(f"arch must be one of {SPEECH_ARCHS}, got {arch!r}")
    if hidden_size % num_heads:
        raise ValueError(
            f"hidden_size ({hidden_size}) must be divisible by num_heads ({num_heads})"
        )
    intermediate_size = intermediate_size or 2 * hidden_size
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    if arch == "whisper":
        hop_length = 160
        # 2 conv strides (1, 2) over 10 ms mel hops: one encoder frame per 20 ms
        chunk_samples = max_source_positions * 2 * hop_length
        if chunk_samples % sample_rate:
            raise ValueError(
                f"max_source_positions={max_source_positions} gives a chunk of "
                f"{chunk_samples / sample_rate} s; pick one that is a whole number of seconds "
                "(a multiple of 50)"
            )
        kwargs: dict[str, Any] = {
            "vocab_size": 128,
            "num_mel_bins": 80,
            "d_model": hidden_size,
            "encoder_layers": num_layers,
            "decoder_layers": 1,
            "encoder_attention_heads": num_heads,
            "decoder_attention_heads": num_heads,
            "encoder_ffn_dim": intermediate_size,
            "decoder_ffn_dim": intermediate_size,
            "max_source_positions": max_source_positions,
            "max_target_positions": 32,
            "pad_token_id": 0,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "decoder_start_token_id": 1,
            "suppress_tokens": None,
            "begin_suppress_tokens": None,
        }
        kwargs.update(config_overrides)
        config = WhisperConfig(**kwargs)
        feature_extractor = WhisperFeatureExtractor(
            feature_size=config.num_mel_bins,
            sampling_rate=sample_rate,
            hop_length=hop_length,
            chunk_length=chunk_samples // sample_rate,
        )
    else:
        config_cls = {"hubert": HubertConfig, "wavlm": WavLMConfig, "wav2vec2": Wav2Vec2Config}[
            arch
        ]
        kwargs = {
            "hidden_size": hidden_size,
            "num_hidden_layers": num_layers,
            "num_attention_heads": num_heads,
            "intermediate_size": intermediate_size,
            "conv_dim": (conv_dim,) * len(_CONV_KERNEL),
            "conv_kernel": _CONV_KERNEL,
            "conv_stride": _CONV_STRIDE,
            "num_conv_pos_embeddings": 16,
            "num_conv_pos_embedding_groups": 2,
            "vocab_size": 32,
        }
        if arch == "wav2vec2":
            kwargs.update(codevector_dim=16, proj_codevector_dim=16, num_codevectors_per_group=16)
        kwargs.update(config_overrides)
        config = config_cls(**kwargs)
        feature_extractor = Wav2Vec2FeatureExtractor(
            feature_size=1,
            sampling_rate=sample_rate,
            padding_value=0.0,
            do_normalize=True,
            return_attention_mask=config.feat_extract_norm == "layer",
        )

    torch.manual_seed(seed)
    model = AutoModel.from_config(config)
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(out_dir, safe_serialization=True)
    feature_extractor.save_pretrained(out_dir)

    n_layers = config.encoder_layers if arch == "whisper" else config.num_hidden_layers
    info = {
        "model_dir": str(out_dir),
        "arch": arch,
        "model_class": type(model).__name__,
        "n_params": int(n_params),
        "n_layers": int(n_layers),
        "hidden_size": hidden_size,
        "num_heads": num_heads,
        "intermediate_size": intermediate_size,
        "seed": seed,
    }
    if arch == "whisper":
        info["max_source_positions"] = max_source_positions
        info["chunk_length_s"] = feature_extractor.chunk_length
    write_json(
        out_dir / "provenance.json",
        provenance(
            {k: v for k, v in info.items() if k != "model_dir"},
            model_id=f"tiny-{arch}-h{hidden_size}-l{num_layers}",
            revision=None,
            n_params=int(n_params),
            source="fmriscaling.demo.tiny_speech.build_tiny_speech_model (random init)",
        ),
    )
    logger.info("built tiny %s model (%d parameters) at %s", arch, n_params, out_dir)
    return info
