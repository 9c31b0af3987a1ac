"""The block permutation test at ds003020 size: 95,000 voxels, 291 test TRs, 1,000 permutations.

    python benchmarks/permutation_bench.py --threads 2 --json /tmp/permutation_bench.json
    python benchmarks/permutation_bench.py --device cuda          # on a GPU machine
    python benchmarks/permutation_bench.py --size small           # a quick look

Times `fmriscaling.encoding.significance.permutation_pvalues` (blocks of 10 TRs; the test
story's 291 TRs after the 40 trimmed ones of 'wheretheressmoke') on random predictions and
responses with a shared signal in a tenth of the voxels, and checks the p-values of a few
voxels against a plain loop over the same permutations. Prints one JSON line (and writes it
with --json): seconds, voxels x permutations per second, the fraction of signal and null
voxels with p < 0.05, and the device. The goal of issue 18: <= 60 s on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

SIZES = {"ds003020": (95_000, 291, 1000), "small": (5_000, 291, 200)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="ds003020")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or numpy")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--memory-mb", type=float, default=512.0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    from fmriscaling.encoding.significance import block_permutations, permutation_pvalues

    n_voxels, n_trs, n_perm = SIZES[args.size]
    rng = np.random.default_rng(0)
    pred = rng.standard_normal((n_trs, n_voxels)).astype(np.float32)
    resp = rng.standard_normal((n_trs, n_voxels)).astype(np.float32)
    n_signal = n_voxels // 10
    resp[:, :n_signal] += 0.3 * pred[:, :n_signal]
    start = time.perf_counter()
    out = permutation_pvalues(
        pred, resp, block_trs=10, n_permutations=n_perm, seed=0, device=args.device,
        memory_mb=args.memory_mb,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    order = block_permutations(n_trs, block_trs=10, n_permutations=n_perm, seed=0)
    for v in (0, n_voxels - 1):  # one signal voxel, one null voxel
        r = np.corrcoef(pred[:, v], resp[:, v])[0, 1]
        r_perm = np.array([np.corrcoef(pred[o, v], resp[:, v])[0, 1] for o in order])
        expected = (1 + np.sum(r_perm >= r - 1e-6)) / (1 + n_perm)
        assert abs(out["p"][v] - expected) < 1e-12, (v, out["p"][v], expected)
    report = {
        "size": args.size,
        "n_voxels": n_voxels,
        "n_trs": n_trs,
        "n_permutations": n_perm,
        "device": args.device,
        "threads": args.threads,
        "seconds": round(seconds, 4),  # a small run takes milliseconds: 2 decimals read 0.0
        "voxel_permutations_per_s": round(n_voxels * n_perm / seconds),
        "rate_p_below_0.05_signal": float(np.mean(out["p"][:n_signal] < 0.05)),
        "rate_p_below_0.05_null": float(np.mean(out["p"][n_signal:] < 0.05)),
    }
    print(json.dumps(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()
