"""Study-slice benchmark: per-subject fits from raw HDF5 vs prepared responses + shared fits.

The real study fits ~2,000 (model, layer, training set)s for three subjects that share their
84 training stories. This benchmark times a slice of it, in one run, both ways:

(a) **per subject, raw** (the workflow before prepared responses): one `fit_encoding` per
    subject, each reading every raw float64 ``<story>.hf5`` of its subject, trimming and
    z-scoring it, and decomposing the design on its own;
(b) **prepared + shared** (the workflow now): `prepare_responses` once per subject (timed
    apart: in the study it is paid once per subject, not once per fit), then one
    `fit_encoding_subjects` for all subjects: one Gram and one ``eigh`` per fold and for the
    refit, the subjects' voxels side by side in the batches.

Inputs are written to a temporary directory as the workflow lays them out (one float32 layer
file; per subject one float64 response file per story, the test story with 40 extra TRs that
the fit trims), and each variant runs in a fresh child process, so that its peak memory is its
own. Unless ``--warm`` is given the inputs are evicted from the page cache before each variant
(``posix_fadvise(DONTNEED)``): the reads come from the disk, as a cluster job's would. Test r of
(b) is compared with (a) voxel by voxel.

    .venv/bin/python benchmarks/study_bench.py --size small      # seconds
    .venv/bin/python benchmarks/study_bench.py --size cpu        # ~5 minutes on 2 cores
    .venv/bin/python benchmarks/study_bench.py --size gpu        # on a GPU machine
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIZES = {
    # n_subjects, n_voxels per subject, n_train TRs, n_features (after 4 delays), story length
    "small": (3, 2000, 600, 512, 100),
    "cpu": (3, 20000, 3000, 4096, 300),
    "gpu": (3, 30000, 15000, 16384, 300),
}
DELAYS = (1, 2, 3, 4)
TEST_STORY, TEST_TRIM, N_TEST = "test", 40, 300


def _stories(n_train: int, story_len: int) -> dict[str, int]:
    """Raw TR counts of the training stories and the test story (40 TRs more, trimmed)."""
    n_stories = max(2, n_train // story_len)
    lengths = [n_train // n_stories] * n_stories
    lengths[-1] += n_train - sum(lengths)
    stories = {f"story{i:02d}": n for i, n in enumerate(lengths)}
    stories[TEST_STORY] = N_TEST + TEST_TRIM
    return stories


def write_inputs(workdir: Path, size: str, seed: int = 0) -> dict:
    """Layer file and raw response files of a synthetic study slice; returns the layout.

    Features: per story AR(1) noise with a power-law column scale (k^-0.6). Responses of each
    subject: a rank-20 linear map of the delayed, z-scored features (its own map per subject),
    plus white noise at a signal-to-noise ratio spread over two decades; float64, as in
    ds003020.
    """
    import h5py

    from fmriscaling.encoding.design import delay_matrix, zscore

    n_subjects, n_voxels, n_train, n_features, story_len = SIZES[size]
    n_dims = n_features // len(DELAYS)
    rng = np.random.default_rng(seed)
    stories = _stories(n_train, story_len)
    scales = (np.arange(1, n_dims + 1, dtype=np.float32) ** -0.6).astype(np.float32)
    feature_file = workdir / "features" / "layer-1.h5"
    feature_file.parent.mkdir(parents=True)
    designs = {}
    with h5py.File(feature_file, "w") as f:
        for story, n in stories.items():
            x = rng.standard_normal((n, n_dims), dtype=np.float32)
            x[1:] += 0.5 * x[:-1]
            x *= scales
            f[story] = x
            trim = TEST_TRIM if story == TEST_STORY else 0
            designs[story] = (trim, delay_matrix(zscore(x[trim:]), DELAYS) * np.tile(scales, 4))
    subjects = [f"S{i + 1}" for i in range(n_subjects)]
    responses = {}
    for subject in subjects:
        basis = rng.standard_normal((n_features, 20), dtype=np.float32) / np.sqrt(n_features)
        mixing = rng.standard_normal((20, n_voxels), dtype=np.float32)
        snr = np.exp(rng.uniform(np.log(0.05), np.log(5.0), n_voxels)).astype(np.float32)
        responses[subject] = {}
        for story, (trim, design) in designs.items():
            signal = design @ basis @ mixing
            signal /= signal.std(0) + 1e-12
            y = np.zeros((trim + design.shape[0], n_voxels))
            y[trim:] = signal * np.sqrt(snr)
            y += rng.standard_normal(y.shape, dtype=np.float32)
            path = workdir / "responses" / subject / f"{story}.hf5"
            path.parent.mkdir(parents=True, exist_ok=True)
            with h5py.File(path, "w") as g:
                g["data"] = y  # float64, like ds003020's files
            responses[subject][story] = str(path)
    return {
        "size": size,
        "feature_file": str(feature_file),
        "responses": responses,
        "train_stories": [s for s in stories if s != TEST_STORY],
        "test_story": TEST_STORY,
        "n_voxels": n_voxels,
        "n_features": n_features,
        "n_train": n_train,
    }


def _evict(paths) -> None:
    """Drop ``paths`` from the page cache, so that the next read comes from the disk."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def run_variant(variant: str, layout: dict, workdir: Path, settings: dict) -> dict:
    """One variant in this process: ``raw``, ``prepare`` or ``shared``. Returns its record."""
    from fmriscaling.encoding.fit import fit_encoding, fit_encoding_subjects
    from fmriscaling.encoding.prepared import prepare_responses

    subjects = list(layout["responses"])
    train, test = layout["train_stories"], layout["test_story"]
    out = {s: workdir / "out" / variant / s / "scores.npz" for s in subjects}
    prepared = {s: workdir / "prepared" / f"{s}.h5" for s in subjects}
    common = dict(feature_file=layout["feature_file"], train_stories=train, test_story=test)
    t0, cpu0 = time.perf_counter(), _cpu_seconds()
    summaries = {}
    if variant == "raw":
        for s in subjects:
            summaries[s] = fit_encoding(
                response_files=layout["responses"][s], out_npz=out[s], **common, **settings
            )
    elif variant == "prepare":
        for s in subjects:
            prepare_responses(
                layout["responses"][s],
                prepared[s],
                stories=[*train, test],
                extra_trim={test: TEST_TRIM},
                subject=s,
            )
    else:
        summaries = fit_encoding_subjects(
            prepared_files=prepared, out_npz=out, **common, **settings
        )
    seconds = time.perf_counter() - t0
    record = {
        "seconds": seconds,
        # steadier than wall time on a machine whose cores other jobs share
        "cpu_seconds": _cpu_seconds() - cpu0,
        "peak_memory_gb": _peak_rss_bytes() / 1e9,
    }
    if summaries:
        ridge = {s: v["fit_seconds"] for s, v in summaries.items()}
        # a shared fit reports its one ridge time to every subject: count it once
        record["ridge_seconds"] = sum(ridge.values()) if variant == "raw" else max(ridge.values())
        record["backend"] = summaries[subjects[0]]["backend"]
        record["score_dtype"] = summaries[subjects[0]]["score_dtype"]
        record["solver"] = summaries[subjects[0]]["solver"]
        record["mean_test_r"] = {s: v["mean_test_r"] for s, v in summaries.items()}
        if variant == "shared" and record["backend"] == "torch_cuda":
            record["peak_gpu_memory_gb"] = summaries[subjects[0]]["peak_memory_bytes"] / 1e9
    return record


