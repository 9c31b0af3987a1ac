"""The plan: the flop counts and rates of the cost model, a price for every rule, and the plans
of the demo, the real language study and the vision study before its data (from the Study's
own jobs, no Snakemake run)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fmriscaling import cost
from fmriscaling.features.audio import conv_last_frame
from fmriscaling.features.context import window_schedule
from fmriscaling.plan import (
    JOB_OVERHEAD_S,
    UNPRICED_RULES,
    CostModel,
    format_plan,
    plan_study,
)
from fmriscaling.workflow import Study, StudyFacts, load_config

ROOT = Path(__file__).resolve().parent.parent
DEMO = [ROOT / "config/config.yaml"]
LEBEL = [*DEMO, ROOT / "config/lebel2023.yaml"]
ALGONAUTS = [*DEMO, ROOT / "config/algonauts2023.yaml"]


def _rules_of_the_workflow() -> set[str]:
    """Every rule name in rules/*.smk (the fit groups' rules are named from the Study)."""
    names = set()
    for smk in sorted((ROOT / "rules").glob("*.smk")):
        names |= set(re.findall(r"^\s*(?:local)?rule (\w+):", smk.read_text(), re.M))
        names |= set(re.findall(r"^\s*use rule \w+ as (\w+)", smk.read_text(), re.M))
    return names | {"fit_encoding", "fit_encoding_subset", "all"}


def test_every_rule_of_the_workflow_has_a_price(tmp_path):
    rules = _rules_of_the_workflow()
    assert {"select_vision_sweep", "vision_table", "stack_member", "cost_figure"} <= rules
    study = Study(load_config(DEMO), ROOT)
    model = CostModel(study, StudyFacts(study.config, tmp_path))
    unpriced = sorted(r for r in rules if r not in model.pricers and r not in UNPRICED_RULES)
    assert unpriced == []
    # later fit groups are priced as the first; an unknown rule is an error, not free
    assert model.rule_of(type(study.jobs()[0])("fit_encoding_subset_3")) == "fit_encoding_subset"
    with pytest.raises(KeyError, match="no price for rule 'made_up'"):
        model(type(study.jobs()[0])("made_up"))


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
    study = Study(load_config(DEMO), ROOT)
    facts = StudyFacts(study.config, tmp_path)  # no data: the demo's sizes from the config
    one = cost.Device("test", gemm=1e12, eigh=1e12, forward=1e12, read=1e12, measured=True)
    jobs = study.jobs()
    job = next(j for j in jobs if j.rule == "fit_encoding" and j.wildcards["model"] == "tiny-opt-m")
    assert job.params["subjects"] == ["UTS01", "UTS02"] and len(job.params["train_stories"]) == 12
    rows = facts.story_rows("synthstory01")
    assert rows == 120 - 20  # mean of story_n_trs [100, 140], minus 20 trimmed
    n, n_test, v, p = 12 * rows, 150 - 20 - 40, 2 * 300, 4 * 64
    n_alphas = study.config["encoding"]["alphas"]["num"]
    flops = cost.ridge_flops(n, p, v, n_test, [(n - n // 5, n // 5)] * 5, n_alphas)
    # the permutation test: 9 blocks of 10 TRs, a 9 x 9 table per voxel, 1000 permutations
    permutations = 2.0 * v * 9 * 9 * (10 + 1000)
    read = 4.0 * v * (n + n_test) + 4.0 * (n + n_test) * 64
    model = CostModel(study, facts, cpu=one)
    priced = model(job)
    assert priced.where == "CPU"
    assert priced.seconds == pytest.approx(
        JOB_OVERHEAD_S["fit_encoding"] + flops.total / 1e12 + read / 1e12 + permutations / 1e12
    )
    assert priced.disk_bytes == pytest.approx(4.0 * v * 3 + 2 * 2e3 + 9.0 * v)
    # a data-size fit of 4 of the 12 stories: a third of the training TRs
    subset = next(j for j in jobs if j.rule == "fit_encoding_subset" and j.wildcards.get("n") == 4)
    assert len(subset.params["train_stories"]) == 4
    m = 4 * rows
    sub = cost.ridge_flops(m, p, v, n_test, [(m - m // 5, m // 5)] * 5, n_alphas)
    read = 4.0 * v * (m + n_test) + 4.0 * (m + n_test) * 64
    assert model(subset).seconds == pytest.approx(
        JOB_OVERHEAD_S["fit_encoding_subset"] + sub.total / 1e12 + read / 1e12 + permutations / 1e12
    )


def test_vision_selection_is_priced_by_its_candidates(tmp_path):
    """select_vision: one cross-validated ridge per (layer, k) candidate at the subject's
    images and vertices; the sweep job sums its sizes; more pooling sizes cost more."""
    study = Study(load_config(DEMO), ROOT)
    one = cost.Device("test", gemm=1e12, eigh=1e12, forward=1e12, read=1e12, measured=True)
    model = CostModel(study, StudyFacts(study.config, tmp_path), cpu=one)
    jobs = study.jobs()
    full = next(
        j for j in jobs if j.rule == "select_vision" and j.wildcards["model"] == "tiny-clip-m"
    )
    sweep = next(j for j in jobs if j.rule == "select_vision_sweep")
    assert full.params["n_vertices"] == 200 and full.params["sizes"] == [192]
    assert sweep.params["sizes"] == [12, 12, 30, 30, 76, 76]
    widths = model._pooled_widths("tiny-clip-m")
    assert len(widths) == study.models["tiny-clip-m"]["n_layers"] * len(study.vision["pooling"])
    seconds, _ = model._select_vision(full, one)
    assert seconds > 0
    # the sweep job is the sum of one selection per size and seed
    each = [model._select_vision(replace(sweep, params={**sweep.params, "sizes": [n]}), one)[0]
            for n in sweep.params["sizes"]]  # fmt: skip
    assert model._select_vision(sweep, one)[0] == pytest.approx(sum(each))
    assert each[0] < each[-1]  # more images cost more
    wider = Study(
        load_config(DEMO) | {"vision": {**study.config["vision"], "pooling": [1, 2, 4, 8]}}, ROOT
    )
    wide = CostModel(wider, StudyFacts(wider.config, tmp_path), cpu=one)
    assert wide._select_vision(full, one)[0] > seconds


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


def test_real_study_plan_prices_every_job_before_the_download(tmp_path):
    """The real language study, planned from the Study's jobs with no data on disk."""
    rows, assumptions, study = plan_study(LEBEL, ROOT)
    by_rule = {r.rule: r for r in rows}
    # one fit job per (model, layer), shared by the 3 subjects: 22 models x their layers
    assert by_rule["fit_encoding"].jobs == 660 and by_rule["prepare_responses"].jobs == 3
    assert by_rule["fit_encoding_subset"].jobs == 7 * 5
    assert by_rule["extract_text_features"].jobs + by_rule["extract_speech_features"].jobs == 22
    assert all(r.where == "GPU" for r in rows if r.rule.startswith(("fit_", "extract_")))
    # downloads: the manifest's sizes of the selected files (UTS01-03, ~70 GB)
    assert by_rule["download_ds003020_file"].jobs > 400
    assert 60e9 < by_rule["download_ds003020_file"].disk_bytes < 90e9
    gpu_hours = sum(r.seconds for r in rows if r.where == "GPU") / 3600
    assert 10 < gpu_hours < 1000
    assert any("respdict.json not downloaded" in a for a in assumptions)
    text = format_plan(rows, assumptions, "plan")
    assert "GPU-hours" in text and "assumed" in text and "fit_encoding" in text
    assert np.isfinite(by_rule["fit_encoding"].max_job_seconds)
    assert by_rule["fit_encoding"].requested_minutes == study.config["compute"]["ridge_runtime"]


def test_vision_study_is_planned_before_its_data(tmp_path):
    """config/algonauts2023.yaml with no NSD data on disk: the published image and vertex
    counts, said to be assumed; the workflow itself (check_data=True) refuses to start."""
    from fmriscaling import DataError

    rows, assumptions, study = plan_study(ALGONAUTS, tmp_path)
    by_rule = {r.rule: r for r in rows}
    n_models = len(study.vision_run_models)
    n_subjects = len(study.vision_subjects)
    assert by_rule["extract_vision_features"].jobs == n_models == 12
    assert by_rule["select_vision"].jobs == n_models * n_subjects
    assert by_rule["select_vision_sweep"].jobs == n_subjects
    assert "fit_encoding" not in by_rule and "generate_demo_vision_dataset" not in by_rule
    # every selection job does work beyond its start-up; the sweep fits many sizes
    assert by_rule["select_vision"].seconds > 10 * by_rule["select_vision"].jobs
    assert any("published Algonauts 2023" in a for a in assumptions)
    assert study.vision_sweep_sizes and max(study.vision_sweep_sizes) < 8779
    with pytest.raises(DataError, match="does not exist"):
        Study(load_config(ALGONAUTS), tmp_path).final_targets()


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


def test_group_maps_and_viewers_are_priced_by_each_subjects_vertices(tmp_path):
    """The real study's surface rules: a subject's vertices from the manifest's FreeSurfer curv
    files (a 15-byte header, then a float32 a vertex), the viewer's size from them."""
    from fmriscaling.plan import (
        SURFACE_S_PER_VERTEX,
        VIEWER_BYTES_PER_VERTEX,
        VIEWER_FIXED_BYTES,
        VIEWER_S_PER_VERTEX,
    )

    rows, assumptions, study = plan_study(LEBEL, ROOT)
    by_rule = {r.rule: r for r in rows}
    assert by_rule["surface_maps"].jobs == by_rule["subject_viewer"].jobs == 3
    assert by_rule["group_maps"].jobs == by_rule["group_figures"].jobs == 1
    vertices = 268809 + 303823 + 321587  # UTS01-03, lh + rh
    assert StudyFacts(study.config, ROOT).n_vertices("UTS02") == 151191 + 152632
    viewer = by_rule["subject_viewer"]
    assert viewer.disk_bytes == pytest.approx(
        3 * VIEWER_FIXED_BYTES + VIEWER_BYTES_PER_VERTEX * vertices
    )
    assert viewer.seconds == pytest.approx(
        3 * JOB_OVERHEAD_S["subject_viewer"] + VIEWER_S_PER_VERTEX * vertices
    )
    assert by_rule["surface_maps"].seconds == pytest.approx(
        3 * JOB_OVERHEAD_S["surface_maps"] + SURFACE_S_PER_VERTEX * vertices
    )
    assert not any("cortical vertices" in a for a in assumptions)


@pytest.mark.parametrize("overlay", ["qwen2.5", "llama-3"])
def test_a_family_overlay_is_planned_with_the_gpus_its_models_need(overlay):
    """config/families/<family>.yaml over lebel2023.yaml: the family and Whisper-medium."""
    rows, _, study = plan_study([*LEBEL, ROOT / f"config/families/{overlay}.yaml"], ROOT)
    by_rule = {r.rule: r for r in rows}
    assert by_rule["extract_text_features"].jobs == len(study.run_models) - 1
    assert by_rule["extract_speech_features"].jobs == 1
    # one fit job per (model, layer), embeddings included
    assert by_rule["fit_encoding"].jobs == sum(study.n_layers(m) + 1 for m in study.run_models)
    # the 70B-class model is loaded across several GPUs, the smallest on one
    sizes = sorted(study.run_models, key=lambda m: study.models[m]["n_params"])
    assert study.extract_gpus(sizes[-1]) > 1 and study.extract_gpus(sizes[0]) == 1
