"""Benchmark the batched simplex solver of stacked regression against one cvxopt QP per voxel.

The reference code of stacked regression (Lin, Naselaris, Kay & Wehbe; brainML/Stacking) loops
``cvxopt.solvers.qp`` over voxels. This benchmark solves the same problems, ``min αᵀRα`` on the
simplex for ``--voxels`` voxels of ``--members`` members, with `solve_simplex_qp` on every
requested backend (all voxels at once), and with the reference loop on ``--sample`` voxels,
timed and scaled to all voxels; it reports seconds, peak memory, the ratio, and the largest
objective difference on the sample.

``--stream-voxels N`` adds the whole streamed stacking job (`stack_regression`) on member files
of N voxels x ``--stream-trs`` TRs, stored as float16 and as float32: its seconds and peak
memory, and what float16 storage changes (weights, stacked test r, OOF error).

    .venv/bin/python benchmarks/stack_bench.py                          # 100k voxels x 10, CPU
    .venv/bin/python benchmarks/stack_bench.py --backend torch_cuda     # on a GPU machine
    .venv/bin/python benchmarks/stack_bench.py --stream-voxels 20000    # + the streamed job

Residual cross-products are realistic: residuals share a large common part (the unexplained
response) plus member-specific parts whose sizes spread over a decade, so that optima range from
a vertex (one member) to interior mixes; a fifth of the voxels have pairs of near-identical
members (adjacent layers).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fmriscaling.encoding.backend import _PeakMemory
from fmriscaling.encoding.simplex import solve_simplex_qp


def make_problems(n_voxels: int, n_members: int, n_trs: int = 64, seed: int = 0) -> np.ndarray:
    """Residual cross-products ``R`` (n_voxels, k, k), float64, built in chunks."""
    rng = np.random.default_rng(seed)
    out = np.empty((n_voxels, n_members, n_members))
    for start in range(0, n_voxels, 10_000):
        v = min(10_000, n_voxels - start)
        shared = rng.standard_normal((v, n_trs, 1))
        size = 10 ** rng.uniform(-1.5, -0.5, (v, 1, n_members))
        own = size * rng.standard_normal((v, n_trs, n_members))
        twins = rng.random(v) < 0.2  # near-identical neighbours (adjacent layers)
        own[twins, :, 1] = own[twins, :, 0] + 1e-3 * own[twins, :, 1]
        E = shared + own
        out[start : start + v] = np.einsum("vti,vtj->vij", E, E) / n_trs
    return out


def reference_loop(R: np.ndarray) -> np.ndarray:
    """The reference code's approach: ``cvxopt.solvers.qp`` voxel by voxel; objectives."""
    from cvxopt import matrix, solvers

    solvers.options["show_progress"] = False
    k = R.shape[1]
    q, G, h = matrix(np.zeros(k)), matrix(-np.eye(k)), matrix(np.zeros(k))
    A, b = matrix(np.ones((1, k))), matrix(np.ones(1))
    objectives = np.empty(len(R))
    for i in range(len(R)):
        x = np.array(solvers.qp(matrix(R[i]), q, G, h, A, b)["x"]).ravel()
        objectives[i] = x @ R[i] @ x
    return objectives