def _child(variant: str, workdir: Path, settings: dict, threads: int | None) -> dict:
    cmd = [sys.executable, __file__, "--child", variant, "--workdir", str(workdir)]
    cmd += ["--settings", json.dumps(settings)]
    env = dict(os.environ)
    if threads:
        cmd += ["--threads", str(threads)]
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    load_before = os.getloadavg()[0]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    # other jobs on the machine slow a variant down: say how busy it was
    record["load_average"] = [load_before, os.getloadavg()[0]]
    return record


def _device(backend: str) -> str:
    if backend == "torch_cuda":
        import torch

        return torch.cuda.get_device_name()
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model} ({len(os.sched_getaffinity(0))} cores)"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--score-dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--n-folds", type=int, default=5)
    parser.add_argument("--alphas", type=int, default=15, help="alphas, logspace(2, 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warm", action="store_true", help="leave the inputs in the page cache")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="run the fits this many times, (a) and (b) alternating; the fastest of each counts",
    )
    parser.add_argument("--workdir", help="where the inputs go (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the inputs afterwards")
    parser.add_argument("--json", help="also write the report as JSON to this file")
    parser.add_argument(
        "--threads", type=int, help="torch/OpenMP threads per variant (default: all cores)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:  # one variant, in its own process
        logging.basicConfig(level=logging.WARNING)
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        workdir = Path(args.workdir)
        layout = json.loads((workdir / "layout.json").read_text())
        record = run_variant(args.child, layout, workdir, json.loads(args.settings))
        print(json.dumps(record))
        return

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="study_bench."))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        layout = write_inputs(workdir, args.size, seed=args.seed)
        (workdir / "layout.json").write_text(json.dumps(layout))
        logging.info("inputs written to %s in %.0f s", workdir, time.perf_counter() - t0)
        settings = {
            "delays": list(DELAYS),
            "alphas": np.logspace(2, 8, args.alphas).tolist(),
            "n_folds": args.n_folds,
            "test_extra_trim": TEST_TRIM,
            "backend": args.backend,
            "score_dtype": args.score_dtype,
        }
        raw_files = [p for files in layout["responses"].values() for p in files.values()]
        order = ["raw", "prepare", "shared"] + ["raw", "shared"] * (args.repeats - 1)
        tries: dict[str, list[dict]] = {}
        for variant in order:
            if not args.warm:
                _evict(raw_files + list(map(str, workdir.glob("prepared/*.h5"))))
            logging.info("running %s ...", variant)
            tries.setdefault(variant, []).append(_child(variant, workdir, settings, args.threads))
            logging.info("%s: %.1f s", variant, tries[variant][-1]["seconds"])
        runs = {v: min(t, key=lambda r: r["seconds"]) for v, t in tries.items()}
        for variant, records in tries.items():
            runs[variant]["all_seconds"] = [r["seconds"] for r in records]
        report = _report(args, layout, runs, workdir)
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    _print(report)
    return report


