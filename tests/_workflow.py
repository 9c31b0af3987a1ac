"""Running the workflow in a test: a copy of it in a temporary folder, Snakemake's CLI in a
subprocess, and the jobs a run would execute, read from Snakemake's tab-separated summary and
told apart by the `fmriscaling.workflow.Study`'s jobs (never from the printed dry run)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
WORKFLOW_PARTS = ("Snakefile", "rules", "config", "workflow_scripts", "envs")


def copy_workflow(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for part in WORKFLOW_PARTS:
        src = ROOT / part
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest / part)
    return dest


def snakemake(
    workdir: Path, *args: str, check: bool = True, cores: int = 2
) -> subprocess.CompletedProcess:
    """``snakemake --cores CORES --workflow-profile config/profiles/default ARGS`` in
    ``workdir``."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", MPLBACKEND="Agg")
    cmd = [SNAKEMAKE, "--cores", str(cores), "--workflow-profile", "config/profiles/default", *args]
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-5000:]}\n"
            f"{proc.stderr[-10000:]}"
        )
    return proc


def summary(workdir: Path, *targets: str, overlays: tuple[str, ...] = ()) -> pd.DataFrame:
    """Snakemake's tab-separated summary of the DAG of ``targets`` (default: all): every output
    file with its rule and whether it is to be updated (``plan``)."""
    # one --configfile for every overlay (a second flag replaces the first), after the targets
    # (the flag takes every word after it)
    args = ["--configfile", *overlays] if overlays else []
    proc = snakemake(workdir, "--summary", *targets, *args)
    return pd.read_csv(io.StringIO(proc.stdout), sep="\t")


def pending_jobs(workdir: Path, *targets: str, overlays: tuple[str, ...] = ()) -> Counter:
    """Rule -> number of jobs a run of ``targets`` (default: all) would execute.

    Snakemake's summary lists every output file of the DAG with its rule and whether it is to
    be updated; the Study's jobs say which outputs belong to one job.
    """
    from fmriscaling.workflow import Study, load_config

    table = summary(workdir, *targets, overlays=overlays)
    pending = set(table.loc[table["plan"] == "update pending", "output_file"])
    config = load_config([workdir / "config/config.yaml", *(workdir / o for o in overlays)])
    jobs = Study(config, workdir).jobs()
    counts = Counter(job.rule for job in jobs if pending & set(job.outputs))
    unknown = pending - {o for job in jobs for o in job.outputs}
    assert not unknown, f"outputs of no Study job: {sorted(unknown)[:5]}"
    return counts
