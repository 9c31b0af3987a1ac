"""The plan: dry-run parsing, the flop counts and rates of the cost model, and the real study's
plan through `--profile slurm` (job counts per rule, GPU-hours, disk)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fmriscaling import cost
from fmriscaling.features.audio import conv_last_frame
from fmriscaling.features.context import window_schedule
from fmriscaling.plan import JOB_OVERHEAD_S, CostModel, format_plan, plan_table
from fmriscaling.study import PlannedJob, StudyFacts, load_config, parse_dry_run

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

DRY_RUN = """\
Building DAG of jobs...
Job stats:
job              count
-------------  -------
story_timing         2
fit_encoding         1
all                  1
total                4

[Wed Dec  2 05:29:02 2026] Group job timing (jobs in lexicogr. order):

    [Wed Dec  2 05:29:02 2026]
    rule story_timing:
        input: results/data/d/derivative/TextGrids/a.TextGrid, results/data/d/derivative/respdict.json
        output: results/stimuli/d/a.words.tsv, results/stimuli/d/a.trs.tsv
        wildcards: dataset=d, story=a
        resources: tmpdir=/tmp, mem_mb=1000, runtime=5
    [Wed Dec  2 05:29:02 2026]
    rule story_timing:
        wildcards: dataset=d, story=b
        resources: tmpdir=/tmp, mem_mb=1000, runtime=5
[Wed Dec  2 05:29:02 2026]
rule fit_encoding:
    input: results/features/d/m, results/data/d/derivative/preprocessed_data/S1/a.hf5
    wildcards: dataset=d, subject=S1, model=m, layer=3
    resources: tmpdir=/tmp, mem_mb=64000, mem=64 GB, runtime=180, gpu=1, cpus_per_gpu=8
[Wed Dec  2 05:29:02 2026]
localrule all:
    input: results/tables/d/encoding.csv
    jobid: 0
Job stats:
job              count
-------------  -------
story_timing         2
fit_encoding         1
all                  1
total                4
This was a dry-run (flag -n). The order of jobs does not reflect the order of execution.
"""


def test_dry_run_jobs_with_their_wildcards_inputs_and_resources():
    jobs = parse_dry_run(DRY_RUN)
    assert [j.rule for j in jobs] == ["story_timing", "story_timing", "fit_encoding", "all"]
    assert jobs[0].wildcards == {"dataset": "d", "story": "a"}
    assert jobs[0].inputs == [
        "results/data/d/derivative/TextGrids/a.TextGrid",
        "results/data/d/derivative/respdict.json",
    ]
    assert jobs[1].wildcards["story"] == "b" and jobs[1].inputs == []
    fit = jobs[2]
    assert fit.gpu and not jobs[0].gpu
    assert fit.resources["runtime"] == "180" and fit.resources["cpus_per_gpu"] == "8"
    assert jobs[3].local and not fit.local


def test_dry_run_that_disagrees_with_its_job_stats_is_refused():
    broken = DRY_RUN.replace("    rule story_timing:\n        wildcards: dataset=d, story=b", "")
    with pytest.raises(ValueError, match="differ from the Job stats"):
        parse_dry_run(broken)
    with pytest.raises(ValueError, match="no job"):
        parse_dry_run("Building DAG of jobs...\nWorkflowError: something broke\n")
    assert parse_dry_run("Nothing to be done (all requested files are present).") == []


def test_ridge_eigh_flops_are_9_r_cubed_per_fold_and_refit():
    # dual (n < p): one eigh of the training Gram per fold and one of the full Gram
    n, p, v, folds = 3000, 4096, 20000, [(2400, 600)] * 5
    flops = cost.ridge_flops(n, p, v, 300, folds, 15)
    assert flops.eigh == 9 * (5 * 2400**3 + 3000**3)
    # primal (n >= p): every eigh is of the p x p feature Gram
    primal = cost.ridge_flops(5000, 400, 100, 300, [(4000, 1000)] * 5, 15)
    assert primal.eigh == 9 * 6 * 400**3
    assert (
        cost.ridge_flops(3000, 4096, 20000, 300, folds, 15, solver="primal").eigh == 9 * 6 * 4096**3
    )


def test_cpu_rates_reproduce_the_recorded_ridge_benchmark():
    """RESULTS.md: 3000 x 4096 x 20000, 5 story folds, 15 alphas, float32: 21.7 s."""
    flops = cost.ridge_flops(3000, 4096, 20000, 300, [(2400, 600)] * 5, 15)
    cpu = cost.CPU_REFERENCE
    seconds = flops.gemm / cpu.gemm + flops.eigh / cpu.eigh
    assert 21.7 / 1.5 < seconds < 21.7 * 1.5


def test_gpu_assumption_gives_the_estimate_written_for_a_full_size_fit():
    """RESULTS.md's estimate for 27000 x 28672 x 95000 on one H100: about 2-4 minutes."""
    flops = cost.ridge_flops(27000, 28672, 95000, 300, [(21600, 5400)] * 5, 15)
    gpu = cost.GPU_ASSUMED
    seconds = flops.gemm / gpu.gemm + flops.eigh / gpu.eigh
    assert 90 < seconds < 240
    assert not gpu.measured and cost.CPU_REFERENCE.measured


