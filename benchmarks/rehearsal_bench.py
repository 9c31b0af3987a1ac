"""Real-size rehearsal: one synthetic ds003020 subject through the workflow's jobs on a CPU.

Issue 20, item 5. The inputs mirror UTS03 of ds003020 3.1.0: its 83 training stories and the
test story ``wheretheressmoke`` as `Study` lists them for ``config/lebel2023.yaml``, each with
its TR count read off the manifest's file size (float64, 95,556 voxels, a 2 kB header: 27,797
training TRs; the test file holds 10 repeats of 291 TRs and their mean). Then, each step in its
own child process, so that its peak memory is its own:

0. ``imports``: the interpreter with torch, himalaya, h5py and the library (a job's floor).
1. ``generate``: the layer file (`fmriscaling.features.io.FeatureWriter`, 1,024 dims) and the
   raw per-story response files (float32 here, half the bytes of ds003020's float64, so that
   the raw and the prepared files fit the disk together), story by story. Responses are a
   rank-20 linear map of the delayed, z-scored features, scaled per voxel (30 % of the voxels
   carry no signal, the others an SNR log-uniform over 0.01-1), plus unit white noise; each
   repeat of the test story has its own noise.
2. ``prepare_responses``: the rule's script (`workflow_scripts/prepare_responses.py`) on every
   story: 10.8 GB of prepared float32 responses at the real size.
3. ``prepare_responses_float64``: the same script on a few real-size float64 stories, as
   ds003020's files are; its time is extrapolated to the subject by bytes.
4. ``fit``: the rule's script (`workflow_scripts/fit_encoding.py`) with the encoding params of
   ``config/lebel2023.yaml`` (15 alphas logspace(2, 8), 5 story folds, the block permutation
   test with 1,000 permutations, which runs inside the fit job), 4 delays x 1,024 dims = 4,096
   features: primal. Threads as Snakemake gives them: the rule's, capped at the cores.
5. ``noise_ceiling``: the rule's script on the test story's repeats.
6. ``significance``: `significance_of` alone on the test story (the planted signal as the
   prediction), for its own time and memory; in the workflow it runs inside the fit job.

Each step records wall time, CPU time and peak RSS (``VmHWM``, sampled through the step, since
a fit resets it when it starts), and sets the peak against the ``mem_mb`` its rule declares
under ``config/lebel2023.yaml`` (read from ``rules/*.smk``; attempt 1). The parent watches the
machine's available memory and stops a step that would exhaust it.

The dual fit at the real width (7,168 dims x 4 delays = 28,672 features, more than the TRs) is
not run: `memory_plan` writes out its memory from the fit's own sizing
(`_RidgeProblem.bytes_per_voxel`, `_score_block`, the CPU share of free memory, LAPACK's
``syevd`` workspace query) against the declared ``mem_mb``; the same plan for the primal fit is
set against the fit's measured peak.

    .venv/bin/python benchmarks/rehearsal_bench.py --size small              # seconds
    .venv/bin/python benchmarks/rehearsal_bench.py --size medium             # ~5 minutes
    .venv/bin/python benchmarks/rehearsal_bench.py --size real --json /tmp/rehearsal.json
                                            # ~25 minutes on 2 cores, 24 GB of disk
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from study_bench import _cpu_seconds, _peak_rss_bytes  # noqa: E402

CONFIGS = (ROOT / "config" / "config.yaml", ROOT / "config" / "lebel2023.yaml")
SUBJECT = "UTS03"  # the subject whose story layout is mirrored
DS003020_VOXELS = 95_556  # UTS03's cortical voxels
HEADER_BYTES = 2048  # of a ds003020 response file: ~ header + 8 x rows x voxels
RANK = 20  # of the planted signal
LAYER = 0


@dataclass(frozen=True)
class Size:
    """One rehearsal size.

    ``layout`` is "ds003020" (UTS03's stories and TR counts) or (n_train_stories, story_trs,
    test_trs) for a small synthetic layout. ``dual_dims`` is the width of the planned dual fit.
    """

    n_voxels: int
    n_dims: int
    layout: str | tuple[int, int, int]
    n_repeats: int = 10
    float64_stories: int = 4
    dual_dims: int = 7168


SIZES = {
    "small": Size(n_voxels=240, n_dims=16, layout=(6, 60, 100), float64_stories=2, dual_dims=128),
    "medium": Size(n_voxels=10_000, n_dims=1024, layout="ds003020"),
    "real": Size(n_voxels=DS003020_VOXELS, n_dims=1024, layout="ds003020", float64_stories=6),
}
STEPS = (
    "imports",
    "generate",
    "prepare_responses",
    "prepare_responses_float64",
    "fit",
    "noise_ceiling",
    "significance",
)
#: the workflow script behind each step (its rule's mem_mb is the declaration)
STEP_SCRIPTS = {
    "prepare_responses": "prepare_responses",
    "prepare_responses_float64": "prepare_responses",
    "fit": "fit_encoding",
    "noise_ceiling": "noise_ceiling",
    "significance": "fit_encoding",  # the permutation test runs inside the fit job
}
#: a step is stopped when the machine's available memory falls below this
MIN_AVAILABLE_BYTES = 700 * 2**20

logger = logging.getLogger("rehearsal")


# ------------------------------------------------------------------------------ the study


def study():
    """The real study's `Study` (``config/lebel2023.yaml`` over the demo config), no data."""
    from fmriscaling.workflow import Study, load_config

    return Study(load_config(CONFIGS), ROOT, check_data=False)


