"""The workflow on a real SLURM, through `snakemake --profile slurm` as the README writes it.

A private single-node cluster (tests/_slurm.py: Debian's slurm-wlm and munge, accounting off,
job status from squeue) runs config/cluster_check.yaml, a slice of the demo through every kind
of job, with one pretend GPU so that the GPU requests are made as on a real cluster. Then:

- its outputs equal those of a local run, and every job ran inside a SLURM allocation (the
  job ids Snakemake got from sbatch are the ones the jobs' own logs name);
- no job opened a network connection (a sitecustomize guard in every Python process);
- a job that fails under SLURM (killed for lack of memory) is reported with its SLURM state
  and retried with twice the memory, and succeeds;
- a run killed mid-job (SIGKILL to Snakemake and to its running job) finishes after
  `--unlock` and a restart, with the outputs of an uninterrupted run;
- the plan's estimate for the slice is within 2x of the times the local run measured.

Needs root and the SLURM binaries. Without them the cluster tests skip, except under
`.ci/run`, which installs the packages and sets FMRISCALING_REQUIRE_SLURM=1: there they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pandas as pd
import pytest
from _slurm import LocalSlurm, missing_binaries
from demo_diff import compare_tables

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SNAKEMAKE = str(BIN / "snakemake")
WORKFLOW_PARTS = ("Snakefile", "rules", "config", "workflow_scripts", "envs", "Makefile")
CHECK = "config/cluster_check.yaml"
DATASET = "cluster-check"
#: what a fit's summary measures of the run, not of the result (left out of the comparisons)
TIMING = ("fit_seconds", "peak_memory_bytes", "permutation_seconds")
FIT = f"results/encoding/{DATASET}/UTS01/tiny-opt-xs/layer-1/scores.npz"
REQUIRED = os.environ.get("FMRISCALING_REQUIRE_SLURM") == "1"
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+)")

# Every Python process of the SLURM run imports this first (PYTHONPATH): it records itself and
# refuses, and records, any connection or name lookup outside this machine.
NETGUARD = """\
import os, socket
_dir = os.environ["FMRISCALING_NETGUARD_DIR"]
with open(os.path.join(_dir, "loaded"), "a") as f:
    f.write(f"{os.getpid()}\\n")
_LOCAL = ("127.0.0.1", "::1", "localhost", "")


def _refuse(what):
    with open(os.path.join(_dir, "blocked"), "a") as f:
        f.write(f"{os.getpid()} {what}\\n")
    raise OSError(f"network access from a compute job: {what}")


_connect, _connect_ex, _getaddrinfo = (
    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo)


def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in _LOCAL:
        _refuse(address)
    return _connect(self, address)