def test_known_flops_give_known_seconds(tmp_path):
    """A shared fit job of two subjects priced on a device of 1 TFLOP/s everywhere: overhead +
    flops / 1e12 + bytes / 1e12, with one design and every subject's voxels."""
    config = load_config([ROOT / "config/config.yaml"])
    facts = StudyFacts(config, tmp_path)  # no data: the demo's sizes from the config
    one = cost.Device("test", gemm=1e12, eigh=1e12, forward=1e12, read=1e12, measured=True)
    stories = [f"synthstory{i:02d}" for i in range(1, 13)] + ["wheretheressmoke"]
    subjects = ("UTS01", "UTS02")
    prepare = [
        PlannedJob(
            rule="prepare_responses",
            wildcards={"dataset": "demo", "subject": s},
            inputs=[f"results/data/demo/derivative/preprocessed_data/{s}/{t}.hf5" for t in stories],
        )
        for s in subjects
    ]
    job = PlannedJob(
        rule="fit_encoding",
        wildcards={"dataset": "demo", "model": "tiny-opt-m", "layer": "2"},
        inputs=["results/features/demo/tiny-opt-m"]
        + [f"results/responses/demo/{s}.h5" for s in subjects],
    )
    rows = facts.story_rows("synthstory01")
    assert rows == 120 - 20  # mean of story_n_trs [100, 140], minus 20 trimmed
    n, n_test, v, p = 12 * rows, 150 - 20 - 40, 2 * 300, 4 * 64
    flops = cost.ridge_flops(n, p, v, n_test, [(n - n // 5, n // 5)] * 5, 13)
    read = 4.0 * v * (n + n_test) + 4.0 * (n + n_test) * 64
    model = CostModel(facts, cpu=one)
    model.see(prepare)
    priced = model(job)
    assert priced.where == "CPU"
    assert priced.seconds == pytest.approx(
        JOB_OVERHEAD_S["fit_encoding"] + flops.total / 1e12 + read / 1e12
    )
    assert priced.disk_bytes == pytest.approx(4.0 * v * 3 + 2 * 2e3)
    # a data-size fit of 4 of the 12 stories: a third of the training TRs
    subset = PlannedJob(
        rule="fit_encoding_subset",
        wildcards={**job.wildcards, "n": "4", "seed": "0"},
        inputs=job.inputs,
    )
    m = 4 * rows
    sub = cost.ridge_flops(m, p, v, n_test, [(m - m // 5, m // 5)] * 5, 13)
    read = 4.0 * v * (m + n_test) + 4.0 * (m + n_test) * 64
    assert model(subset).seconds == pytest.approx(
        JOB_OVERHEAD_S["fit_encoding_subset"] + sub.total / 1e12 + read / 1e12
    )
    with pytest.raises(ValueError, match="no prepare_responses jobs"):
        CostModel(facts, cpu=one)(job)


def test_lm_windows_match_the_recorded_token_ratio():
    """RESULTS.md: 1941 words at 512/256 words cost 1.79x the story's tokens."""
    words = sum(stop - start for start, _, stop in window_schedule(1941, 512, 256))
    assert words / 1941 == pytest.approx(1.79, abs=0.01)
    assert cost.lm_flops(125e6, 1000) == 2 * 125e6 * 1000


def test_speech_frames_and_conv_front_end_flops():
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    # frames of a 16.1 s window: the features module's own count
    n = round(16.1 * 16000)
    frames = conv_last_frame(n, cost.WAV2VEC2_CONV_KERNEL, cost.WAV2VEC2_CONV_STRIDE) + 1
    front = cost.wav2vec2_frontend_flops(n, 8)
    assert cost.speech_window_flops(
        "hubert", n_params=1e6, hidden_size=8, window_samples=n, conv_dim=8
    ) == pytest.approx(front + 2e6 * frames)
    # the front end counted by torch on the same conv stack
    layers, channels = [], 1
    for kernel, stride in zip(cost.WAV2VEC2_CONV_KERNEL, cost.WAV2VEC2_CONV_STRIDE, strict=True):
        layers.append(torch.nn.Conv1d(channels, 8, kernel, stride, bias=False))
        channels = 8
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        torch.nn.Sequential(*layers)(torch.zeros(1, 1, n))
    assert front == counter.get_total_flops()
    # Whisper pads every window to its chunk: the cost does not depend on the window
    a, b = (
        cost.speech_window_flops("whisper", n_params=1e6, hidden_size=8, window_samples=s)
        for s in (16000, 160000)
    )
    assert a == b


def test_download_rules_are_local_and_the_only_ones():
    """Login nodes have the network, compute nodes need not: every rule that downloads is a
    localrule (and is skipped by the cluster's scheduler), and no other rule is."""
    blocks = {}
    for smk in sorted((ROOT / "rules").glob("*.smk")):
        for block in re.split(r"\n(?=rule |use rule )", smk.read_text()):
            if m := re.match(r"use rule \w+ as (\w+)|rule (\w+)", block):
                blocks[m.group(1) or m.group(2)] = block
    local = {name for name, block in blocks.items() if "localrule: True" in block}
    assert {"download_ds003020_file", "download_dataset", "download_model"} <= local
    assert local == {name for name in blocks if name.startswith("download")}


@pytest.mark.slow
def test_real_study_plan_through_the_slurm_profile(tmp_path):
    """`snakemake -n --profile slurm` plans the whole study; the plan prices every job."""
    workdir = tmp_path / "wf"
    workdir.mkdir()
    for part in ("Snakefile", "rules", "config", "workflow_scripts", "envs"):
        (shutil.copytree if (ROOT / part).is_dir() else shutil.copy2)(ROOT / part, workdir / part)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run(
        [SNAKEMAKE, "-n", "--forceall", "--profile", "config/profiles/slurm",
         "--configfile", "config/lebel2023.yaml"],
        cwd=workdir, env=env, capture_output=True, text=True,
    )  # fmt: skip
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-5000:]
    jobs = parse_dry_run(text)
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.rule] = counts.get(job.rule, 0) + 1
    # one fit job per (model, layer), shared by the 3 subjects: 22 models x their layers
    assert counts["fit_encoding"] == 660
    assert counts["prepare_responses"] == 3
    assert counts["extract_text_features"] + counts["extract_speech_features"] == 22
    assert all(j.gpu for j in jobs if j.rule.startswith(("fit_", "extract_")))
    config = load_config([ROOT / "config/config.yaml", ROOT / "config/lebel2023.yaml"])
    facts = StudyFacts(config, workdir)
    rows = plan_table(jobs, CostModel(facts))
    by_rule = {r.rule: r for r in rows}
    assert sum(r.jobs for r in rows) == len(jobs) > 1000
    # downloads: the manifest's sizes of the selected files (UTS01-03, ~70 GB)
    assert 60e9 < by_rule["download_ds003020_file"].disk_bytes < 90e9
    gpu_hours = sum(r.seconds for r in rows if r.where == "GPU") / 3600
    assert 10 < gpu_hours < 1000
    text = format_plan(rows, facts, "plan")
    assert "GPU-hours" in text and "assumed" in text and "fit_encoding" in text
    assert np.isfinite(by_rule["fit_encoding"].max_job_seconds)


def test_measured_seconds_sum_each_rules_benchmarks(tmp_path):
    from fmriscaling.plan import RuleRow, format_comparison, measured_seconds

    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    for rel, wall, cpu in (("fit_encoding/d/S1/m/layer-0.tsv", 4.0, 2.0),
                           ("fit_encoding/d/S1/m/layer-1.tsv", 6.0, 3.0),
                           ("story_timing/d/a.tsv", 1.0, 0.5)):  # fmt: skip
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header + f"{wall}\t0:00:0{int(wall)}\t1\t1\t1\t1\t0\t0\t50\t{cpu}\n")
    wall = measured_seconds(tmp_path)
    cpu = measured_seconds(tmp_path, column="cpu_time")
    assert wall == {"fit_encoding": (2, 10.0), "story_timing": (1, 1.0)}
    assert cpu == {"fit_encoding": (2, 5.0), "story_timing": (1, 0.5)}
    rows = [RuleRow("fit_encoding", "CPU", jobs=2, seconds=5.0)]
    text = format_comparison(rows, wall, cpu)
    assert "fit_encoding" in text and "0.50" in text and "1.00" in text