def _report(args, layout, runs, workdir: Path) -> dict:
    subjects = list(layout["responses"])
    max_diff, same_alpha = 0.0, []
    for s in subjects:
        with (
            np.load(workdir / "out" / "raw" / s / "scores.npz") as a,
            np.load(workdir / "out" / "shared" / s / "scores.npz") as b,
        ):
            max_diff = max(max_diff, float(np.max(np.abs(a["test_r"] - b["test_r"]))))
            same_alpha.append(float(np.mean(a["alpha"] == b["alpha"])))
    raw, prep, shared = runs["raw"], runs["prepare"], runs["shared"]
    n_subjects, n_voxels, n_train, n_features, _ = SIZES[args.size]
    return {
        "command": " ".join(["python", *sys.argv]),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "device": _device(raw["backend"]),
        "backend": raw["backend"],
        "score_dtype": raw["score_dtype"],
        "solver": raw["solver"],
        "size": dict(
            n_subjects=n_subjects,
            n_voxels_per_subject=n_voxels,
            n_train=n_train,
            n_test=N_TEST,
            n_features=n_features,
            n_folds=args.n_folds,
            n_alphas=args.alphas,
        ),
        "page_cache": "warm" if args.warm else "evicted before each variant",
        "threads": args.threads or len(os.sched_getaffinity(0)),
        "runs": runs,
        "repeats": args.repeats,
        "speedup_fits": raw["seconds"] / shared["seconds"],
        "speedup_fits_cpu_time": raw["cpu_seconds"] / shared["cpu_seconds"],
        "speedup_including_prepare": raw["seconds"] / (prep["seconds"] + shared["seconds"]),
        "max_abs_test_r_difference": max_diff,
        "same_alpha_fraction": float(np.mean(same_alpha)),
    }


def _print(report: dict) -> None:
    size, runs = report["size"], report["runs"]
    print(
        f"\n{report['device']}, backend {report['backend']} ({report['solver']}, "
        f"{report['score_dtype']} alpha search); {size['n_subjects']} subjects x "
        f"{size['n_voxels_per_subject']} voxels, {size['n_train']} TRs x {size['n_features']} "
        f"features, {size['n_folds']} folds, {size['n_alphas']} alphas; {report['threads']} "
        f"thread(s); page cache {report['page_cache']}"
    )
    print(
        f"{'variant':40s} {'seconds':>8s} {'CPU s':>8s} {'ridge s':>8s} {'peak GB':>8s} "
        f"{'mean test r':>12s} {'load avg':>10s}"
    )
    names = {
        "raw": "(a) per-subject fits, raw HDF5",
        "prepare": "(b) prepare responses (once/subject)",
        "shared": "(b) shared fit, prepared responses",
    }
    for key, label in names.items():
        r = runs[key]
        mean_r = np.mean(list(r["mean_test_r"].values())) if "mean_test_r" in r else np.nan
        ridge = r.get("ridge_seconds", np.nan)
        print(
            f"{label:40s} {r['seconds']:8.1f} {r['cpu_seconds']:8.1f} {ridge:8.1f} "
            f"{r['peak_memory_gb']:8.2f} "
            f"{mean_r:12.6f} {r['load_average'][0]:4.1f}-{r['load_average'][1]:<4.1f}"
        )
    print(
        f"speedup (a)/(b) fits: {report['speedup_fits']:.2f}x wall, "
        f"{report['speedup_fits_cpu_time']:.2f}x CPU time; including the one-time prepare: "
        f"{report['speedup_including_prepare']:.2f}x; max |test r (a) - (b)| "
        f"{report['max_abs_test_r_difference']:.2e}, same alpha {report['same_alpha_fraction']:.4f}"
    )


if __name__ == "__main__":
    main()
