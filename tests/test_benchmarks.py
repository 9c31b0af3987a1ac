"""The ridge benchmark's baseline is a correct bootstrap ridge and its report is complete.

Speed is not asserted here (it belongs to benchmarks/RESULTS.md); these tests check that the
numbers the benchmark compares are computed from equal settings.
"""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from fmriscaling.cost import ridge_flops
from fmriscaling.encoding.folds import bootstrap_chunk_folds
from fmriscaling.encoding.ridge import alphas_from_companion, fit_ridge_cv

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "ridge_bench.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("ridge_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_baseline_equals_our_float32_fit_on_the_same_folds(bench):
    X, Y, X_test, Y_test = bench.make_data(300, 400, 200, 60, rank=5)
    companion = np.logspace(1, 4, 7)
    folds = bootstrap_chunk_folds(300, n_boots=3, chunk_len=20, n_chunks=3, random_state=0)
    base = bench.bootstrap_ridge_baseline(X, Y, X_test, Y_test, companion, folds)
    ours = fit_ridge_cv(
        X,
        Y,
        alphas=alphas_from_companion(companion),
        folds=folds,
        X_test=X_test,
        Y_test=Y_test,
        backend="numpy",
    )
    # the same per-voxel CV curves: where the alphas differ, they are tied (the curves of
    # low-SNR voxels plateau at large alpha, where ties break either way)
    grid = alphas_from_companion(companion).astype(np.float32)
    i_ours = np.searchsorted(grid, ours.alphas)
    i_base = np.searchsorted(grid, alphas_from_companion(base["alphas"]).astype(np.float32))
    voxels = np.arange(Y.shape[1])
    gap = ours.cv_scores_all[i_ours, voxels] - ours.cv_scores_all[i_base, voxels]
    assert np.all(gap >= 0) and np.all(gap < 2e-5)
    assert (i_ours == i_base).mean() > 0.5
    np.testing.assert_allclose(base["cv_scores"], ours.cv_scores, atol=2e-5)
    same = i_ours == i_base
    np.testing.assert_allclose(base["test_r"][same], ours.test_r[same], atol=1e-4)


@pytest.mark.parametrize(
    ("n", "p", "fold_kind"),
    [(100, 200, "halves"), (200, 50, "halves"), (200, 50, "bootstrap"), (120, 300, "bootstrap")],
    ids=["dual", "primal", "primal-bootstrap", "dual-bootstrap"],
)
def test_flop_count_matches_what_the_fit_runs(bench, monkeypatch, n, p, fold_kind):
    """The cost model's count (fmriscaling.cost.ridge_flops, the benchmark's too) against the
    GEMMs torch counts and the eigh calls the fit makes."""
    import himalaya.backend.torch as torch_backend
    from torch.utils.flop_counter import FlopCounterMode

    v, n_test, n_alphas = 10, 5, 3
    if fold_kind == "halves":
        h = n // 2
        folds = [(np.arange(h, n), np.arange(h)), (np.arange(h), np.arange(h, n))]
    else:  # held-out chunks: train and validation do not cover every TR
        folds = [
            (np.arange(40, n - 20), np.arange(20)),
            (np.arange(0, n - 60), np.arange(n - 40, n)),
        ]
    X, Y, X_test, Y_test = bench.make_data(n, p, v, n_test, rank=5)
    eigh_sizes = []
    eigh = torch_backend.eigh

    def counting_eigh(a, *args, **kwargs):
        eigh_sizes.append(a.shape[-1])
        return eigh(a, *args, **kwargs)

    monkeypatch.setattr(torch_backend, "eigh", counting_eigh)
    with FlopCounterMode(display=False) as counter:
        fit_ridge_cv(
            X,
            Y,
            alphas=np.logspace(0, 2, n_alphas),
            folds=folds,
            X_test=X_test,
            Y_test=Y_test,
            backend="torch",
            score_dtype="float32",
        )
    assert len(eigh_sizes) == len(folds) + 1
    # the benchmark counts an eigh of an r x r matrix as 9 r³
    measured = counter.get_total_flops() + sum(9 * r**3 for r in eigh_sizes)
    assert bench.ours_flops(n, p, v, n_test, folds, n_alphas) == measured
    split = ridge_flops(n, p, v, n_test, [(len(t), len(w)) for t, w in folds], n_alphas)
    assert split.gemm == counter.get_total_flops()
    assert split.eigh == sum(9 * r**3 for r in eigh_sizes)


