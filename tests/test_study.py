"""The workflow's own logic as a library object: `fmriscaling.workflow.Study` on config dicts
(paths, stories, fit groups, draws, targets, jobs) in milliseconds, and its jobs held against
the DAG Snakemake builds from the rules (the same rule and output files for every job)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from _workflow import ROOT, copy_workflow, summary

from fmriscaling import ConfigError, DataError
from fmriscaling.sweep import draw_subset
from fmriscaling.workflow import Study, fill, load_config, merge_configs
from fmriscaling.workflow.paths import log_key

DEMO = [ROOT / "config/config.yaml"]
LEBEL = [*DEMO, ROOT / "config/lebel2023.yaml"]
CHECK = [*DEMO, ROOT / "config/cluster_check.yaml"]


def study(paths=DEMO, overlay=None, **kwargs) -> Study:
    config = load_config(paths)
    return Study(merge_configs(config, overlay or {}), ROOT, **kwargs)


def rules_of(jobs) -> Counter:
    return Counter(job.rule for job in jobs)


# ------------------------------------------------------------------------------------ paths


def test_paths_fill_what_is_given_and_logs_mirror_the_outputs():
    s = study()
    assert s.path("fit", model="m", layer=3) == (
        "results/encoding/{dataset}/{subject}/m/layer-3/scores.{ext}"
    )
    assert fill("{a}/{b}", b=2) == "{a}/2"
    assert s.log("fit_encoding", "fit", dataset="demo", subject="UTS01+UTS02") == (
        "results/logs/fit_encoding/demo/UTS01+UTS02/{model}/layer-{layer}.log"
    )
    assert s.benchmark("story_timing", "timing", dataset="demo") == (
        "results/benchmarks/story_timing/demo/{story}.tsv"
    )
    assert log_key("results/tables/{dataset}/{name}.csv.gz") == "{dataset}/{name}"
    # the vision track's files: the demo's generated copy, or a local copy where the config says
    assert s.vpath("vision_fmri", subject="subj01", hemi="lh") == (
        "results/data/demo-vision/subj01/training_split/training_fmri/lh_training_fmri.npy"
    )
    local = study(overlay={"vision": {"dataset": {"source": "local", "dir": "/data/nsd/"}}})
    assert local.vpath("vision_fmri", subject="subj01", hemi="lh").startswith("/data/nsd/subj01/")


# ---------------------------------------------------------------------------------- stories


def test_training_stories_are_every_story_but_the_test_and_excluded_ones():
    s = study()
    assert s.train_stories("UTS01") == [f"synthstory{i:02d}" for i in range(1, 13)]
    assert s.prepared_stories("UTS01")[-1] == s.test_story == "wheretheressmoke"
    fewer = study(overlay={"dataset": {"exclude_stories": ["synthstory03"]}})
    assert "synthstory03" not in fewer.train_stories("UTS02") and len(fewer.all_stories) == 12
    chosen = study(overlay={"dataset": {"train_stories": ["synthstory02", "synthstory01"]}})
    assert chosen.train_stories("UTS01") == ["synthstory02", "synthstory01"]
    with pytest.raises(ConfigError, match=r"'dataset.train_stories' lists \['nope'\]"):
        study(overlay={"dataset": {"train_stories": ["nope"]}})
    # the demo names its test story as configured; a real dataset must have it
    with pytest.raises(ConfigError, match=r"'dataset\.test_story' is 'nope', but UTS01 has"):
        study(LEBEL, {"dataset": {"test_story": "nope"}})


def test_the_real_study_reads_its_stories_from_the_manifest():
    s = study(LEBEL)
    # 84 stories with responses, the test story among them
    assert len(s.train_stories("UTS01")) == 83 and s.test_story == "wheretheressmoke"
    entry = s.manifest_entry("derivative/respdict.json")
    assert entry["size"] > 0 and len(entry["md5"]) == 32
    with pytest.raises(ValueError, match=r"not in config/datasets/ds003020_manifest\.tsv"):
        s.manifest_entry("derivative/nope.txt")


# ------------------------------------------------------------------------------ fit groups


def test_subjects_that_share_a_training_set_share_one_fit_job():
    s = study(LEBEL)
    assert s.fit_groups == [["UTS01", "UTS02", "UTS03"]]
    # UTS05 has 27 stories: a group of its own, its fits a second rule
    mixed = study(LEBEL, {"dataset": {"subjects": ["UTS01", "UTS05", "UTS02"]}})
    assert mixed.fit_groups == [["UTS01", "UTS02"], ["UTS05"]]
    assert mixed.group_of("UTS05") == 1
    assert [mixed.fit_rule_name(k, 1) for k in ("fit", "subset_fit")] == [
        "fit_encoding_2",
        "fit_encoding_subset_2",
    ]
    jobs = rules_of(mixed.jobs())
    n_layers = sum(len(mixed.layers_of(m)) for m in mixed.run_models)
    assert jobs["fit_encoding"] == jobs["fit_encoding_2"] == n_layers
    # each group's sweep is drawn from its own story count (83 and 26 training stories)
    assert mixed.subsample_sizes("UTS01") != mixed.subsample_sizes("UTS05")
    assert jobs["fit_encoding_subset_2"] == len(mixed.subsample_sizes("UTS05")) * 5


def test_data_size_draws_are_the_subsample_module_s_and_reproducible():
    s = study()
    # 4 log-spaced counts from 2 to 12 (2, 3.63, 6.6, 12 rounded): all 12 is the full fit
    assert s.subsample_sizes("UTS01") == [2, 4, 7]
    group = s.fit_groups[0]
    drawn = s.fit_stories(group, 4, 1)
    assert drawn == draw_subset(s.train_stories("UTS01"), 4, 1) == s.fit_stories(group, "4", "1")
    assert len(set(drawn)) == 4 and set(drawn) <= set(s.train_stories("UTS02"))
    assert s.fit_stories(group, 4, 2) != drawn
    assert s.fit_stories(group) == s.train_stories("UTS01")


# --------------------------------------------------------------------------- targets, jobs


def test_demo_targets_and_jobs():
    s = study()
    targets = s.final_targets()
    tables = [t for t in targets if t.startswith("results/tables/demo/")]
    assert sorted(Path(t).stem for t in tables) == sorted(
        [
            "encoding",
            "best_layers",
            "scaling",
            "headline",
            "rois",
            "costs",
            "stacking",
            "stacking_members",
            "partition",
            "partition_voxels.csv",
            "method_comparison",
            "group_rois",
        ]
    )
    figures = {Path(t).stem for t in targets if t.startswith("results/figures/demo/")}
    assert {"model_size_scaling", "speech_model_size_scaling", "data_scaling"} <= figures
    assert {"noise_ceiling", "costs", "stacking_gain", "UTS01_best_model_map"} <= figures
    assert {"variance_partition", "UTS01_variance_partition_map"} <= figures
    vision = [t for t in targets if "demo-vision" in t and "/surface/" not in t]
    vision = [t for t in vision if "/group/" not in t and "group_rois" not in t]
    assert len(vision) == 5 + 5 * 2  # tables, figures x 2
    # group maps on fsaverage5: 16 language maps (noise ceiling; test_r, cc_norm, depth,
    # significant of 3 families, gain of tiny-opt; 2 stacks' speech weight), 5 vision maps
    language = [sp.name for sp in s.surface_specs("language")]
    assert (
        len(language) == 16 and "tiny-opt.gain" in language and "tiny-hubert.gain" not in language
    )
    assert [sp.name for sp in s.surface_specs("vision")] == [
        "noise_ceiling.cc_max", "tiny-clip.test_r", "tiny-clip.score", "tiny-clip.depth",
        "tiny-clip.gain", "tiny-convnext.test_r", "tiny-convnext.score", "tiny-convnext.depth",
    ]  # fmt: skip
    giftis = [t for t in targets if t.endswith(".func.gii")]
    assert len(giftis) == 2 * (16 * 3 + 8 * 3)  # per hemisphere: 2 subjects + the group
    assert "results/viewers/demo/UTS02" in targets
    assert len([t for t in targets if t.endswith(".html")]) == 1 + 1  # pages: the gain maps
    jobs = s.jobs()
    counts = rules_of(jobs)
    assert sum(counts.values()) == 124
    assert counts["surface_maps"] == counts["vision_surface_maps"] == 2
    assert counts["subject_viewer"] == 2 and counts["vision_group_figures"] == 1
    # the 8 tiny models (3 LMs, 2 speech, 3 vision) in one job
    (build,) = [j for j in jobs if j.rule == "build_tiny_models"]
    # no input: the tokenizer's corpus is drawn from the generator's settings, so the models
    # build beside the dataset
    assert len(build.outputs) == 8 and build.inputs == []
    corpus = s.tiny_models_corpus()
    assert corpus["seed"] == 0 and corpus["n_train_stories"] == 12 and corpus["tr"] == 2.0
    assert counts["fit_encoding"] == 18 and counts["fit_encoding_subset"] == 9  # 3 x 3 x 1
    # every layer of the three tiny LMs again at d = 16 (features.fixed_dim; text models only)
    assert counts["fit_encoding_width"] == 3 + 4 + 5
    # the partition's CV-best speech layer is a member too (the text band is the stacks' own)
    assert counts["stack_member"] == 8 and counts["stack_regression"] == 4
    assert counts["fit_partition"] == 2 and counts["partition_map"] == 2
    (part,) = [j for j in jobs if j.rule == "fit_partition" and j.wildcards["subject"] == "UTS01"]
    assert part.inputs[:2] == [
        "results/stacking/demo/UTS01/members/tiny-whisper/layer-best.h5",
        "results/stacking/demo/UTS01/members/tiny-opt-m/layer-best.h5",
    ]
    assert s.vision_sweep_sizes == [12, 30, 76] and counts["select_vision_sweep"] == 2
    fit = next(j for j in jobs if j.rule == "fit_encoding")
    assert fit.outputs == [
        f"results/encoding/demo/{subject}/tiny-opt-xs/layer-0/scores.{ext}"
        for ext in ("npz", "json")
        for subject in ("UTS01", "UTS02")
    ]
    assert not fit.gpu and fit.runtime == s.config["compute"]["ridge_runtime"]


def test_cluster_slice_and_switched_off_stages_plan_no_jobs():
    s = study(CHECK)
    counts = rules_of(s.jobs())
    assert "fit_encoding_subset" not in counts and "stack_member" not in counts
    assert "extract_vision_features" not in counts and "brain_map" not in counts
    assert "surface_maps" not in counts and "subject_viewer" not in counts  # group_maps off
    assert counts["fit_encoding"] == len(s.layers_of("tiny-opt-xs")) and counts["roi_labels"] == 1
    assert s.figure_names == ["model_size_scaling", "layer_profiles"]
    # a vision-only study runs no language job
    vision_only = study(
        overlay={"run_models": [], "stacks": [], "partitions": [], "subsampling": {"fits": []}}
    )
    counts = rules_of(vision_only.jobs())
    assert "fit_encoding" not in counts and "generate_demo_dataset" not in counts
    assert counts["select_vision"] == 6


def test_the_real_study_downloads_what_its_jobs_read():
    s = study(LEBEL)
    jobs = s.jobs()
    downloads = {o for j in jobs if j.rule == "download_ds003020_file" for o in j.outputs}
    assert len(downloads) > 400
    # every data file a job reads is downloaded, and nothing else is
    data = "results/data/lebel2023/"
    read = {f for j in jobs for f in j.inputs if f.startswith(data)}
    assert downloads == read
    assert set(s.dataset_files()) >= {f for f in downloads if "preprocessed_data" in f}
    # the group maps read each subject's FreeSurfer registration spheres, and nothing else of
    # its FreeSurfer directory but the annotations
    spheres = {f for f in downloads if f.endswith(".sphere.reg")}
    assert spheres == {
        f"{data}derivative/freesurfer_subjdir/{subject}/surf/{hemi}.sphere.reg"
        for subject in s.subjects
        for hemi in ("lh", "rh")
    }
    assert spheres <= set(s.dataset_files())
    assert counts_of(jobs, "download_model") == len(s.hub_models) == 22


def counts_of(jobs, rule: str) -> int:
    return sum(job.rule == rule for job in jobs)


def test_a_local_vision_copy_is_checked_or_planned_from_published_counts(tmp_path):
    overlay = {"vision": {"dataset": {"source": "local", "dir": str(tmp_path / "nsd")}}}
    with pytest.raises(DataError, match="does not exist"):
        study(overlay=overlay).vision_targets()
    planned = study(overlay=overlay, check_data=False)
    assert planned.vision_data["subj01"] == {
        "n_train": 9841,
        "n_test_images": 159,
        "lh": 19004,
        "rh": 20544,
    }
    assert any("published Algonauts 2023" in a for a in planned.assumptions)


# ------------------------------------------------------- the Study's jobs are Snakemake's DAG


@pytest.mark.slow
@pytest.mark.parametrize("overlays", [(), ("config/lebel2023.yaml",)], ids=["demo", "lebel2023"])
def test_the_study_s_jobs_are_the_dag_snakemake_builds(tmp_path, overlays):
    """(rule, output file) of every job: the Study's and Snakemake's, from its summary."""
    workdir = copy_workflow(tmp_path / "wf")
    table = summary(workdir, overlays=overlays)
    theirs = set(zip(table["rule"], table["output_file"], strict=True))
    configs = [workdir / "config/config.yaml", *(workdir / o for o in overlays)]
    s = Study(load_config(configs), workdir)
    ours = {(job.rule, out) for job in s.jobs() for out in job.outputs}
    assert ours == theirs


def test_tiny_text_models_train_on_the_generator_s_stories_or_a_real_dataset_s_textgrids():
    demo = study()
    assert demo.tiny_models_textgrids() == [] and demo.tiny_models_corpus()["n_train_stories"] == 12
    real = study(
        LEBEL,
        overlay={"run_models": ["tiny-opt-xs"], "stacks": [], "partitions": [],
                 "subsampling": {"fits": []}},
    )  # fmt: skip
    assert real.tiny_models_corpus() == {}
    grids = real.tiny_models_textgrids()
    assert len(grids) == len(real.all_stories) and grids[0].endswith(".TextGrid")
    (build,) = [j for j in real.jobs() if j.rule == "build_tiny_models"]
    assert build.inputs == grids