def _rss() -> int:
    """Resident memory of this process now (bytes; 0 where /proc is unreadable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def _timed(fn, backend_name: str):
    """(value, seconds, peak bytes, peak bytes above the resident memory before the call)."""
    before = _rss()
    peak = _PeakMemory(backend_name)
    start = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - start
    top = peak.peak()
    return value, seconds, top, top - (0 if backend_name == "torch_cuda" else before)


def bench_solver(args) -> dict:
    R = make_problems(args.voxels, args.members, seed=args.seed)
    report = {"voxels": args.voxels, "members": args.members, "sample": args.sample}
    rng = np.random.default_rng(args.seed)
    sample = np.sort(rng.choice(args.voxels, size=min(args.sample, args.voxels), replace=False))
    if not args.no_reference:
        ref, seconds, _, _ = _timed(lambda: reference_loop(R[sample]), "numpy")
        report["reference_cvxopt_loop"] = {
            "sample_seconds": seconds,
            "seconds_all_voxels_scaled": seconds * args.voxels / len(sample),
            "per_voxel_ms": 1e3 * seconds / len(sample),
        }
    for backend in args.backend:
        solve_simplex_qp(R[:100], backend=backend)  # warm-up (imports, kernels)
        result, seconds, peak, added = _timed(
            lambda b=backend: solve_simplex_qp(R, backend=b), backend
        )
        entry = {
            "seconds": seconds,
            "peak_memory_gb": peak / 1e9,
            "peak_memory_added_gb": added / 1e9,
            "input_gb": R.nbytes / 1e9,
            "mean_iterations": float(result.n_iter.mean()),
            "max_iterations": int(result.n_iter.max()),
            "n_fallback": int(result.fallback.sum()),
            "n_not_certified": int((~result.certified).sum()),
            "max_gap": float(result.gap.max()),
            "frac_vertex": float(np.mean((result.weights > 0).sum(1) == 1)),
        }
        if not args.no_reference:
            diff = result.objective[sample] - ref
            entry["max_abs_objective_diff_vs_cvxopt"] = float(np.abs(diff).max())
            entry["worst_excess_over_cvxopt"] = float(diff.max())
            entry["speedup_vs_reference"] = (
                report["reference_cvxopt_loop"]["seconds_all_voxels_scaled"] / seconds
            )
        report[f"ours_{backend}"] = entry
    return report


def bench_stream(args) -> dict:
    """The streamed stacking job on member files, float16 against float32 storage."""
    from fmriscaling.encoding.oof import write_member_predictions
    from fmriscaling.encoding.stacking import stack_regression

    rng = np.random.default_rng(args.seed)
    n_trs, n_voxels, k, n_test = args.stream_trs, args.stream_voxels, args.members, 250
    signal = rng.standard_normal((n_trs + n_test, 8)).astype(np.float32)
    mixing = rng.standard_normal((8, n_voxels)).astype(np.float32) / 8
    Y = signal @ mixing + rng.standard_normal((n_trs + n_test, n_voxels)).astype(np.float32)
    report: dict = {"voxels": n_voxels, "trs": n_trs, "members": k}
    # member i sees a share of the signal plus its own noise (one draw for both dtypes)
    preds = [
        (0.2 + 0.8 * i / max(1, k - 1)) * (signal @ mixing)
        + 0.1 * rng.standard_normal(Y.shape).astype(np.float32)
        for i in range(k)
    ]
    scores = {}
    with tempfile.TemporaryDirectory(dir=args.tmpdir) as tmp:
        for dtype in ("float16", "float32"):
            paths = []
            for i, pred in enumerate(preds):
                path = Path(tmp) / dtype / f"m{i}.h5"
                write_member_predictions(
                    path,
                    oof_pred=pred[:n_trs].copy(),
                    oof_rows=np.ones(n_trs, bool),
                    Y_train=Y[:n_trs],
                    test_pred=pred[n_trs:],
                    Y_test=Y[n_trs:],
                    oof_dtype=dtype,
                    attrs={"subject": "S", "model": f"m{i}", "layer": i, "test_story": "t"},
                )
                paths.append(path)
            out = Path(tmp) / dtype / "scores.npz"
            labels = [{"model": f"m{i}", "kind": "text"} for i in range(k)]
            summary = stack_regression(
                member_files=paths, members=labels, out_npz=out, backend=args.backend[0]
            )
            with np.load(out) as data:
                scores[dtype] = {
                    name: data[name] for name in ("weights", "stack_r", "stack_oof_mse")
                }
            report[dtype] = {
                "seconds": summary["seconds"],
                "peak_memory_gb": summary["peak_memory_bytes"] / 1e9,
                "block_voxels": summary["block_voxels"],
                "member_file_gb": sum(p.stat().st_size for p in paths) / 1e9,
                "mean_r_stack": summary["mean_r_stack"],
            }
    a, b = scores["float16"], scores["float32"]
    report["float16_vs_float32"] = {
        "max_abs_weight_diff": float(np.abs(a["weights"] - b["weights"]).max()),
        "median_abs_weight_diff": float(np.median(np.abs(a["weights"] - b["weights"]))),
        "max_abs_stack_r_diff": float(np.abs(a["stack_r"] - b["stack_r"]).max()),
        "mean_stack_r_diff": float(np.mean(a["stack_r"] - b["stack_r"], dtype=np.float64)),
        "max_rel_oof_mse_diff": float(
            np.max(np.abs(a["stack_oof_mse"] - b["stack_oof_mse"]) / b["stack_oof_mse"])
        ),
    }
    return report


def _machine() -> dict:
    import torch

    return {
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxels", type=int, default=100_000)
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--sample", type=int, default=2000, help="voxels the reference solves")
    parser.add_argument(
        "--backend", nargs="+", default=["numpy", "torch"], help="himalaya backends for ours"
    )
    parser.add_argument("--no-reference", action="store_true", help="skip the cvxopt loop")
    parser.add_argument("--stream-voxels", type=int, default=0, help="also run the streamed job")
    parser.add_argument("--stream-trs", type=int, default=2000)
    parser.add_argument("--tmpdir", default=None, help="where the streamed job's files go")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the report as JSON to this path")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "solver": bench_solver(args),
    }
    if args.stream_voxels:
        report["stream"] = bench_stream(args)
    report["machine"]["load_average_1min_after"] = os.getloadavg()[0]
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()