def make_layout(size: Size) -> dict[str, Any]:
    """Stories, raw TR counts and the test story's repeats of the rehearsal subject."""
    st = study()
    test = st.test_story
    if size.layout == "ds003020":
        train = st.train_stories(SUBJECT)
        rows = {}
        for story, n_bytes in st.manifest_sizes(SUBJECT).items():
            # HDF5 headers: 2 kB, a little more in the test file (two datasets)
            n, rest = divmod(n_bytes, 8 * DS003020_VOXELS)
            if not HEADER_BYTES <= rest < 2 * HEADER_BYTES:
                raise ValueError(f"{story}: {n_bytes} bytes are not whole float64 rows")
            rows[story] = n
        # the test file holds the repeats and their mean, each of the same TRs
        test_rows, rest = divmod(rows[test], size.n_repeats + 1)
        if rest:
            raise ValueError(f"{test}: {rows[test]} rows are not {size.n_repeats} repeats + mean")
        subject = SUBJECT
    else:
        n_stories, story_trs, test_rows = size.layout
        train = [f"story{i:02d}" for i in range(n_stories)]
        rows = {s: story_trs + 7 * (i % 3) for i, s in enumerate(train)}
        subject = "S1"
    return {
        "subject": subject,
        "train_stories": list(train),
        "test_story": test,
        "raw_rows": {s: int(rows[s]) for s in train},
        "test_rows": int(test_rows),
        "n_repeats": size.n_repeats,
        "n_voxels": size.n_voxels,
        "n_dims": size.n_dims,
        "float64_stories": list(train[: size.float64_stories]),
        "test_extra_trim": int(st.config["encoding"]["test_extra_trim"]),
        "delays": [int(d) for d in st.config["encoding"]["delays"]],
    }


def paths(workdir: Path, layout: dict) -> dict[str, Any]:
    subject = layout["subject"]
    stories = [*layout["train_stories"], layout["test_story"]]
    return {
        "features": workdir / "features",
        "raw": {s: workdir / "raw" / subject / f"{s}.hf5" for s in stories},
        "raw64": {s: workdir / "raw64" / subject / f"{s}.hf5" for s in layout["float64_stories"]},
        "prepared": workdir / "prepared" / f"{subject}.h5",
        "prepared64": workdir / "prepared64" / f"{subject}.h5",
        "scores": workdir / "out" / subject / "scores.npz",
        "noise_ceiling": workdir / "out" / subject / "noise_ceiling.npz",
        "test_signal": workdir / "truth" / "test_signal.npy",
        "logs": workdir / "logs",
        "records": workdir / "records",
    }


def disk_needed(layout: dict) -> int:
    """Bytes the rehearsal writes: raw float32, the float64 sample, prepared, features."""
    v, rows = layout["n_voxels"], layout["raw_rows"]
    train = sum(rows.values())
    test = layout["test_rows"]
    raw = 4 * v * (train + test * (layout["n_repeats"] + 1))
    sample = 8 * v * sum(rows[s] for s in layout["float64_stories"])
    prepared = 4 * v * (train + test - layout["test_extra_trim"])
    features = 4 * layout["n_dims"] * (train + test)
    return raw + sample + prepared + features + 4 * v * test


# ------------------------------------------------------------------------- the inputs


