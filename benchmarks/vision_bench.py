"""Benchmark the vision track: feature extraction (images/s) and per-vertex selection (seconds).

Extraction runs `extract_vision_model` over PNG images written to a temporary folder (the
challenge's are 425 x 425), for tiny models built on the fly or for a downloaded snapshot.
Selection runs `select_per_vertex` on random features of the candidate widths a real model
gives (C x k² for each pooled layer) against random responses: its cost depends on shapes only.

    .venv/bin/python benchmarks/vision_bench.py --size cpu                      # tiny models, CPU
    .venv/bin/python benchmarks/vision_bench.py --size real --no-extract        # GPU: selection
    .venv/bin/python benchmarks/vision_bench.py --model-dir results/models/dinov2-base \\
        --n-images 512 --no-select --device cuda                                  # GPU: extraction
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

from fmriscaling.demo.tiny_vision import TINY_VISION_PRESETS, build_tiny_vision_model
from fmriscaling.vision.features import extract_vision_model
from fmriscaling.vision.selection import select_per_vertex
from fmriscaling.vision.splits import image_folds

# (training images, test images, vertices, channels of each candidate layer, pooling sizes)
SIZES = {
    "cpu": (1000, 100, 4000, [64, 128, 256], [1, 2, 4]),
    # one subject: 7901 / 878 images, ~40k vertices; a ViT-L-like model's 1024 channels
    "real": (7901, 878, 39548, [1024] * 4, [1, 2, 4]),
}


def bench_extraction(args, tmp: Path) -> list[dict]:
    from PIL import Image

    rng = np.random.default_rng(0)
    folder = tmp / "images"
    folder.mkdir()
    paths = []
    for i in range(args.n_images):
        path = folder / f"train-{i + 1:04d}_nsd-{i:05d}.png"
        Image.fromarray(rng.integers(0, 256, (args.image_px, args.image_px, 3), np.uint8)).save(
            path
        )
        paths.append(path)
    if args.model_dir:
        models = {args.model_dir.name: args.model_dir}
    else:
        models = {}
        for preset in ("clip-m", "convnext-s"):
            models[preset] = tmp / preset
            build_tiny_vision_model(models[preset], **TINY_VISION_PRESETS[preset])
    rows = []
    for name, model_dir in models.items():
        extract_vision_model(  # warm-up: kernels, allocator, lazy imports
            model_dir, {"warm": paths[: args.batch_size]}, tmp / f"warm-{name}", model_name=name,
            batch_size=args.batch_size, device=args.device, dtype=args.dtype,
        )  # fmt: skip
        out = tmp / f"features-{name}"
        started = time.perf_counter()
        extract_vision_model(
            model_dir, {"s_train": paths}, out, model_name=name, pooling=[1, 2, 4],
            batch_size=args.batch_size, device=args.device, dtype=args.dtype,
            n_workers=args.n_workers,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        record = json.loads((out / "provenance.json").read_text())
        rows.append(
            {
                "model": name,
                "n_params": record["n_params"],
                "device": record["device"],
                "dtype": record["dtype"],
                "n_images": args.n_images,
                "image_px": args.image_px,
                "batch_size": args.batch_size,
                "seconds": round(seconds, 2),
                "images_per_s": round(args.n_images / seconds, 1),
            }
        )
    return rows


def bench_selection(args) -> dict:
    n_train, n_test, n_vertices, channels, pooling = SIZES[args.size]
    if args.n_vertices:
        n_vertices = args.n_vertices
    rng = np.random.default_rng(0)
    candidates = [(layer, k) for layer in range(len(channels)) for k in pooling]
    width = {(layer, k): channels[layer] * k * k for layer, k in candidates}
    Y = rng.standard_normal((n_train + n_test, n_vertices), dtype=np.float32)

    def load(candidate):
        X = rng.standard_normal((n_train + n_test, width[candidate]), dtype=np.float32)
        return X[:n_train], X[n_train:]

    started = time.perf_counter()
    sel = select_per_vertex(
        candidates, load, Y[:n_train], Y[n_train:], alphas=np.logspace(0, 15, 30),
        folds=image_folds(n_train, 8), backend=args.backend, score_dtype=args.score_dtype,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    return {
        "size": args.size,
        "n_train": n_train,
        "n_test": n_test,
        "n_vertices": n_vertices,
        "n_candidates": len(candidates),
        "widths": sorted(set(width.values())),
        "backend": sel.backend,
        "score_dtype": sel.score_dtype,
        "seconds": round(seconds, 2),
        "fit_seconds": round(sum(f["seconds"] for f in sel.fits), 2),
        "per_candidate": [
            {k: f[k] for k in ("layer", "k", "n_features", "solver", "seconds")} for f in sel.fits
        ],
        "peak_memory_gb": round(sel.peak_memory_bytes / 1e9, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="cpu")
    parser.add_argument("--model-dir", type=Path, help="a snapshot (default: tiny models)")
    parser.add_argument("--n-images", type=int, default=256)
    parser.add_argument("--image-px", type=int, default=425, help="side of the test PNGs")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--n-workers", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--score-dtype", default="auto")
    parser.add_argument("--n-vertices", type=int, help="override the size's vertex count")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--no-extract", action="store_true")
    parser.add_argument("--no-select", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    result: dict = {"torch_threads": torch.get_num_threads()}
    if not args.no_extract:
        with tempfile.TemporaryDirectory() as tmp:
            result["extraction"] = bench_extraction(args, Path(tmp))
        print("| model | params | device/dtype | images (px) | batch | s | images/s |")
        print("|---|---:|---|---:|---:|---:|---:|")
        for r in result["extraction"]:
            print(
                f"| {r['model']} | {r['n_params']:,} | {r['device']}/{r['dtype']} "
                f"| {r['n_images']} ({r['image_px']}) | {r['batch_size']} | {r['seconds']} "
                f"| {r['images_per_s']} |"
            )
    if not args.no_select:
        sel = result["selection"] = bench_selection(args)
        solvers = sorted({c["solver"] for c in sel["per_candidate"]})
        print(
            "| size | train/test images | vertices | candidates (widths) | backend | s | solvers |"
        )
        print("|---|---:|---:|---|---|---:|---|")
        print(
            f"| {sel['size']} | {sel['n_train']}/{sel['n_test']} | {sel['n_vertices']} "
            f"| {sel['n_candidates']} ({', '.join(map(str, sel['widths']))}) "
            f"| {sel['backend']}/{sel['score_dtype']} | {sel['seconds']} | {'+'.join(solvers)} |"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