def connect_ex(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in _LOCAL:
        _refuse(address)
    return _connect_ex(self, address)


def getaddrinfo(host, *args, **kwargs):
    if host not in _LOCAL and host != socket.gethostname():
        _refuse(host)
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = (
    connect, connect_ex, getaddrinfo)
"""


def _why_no_slurm() -> str | None:
    missing = missing_binaries()
    if missing:
        return f"SLURM binaries not on PATH: {', '.join(missing)} (apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "slurmd must run as root to start jobs"
    return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = _why_no_slurm()
    if reason and REQUIRED:
        pytest.fail(f"FMRISCALING_REQUIRE_SLURM=1 but no SLURM can be brought up: {reason}")
    if reason:
        pytest.skip(f"{reason}; bash .ci/run installs it and requires these tests")
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    cluster.start()
    yield cluster
    cluster.stop()


def _copy_workflow(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for part in WORKFLOW_PARTS:
        src = ROOT / part
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest / part)
    return dest


def _run(workdir: Path, *args: str, env: dict, check: bool = True, timeout: float = 900):
    proc = subprocess.run(
        [SNAKEMAKE, *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout
    )
    proc.text = proc.stdout + proc.stderr
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.text[-12000:]}"
        )
    return proc


def _local_env() -> dict:
    return dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", MPLBACKEND="Agg")


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> Path:
    """The slice, run locally as `make demo` runs the demo."""
    workdir = _copy_workflow(tmp_path_factory.mktemp("local") / "wf")
    _run(workdir, "--cores", "2", "--workflow-profile", "config/profiles/default",
         "--configfile", CHECK, env=_local_env())  # fmt: skip
    return workdir


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    """The slice through `snakemake --profile slurm` on the private cluster, with the profile
    linked by `make slurm-profile`, the test cluster's site settings as a second profile, a
    pretend GPU per extraction and fit, and the network guard in every process."""
    tmp = tmp_path_factory.mktemp("cluster-run")
    workdir = _copy_workflow(tmp / "wf")
    guard = tmp / "netguard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(NETGUARD)
    env = {
        k: v for k, v in cluster.env.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    }
    env.update(
        XDG_CONFIG_HOME=str(tmp / "xdg"),
        MPLBACKEND="Agg",
        FMRISCALING_NETGUARD_DIR=str(guard),
        PYTHONPATH=os.pathsep.join(p for p in (str(guard), os.environ.get("PYTHONPATH")) if p),
    )
    subprocess.run(["make", "-s", "-C", str(workdir), "slurm-profile"], env=env, check=True)
    site = tmp / "site"
    site.mkdir()
    # this cluster: one small node, status polled every 2 s; keep the SLURM logs to read them
    (site / "config.yaml").write_text(
        f"cores: {cluster.cpus}\nslurm-init-seconds-before-status-checks: 2\n"
        "slurm-status-command: squeue\nslurm-keep-successful-logs: true\n"
    )
    gpu = tmp / "gpu.yaml"
    gpu.write_text("compute: {gpu: true}\n")
    args = ("--profile", "slurm", "--profile", str(site), "--configfile", CHECK, str(gpu))
    started = time.monotonic()
    proc = _run(workdir, *args, env=env)
    run = SimpleNamespace(
        workdir=workdir, env=env, args=args, proc=proc, guard=guard, tmp=tmp,
        seconds=time.monotonic() - started, ids=SUBMITTED.findall(proc.text),
        fit_peak_mb=_benchmark(workdir, "fit_encoding", FIT)["max_rss"],
    )  # fmt: skip
    return run


def _benchmark(workdir: Path, rule: str, output: str) -> pd.Series:
    """The benchmark row of the job of ``rule`` that wrote ``output`` (a scores.npz)."""
    key = Path(output).parent.relative_to("results/encoding")
    return pd.read_csv(workdir / "results/benchmarks" / rule / f"{key}.tsv", sep="\t").iloc[-1]


def _same_array(x: np.ndarray, y: np.ndarray) -> bool:
    """Equal shapes and values, NaN equal to NaN where the dtype can hold one (not strings)."""
    return np.array_equal(x, y, equal_nan=x.dtype.kind in "fc")


def _differences(a: Path, b: Path) -> list[str]:
    """Every result of workdir ``a`` that workdir ``b`` lacks or holds with other values:
    arrays exactly (NaN equal to NaN), tables cell for cell and fit summaries without the
    run-dependent timings, figures byte for byte (but the cost figure, which draws measured
    times). Logs, benchmarks, provenance are left out."""
    problems = []
    for path in sorted((a / "results").rglob("*")):
        rel = path.relative_to(a)
        other = b / rel
        if path.is_dir() or rel.parts[1] in ("logs", "benchmarks") or ".provenance" in path.name:
            continue
        if path.name == "provenance.json" or rel.parts[1] == "tables":
            continue
        if rel.parts[1] == "figures" and path.stem == "costs":
            continue  # draws the jobs' measured times, which differ from run to run
        if not other.exists():
            problems.append(f"{rel}: missing")
        elif path.suffix == ".npz":
            x, y = np.load(path), np.load(other)
            if x.files != y.files or any(not _same_array(x[k], y[k]) for k in x.files):
                problems.append(f"{rel}: arrays differ")
        elif path.suffix in (".h5", ".hf5"):
            with h5py.File(path, "r") as x, h5py.File(other, "r") as y:
                if any(n not in y or not np.array_equal(x[n][()], y[n][()]) for n in _datasets(x)):
                    problems.append(f"{rel}: datasets differ")
        elif path.name == "scores.json":
            x, y = (json.loads(p.read_text()) for p in (path, other))
            if {k: v for k, v in x.items() if k not in TIMING} != {
                k: v for k, v in y.items() if k not in TIMING
            }:
                problems.append(f"{rel}: summary differs")
        elif path.read_bytes() != other.read_bytes():
            problems.append(f"{rel}: bytes differ")
    tables = f"results/tables/{DATASET}"
    problems += compare_tables(a / tables, b / tables)
    return problems


def _datasets(group: h5py.Group) -> list[str]:
    names: list[str] = []
    group.visititems(
        lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None
    )
    return names


# ------------------------------------------------------------------------- the cluster run


def test_profile_is_found_by_name_after_the_one_time_link(slurm_run):
    link = Path(slurm_run.env["XDG_CONFIG_HOME"]) / "snakemake" / "slurm"
    assert link.resolve() == (slurm_run.workdir / "config/profiles/slurm").resolve()
    assert "Using profiles slurm and" in slurm_run.proc.text
    assert "SLURM run ID" in slurm_run.proc.text


def test_cluster_outputs_equal_a_local_run(slurm_run, local_run):
    assert (slurm_run.workdir / f"results/figures/{DATASET}/layer_profiles.png").is_file()
    assert _differences(local_run, slurm_run.workdir) == []


def test_every_job_ran_in_a_slurm_allocation(slurm_run, cluster):
    # 1 dataset + 1 tiny model, 7 timing tables in 1 group, 1 extraction, 1 prepared
    # responses, 1 noise ceiling, 1 ROI labels, 3 fits, 1 group of the 8 tables and figures:
    # 11 sbatch calls for 24 jobs
    assert len(slurm_run.ids) == len(set(slurm_run.ids)) == 11
    states = {job["id"]: job["state"] for job in cluster.squeue()}
    assert {states[i] for i in slurm_run.ids} == {"COMPLETED"}
    # each job's own log names the allocation it ran in, one of those sbatch gave out
    logs = sorted((slurm_run.workdir / "results/logs").rglob("*.log"))
    assert len(logs) == 24
    for log in logs:
        found = re.findall(r"SLURM job (\d+)", log.read_text())
        assert found and found[0] in slurm_run.ids, f"{log} names no submitted SLURM job"


def test_gpu_jobs_ask_for_a_gpu_and_their_threads_per_gpu(slurm_run, cluster):
    for i in slurm_run.ids:
        show = subprocess.run(
            ["scontrol", "show", "job", i], capture_output=True, text=True, env=cluster.env
        ).stdout
        comment = re.search(r"Comment=(\S+)", show).group(1)
        if "fit_encoding" in comment or "extract_text_features" in comment:
            assert "gres/gpu:1" in show or "gres:gpu:1" in show, show
            # the check's 2 threads a job (compute: in config/cluster_check.yaml)
            assert "CpusPerTres=gres:gpu:2" in show, show
        else:
            assert "gpu" not in show.replace("GresTypes", "")


def test_compute_jobs_never_touch_the_network(slurm_run):
    loaded = (slurm_run.guard / "loaded").read_text().split()
    # the main Snakemake, and per job its jobstep, its srun-started Snakemake and its script
    assert len(loaded) > 3 * len(slurm_run.ids)
    assert not (slurm_run.guard / "blocked").exists(), (slurm_run.guard / "blocked").read_text()


def test_missing_snapshot_fails_at_once_naming_the_rule_that_fetches_it(tmp_path, monkeypatch):
    import socket

    from fmriscaling._utils import DataError
    from fmriscaling.features.lm import load_causal_lm
    from fmriscaling.features.speech import load_speech_model

    def refuse(*args, **kwargs):
        raise AssertionError("a compute job reached for the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    for load in (load_causal_lm, load_speech_model):
        with pytest.raises(DataError, match=r"snakemake .*opt-125m.*rule download_model"):
            load(tmp_path / "results/models/opt-125m", device="cpu")


# -------------------------------------------------------------------------------- faults


def _too_little(run) -> int:
    # the script's own peak (benchmark max_rss) x 1.1: short once the job step's Snakemake is
    # counted too, while twice that is enough
    return round(1.1 * run.fit_peak_mb)


def test_a_job_failing_under_slurm_is_reported_and_retried_with_more_memory(slurm_run, local_run):
    """Too little memory: SLURM kills the fit, Snakemake reports the failed job (its SLURM
    state and log) and retries it with twice the memory, which succeeds with the local run's
    outputs. (Without a retry left, the run fails: Snakemake's own rule, not tested here.)"""
    mem = _too_little(slurm_run)
    overlay = slurm_run.tmp / "retry-memory.yaml"
    overlay.write_text(f"compute: {{gpu: true, ridge_mem_mb: {mem}}}\n")
    for ext in ("npz", "json"):
        (slurm_run.workdir / FIT).with_suffix(f".{ext}").unlink(missing_ok=True)
    proc = _run(slurm_run.workdir, FIT, *slurm_run.args, str(overlay), env=slurm_run.env)
    first, second = SUBMITTED.findall(proc.text)
    assert re.search(rf"SLURM-job '{first}' failed, SLURM status is: '(FAILED|OUT_OF_MEMORY)'",
                     proc.text)  # fmt: skip
    assert f"mem_mb={mem}," in proc.text and f"mem_mb={2 * mem}," in proc.text
    (log,) = (slurm_run.workdir / ".snakemake/slurm_logs").rglob(f"{first}.log")
    assert "exceeded memory limit" in log.read_text()
    assert re.search(rf"SLURM job {second}\b", (slurm_run.workdir / _log_of(FIT)).read_text())
    for name in ("scores.npz", "scores.json"):
        rel = Path(FIT).with_name(name)
        assert _differences_of(local_run, slurm_run.workdir, rel) == []


def _log_of(scores: str) -> str:
    key = Path(scores).parent.relative_to("results/encoding")
    return f"results/logs/fit_encoding/{key}.log"


def _differences_of(a: Path, b: Path, rel: Path) -> list[str]:
    if rel.suffix == ".npz":
        x, y = np.load(a / rel), np.load(b / rel)
        return [k for k in x.files if not _same_array(x[k], y[k])]
    if rel.suffix == ".h5":
        with h5py.File(a / rel, "r") as x, h5py.File(b / rel, "r") as y:
            return [n for n in _datasets(x) if n not in y or not np.array_equal(x[n][()], y[n][()])]
    x, y = (json.loads((d / rel).read_text()) for d in (a, b))
    return [k for k in x if k not in TIMING and x[k] != y[k]]


def test_run_killed_mid_job_resumes_to_the_uninterrupted_outputs(slurm_run, local_run, cluster):
    """The features and a fit that reads them: killed mid-extraction, unlocked, resumed; the
    same files as the uninterrupted local run (two SLURM rounds, not the whole slice again)."""
    workdir = slurm_run.tmp / "killed"
    shutil.copytree(slurm_run.workdir, workdir, symlinks=True)
    shutil.rmtree(workdir / f"results/features/{DATASET}")
    for ext in ("npz", "json"):
        (workdir / FIT).with_suffix(f".{ext}").unlink()
    log = workdir / f"results/logs/extract_text_features/{DATASET}/tiny-opt-xs.log"
    log.unlink()
    with open(workdir / "killed-run.log", "w") as out:
        run = subprocess.Popen(
            [SNAKEMAKE, FIT, *slurm_run.args], cwd=workdir, env=slurm_run.env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        job = _wait_running(cluster, "extract_text_features", log, run)
        time.sleep(1)  # mid-job: the script has started, its outputs are not written
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    subprocess.run(["scancel", "--full", "--signal=KILL", job], env=cluster.env, check=True)
    _wait(lambda: _state(cluster, job) not in ("RUNNING", "COMPLETING"), 60)
    assert _state(cluster, job) in ("CANCELLED", "FAILED")
    assert not (workdir / f"results/features/{DATASET}/tiny-opt-xs").exists()
    # the killed Snakemake left its lock: a restart says so, --unlock clears it
    locked = _run(workdir, FIT, *slurm_run.args, env=slurm_run.env, check=False)
    assert locked.returncode != 0 and "cannot be locked" in locked.text
    _run(workdir, "--unlock", *slurm_run.args, env=slurm_run.env)
    resumed = _run(workdir, FIT, *slurm_run.args, env=slurm_run.env)
    assert "rule extract_text_features" in resumed.text
    assert job not in SUBMITTED.findall(resumed.text)
    features = Path(f"results/features/{DATASET}/tiny-opt-xs")
    for rel in [*sorted(p.relative_to(workdir) for p in (workdir / features).glob("*.h5")),
                Path(FIT), Path(FIT).with_suffix(".json")]:  # fmt: skip
        assert _differences_of(local_run, workdir, rel) == [], rel


def _state(cluster, job: str) -> str:
    return next((j["state"] for j in cluster.squeue() if j["id"] == job), "GONE")


def _wait(ready, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"not ready after {timeout} s")
        time.sleep(0.3)


def _wait_running(
    cluster, rule: str, log: Path, run: subprocess.Popen, timeout: float = 300
) -> str:
    """The SLURM id of the running job of ``rule`` once its script has logged its first line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run.poll() is not None:
            raise AssertionError(f"the run ended ({run.returncode}) before {rule} was running")
        jobs = [j for j in cluster.squeue() if rule in j["comment"] and j["state"] == "RUNNING"]
        if jobs and log.is_file() and "SLURM job" in log.read_text():
            return jobs[0]["id"]
        time.sleep(0.3)
    raise AssertionError(f"{rule} never ran: {cluster.squeue()}")


# ---------------------------------------------------------------------------------- plan


def test_plan_estimate_is_within_2x_of_the_measured_times(local_run):
    """The cost model prices the slice's jobs within 2x of what the local run measured (CPU
    seconds: the machine may be shared; on a quiet one wall-clock time is the same)."""
    from fmriscaling.plan import measured_seconds, plan_study

    rows, _, _ = plan_study([local_run / "config/config.yaml", local_run / CHECK], local_run)
    measured = measured_seconds(local_run / "results/benchmarks", column="cpu_time")
    estimated = {r.rule: r.seconds for r in rows if r.rule in measured}
    assert set(estimated) == set(measured)
    ratio = sum(estimated.values()) / sum(s for _, s in measured.values())
    assert 0.5 < ratio < 2, (ratio, estimated, measured)
