"""One joint banded-ridge fit (`fmriscaling.encoding.partition.fit_banded_ridge`): seconds and
peak memory at the demo's size and at a slice of the real study.

    python benchmarks/partition_bench.py --size demo --json /tmp/partition_demo.json
    python benchmarks/partition_bench.py --size slice --n-iter 1 --n-folds 1 --json /tmp/slice.json
    python benchmarks/partition_bench.py --size slice --backend torch_cuda     # on a GPU machine

Sizes (training TRs, features per band, voxels, test TRs, alphas):

* ``demo``: 1,190 TRs, bands of 128 and 256 delayed features, 300 voxels, 90 test TRs,
  19 alphas, 10 band weightings (config/config.yaml).
* ``slice``: 27,000 TRs, two bands of 4,096 delayed features (a 1,024-wide speech layer and a
  1,024-wide text layer, 4 delays), 20,000 voxels, 291 test TRs, 15 alphas
  (config/lebel2023.yaml). At this size himalaya's primal search costs minutes per band
  weighting and fold; ``--n-iter 1 --n-folds 1`` times one weighting on one fold plus its
  refit, and the report extrapolates to the configured search with the cost model's flop count
  (`fmriscaling.cost.banded_ridge_flops`), which the measured step calibrates.

Random features with a planted signal in part of the voxels (half driven by band A, half by B).
Prints one JSON line (and writes it with --json): seconds, peak memory (RSS on CPU, allocated on
GPU), the batch sizes the fit chose, the flop count and the extrapolation.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

#: n_train, (widths), n_voxels, n_test, n_alphas, n_iter, n_folds
SIZES = {
    "demo": (1190, (128, 256), 300, 90, 19, 10, 5),
    "slice": (27_000, (4096, 4096), 20_000, 291, 15, 20, 5),
    "small": (400, (40, 60), 200, 60, 9, 4, 3),
}


def make_data(n: int, widths, n_voxels: int, n_test: int, seed: int = 0):
    """Bands, responses (half the voxels driven by each band, plus noise) and test data."""
    rng = np.random.default_rng(seed)
    X = [rng.standard_normal((n + n_test, w), dtype=np.float32) for w in widths]
    Y = rng.standard_normal((n + n_test, n_voxels), dtype=np.float32)
    half = n_voxels // 2
    for i, cols in enumerate((slice(0, half), slice(half, n_voxels))):
        w = rng.standard_normal((widths[i], 8), dtype=np.float32) / np.sqrt(widths[i])
        Y[:, cols] += (
            0.5
            * (X[i] @ w).repeat(-(-(cols.stop - cols.start) // 8), axis=1)[
                :, : cols.stop - cols.start
            ]
        )
    return [x[:n] for x in X], Y[:n], [x[n:] for x in X], Y[n:]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="demo")
    parser.add_argument("--backend", default="torch", help="himalaya backend (torch_cuda: GPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--n-iter", type=int, default=None, help="band weightings (default: the size's)"
    )
    parser.add_argument(
        "--n-folds", type=int, default=None, help="CV folds to run (default: the size's)"
    )
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    from fmriscaling.cost import CPU_REFERENCE, banded_ridge_flops
    from fmriscaling.encoding.folds import story_folds
    from fmriscaling.encoding.partition import fit_banded_ridge
    from fmriscaling.stats import r2_columns

    n, widths, n_voxels, n_test, n_alphas, n_iter_size, n_folds_size = SIZES[args.size]
    n_iter = args.n_iter or n_iter_size
    n_folds = args.n_folds or n_folds_size
    start = time.perf_counter()
    X, Y, X_test, Y_test = make_data(n, widths, n_voxels, n_test)
    data_seconds = time.perf_counter() - start
    # story-like folds: five equal stories, one held out per fold; run the first n_folds
    all_folds = story_folds(
        [n // n_folds_size] * (n_folds_size - 1) + [n - (n // n_folds_size) * (n_folds_size - 1)],
        n_folds=n_folds_size,
    )
    folds = all_folds[:n_folds]
    alphas = np.logspace(0, 6, n_alphas)
    fit = fit_banded_ridge(
        X,
        Y,
        X_test,
        folds=folds,
        alphas=alphas,
        n_iter=n_iter,
        backend=args.backend,
    )
    r2 = r2_columns(fit.pred.sum(0), Y_test)
    m = n // n_folds_size
    run = banded_ridge_flops(n, widths, n_voxels, n_test, [(n - m, m)] * n_folds, n_alphas, n_iter)
    full = banded_ridge_flops(
        n, widths, n_voxels, n_test, [(n - m, m)] * n_folds_size, n_alphas, n_iter_size
    )
    rate = (run.gemm + run.eigh) / fit.seconds
    report = {
        "size": args.size,
        "n_train": n,
        "band_widths": list(widths),
        "n_voxels": n_voxels,
        "n_test": n_test,
        "n_alphas": n_alphas,
        "n_iter": fit.n_iter,
        "n_folds": n_folds,
        "solver": fit.solver,
        "backend": fit.backend,
        "seconds": round(fit.seconds, 3),
        "data_seconds": round(data_seconds, 3),
        "peak_memory_gb": round(fit.peak_memory_bytes / 1e9, 3),
        "n_targets_batch": fit.n_targets_batch,
        "n_alphas_batch": fit.n_alphas_batch,
        "mean_test_r2": round(float(r2.mean()), 4),
        "band_weight_a_on_a_voxels": round(float(fit.band_weights[0, : n_voxels // 2].mean()), 3),
        "flops_run": run.gemm + run.eigh,
        "flops_per_second": rate,
        # the configured search (all folds, all weightings) at the rate this run reached
        "flops_full_search": full.gemm + full.eigh,
        "extrapolated_full_search_seconds": round((full.gemm + full.eigh) / rate, 1),
        "cost_model_seconds_full_search": round(
            full.gemm / CPU_REFERENCE.gemm + full.eigh / CPU_REFERENCE.eigh, 1
        ),
    }
    line = json.dumps(report)
    print(line)
    if args.json:
        with open(args.json, "w") as f:
            f.write(line + "\n")
    return report


if __name__ == "__main__":
    main()