def write_inputs(workdir: Path, layout: dict, seed: int = 0) -> dict[str, Any]:
    """The layer file and the raw response files, one story at a time (see the docstring)."""
    import h5py

    from fmriscaling.encoding.design import delay_matrix, zscore
    from fmriscaling.features.io import FeatureWriter

    p = paths(workdir, layout)
    rng = np.random.default_rng(seed)
    v, n_dims, delays = layout["n_voxels"], layout["n_dims"], layout["delays"]
    trim = layout["test_extra_trim"]
    # power-law spectrum: the first dims carry most of the signal, as in a real layer
    scales = (np.arange(1, n_dims + 1, dtype=np.float32) ** -0.6).astype(np.float32)
    basis = rng.standard_normal((n_dims * len(delays), RANK), dtype=np.float32)
    basis *= np.tile(scales, len(delays))[:, None]
    basis /= np.linalg.norm(basis, axis=0)  # each component of unit variance
    snr = np.exp(rng.uniform(np.log(0.01), np.log(1.0), v))
    snr[rng.random(v) < 0.3] = 0.0
    mixing = rng.standard_normal((RANK, v), dtype=np.float32) / np.float32(np.sqrt(RANK))
    mixing *= np.sqrt(snr).astype(np.float32)

    def story_signal(story: str, n_trs: int) -> np.ndarray:
        x = rng.standard_normal((n_trs, n_dims), dtype=np.float32)
        x[1:] += 0.5 * x[:-1]
        writer.write_story(story, (x * scales)[None])
        return (delay_matrix(zscore(x), delays) @ basis) @ mixing

    start = time.perf_counter()
    stories = layout["train_stories"]
    with FeatureWriter(p["features"], n_layers=0, model_name="synthetic") as writer:
        for i, story in enumerate(stories):
            y = story_signal(story, layout["raw_rows"][story])
            y += rng.standard_normal(y.shape, dtype=np.float32)
            p["raw"][story].parent.mkdir(parents=True, exist_ok=True)
            with h5py.File(p["raw"][story], "w") as f:
                f["data"] = y
            if story in p["raw64"]:
                p["raw64"][story].parent.mkdir(parents=True, exist_ok=True)
                with h5py.File(p["raw64"][story], "w") as f:
                    f["data"] = y.astype(np.float64)  # as ds003020 stores them
            del y
            if (i + 1) % 10 == 0 or i + 1 == len(stories):
                _progress("generate", i + 1, len(stories) + 1, start)
        test = layout["test_story"]
        signal = story_signal(test, layout["test_rows"])
        n_rep = layout["n_repeats"]
        total = np.zeros(signal.shape, dtype=np.float64)
        with h5py.File(p["raw"][test], "w") as f:
            repeats = f.create_dataset("individual_repeats", (n_rep, *signal.shape), np.float32)
            for r in range(n_rep):
                rep = signal + rng.standard_normal(signal.shape, dtype=np.float32)
                repeats[r] = rep
                total += rep
            f["data"] = (total / n_rep).astype(np.float32)
        del total
    p["test_signal"].parent.mkdir(parents=True, exist_ok=True)
    np.save(p["test_signal"], signal[trim:])
    _progress("generate", len(stories) + 1, len(stories) + 1, start)
    return {"fraction_signal_voxels": float(np.mean(snr > 0)), "median_snr": float(np.median(snr))}


def _progress(step: str, done: int, total: int, start: float) -> None:
    elapsed = time.perf_counter() - start
    left = elapsed * (total - done) / max(done, 1)
    logger.info("%s: %d/%d in %.0f s, about %.0f s left", step, done, total, elapsed, left)


# ------------------------------------------------------------------- the workflow's scripts


class _Named(list):
    """A Snakemake ``Namedlist`` for a script: items by position and by name, ``items()``."""

    def __init__(self, items=(), **named):
        super().__init__(items if items else named.values())
        self._named = dict(named)
        self.__dict__.update(named)

    def items(self):
        return self._named.items()


@dataclass
class _Job:
    """What a workflow script reads of ``snakemake``: input, output, params, log, threads."""

    input: _Named
    output: _Named
    params: _Named
    log: list
    threads: int


def _script(name: str):
    """A workflow script as a module (its ``main(snakemake)`` is what the rule runs)."""
    path = ROOT / "workflow_scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"workflow_scripts_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rule_threads(script: str, cores: int) -> int:
    """Threads of the rule that runs ``script``, capped at the cores as Snakemake caps them."""
    block = _rule_block(script)
    m = re.search(r"threads: (.+)", block)
    expr = m.group(1).strip() if m else "1"
    if expr.isdigit():
        return min(int(expr), cores)
    m = re.fullmatch(r'config\["compute"\]\["(\w+)"\]', expr)
    if not m:
        raise ValueError(f"threads of the rule of {script}.py: cannot read {expr!r}")
    return min(int(study().config["compute"][m.group(1)]), cores)


def declared_mem_mb(script: str) -> tuple[str, int]:
    """``mem_mb`` (attempt 1) of the rule that runs ``script``, under ``config/lebel2023.yaml``:
    the expression in ``rules/*.smk`` and its value."""
    block = _rule_block(script)
    m = re.search(r"mem_mb=(.+?),?\n", block)
    if not m:
        raise ValueError(f"the rule of {script}.py declares no mem_mb")
    expr = m.group(1).strip()
    if key := re.fullmatch(r'per_attempt\("(\w+)"\)', expr):
        return expr, int(study().config["compute"][key.group(1)])
    if value := re.fullmatch(r"lambda wildcards, attempt: attempt \* ([\d_]+)", expr):
        return expr, int(value.group(1).replace("_", ""))
    raise ValueError(f"mem_mb of the rule of {script}.py: cannot read {expr!r}")