def test_small_run_reports_every_fit(bench, tmp_path, monkeypatch):
    monkeypatch.setitem(bench.SIZES, "small", (200, 150, 300, 40, 40))
    out = tmp_path / "bench.json"
    bench.main(["--size", "small", "--json", str(out)])
    report = json.loads(out.read_text())
    fits = [k for k in report if k.startswith("ours_")]
    assert sorted(fits) == sorted(
        f"ours_{kind}_folds{suffix}"
        for kind in ("story", "bootstrap")
        for suffix in ("", "_bfloat16")
    )
    for name in fits:
        fit = report[name]
        assert fit["seconds"] > 0 and fit["peak_memory_gb"] > 0 and fit["gflop"] > 0
        assert fit["speedup_vs_baseline"] == pytest.approx(
            report["baseline_bootstrap"]["seconds"] / fit["seconds"]
        )
    # the float32 fit on the baseline's folds picks the baseline's alphas up to plateau ties
    assert report["same_alpha_fraction_equal_folds"] > 0.5
    assert report["ours_bootstrap_folds"]["mean_test_r"] == pytest.approx(
        report["baseline_bootstrap"]["mean_test_r"], abs=2e-3
    )


def test_stack_bench_small_run_reports_both_solvers_and_the_dtype_comparison(tmp_path):
    pytest.importorskip("cvxopt")
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "stack_bench.py"
    spec = importlib.util.spec_from_file_location("stack_bench", path)
    stack_bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stack_bench)
    out = tmp_path / "stack.json"
    args = ["--voxels", "400", "--members", "4", "--sample", "50", "--backend", "numpy"]
    args += ["--stream-voxels", "60", "--stream-trs", "120", "--tmpdir", str(tmp_path)]
    report = stack_bench.main([*args, "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    ours, reference = report["solver"]["ours_numpy"], report["solver"]["reference_cvxopt_loop"]
    assert ours["n_not_certified"] == 0 and ours["max_abs_objective_diff_vs_cvxopt"] < 1e-5
    assert ours["speedup_vs_reference"] == pytest.approx(
        reference["seconds_all_voxels_scaled"] / ours["seconds"]
    )
    dtype = report["stream"]["float16_vs_float32"]
    assert dtype["max_rel_oof_mse_diff"] < 1e-3
    assert (
        report["stream"]["float16"]["member_file_gb"]
        < report["stream"]["float32"]["member_file_gb"]
    )


@pytest.mark.slow  # three child processes
def test_study_bench_compares_equal_fits_both_ways(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("study_bench", BENCH.with_name("study_bench.py"))
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    # 3 subjects x 60 voxels, 160 training TRs in 4 stories, 40 features (dual)
    monkeypatch.setitem(study.SIZES, "small", (3, 60, 160, 40 * 4, 40))
    out = tmp_path / "study.json"
    study.main(["--size", "small", "--workdir", str(tmp_path / "w"), "--json", str(out)])
    report = json.loads(out.read_text())
    assert set(report["runs"]) == {"raw", "prepare", "shared"}
    for run in report["runs"].values():
        assert run["seconds"] > 0 and run["peak_memory_gb"] > 0
    raw, shared = report["runs"]["raw"], report["runs"]["shared"]
    assert report["speedup_fits"] == pytest.approx(raw["seconds"] / shared["seconds"])
    assert set(raw["mean_test_r"]) == {"S1", "S2", "S3"}
    # the shared fit gives every subject the numbers of its own fit from the raw files
    assert report["max_abs_test_r_difference"] == 0 and report["same_alpha_fraction"] == 1
    assert raw["mean_test_r"] == shared["mean_test_r"]
    assert report["size"]["n_subjects"] == 3 and report["size"]["n_features"] == 160


def test_permutation_bench_times_the_test_and_checks_it_against_a_loop(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location(
        "permutation_bench", BENCH.with_name("permutation_bench.py")
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setitem(bench.SIZES, "small", (400, 120, 99))
    out = tmp_path / "perm.json"
    report = bench.main(["--size", "small", "--json", str(out)])
    assert json.loads(out.read_text()) == report
    assert report["seconds"] > 0 and report["n_voxels"] == 400
    # a tenth of the voxels share a signal of r ~ 0.3 over 120 TRs: found; the null ones not
    assert report["rate_p_below_0.05_signal"] > 0.8
    assert report["rate_p_below_0.05_null"] < 0.1


def test_partition_bench_fits_the_planted_bands_and_extrapolates_from_its_rate(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "partition_bench", BENCH.with_name("partition_bench.py")
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "partition.json"
    report = bench.main(["--size", "small", "--n-iter", "3", "--n-folds", "2", "--json", str(out)])
    assert json.loads(out.read_text()) == report
    assert report["solver"] == "primal" and report["n_iter"] == 3  # equal, then each band alone
    # half the voxels are driven by band A: the search weighs A there, and predicts the test TRs
    assert report["band_weight_a_on_a_voxels"] > 0.8 and report["mean_test_r2"] > 0.05
    # the full search (3 folds, 4 weightings) is priced from the run's own rate
    assert report["flops_full_search"] > report["flops_run"]
    ratio = report["flops_full_search"] / report["flops_run"]
    assert report["extrapolated_full_search_seconds"] == pytest.approx(
        report["seconds"] * ratio, rel=0.05, abs=0.1
    )


def _rehearsal(monkeypatch):
    spec = importlib.util.spec_from_file_location(
        "rehearsal_bench", BENCH.with_name("rehearsal_bench.py")
    )
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look it up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # seven child processes
def test_rehearsal_runs_every_job_and_plans_the_dual_fit_with_the_fit_s_sizing(
    tmp_path, monkeypatch
):
    from fmriscaling.encoding import eigen, ridge
    from fmriscaling.encoding.folds import cv_folds

    bench = _rehearsal(monkeypatch)
    out = tmp_path / "rehearsal.json"
    report = bench.main(["--size", "small", "--workdir", str(tmp_path), "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert not list(tmp_path.glob("rehearsal.*/"))  # the big files are removed
    steps = report["steps"]
    assert list(steps) == list(bench.STEPS)
    for step in steps.values():
        assert step["wall_s"] > 0 and step["cpu_s"] > 0 and step["peak_rss_bytes"] > 2**20
    # each job against its rule's mem_mb under config/lebel2023.yaml (attempt 1)
    declared = {name: steps[name]["declared_mem_mb"] for name in bench.STEP_SCRIPTS}
    assert declared == {
        "prepare_responses": 4000,
        "prepare_responses_float64": 4000,
        "fit": 64000,
        "noise_ceiling": 8000,
        "significance": 64000,
    }
    assert all(steps[name]["fits_declared"] for name in declared)
    sample = steps["prepare_responses_float64"]["result"]
    assert sample["n_stories"] == 2 and sample["subject_float64_gb"] > sample["raw_gb"]
    # the fit found the planted signal, and the permutation test in the fit job found it too
    fit = steps["fit"]["result"]
    lay = report["layout"]
    assert (fit["n_train_trs"], fit["n_features"], fit["n_voxels"]) == (
        lay["n_train_trs"], lay["n_features"], lay["n_voxels"],
    )  # fmt: skip
    assert fit["solver"] == "primal" and fit["n_test_trs"] == 60  # 100 raw, 40 trimmed
    # (the undriven voxels pull the mean over all voxels down)
    assert fit["mean_test_r_signal_voxels"] > max(0.2, fit["mean_test_r"])
    assert fit["n_significant"] > 0.2 * lay["n_voxels"]
    assert steps["significance"]["result"]["n_significant"] > 0.2 * lay["n_voxels"]
    assert steps["noise_ceiling"]["result"]["n_valid"] > 0.5 * lay["n_voxels"]
    # the plan of the primal fit that ran used the batch the fit chose
    assert report["primal_plan"]["batch_size"] == fit["batch_size"]

    # the dual plan's per-voxel bytes and batch are the fit's own, for a budget it is given
    plan = report["dual_plan"]["job"]
    assert plan["solver"] == "dual" and plan["n_features"] > plan["n_train_trs"]
    budget = 100 * plan["bytes_per_voxel"] + 7
    layout = bench.make_layout(bench.SIZES["small"])
    lengths = [layout["raw_rows"][s] for s in layout["train_stories"]]
    small = bench.memory_plan(
        story_lengths=lengths,
        n_test=plan["n_test_trs"],
        n_voxels=plan["n_voxels"],
        n_dims=bench.SIZES["small"].dual_dims,
        n_raw_trs=sum(lengths) + layout["test_rows"],
        settings=report["encoding"],
        free_bytes=budget,
    )
    assert small["batch_size"] == 100 < small["n_voxels"]
    assert small["bytes_per_voxel"] == plan["bytes_per_voxel"]
    seen = []
    per_voxel = eigen._RidgeProblem.bytes_per_voxel
    monkeypatch.setattr(
        eigen._RidgeProblem,
        "bytes_per_voxel",
        lambda self, *a, **k: seen.append(per_voxel(self, *a, **k)) or seen[-1],
    )
    monkeypatch.setattr(ridge, "_free_memory_bytes", lambda name: budget)
    rng = np.random.default_rng(0)
    n, p, v, n_test = small["n_train_trs"], small["n_features"], small["n_voxels"], 60
    result = fit_ridge_cv(
        rng.standard_normal((n, p), dtype=np.float32),
        rng.standard_normal((n, v), dtype=np.float32),
        alphas=report["encoding"]["alphas"],
        folds=cv_folds(lengths, n_folds=report["encoding"]["n_folds"]),
        X_test=rng.standard_normal((n_test, p), dtype=np.float32),
        Y_test=rng.standard_normal((n_test, v), dtype=np.float32),
        backend="torch",
        score_dtype=small["score_dtype"],
    )
    assert result.solver == "dual" and result.batch_size == small["batch_size"]
    assert seen == [small["bytes_per_voxel"]]


def test_voxel_batches_stay_within_the_job_s_memory_limit(tmp_path, monkeypatch):
    """The rehearsal's fix: a CPU fit's batch budget is a share of what the job (SLURM --mem,
    cgroup limit) has left, not of the host's free memory."""
    import psutil

    from fmriscaling.encoding import backend

    monkeypatch.delenv("SLURM_MEM_PER_NODE", raising=False)
    proc = tmp_path / "cgroup"
    proc.write_text("12:pids:/job_7\n4:memory:/slurm/job_7/step_0\n0::/job_7/step_0\n")
    assert backend._job_memory_limit(proc, tmp_path / "none") is None
    # v1: the smallest limit on the path (the mount's own is "unlimited", a huge number)
    v1 = tmp_path / "v1"
    (v1 / "memory" / "slurm" / "job_7" / "step_0").mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (v1 / "memory" / "slurm" / "job_7" / "memory.limit_in_bytes").write_text(f"{2**33}\n")
    assert backend._job_memory_limit(proc, v1) == 2**33
    # v2: "max" is no limit; a parent's limit binds
    v2 = tmp_path / "v2"
    (v2 / "job_7" / "step_0").mkdir(parents=True)
    (v2 / "job_7" / "step_0" / "memory.max").write_text("max\n")
    (v2 / "job_7" / "memory.max").write_text(f"{3 * 2**30}\n")
    assert backend._job_memory_limit(proc, v2) == 3 * 2**30
    monkeypatch.setenv("SLURM_MEM_PER_NODE", "2048")  # MB, a job's --mem
    assert backend._job_memory_limit(proc, v2) == 2 * 2**30
    assert backend._job_memory_limit(proc, tmp_path / "none") == 2 * 2**30

    # a job with 1 GiB left: a quarter of it, whatever the host has free
    left = 2**30
    assert psutil.virtual_memory().available > 2 * left
    monkeypatch.setattr(
        backend, "_job_memory_limit", lambda: psutil.Process().memory_info().rss + left
    )
    free = backend._free_memory_bytes("torch")
    # (the RSS moves a little between the two reads)
    assert 0.9 * left < free / backend._CPU_MEMORY_FRACTION < left + 2**24
    monkeypatch.setattr(backend, "_job_memory_limit", lambda: None)
    assert backend._free_memory_bytes("torch") == pytest.approx(
        psutil.virtual_memory().available * backend._CPU_MEMORY_FRACTION, rel=0.05
    )
