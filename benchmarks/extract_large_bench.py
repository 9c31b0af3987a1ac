"""A real-shape 7B-class causal LM with random weights: extraction on one device, the same
snapshot through a device map with offloaded layers, and the memory against the sizing.

    python benchmarks/extract_large_bench.py --json $OUT/extract_7b.json              # GPU
    python benchmarks/extract_large_bench.py --shape tiny --json /tmp/extract_tiny.json  # CPU

What it does, in one process:

1. Builds the shape (``--shape llama-2-7b``: LLaMA-2-7B's published blocks, hidden 4096, 32
   layers, 32 heads, feed-forward 11008; the vocabulary is the benchmark's own 2,000 byte-level
   tokens, since the blocks are where the time and memory go) with seeded random weights in
   the extraction dtype, directly on the device, and saves it as a snapshot.
2. Loads it with `fmriscaling.features.lm.load_causal_lm` and extracts ``--n-words``
   synthetic words with the paper's 512/256-word dynamic context (`lm_features_and_stats`):
   words per second, tokens, and the device's peak memory against
   `fmriscaling.sizing.extraction_sizing` for the same shape, dtype and batch.
3. Loads the snapshot again through a device map that keeps the first half of the blocks on
   the device and offloads the rest (to the CPU on a GPU machine; to disk on a CPU, where the
   device itself is the CPU), extracts the first ``--offload-words`` words both ways, and
   reports the largest difference and the offloaded pass's speed.

``--shape tiny`` shrinks every size (hidden 64, 4 blocks) for a dry run on a CPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from extract_bench import synthetic_words
from ridge_bench import cpu_model

from fmriscaling.features.lm import lm_features_and_stats, load_causal_lm
from fmriscaling.sizing import extraction_sizing

logger = logging.getLogger(__name__)

#: hidden, blocks, heads, feed-forward width, published parameters (LLaMA-2-7B's config.json)
SHAPES = {
    "llama-2-7b": (4096, 32, 32, 11008, 6.74e9),
    "tiny": (64, 4, 4, 256, None),
}


def build_random_llama(out: Path, shape: str, texts: list[str], dtype, device: str) -> int:
    """A LLaMA of ``shape`` with seeded random weights, made on ``device``, saved to ``out``."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from fmriscaling.demo.tiny_lm import SPECIAL_TOKENS, train_tokenizer

    hidden, layers, heads, ffn, _ = SHAPES[shape]
    tokenizer = train_tokenizer(texts, vocab_size=2000)
    ids = {f"{k.removesuffix('_token')}_token_id": tokenizer.convert_tokens_to_ids(v)
           for k, v in SPECIAL_TOKENS.items() if k != "unk_token"}  # fmt: skip
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        intermediate_size=ffn,
        max_position_embeddings=4096,
        **ids,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    n_params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    del model
    return n_params


def _peak_reset(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_bytes(device: str) -> float | None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
        return float(torch.cuda.max_memory_allocated())
    return None


def _offload_map(n_layers: int, device: str) -> dict[str, str]:
    """First half of the blocks (and the embeddings) on ``device``, the rest offloaded."""
    away = "cpu" if device.startswith("cuda") else "disk"
    dev = 0 if device.startswith("cuda") else "cpu"
    split = n_layers // 2
    device_map = {"model.embed_tokens": dev, "model.rotary_emb": dev}
    for i in range(n_layers):
        device_map[f"model.layers.{i}"] = dev if i < split else away
    device_map["model.norm"] = away
    device_map["lm_head"] = away
    return device_map


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="llama-2-7b")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--n-words", type=int, default=2000)
    parser.add_argument("--offload-words", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workdir", type=Path, help="where the snapshot is written (temporary)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import torch

    from fmriscaling.models import pick_device, pick_dtype

    device = pick_device(args.device)
    dtype = pick_dtype(args.dtype, device)
    dtype_name = str(dtype).removeprefix("torch.")
    words = synthetic_words(args.n_words, seed=0)
    hidden, layers, _, _, published = SHAPES[args.shape]
    context = {"max_words": 512, "reset_words": 256, "batch_size": args.batch_size}
    result: dict = {
        "shape": args.shape,
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if device.startswith("cuda") else cpu_model(),
        "dtype": dtype_name,
        "torch": torch.__version__,
        **context,
    }
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        snapshot = Path(tmp) / args.shape
        t0 = time.perf_counter()
        n_params = build_random_llama(snapshot, args.shape, [" ".join(words)], dtype, device)
        result["n_params"] = n_params
        result["build_s"] = time.perf_counter() - t0
        logger.info("built %s (%.3g parameters) in %.1f s", args.shape, n_params, result["build_s"])

        # 2. one device: the workflow's path
        _peak_reset(device)
        t0 = time.perf_counter()
        lm = load_causal_lm(snapshot, device=device, dtype=args.dtype)
        result["load_s"] = time.perf_counter() - t0
        lm_features_and_stats(lm, words[:64], **context)  # warm-up: kernels, allocator
        _peak_reset(device)
        feats, stats = lm_features_and_stats(lm, words, **context)
        peak = _peak_bytes(device)
        result.update(
            n_words=stats.n_words,
            story_tokens=stats.n_story_tokens,
            tokens_processed=stats.n_tokens_processed,
            extract_s=stats.seconds,
            words_per_s=stats.words_per_second,
            tokens_per_s=stats.n_tokens_processed / stats.seconds,
            peak_device_bytes=peak,
        )
        spec = {"kind": "text", "n_params": n_params, "n_layers": layers, "hidden_size": hidden}
        features = {
            "dtype": dtype_name,
            "text": context,
            "speech": {"window_s": 16.1, "batch_size": 16},
        }
        sized = extraction_sizing(
            args.shape, spec, features, {"gpu": device.startswith("cuda"), "gpu_mem_gb": 80}
        )
        result["sizing_device_bytes"] = sized.device_bytes
        result["sizing_weights_bytes"] = sized.weights_bytes
        result["sizing_activation_bytes"] = sized.activation_bytes
        if peak is not None:
            result["peak_over_sizing"] = peak / sized.device_bytes
        reference = feats[:, : args.offload_words].copy()
        del lm, feats

        # 3. a device map with half the blocks offloaded
        offload = Path(tmp) / "offload"
        device_map = _offload_map(layers, device)
        _peak_reset(device)
        t0 = time.perf_counter()
        mapped = load_causal_lm(
            snapshot, device=device, dtype=args.dtype, device_map=device_map,
            offload_folder=offload,
        )  # fmt: skip
        result["offload_load_s"] = time.perf_counter() - t0
        feats, stats = lm_features_and_stats(mapped, words[: args.offload_words], **context)
        result.update(
            offload_to="cpu" if device.startswith("cuda") else "disk",
            offload_layers=layers - layers // 2,
            offload_words=stats.n_words,
            offload_extract_s=stats.seconds,
            offload_words_per_s=stats.words_per_second,
            offload_peak_device_bytes=_peak_bytes(device),
            offload_folder_files=len(list(offload.rglob("*"))) if offload.exists() else 0,
        )
        diff = np.abs(feats - reference)
        result["offload_max_abs_diff"] = float(diff.max())
        result["offload_max_abs_feature"] = float(np.abs(reference).max())
        del mapped
    if published:
        result["published_params"] = published
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