def _rule_block(script: str) -> str:
    """The text of the rule whose ``script:`` is ``script``, from its ``rule`` line."""
    target = f'"../workflow_scripts/{script}.py"'
    for smk in sorted((ROOT / "rules").glob("*.smk")):
        text = smk.read_text()
        end = text.find(target)
        if end >= 0:
            starts = [m.start() for m in re.finditer(r"^\s*rule\b", text[:end], re.M)]
            return text[starts[-1] : end]
    raise ValueError(f"no rule runs workflow_scripts/{script}.py")


# ------------------------------------------------------------------------------ the steps


def run_step(step: str, workdir: Path) -> dict[str, Any]:
    """One step in this process; returns what it found (the parent adds time and memory)."""
    layout = json.loads((workdir / "layout.json").read_text())
    p = paths(workdir, layout)
    subject, test = layout["subject"], layout["test_story"]
    train = layout["train_stories"]
    log = str(p["logs"] / f"{step}.log")
    cores = len(os.sched_getaffinity(0))
    if step == "imports":  # what a job's interpreter holds before it reads anything
        import h5py  # noqa: F401
        import himalaya.backend  # noqa: F401
        import torch  # noqa: F401

        import fmriscaling.encoding.fit
        import fmriscaling.encoding.noise_ceiling
        import fmriscaling.encoding.prepared
        import fmriscaling.encoding.ridge  # noqa: F401

        return {}
    if step == "generate":
        return write_inputs(workdir, layout)
    if step in ("prepare_responses", "prepare_responses_float64"):
        raw, out = (p["raw"], p["prepared"]) if step == "prepare_responses" else (
            p["raw64"], p["prepared64"])  # fmt: skip
        stories = [s for s in [*train, test] if s in raw]
        job = _Job(
            input=_Named(responses=[str(raw[s]) for s in stories]),
            output=_Named([str(out)]),
            params=_Named(
                subject=subject,
                stories=stories,
                test_story=test,
                test_extra_trim=layout["test_extra_trim"],
                # the manifest's sizes are those of float64 files: these files' own sizes
                expected_sizes={s: raw[s].stat().st_size for s in stories},
            ),
            log=[log],
            threads=rule_threads("prepare_responses", cores),
        )
        _script("prepare_responses").main(job)
        return {
            "n_stories": len(stories),
            "raw_gb": sum(raw[s].stat().st_size for s in stories) / 1e9,
            "prepared_gb": out.stat().st_size / 1e9,
        }
    if step == "fit":
        job = _Job(
            input=_Named(features=str(p["features"]), responses=[str(p["prepared"])]),
            output=_Named(
                scores=[str(p["scores"])], summary=[str(p["scores"].with_suffix(".json"))]
            ),
            params=_Named(
                layer=LAYER,
                subjects=[subject],
                train_stories=train,
                encoding=study().encoding_params(),
            ),
            log=[log],
            threads=rule_threads("fit_encoding", cores),
        )
        _script("fit_encoding").main(job)
        summary = json.loads(p["scores"].with_suffix(".json").read_text())
        batches = re.findall(r"in batches of (\d+)", Path(log).read_text())
        keys = (
            "n_train_trs", "n_test_trs", "n_voxels", "n_features", "solver", "backend",
            "score_dtype", "fit_seconds", "mean_test_r", "median_test_r", "median_alpha",
            "n_significant", "fraction_significant", "permutation_seconds",
        )  # fmt: skip
        return {
            **{k: summary[k] for k in keys},
            "threads": job.threads,
            "batch_size": int(batches[-1]) if batches else None,
            "mean_test_r_signal_voxels": _signal_voxel_r(p),
        }
    if step == "noise_ceiling":
        st = study()
        job = _Job(
            input=_Named(repeats=str(p["raw"][test])),
            output=_Named([str(p["noise_ceiling"])]),
            params=_Named(
                test_extra_trim=layout["test_extra_trim"], floor=st.config["noise_ceiling"]["floor"]
            ),
            log=[log],
            threads=rule_threads("noise_ceiling", cores),
        )
        _script("noise_ceiling").main(job)
        with np.load(p["noise_ceiling"]) as nc:
            valid = nc["valid"]
            return {
                "n_valid": int(valid.sum()),
                "median_cc_max": float(np.median(nc["cc_max"][valid])) if valid.any() else None,
            }
    if step == "significance":
        from fmriscaling._utils import limit_threads
        from fmriscaling.encoding.prepared import open_prepared
        from fmriscaling.encoding.significance import significance_of

        limit_threads(rule_threads("fit_encoding", cores))
        with open_prepared(p["prepared"]) as prepared:
            resp = prepared.read(test)
        pred = np.load(p["test_signal"])
        out = significance_of(pred, resp, study().config["statistics"], device="cpu")
        keys = ("n_significant", "fraction_significant", "n_permutations", "block_trs")
        return {k: out[k] for k in keys} | {"n_test_trs": int(resp.shape[0])}
    raise ValueError(f"unknown step {step!r}")


