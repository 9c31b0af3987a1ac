"""Benchmark `fit_ridge_cv` against a companion-style bootstrap ridge at equal settings.

Both fits use the same alphas (companion ``a`` = √λ, converted with `alphas_from_companion`),
the same number of resamples / folds, float32, and are scored by the mean test r over voxels.
``--score-dtype`` sets ours' alpha-scoring precision (``fit_ridge_cv(score_dtype=...)``); the default
``both`` runs ours with float32 and with bfloat16 scoring side by side and reports the fraction of
voxels where the two choose the same alpha. The baseline is always float32.

    .venv/bin/python benchmarks/ridge_bench.py --size small           # < 20 s
    .venv/bin/python benchmarks/ridge_bench.py --size cpu              # a few minutes on 2 cores
    .venv/bin/python benchmarks/ridge_bench.py --size real --no-baseline   # on a GPU machine
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fmriscaling.cost import ridge_flops
from fmriscaling.encoding.backend import _PeakMemory, using_backend
from fmriscaling.encoding.folds import bootstrap_chunk_folds, story_folds
from fmriscaling.encoding.ridge import alphas_from_companion, fit_ridge_cv

SIZES = {
    # n_train, n_features, n_voxels, n_test, story_len
    "small": (600, 512, 2000, 150, 100),
    "cpu": (3000, 4096, 20000, 300, 300),
    # benchmarks/gpu_check.sh on one H100: ds003020's TRs and voxels, a primal 8,192 features
    "gpu-check": (27000, 8192, 95000, 300, 300),
    "real": (27000, 28672, 95000, 300, 300),
}


def make_data(n_train, n_features, n_voxels, n_test, rank=20, seed=0):
    """Synthetic encoding data with a realistic structure.

    Features have a power-law spectrum (column scales k^-0.6) and temporal autocorrelation
    (AR(1), 0.5); voxels are a rank-``rank`` linear signal plus white noise, with signal-to-noise
    spread log-uniformly over two decades; everything z-scored. Returns X, Y, X_test, Y_test,
    float32.
    """
    rng = np.random.default_rng(seed)
    scales = (np.arange(1, n_features + 1, dtype=np.float32) ** -0.6).astype(np.float32)
    basis = rng.standard_normal((n_features, rank), dtype=np.float32) / np.sqrt(n_features)
    mixing = rng.standard_normal((rank, n_voxels), dtype=np.float32)
    snr = np.exp(rng.uniform(np.log(0.05), np.log(5.0), n_voxels)).astype(np.float32)

    def one(n):
        x = rng.standard_normal((n, n_features), dtype=np.float32)
        x[1:] += 0.5 * x[:-1]
        x *= scales
        x = (x - x.mean(0)) / x.std(0)
        signal = (x * scales) @ basis @ mixing
        signal /= signal.std(0)
        y = signal * np.sqrt(snr)
        y += rng.standard_normal((n, n_voxels), dtype=np.float32)
        y = (y - y.mean(0)) / y.std(0)
        return x.astype(np.float32), y.astype(np.float32)

    X, Y = one(n_train)
    X_test, Y_test = one(n_test)
    return X, Y, X_test, Y_test


def _zs(v):
    return (v - v.mean(0)) / (v.std(0) + 1e-10)


def bootstrap_ridge_baseline(X, Y, X_test, Y_test, companion_alphas, folds):
    """Companion-style bootstrap ridge (Huth lab ``bootstrap_ridge`` / ``ridge_corr``), float32.

    Per resample: one ``np.linalg.svd`` of the training stimulus, ``UR = Uᵀ Y_train``, and for
    each companion alpha ``a`` the held-out predictions ``(P Vhᵀ · S/(S² + a²)) UR`` and their
    correlations. The per-voxel alpha maximises the mean correlation over resamples; the final
    weights come from an SVD of all training data, grouped by alpha.

    Returns
    -------
    dict with ``alphas`` (companion ``a``, per voxel), ``test_r``, ``cv_scores``.
    """
    companion_alphas = np.asarray(companion_alphas, dtype=np.float32)
    n_voxels = Y.shape[1]
    corr_sum = np.zeros((companion_alphas.size, n_voxels), dtype=np.float32)
    for train, val in folds:
        U, S, Vh = np.linalg.svd(X[train], full_matrices=False)
        UR = U.T @ Y[train]
        PVh = X[val] @ Vh.T
        z_val = _zs(Y[val])
        for i, a in enumerate(companion_alphas):
            D = S / (S**2 + a**2)
            pred = (PVh * D) @ UR
            corr = (_zs(pred) * z_val).mean(0)
            corr[np.isnan(corr)] = 0
            corr_sum[i] += corr
    mean_corr = corr_sum / len(folds)
    best = np.argmax(mean_corr, axis=0)
    U, S, Vh = np.linalg.svd(X, full_matrices=False)
    UR = U.T @ Y
    weights = np.zeros((X.shape[1], n_voxels), dtype=np.float32)
    for i, a in enumerate(companion_alphas):
        selected = best == i
        if selected.any():
            D = S / (S**2 + a**2)
            weights[:, selected] = Vh.T @ (D[:, None] * UR[:, selected])
    pred = X_test @ weights
    test_r = (_zs(pred) * _zs(Y_test)).mean(0)
    return {
        "alphas": companion_alphas[best],
        "test_r": test_r,
        "cv_scores": mean_corr[best, np.arange(n_voxels)],
    }


def ours_flops(n, p, v, n_test, folds, n_alphas):
    """Nominal flops of `fit_ridge_cv` as it runs (eigh counted as 9 r³, GEMM as 2mnk): the
    cost model's count (`fmriscaling.cost.ridge_flops`), for these folds.

    Counted the same for float32 and bfloat16 scoring, so "GFLOP/s" of a bfloat16 run is a
    float32-equivalent rate. Elementwise work (sums of the predictions) is not counted.
    """
    sizes = [(len(train), len(val)) for train, val in folds]
    return ridge_flops(n, p, v, n_test, sizes, n_alphas).total


def measure_matmul_rate(backend, size=4096, repeats=3, dtype=None):
    """Best-of-``repeats`` FLOP/s of a size x size GEMM on the backend's device.

    ``dtype`` None is float32; a torch dtype (``torch.bfloat16``) casts the operands first
    (torch backends only).
    """
    a = backend.asarray(np.random.default_rng(0).standard_normal((size, size), dtype=np.float32))
    if dtype is not None:
        a = a.to(dtype)

    def one():
        corner = backend.matmul(a, a)[:1, :1]
        backend.to_numpy(corner if dtype is None else corner.float())  # synchronises a GPU

    one()
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        one()
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--n-folds", type=int, default=5)
    parser.add_argument("--alphas", type=int, default=15, help="number of alphas")
    parser.add_argument(
        "--score-dtype",
        choices=["float32", "bfloat16", "auto", "both"],
        default="both",
        help="ours' alpha-scoring precision; both = float32 and bfloat16 side by side",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the synthetic data and the bootstrap folds"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the bootstrap baseline")
    parser.add_argument(
        "--fold-kinds",
        default="story,bootstrap",
        help="comma-separated: story (leave-stories-out) and/or bootstrap (the baseline's)",
    )
    parser.add_argument("--force", action="store_true", help="run --size real without a GPU")
    parser.add_argument("--json", nargs="?", const="-", help="write results as JSON (- = stdout)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    n_train, n_features, n_voxels, n_test, story_len = SIZES[args.size]
    companion = np.logspace(1, 4, args.alphas)
    alphas = alphas_from_companion(companion)  # himalaya λ = a²: logspace(2, 8)
    # the GEMM rates need the backend module only: the caller's global backend is left as it was
    with using_backend(args.backend) as (backend, backend_name):
        # the small size (a quick look, and the GPU check's dry run) times a smaller GEMM
        gemm = 1024 if args.size == "small" else 4096
        rate = measure_matmul_rate(backend, size=gemm)
        rate_bf16 = None
        if backend_name in ("torch", "torch_cuda"):
            import torch

            rate_bf16 = measure_matmul_rate(backend, size=gemm, dtype=torch.bfloat16)
    device = "cuda" if backend_name == "torch_cuda" else f"{cpu_model()} ({_n_cores()} cores)"
    if backend_name == "torch_cuda":
        import torch

        device = torch.cuda.get_device_name()

    if args.size == "real" and backend_name != "torch_cuda" and not args.force:
        folds = story_folds([n_train // args.n_folds] * args.n_folds, n_folds=args.n_folds)
        flops = ours_flops(n_train, n_features, n_voxels, n_test, folds, args.alphas)
        print(
            f"real size needs a GPU (Y alone is {n_train * n_voxels * 4 / 1e9:.0f} GB); "
            f"{flops / 1e12:.0f} TFLOP would take ~{flops / rate / 60:.0f} min at this device's "
            f"{rate / 1e9:.0f} GFLOP/s (9 r^3 per eigh). Use --force to run anyway."
        )
        return
    t0 = time.perf_counter()
    X, Y, X_test, Y_test = make_data(n_train, n_features, n_voxels, n_test, seed=args.seed)
    logging.info("data generated in %.1f s", time.perf_counter() - t0)

    n_stories = max(2, n_train // story_len)
    lengths = [n_train // n_stories] * n_stories
    lengths[-1] += n_train - sum(lengths)
    s_folds = story_folds(lengths, n_folds=args.n_folds)
    chunk_len = 40
    b_folds = bootstrap_chunk_folds(
        n_train,
        n_boots=args.n_folds,
        chunk_len=chunk_len,
        n_chunks=max(1, round(n_train / args.n_folds / chunk_len)),
        random_state=args.seed,
    )

    report = {
        "command": " ".join(["python", *sys.argv]),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "device": device,
        "backend": backend_name,
        "size": dict(n_train=n_train, n_features=n_features, n_voxels=n_voxels, n_test=n_test),
        "n_folds": args.n_folds,
        "n_alphas": args.alphas,
        "seed": args.seed,
        "matmul_gflops": rate / 1e9,
        "matmul_gflops_bfloat16": None if rate_bf16 is None else rate_bf16 / 1e9,
    }
    dtypes = ["float32", "bfloat16"] if args.score_dtype == "both" else [args.score_dtype]
    report["score_dtypes"] = dtypes
    runs = {}
    kinds = args.fold_kinds.split(",")
    for fold_kind, folds in (("story", s_folds), ("bootstrap", b_folds)):
        if fold_kind not in kinds:
            continue
        for dtype in dtypes:
            suffix = "" if dtype == "float32" else f"_{dtype}"
            runs[f"ours_{fold_kind}_folds{suffix}"] = (folds, dtype)
    for name, (folds, dtype) in runs.items():
        res = fit_ridge_cv(
            X,
            Y,
            alphas=alphas,
            folds=folds,
            X_test=X_test,
            Y_test=Y_test,
            backend=backend_name,
            score_dtype=dtype,
        )
        flops = ours_flops(n_train, n_features, n_voxels, n_test, folds, args.alphas)
        report[name] = {
            "score_dtype": res.score_dtype,
            "seconds": res.fit_seconds,
            "peak_memory_gb": res.peak_memory_bytes / 1e9,
            "gflop": flops / 1e9,
            "achieved_gflops": flops / res.fit_seconds / 1e9,
            "fraction_of_matmul_rate": flops / res.fit_seconds / rate,
            "mean_test_r": float(np.mean(res.test_r)),
            "solver": res.solver,
            "alphas": res.alphas,
        }
    if args.score_dtype == "both":
        for fold_kind in kinds:
            exact = report[f"ours_{fold_kind}_folds"]
            low = report[f"ours_{fold_kind}_folds_bfloat16"]
            low["same_alpha_as_float32"] = float(np.mean(low["alphas"] == exact["alphas"]))
            low["test_r_minus_float32"] = low["mean_test_r"] - exact["mean_test_r"]
    if not args.no_baseline and "bootstrap" in kinds:
        peak = _PeakMemory("cpu")
        t0 = time.perf_counter()
        base = bootstrap_ridge_baseline(X, Y, X_test, Y_test, companion, b_folds)
        seconds = time.perf_counter() - t0
        report["baseline_bootstrap"] = {
            "seconds": seconds,
            "peak_memory_gb": peak.peak() / 1e9,
            "mean_test_r": float(np.mean(base["test_r"])),
        }
        ours = report[next(n for n in runs if n.startswith("ours_bootstrap"))]
        same = np.mean(np.isclose(ours["alphas"], alphas_from_companion(base["alphas"]), rtol=1e-3))
        report["same_alpha_fraction_equal_folds"] = float(same)
        for name in runs:
            report[name]["speedup_vs_baseline"] = seconds / report[name]["seconds"]
    for name in runs:
        report[name].pop("alphas")

    text = json.dumps(report, indent=2)
    if args.json == "-":
        print(text)
    else:
        if args.json:
            Path(args.json).write_text(text + "\n")
        _print_table(report, runs)


def _n_cores():
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _print_table(report, runs):
    size = report["size"]
    bf16 = report["matmul_gflops_bfloat16"] or float("nan")
    print(
        f"\n{report['device']}, backend {report['backend']}, GEMM {report['matmul_gflops']:.0f} "
        f"GFLOP/s float32, {bf16:.0f} bfloat16; {size['n_train']} TRs x "
        f"{size['n_features']} features x {size['n_voxels']} voxels, {report['n_folds']} folds, "
        f"{report['n_alphas']} alphas"
    )
    print(
        f"{'fit':34s} {'seconds':>8s} {'peak GB':>8s} {'GFLOP/s':>8s} {'test r':>8s} "
        f"{'speedup':>8s} {'same alpha as fp32':>19s}"
    )
    for name in runs:
        r = report[name]
        same = r.get("same_alpha_as_float32")
        print(
            f"{name:34s} {r['seconds']:8.1f} {r['peak_memory_gb']:8.2f} "
            f"{r['achieved_gflops']:8.0f} {r['mean_test_r']:8.5f} "
            f"{r.get('speedup_vs_baseline', float('nan')):8.1f} "
            f"{'' if same is None else f'{same:.3f}':>19s}"
        )
    if "baseline_bootstrap" in report:
        b = report["baseline_bootstrap"]
        print(
            f"{'baseline_bootstrap':34s} {b['seconds']:8.1f} {b['peak_memory_gb']:8.2f} "
            f"{'':>8s} {b['mean_test_r']:8.5f} {1.0:8.1f}"
        )
        print(
            f"same alpha as baseline (equal folds): {report['same_alpha_fraction_equal_folds']:.3f}"
        )


if __name__ == "__main__":
    main()
