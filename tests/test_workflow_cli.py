"""The workflow through the Snakemake CLI without running it: config errors at start, what a
parse imports, a missing vision dataset, a local copy checked, rules a study does not have, the
plan of one target.
(Apart from tests/test_workflow.py, whose tests need the demo's run: these run beside it.)"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from _workflow import copy_workflow, pending_jobs, snakemake

pytestmark = pytest.mark.slow


def test_unknown_config_key_fails_at_start_naming_it(tmp_path):
    workdir = copy_workflow(tmp_path / "wf")
    overlay = tmp_path / "bad.yaml"
    overlay.write_text("encoding:\n  delayz: [1, 2]\n")
    proc = snakemake(workdir, "-n", "--configfile", str(overlay), check=False)
    assert proc.returncode != 0
    assert "unknown config key(s) 'delayz' under 'encoding'" in proc.stdout + proc.stderr


def _imported_modules(proc: subprocess.CompletedProcess) -> set[str]:
    """Every module a process imported, from the table of ``PYTHONPROFILEIMPORTTIME=1``."""
    # rows look like "import time:  self [us] |  cumulative |   package.module"
    rows = [line for line in proc.stderr.splitlines() if line.startswith("import time:")]
    return {row.rsplit("|", 1)[1].strip() for row in rows[1:]}


@pytest.mark.parametrize(
    ("configfile", "demo_dataset"),
    [("config/lebel2023.yaml", False), ("config/config.yaml", True)],
)
def test_parsing_the_workflow_never_imports_the_demo_generator(
    tmp_path, monkeypatch, configfile, demo_dataset
):
    """The real study's plan needs nothing from fmriscaling.demo; the demo's plan, only the names."""
    workdir = copy_workflow(tmp_path / "wf")
    # Python logs every first import of the snakemake process (rules and input functions too)
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")
    imported = _imported_modules(snakemake(workdir, "-n", "--configfile", configfile))
    # the log is live: it saw the workflow's own imports
    assert {"fmriscaling.config", "fmriscaling.sweep"} <= imported
    assert "fmriscaling.demo.synthetic" not in imported
    assert "fmriscaling.demo.stories" not in imported
    assert ("fmriscaling.demo.names" in imported) is demo_dataset


def test_real_vision_study_without_data_stops_before_any_job_with_instructions(tmp_path):
    workdir = copy_workflow(tmp_path / "wf")
    proc = snakemake(workdir, "-n", "--configfile", "config/algonauts2023.yaml", check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "results/data/algonauts2023 does not exist" in text
    assert "naturalscenesdataset.org" in text and "algonauts_2023_challenge_data" in text
    assert "Job stats" not in text


def test_the_language_study_has_no_vision_rule(tmp_path):
    """lebel2023.yaml turns the track off: no rule can make a vision output."""
    workdir = copy_workflow(tmp_path / "wf")
    target = "results/features/demo-vision/tiny-clip-m"
    proc = snakemake(workdir, target, "-n", "--configfile", "config/lebel2023.yaml", check=False)
    assert proc.returncode != 0
    assert "MissingRuleException" in proc.stdout + proc.stderr


def test_one_subject_s_scores_plan_its_group_s_fit(tmp_path):
    """UTS01-03 share their training stories: asking for one subject's scores plans the one fit
    job that serves all three, from their prepared responses (the whole study's job counts are
    `tests/test_study.py`'s)."""
    workdir = copy_workflow(tmp_path / "wf")
    target = "results/encoding/lebel2023/UTS02/opt-125m/layer-9/scores.npz"
    jobs = pending_jobs(workdir, target, overlays=("config/lebel2023.yaml",))
    assert jobs["prepare_responses"] == 3 and jobs["fit_encoding"] == 1
    assert "fit_encoding_subset" not in jobs


def _vision_overlay(tmp_path: Path, data_dir: Path, subjects: list[str]) -> Path:
    overlay = tmp_path / "local.yaml"
    overlay.write_text(
        f"vision:\n  dataset: {{dir: {data_dir}, subjects: {json.dumps(subjects)}}}\n"
    )
    return overlay


def test_a_local_copy_is_checked_then_planned(tmp_path):
    """A local copy of the challenge data (here: a synthetic one in its layout, 240 training
    images) is checked image for image before the real study's jobs are planned."""
    from fmriscaling.demo.tiny_vision import TINY_VISION_PRESETS, build_tiny_vision_model
    from fmriscaling.demo.vision import generate_vision_dataset

    workdir = copy_workflow(tmp_path / "wf")
    data = tmp_path / "algonauts"
    truth = tmp_path / "tiny-clip-m"
    build_tiny_vision_model(truth, **TINY_VISION_PRESETS["clip-m"])
    generate_vision_dataset(
        data, subjects=["subj01"], truth_model_dir=truth, n_train_images=240, n_vertices=20,
        truth={"early": {"layer": 1, "pool": 4}, "higher": {"layer": 3, "pool": 1}},
    )  # fmt: skip
    overlay = _vision_overlay(tmp_path, data, ["subj01"])
    overlays = ("config/algonauts2023.yaml", str(overlay))
    jobs = pending_jobs(workdir, overlays=overlays)
    # the real study's models are not downloaded: snapshots, then extraction and selection
    assert jobs["download_model"] == jobs["extract_vision_features"] == 12
    assert jobs["select_vision"] == 12 and jobs["vision_noise_ceiling"] == 1
    assert "generate_demo_vision_dataset" not in jobs and "fit_encoding" not in jobs
    args = ("-n", "--configfile", *overlays)
    rh = data / "subj01/training_split/training_fmri/rh_training_fmri.npy"
    rh.unlink()
    proc = snakemake(workdir, *args, check=False)
    assert proc.returncode != 0 and str(rh) in proc.stdout + proc.stderr
    np.save(rh, np.zeros((5, 3), np.float32))
    proc = snakemake(workdir, *args, check=False)
    assert "subj01 rh: 240 images in" in proc.stdout + proc.stderr
    assert "but 5 fMRI rows" in proc.stdout + proc.stderr


def _gpus_of_jobs(text: str) -> dict[str, int]:
    """Model -> the ``gpu`` resource of its extraction job, from a dry run's job blocks."""
    gpus, model = {}, None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("wildcards:"):
            found = re.search(r"model=([^,\s]+)", line)
            model = found.group(1) if found else None
        elif line.startswith("resources:") and model is not None:
            found = re.search(r"\bgpu=(\d+)", line)
            gpus[model] = int(found.group(1)) if found else 0
            model = None
    return gpus


def test_an_extraction_job_asks_snakemake_for_the_gpus_its_model_needs(tmp_path):
    """The rule's ``gpu`` resource (``--gpus=N`` on SLURM) is the Study's sizing: one GPU for
    OPT-125M, two for OPT-66B and three for LLaMA-2-70B in bfloat16 on 80 GB GPUs."""
    from fmriscaling.workflow import Study, load_config

    workdir = copy_workflow(tmp_path / "wf")
    models = ["opt-125m", "opt-66b", "llama-2-70b"]
    targets = [f"results/features/lebel2023/{m}" for m in models]
    # a node with eight GPUs (the default profile allows one, and Snakemake caps every job at
    # what the run allows)
    args = ("-n", "--resources", "gpu=8", "--configfile", "config/lebel2023.yaml")
    proc = snakemake(workdir, *targets, *args)
    gpus = _gpus_of_jobs(proc.stdout + proc.stderr)
    config = load_config([workdir / "config/config.yaml", workdir / "config/lebel2023.yaml"])
    study = Study(config, workdir, check_data=False)
    assert gpus == {m: study.extract_gpus(m) for m in models}
    assert gpus["opt-125m"] == 1 and gpus["opt-66b"] == 2 and gpus["llama-2-70b"] == 3


def test_a_model_too_big_for_the_allowed_job_fails_before_any_job_runs(tmp_path):
    workdir = copy_workflow(tmp_path / "wf")
    overlay = workdir / "two_gpus.yaml"
    overlay.write_text("compute: {max_gpus_per_job: 2}\n")
    proc = snakemake(
        workdir, "-n", "--configfile", "config/lebel2023.yaml", str(overlay), check=False
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Job stats" not in text
    assert re.search(
        r"model 'llama-2-70b' needs ~1\d\d GB on GPUs .* that is 3 GPUs of 80 GB", text
    )
    assert "compute.max_gpus_per_job = 2. Fix: raise compute.max_gpus_per_job" in text