def _signal_voxel_r(p: dict) -> float:
    """Mean test r of the voxels the planted signal drives (its test signal is not constant)."""
    signal = np.load(p["test_signal"], mmap_mode="r")
    driven = np.asarray(signal.std(axis=0) > 0)
    with np.load(p["scores"]) as scores:
        return float(scores["test_r"][driven].mean())


# ------------------------------------------------------------------------- the memory plan


class _Shape:
    """An array as `bytes_per_voxel` reads it: its shape only."""

    def __init__(self, *shape: int):
        self.shape = shape


def memory_plan(
    *,
    story_lengths: list[int],
    n_test: int,
    n_voxels: int,
    n_dims: int,
    n_raw_trs: int,
    settings: dict[str, Any],
    backend: str = "torch",
    free_bytes: float,
    baseline_bytes: float = 0.0,
) -> dict[str, Any]:
    """Memory of one fit job (one subject) from the fit's own sizing, in bytes.

    The shapes of what `fmriscaling.encoding.eigen._RidgeProblem` keeps come from the folds
    `cv_folds` makes of ``story_lengths``; the voxel batch from `_RidgeProblem.bytes_per_voxel`
    (called on a stand-in holding those shapes), `_score_block` and ``free_bytes``, which is
    what `fmriscaling.encoding.backend._free_memory_bytes` returns when the batch is sized
    (the budget); each ``eigh``'s workspace from LAPACK's own ``ssyevd`` workspace query (torch
    runs ``syevd`` on CPUs: the decomposition holds its input, its output and that workspace).

    Phases (the peak is the largest):

    * ``design``: the layer's features, the delayed per-story parts and X (``build_design``
      concatenates the parts);
    * ``fold_eigh``: X, the Gram, the folds already kept, the training block of the last
      fold and its ``eigh`` (output and workspace);
    * ``full_eigh``: X, the Gram, every fold and the ``eigh`` of the full Gram;
    * ``batches``: X, every fold (with its bfloat16 eigenvectors when the alpha search is
      bfloat16), the full eigenvectors, the test map, the per-voxel results and one batch;
    * ``scoring``: that, and a fold's stacked shrunk maps of `_cv_scores_fold` (on CPUs all
      alphas at once, float32 and then its bfloat16 copy, or one block's predictions), which
      ``bytes_per_voxel`` leaves out: they do not grow with the batch.
    """
    import torch
    from scipy.linalg import lapack

    from fmriscaling.encoding.backend import resolve_score_dtype
    from fmriscaling.encoding.eigen import _ALPHA_CHUNK, _Eig, _RidgeProblem
    from fmriscaling.encoding.folds import cv_folds
    from fmriscaling.encoding.ridge import _score_block

    f32 = 4
    delays = len(settings["delays"])
    n = int(sum(story_lengths))
    p = n_dims * delays
    solver = "primal" if n >= p else "dual"
    n_alphas = len(settings["alphas"])
    score_dtype = resolve_score_dtype(settings["score_dtype"], backend)
    low = score_dtype == "bfloat16"
    folds = cv_folds(story_lengths, cv=settings["cv"], n_folds=settings["n_folds"])
    sizes = [(len(train), len(val)) for train, val in folds]

    def eigh_bytes(r: int) -> int:  # output + LAPACK workspace (float and integer)
        lwork, liwork, _ = lapack.ssyevd_lwork(r)
        return f32 * (r * r + int(lwork) + int(liwork))

    problem = object.__new__(_RidgeProblem)
    problem.solver, problem.n_samples, problem.n_features = solver, n, p
    problem.low = torch.bfloat16 if low else None
    if solver == "dual":
        problem.folds = [_Eig(_Shape(t), None, val_map_c=_Shape(m, t)) for t, m in sizes]
        problem.full = _Eig(_Shape(n), None)
        problem.test_map = _Shape(n_test, n)
    else:
        problem.folds = [_Eig(_Shape(p), None, val_map_c=_Shape(m, p)) for _, m in sizes]
        problem.full = _Eig(_Shape(p), None)
        problem.test_map = _Shape(n_test, p)
    block = _score_block(backend)
    per_voxel = problem.bytes_per_voxel(n_alphas, False, False, block)
    batch = int(np.clip(free_bytes // per_voxel, 1, n_voxels))

    x = f32 * n * p
    x_test = f32 * n_test * p
    gram_side = p if solver == "primal" else n
    gram = f32 * gram_side**2
    if solver == "dual":
        kept = [f32 * (t * t + m * t + t) for t, m in sizes]  # vecs, centred val map, lam
        low_vecs = [2 * t * t for t, _ in sizes] if low else [0] * len(sizes)
        t_last, _ = sizes[-1]
        # gram[tr][:, tr]: the rows, then the block (the rows freed); the block enters eigh
        fold_peak = f32 * t_last**2 + max(f32 * t_last * n, eigh_bytes(t_last))
        test_map = f32 * 2 * n_test * n  # X_test Xᵀ, then its product with the eigenvectors
    else:
        # vecs, centred val map, x_val (the rows the primal downdate subtracts), lam
        kept = [f32 * (p * p + 2 * m * p + p) for _, m in sizes]
        low_vecs = [2 * p * p] * len(sizes) if low else [0] * len(sizes)
        fold_peak = gram + eigh_bytes(p)  # the training Gram, then its eigh
        test_map = f32 * n_test * p
    results = f32 * n_voxels * (3 * n_test + n_alphas + 3)  # Y_test, test_pred, scores, ...
    # _cv_scores_fold: all alphas' shrunk maps stacked (n_alphas x n_val, r), when the voxels
    # go in blocks smaller than the batch (CPUs), else _ALPHA_CHUNK of them; then the blocks
    rank = max(t for t, _ in sizes) if solver == "dual" else p
    n_val = max(m for _, m in sizes)
    chunk = n_alphas if block is not None and block < batch else min(n_alphas, _ALPHA_CHUNK)
    stacked = f32 * chunk * n_val * rank
    stacked_low = stacked // 2 if low else 0
    # a block's predictions: the GEMM's output (bfloat16), in float32, times y_c
    pred_block = chunk * n_val * min(block or batch, batch) * (2 * f32 + (2 if low else 0))
    scoring = max(stacked + stacked_low, stacked_low + pred_block)
    layers = f32 * n_raw_trs * n_dims
    components = {
        "X (design)": x + x_test,
        "Gram" if solver == "primal" else "kernel K": gram,
        "eigh workspace (full)": eigh_bytes(gram_side),
        "folds kept (eigenvectors, maps)": sum(kept),
        "folds' bfloat16 eigenvectors": sum(low_vecs),
        "full eigenvectors": f32 * (gram_side**2 + gram_side),
        "test map": test_map,
        "per-voxel results": results,
        "one batch": batch * per_voxel,
        "a fold's stacked shrunk maps (scoring)": scoring,
    }
    phases = {
        "design": layers + 2 * x + x_test,
        "fold_eigh": x + x_test + gram + sum(kept[:-1]) + fold_peak,
        "full_eigh": x + x_test + gram + sum(kept) + eigh_bytes(gram_side),
        "batches": x + x_test + sum(kept) + sum(low_vecs) + f32 * (gram_side**2 + gram_side)
        + test_map + results + batch * per_voxel,
    }  # fmt: skip
    phases["scoring"] = phases["batches"] + scoring
    phases = {k: v + baseline_bytes for k, v in phases.items()}
    peak_phase = max(phases, key=phases.get)
    return {
        "solver": solver,
        "backend": backend,
        "score_dtype": score_dtype,
        "n_train_trs": n,
        "n_features": p,
        "n_voxels": n_voxels,
        "n_test_trs": n_test,
        "fold_sizes": sizes,
        "bytes_per_voxel": per_voxel,
        "free_bytes": int(free_bytes),
        "batch_size": batch,
        "n_batches": -(-n_voxels // batch),
        "score_block": block,
        "baseline_bytes": int(baseline_bytes),
        "components": {k: int(v) for k, v in components.items()},
        "phases": {k: int(v) for k, v in phases.items()},
        "peak_phase": peak_phase,
        "peak_bytes": int(phases[peak_phase]),
    }


def batch_budget(total_bytes: float, resident_bytes: float) -> float:
    """What `_free_memory_bytes` gives a CPU fit's batches when ``total_bytes`` are the job's
    (its memory limit) and ``resident_bytes`` are in use when the batch is sized."""
    from fmriscaling.encoding.backend import _CPU_MEMORY_FRACTION

    return max(0.0, total_bytes - resident_bytes) * _CPU_MEMORY_FRACTION


def plan_for_job(*, mem_bytes: float, **kwargs) -> dict[str, Any]:
    """`memory_plan` inside a job of ``mem_bytes``: the batch budget is the CPU share of what
    the job has left once the fit's fixed arrays are resident (found by fixed point)."""
    plan = memory_plan(free_bytes=0, **kwargs)
    # when the batch is sized, the folds' bfloat16 copies are not made yet
    resident = plan["phases"]["batches"] - plan["components"]["one batch"]
    resident -= plan["components"]["folds' bfloat16 eigenvectors"]
    return memory_plan(free_bytes=batch_budget(mem_bytes, resident), **kwargs)


# ------------------------------------------------------------------------- the children


def _child_main(step: str, workdir: Path) -> None:
    """Run one step here; write its record (result, times, peak RSS) for the parent."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    peak = [0]
    stop = threading.Event()

    def sample() -> None:  # a fit resets VmHWM when it starts: keep the earlier peak
        while not stop.wait(0.02):
            peak[0] = max(peak[0], _peak_rss_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    result = run_step(step, workdir)
    seconds = time.perf_counter() - t0
    stop.set()
    sampler.join()
    record = {
        "wall_s": seconds,
        "cpu_s": _cpu_seconds(),
        "peak_rss_bytes": max(peak[0], _peak_rss_bytes()),
        "result": result,
    }
    out = workdir / "records" / f"{step}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record))


def _available_bytes() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def run_child(step: str, workdir: Path) -> dict[str, Any]:
    """One step in a fresh process, watched: the machine's lowest available memory is kept,
    and the step is stopped before it exhausts the machine."""
    cmd = [sys.executable, __file__, "--child", step, "--workdir", str(workdir)]
    load = os.getloadavg()[0]
    lowest = _available_bytes()
    proc = subprocess.Popen(cmd)
    killed = False
    while proc.poll() is None:
        time.sleep(0.5)
        available = _available_bytes()
        lowest = min(lowest, available)
        if available < MIN_AVAILABLE_BYTES:
            proc.kill()  # this process's own child: better a finding than a frozen machine
            killed = True
    proc.wait()
    if killed:
        raise RuntimeError(
            f"step {step} stopped: the machine had less than "
            f"{MIN_AVAILABLE_BYTES / 2**20:.0f} MiB available"
        )
    if proc.returncode != 0:
        raise RuntimeError(f"step {step} failed (exit {proc.returncode}); its log is above")
    record = json.loads((workdir / "records" / f"{step}.json").read_text())
    record["load_average"] = [load, os.getloadavg()[0]]
    record["min_available_gb"] = lowest / 1e9
    return record


def _machine() -> dict[str, Any]:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import psutil

    return {
        "cpu": model,
        "cores": len(os.sched_getaffinity(0)),
        "ram_gb": psutil.virtual_memory().total / 1e9,
    }


# ---------------------------------------------------------------------------------- main


def main(argv=None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--json", help="also write the report as JSON to this file")
    parser.add_argument(
        "--workdir", help="where the big files go: a temporary folder is made in it (default /tmp)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the files afterwards")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child_main(args.child, Path(args.workdir))
        return {}

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    size = SIZES[args.size]
    layout = make_layout(size)
    parent = Path(args.workdir or tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    need = disk_needed(layout)
    free = shutil.disk_usage(parent).free
    if need + 2e9 > free:
        raise SystemExit(
            f"the rehearsal writes {need / 1e9:.1f} GB but {parent} has {free / 1e9:.1f} GB "
            "free (2 GB kept spare); give --workdir on a larger disk"
        )
    workdir = Path(tempfile.mkdtemp(prefix="rehearsal.", dir=parent))
    logger.info(
        "%s: %d training stories (%d TRs) + %s (%d TRs x %d repeats), %d voxels, %d dims; "
        "%.1f GB in %s",
        args.size,
        len(layout["train_stories"]),
        sum(layout["raw_rows"].values()),
        layout["test_story"],
        layout["test_rows"],
        layout["n_repeats"],
        layout["n_voxels"],
        layout["n_dims"],
        need / 1e9,
        workdir,
    )
    (workdir / "layout.json").write_text(json.dumps(layout))
    steps: dict[str, dict] = {}
    try:
        for step in STEPS:
            logger.info("step %s ...", step)
            steps[step] = run_child(step, workdir)
            record = steps[step]
            if step in STEP_SCRIPTS:
                expr, mem_mb = declared_mem_mb(STEP_SCRIPTS[step])
                record.update(rule_script=STEP_SCRIPTS[step], mem_mb_expr=expr)
                record["declared_mem_mb"] = mem_mb
                record["fits_declared"] = record["peak_rss_bytes"] <= mem_mb * 2**20
            logger.info(
                "step %s: %.1f s wall, %.1f s CPU, peak RSS %.2f GB",
                step,
                record["wall_s"],
                record["cpu_s"],
                record["peak_rss_bytes"] / 1e9,
            )
        report = _report(args, size, layout, steps, workdir)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    _print(report)
    return report


def _report(args, size: Size, layout: dict, steps: dict, workdir: Path) -> dict[str, Any]:
    st = study()
    settings = st.encoding_params()
    machine = _machine()
    ram = machine["ram_gb"] * 1e9
    for record in steps.values():
        record["fits_machine"] = record["peak_rss_bytes"] <= ram
    # the subject's raw files in float64 (as ds003020's) are twice the float32 ones
    sample = steps["prepare_responses_float64"]
    subject_gb = 2 * steps["prepare_responses"]["result"]["raw_gb"]
    sample["result"]["subject_float64_gb"] = subject_gb
    sample["result"]["extrapolated_subject_s"] = (
        sample["wall_s"] * subject_gb / sample["result"]["raw_gb"]
    )
    lengths = [layout["raw_rows"][s] for s in layout["train_stories"]]
    n_raw = sum(lengths) + layout["test_rows"]
    n_test = layout["test_rows"] - layout["test_extra_trim"]
    common = dict(
        story_lengths=lengths,
        n_test=n_test,
        n_voxels=layout["n_voxels"],
        n_raw_trs=n_raw,
        settings=settings,
        baseline_bytes=steps["imports"]["peak_rss_bytes"],
    )
    fit = steps["fit"]
    # the primal fit that ran, planned with the batch it chose: the plan's check
    primal = memory_plan(n_dims=layout["n_dims"], free_bytes=0, **common)
    primal = memory_plan(
        n_dims=layout["n_dims"],
        free_bytes=fit["result"]["batch_size"] * primal["bytes_per_voxel"],
        **common,
    )
    primal["measured_peak_bytes"] = fit["peak_rss_bytes"]
    _, ridge_mb = declared_mem_mb("fit_encoding")
    mem = ridge_mb * 2**20
    # the batch budget: a share of what the job has left under its limit (the sizing sees
    # the job's limit since this rehearsal), of a 256 GB node's free memory (what it saw
    # before: the host's), of this machine's
    dual = {
        "declared_mem_mb": ridge_mb,
        "job": plan_for_job(mem_bytes=mem, n_dims=size.dual_dims, **common),
        "node_256gb_no_limit": plan_for_job(mem_bytes=256e9, n_dims=size.dual_dims, **common),
        "this_machine": plan_for_job(mem_bytes=ram, n_dims=size.dual_dims, **common),
    }
    for name in ("job", "node_256gb_no_limit", "this_machine"):
        dual[name]["fits_declared"] = dual[name]["peak_bytes"] <= mem
        dual[name]["fits_machine"] = dual[name]["peak_bytes"] <= ram
    return {
        "command": " ".join(["python", *sys.argv]),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine,
        "size": {"name": args.size, **asdict(size)},
        "layout": {
            "subject": layout["subject"],
            "n_train_stories": len(layout["train_stories"]),
            "n_train_trs": sum(lengths),
            "test_story": layout["test_story"],
            "test_rows": layout["test_rows"],
            "n_test_trs": n_test,
            "n_repeats": layout["n_repeats"],
            "n_voxels": layout["n_voxels"],
            "n_features": layout["n_dims"] * len(layout["delays"]),
        },
        "encoding": settings,
        "steps": steps,
        "primal_plan": primal,
        "dual_plan": dual,
    }


def _print(report: dict) -> None:
    lay, m = report["layout"], report["machine"]
    print(
        f"\n{m['cpu']}, {m['cores']} cores, {m['ram_gb']:.1f} GB; {lay['n_train_stories']} "
        f"stories, {lay['n_train_trs']} training TRs, {lay['n_test_trs']} test TRs "
        f"({lay['n_repeats']} repeats), {lay['n_voxels']} voxels, {lay['n_features']} features"
    )
    print(f"{'step':28s} {'wall s':>8s} {'CPU s':>8s} {'peak GB':>8s} {'mem_mb':>7s} fits")
    for step, r in report["steps"].items():
        declared = r.get("declared_mem_mb")
        fits = "" if declared is None else ("yes" if r["fits_declared"] else "NO")
        print(
            f"{step:28s} {r['wall_s']:8.1f} {r['cpu_s']:8.1f} "
            f"{r['peak_rss_bytes'] / 1e9:8.2f} {declared or '':>7} {fits}"
        )
    fit = report["steps"]["fit"]["result"]
    print(
        f"fit: {fit['solver']} {fit['backend']} {fit['score_dtype']}, batches of "
        f"{fit['batch_size']}, mean test r {fit['mean_test_r']:.4f} (signal voxels "
        f"{fit['mean_test_r_signal_voxels']:.4f}), {fit['n_significant']} significant"
    )
    primal = report["primal_plan"]
    print(
        f"primal plan: peak {primal['peak_bytes'] / 1e9:.2f} GB ({primal['peak_phase']}), "
        f"measured {primal['measured_peak_bytes'] / 1e9:.2f} GB"
    )
    for name, plan in report["dual_plan"].items():
        if name == "declared_mem_mb":
            continue
        print(
            f"dual plan ({name}): {plan['n_features']} features, batches of "
            f"{plan['batch_size']}, peak {plan['peak_bytes'] / 1e9:.1f} GB "
            f"({plan['peak_phase']}) against {report['dual_plan']['declared_mem_mb']} MB"
        )


if __name__ == "__main__":
    main()
