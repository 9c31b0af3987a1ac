"""Benchmark LM feature extraction: dynamic word window vs one pass per word (naive).

Reports, for one synthetic story: tokens processed / story tokens (≈ 2 for the dynamic window
with 512/256 words), words per second of both methods, and the largest absolute difference
between their features (all layers).

    .venv/bin/python benchmarks/extract_bench.py                       # tiny OPT built on the fly
    .venv/bin/python benchmarks/extract_bench.py --model-dir results/models/opt-125m --device cuda
    .venv/bin/python benchmarks/extract_bench.py --real-size opt-6.7b --device cuda   # random weights
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

from fmriscaling.demo.tiny_lm import build_tiny_causal_lm
from fmriscaling.features.lm import lm_features_and_stats, load_causal_lm

# published OPT shapes (facebook/opt-*/config.json): hidden size, blocks, heads, feed-forward width.
# --real-size builds one with random weights and the benchmark's own small vocabulary (2000
# tokens instead of 50272: the blocks, where the time goes, are the real ones)
REAL_OPT = {
    "opt-125m": (768, 12, 12, 3072),
    "opt-1.3b": (2048, 24, 32, 8192),
    "opt-6.7b": (4096, 32, 32, 16384),
    "opt-13b": (5120, 40, 40, 20480),
    "opt-30b": (7168, 48, 56, 28672),
}

SYLLABLES = "ka lo mi ne ru sa ti vo be da fu gi ho ja ke lu ma no pe qui ra se to wu".split()


def synthetic_words(n_words: int, seed: int = 0, empty_rate: float = 0.03) -> list[str]:
    """Zipf-distributed pseudo-words (1-4 syllables, some punctuation, a few "" words)."""
    rng = np.random.default_rng(seed)
    lexicon = [
        "".join(rng.choice(SYLLABLES, size=rng.integers(1, 5)))
        for _ in range(max(50, n_words // 4))
    ]
    ranks = np.minimum(rng.zipf(1.3, size=n_words), len(lexicon)) - 1
    words = [lexicon[r] for r in ranks]
    for i in np.flatnonzero(rng.random(n_words) < 0.08):
        words[i] += rng.choice([",", ".", "?"])
    for i in np.flatnonzero(rng.random(n_words) < empty_rate):
        words[i] = ""
    return words


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, help="model snapshot (default: build a tiny OPT)")
    parser.add_argument("--n-words", type=int, default=2000)
    parser.add_argument("--max-words", type=int, default=512)
    parser.add_argument("--reset-words", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8, help="both methods")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--tiny-preset", default="m", help="tiny OPT size: hidden/layers")
    parser.add_argument(
        "--real-size",
        choices=sorted(REAL_OPT),
        help="build an OPT of this published size with random weights (float32 on disk: "
        "opt-6.7b needs ~27 GB of temporary space, opt-30b ~120 GB)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)

    words = synthetic_words(args.n_words, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir
        if model_dir is None:
            model_dir = Path(tmp) / "tiny-opt"
            sizes = REAL_OPT[args.real_size] if args.real_size else {
                "xs": (16, 2, 2, None),
                "s": (32, 3, 4, None),
                "m": (64, 4, 4, None),
                "l": (256, 6, 8, None),
            }[args.tiny_preset]  # fmt: skip
            build_tiny_causal_lm(
                model_dir,
                arch="opt",
                hidden_size=sizes[0],
                num_layers=sizes[1],
                num_heads=sizes[2],
                intermediate_size=sizes[3],
                texts=[" ".join(words)],
                vocab_size=2000,
                seed=args.seed,
            )
        lm = load_causal_lm(model_dir, device=args.device, dtype=args.dtype)
        kw = {
            "max_words": args.max_words,
            "reset_words": args.reset_words,
            "batch_size": args.batch_size,
        }
        lm_features_and_stats(lm, words[:64], **kw)  # warm-up (kernels, allocator)
        dyn, dyn_stats = lm_features_and_stats(lm, words, **kw)
        t0 = time.perf_counter()
        ref, ref_stats = lm_features_and_stats(lm, words, naive=True, **kw)
        naive_wall = time.perf_counter() - t0

    scale = float(np.abs(ref).max())
    result = {
        "model": str(
            args.model_dir
            or (f"{args.real_size} (random weights)" if args.real_size else None)
            or f"tiny-opt-{args.tiny_preset}"
        ),
        "device": lm.device,
        "dtype": str(lm.dtype).removeprefix("torch."),
        "n_params": lm.n_params,
        "n_words": dyn_stats.n_words,
        "max_words": args.max_words,
        "reset_words": args.reset_words,
        "batch_size": args.batch_size,
        "story_tokens": dyn_stats.n_story_tokens,
        "dynamic_tokens": dyn_stats.n_tokens_processed,
        "naive_tokens": ref_stats.n_tokens_processed,
        "dynamic_token_ratio": dyn_stats.token_ratio,
        "naive_token_ratio": ref_stats.token_ratio,
        "dynamic_passes": dyn_stats.n_passes,
        "naive_passes": ref_stats.n_passes,
        "dynamic_words_per_s": dyn_stats.words_per_second,
        "naive_words_per_s": ref_stats.words_per_second,
        "speedup": ref_stats.seconds / dyn_stats.seconds,
        "naive_wall_s": naive_wall,
        "max_abs_diff": float(np.abs(dyn - ref).max()),
        "max_abs_feature": scale,
    }
    print(
        "| model | device/dtype | words | max/reset | tokens ratio dynamic | tokens ratio naive "
        "| words/s dynamic | words/s naive | speedup | max abs diff (max abs value) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {result['model']} ({lm.n_params:,} params) | {result['device']}/{result['dtype']} "
        f"| {result['n_words']} | {args.max_words}/{args.reset_words} "
        f"| {result['dynamic_token_ratio']:.3f} | {result['naive_token_ratio']:.1f} "
        f"| {result['dynamic_words_per_s']:.0f} | {result['naive_words_per_s']:.1f} "
        f"| {result['speedup']:.0f}x | {result['max_abs_diff']:.2e} ({scale:.2f}) |"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
