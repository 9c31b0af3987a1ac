"""The workflow through the Snakemake CLI: the demo end to end in a temporary directory, the real
study's plan without network, reruns, and config errors at start."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from _workflow import copy_workflow, pending_jobs, snakemake

from fmriscaling import outputs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """The demo, run once for this module exactly as `make demo` runs it. No test changes it:
    a test that deletes, rebuilds or adds files works on `demo_copy`."""
    workdir = copy_workflow(tmp_path_factory.mktemp("demo"))
    # the suite's critical path: four job slots (each job one thread) keep its share of the two
    # cores it shares with the other test workers (measured: pytest 441 s, against 517 s with
    # two slots); the outputs do not depend on it
    snakemake(workdir, cores=4)
    return workdir


@pytest.fixture
def demo_copy(demo, tmp_path) -> Path:
    """A copy of the finished demo (modification times kept) that a test may change."""
    return Path(shutil.copytree(demo, tmp_path / "demo", symlinks=True))


# the names come from their one home (fmriscaling.outputs), which the writers use too
FIGURES = (
    *outputs.SCALING_FIGURES,
    outputs.NOISE_CEILING_FIGURE,
    outputs.COST_FIGURE,
    outputs.STACKING_FIGURE,
    outputs.PARTITION_FIGURE,
)
TABLES = (
    *outputs.ENCODING_TABLES,
    *outputs.SCALING_TABLES,
    outputs.ROI_TABLE,
    outputs.COST_TABLE,
    *outputs.STACKING_TABLES,
    *outputs.PARTITION_TABLES,
)


def test_demo_makes_every_final_target(demo):
    tables = demo / "results" / "tables" / "demo"
    figures = demo / "results" / "figures" / "demo"
    for name in TABLES:
        assert (tables / f"{name}.csv").is_file()
        assert (tables / f"{name}.md").is_file()
    for name in (
        "voxels",
        "roi_voxels",
        "bootstrap_means",
        "scaling_bootstrap",
        "partition_voxels",
    ):
        assert (tables / f"{name}.csv.gz").stat().st_size > 100
    for name in FIGURES:
        for fmt in ("png", "pdf"):
            assert (figures / f"{name}.{fmt}").stat().st_size > 1000
    for subject in ("UTS01", "UTS02"):
        png = figures / f"{subject}_best_model_map.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert not (figures / f"{subject}_best_model_map.pdf").exists()  # map_formats: [png]
        png = figures / f"{subject}_variance_partition_map.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_headline_rois_and_costs(demo):
    tables = demo / "results" / "tables" / "demo"
    head = pd.read_csv(tables / "headline.csv")
    params = head[head["axis"] == "params"].set_index("width")
    assert set(params["family"]) == {"tiny-opt"}  # the speech families have one size each
    assert params.loc["native", "paper_pct_per_decade"] == 4.4  # through paper_aliases
    # the size curve at d = 16 (features.fixed_dim) beside the native one; no paper number
    assert params.loc["16", "n_points"] == 3 and pd.isna(params.loc["16", "paper_pct_per_decade"])
    assert (head["pct_lo"] <= head["pct_per_decade"]).all()
    assert (head["pct_per_decade"] <= head["pct_hi"]).all()
    assert set(head["axis"]) == {"params", "stories", "trs"}
    rois = pd.read_csv(tables / "rois.csv")
    anatomical = set(rois.loc[rois["source"] == "anatomical", "roi"])
    assert {"precuneus", "auditory", "angular_gyrus", "prefrontal"} <= anatomical
    assert {"AC", "Broca"} <= set(rois.loc[rois["source"] == "functional", "roi"])
    cortex = rois[rois["roi"] == "cortex"]
    assert (cortex["n_voxels"] == 300).all()
    voxels = pd.read_csv(tables / "voxels.csv.gz")
    assert len(voxels) == 2 * 300 and set(voxels["hemisphere"]) == {"lh", "rh"}
    costs = pd.read_csv(tables / "costs.csv")
    assert set(costs["rule"]) == {
        "extract_text_features", "extract_speech_features", "fit_encoding", "fit_encoding_subset",
        "fit_encoding_width",
    }  # fmt: skip
    # 5 extractions, one fit job per layer (18), per subset fit (9) and per text-model layer at
    # d = 16 (12), shared by both subjects
    assert len(costs) == 5 + 18 + 9 + 12 and (costs["seconds"] > 0).all()
    fits = costs[costs["rule"].str.startswith("fit_")]
    assert fits.groupby("width").size().to_dict() == {"16": 12, "native": 27}


def test_demo_report_lists_every_figure(demo_copy):
    report = demo_copy / "results" / "report.html"
    snakemake(demo_copy, "--report", str(report.relative_to(demo_copy)))
    html = report.read_text()
    for name in FIGURES:
        assert f"{name}.png" in html
    for name in ("UTS01_best_model_map.png", "headline.csv", "rois.csv", "costs.csv"):
        assert name in html
    # the group figures, and links to the interactive pages and viewers (make view serves them)
    for name in ("tiny-whisper.test_r.png", "tiny-clip.gain.png", "group_rois.csv"):
        assert name in html
    for link in (
        "viewers/demo/UTS01/index.html",
        "viewers/demo/group/tiny-opt.gain.html",
        "viewers/demo-vision/group/tiny-clip.gain.html",
    ):
        assert link in html


def test_demo_table_has_one_row_per_fit(demo):
    table = pd.read_csv(demo / "results" / "tables" / "demo" / "encoding.csv")
    layers = {"tiny-opt-xs": 3, "tiny-opt-s": 4, "tiny-opt-m": 5, "tiny-hubert": 3,
              "tiny-whisper": 3}  # fmt: skip
    full = table[table["full_train"] & (table["width"] == "native")]
    assert len(full) == 2 * sum(layers.values())
    assert full.groupby("model")["layer"].nunique().to_dict() == layers
    assert (full["n_features"] > 0).all() and not full["projected"].any()
    # every layer of the tiny LMs again at d = 16, each projected by its own training stories'
    # PCA; tiny-opt-xs is 16 wide: a rotation that keeps all of its variance
    fixed = table[table["width"] != "native"]
    assert len(fixed) == 2 * (3 + 4 + 5) and set(fixed["width"].astype(str)) == {"16"}
    assert fixed["full_train"].all() and fixed["projected"].all()
    assert (fixed["n_features"] == 16).all() and fixed["explained_variance"].between(0, 1).all()
    xs = fixed[fixed["model"] == "tiny-opt-xs"]
    np.testing.assert_allclose(xs["explained_variance"], 1.0, atol=1e-6)
    sub = table[~table["full_train"]]
    # 4 log-spaced story counts from 2 to 12 (12 itself is the full fit), 3 seeds, 2 subjects
    expected = np.rint(np.geomspace(2, 12, 4)).astype(int)[:-1].tolist()
    assert sorted(sub["n_train_stories"].unique()) == expected == [2, 4, 7]
    assert len(sub) == 2 * 3 * 3
    assert (sub["layer"] == 2).all() and (sub["model"] == "tiny-opt-m").all()
    assert np.isfinite(table["mean_r"]).all()
    assert (table["n_voxels"] == 300).all()
    assert set(table["backend"]) <= {"numpy", "torch"}
    # the n_params of the tiny models come from their snapshots and grow with the preset
    sizes = full.groupby("model")["n_params"].first()
    assert sizes["tiny-opt-xs"] < sizes["tiny-opt-s"] < sizes["tiny-opt-m"]


def test_demo_features_match_response_rows(demo):
    respdict = json.loads((demo / "results/data/demo/derivative/respdict.json").read_text())
    for model, n_layers in (("tiny-opt-m", 4), ("tiny-whisper", 2)):
        folder = demo / "results" / "features" / "demo" / model
        assert sorted(p.name for p in folder.glob("layer-*.h5")) == sorted(
            f"layer-{i}.h5" for i in range(n_layers + 1)
        )
        with h5py.File(folder / "layer-1.h5", "r") as f:
            assert set(f) == set(respdict)
            for story, n in respdict.items():
                assert f[story].shape[0] == n - 20
                assert f[story].dtype == np.float32
        record = json.loads((folder / "provenance.json").read_text())
        assert record["params"]["model_name"] == model


def test_demo_recovers_known_signal(demo):
    """Voxels the ground truth says are predictable are predicted better than null voxels."""
    truth = np.load(demo / "results/data/demo/ground_truth/UTS01.npz", allow_pickle=False)
    ceiling = np.load(demo / "results/noise_ceiling/demo/UTS01.npz", allow_pickle=False)
    # estimated CC_max follows the analytic one
    valid = ceiling["valid"]
    est = ceiling["cc_max"][valid]
    assert np.corrcoef(est, truth["cc_max"][valid])[0, 1] > 0.8
    scores = np.load(
        demo / "results/encoding/demo/UTS01/tiny-opt-m/layer-2/scores.npz", allow_pickle=False
    )
    r = scores["test_r"]
    snr = truth["cc_max"]
    high, low = r[snr > np.quantile(snr, 0.75)], r[snr < np.quantile(snr, 0.25)]
    assert high.mean() > low.mean() + 0.05


def test_demo_carries_significance_and_the_alpha_diagnostics_everywhere(demo):
    """Every fit has per-voxel p, q and significance; the tables count them; the demo's
    default alpha grid raises no edge warning."""
    truth = np.load(demo / "results/data/demo/ground_truth/UTS01.npz", allow_pickle=False)
    scores = np.load(
        demo / "results/encoding/demo/UTS01/tiny-opt-m/layer-2/scores.npz", allow_pickle=False
    )
    p, q, significant = scores["test_p"], scores["test_q"], scores["significant"]
    assert p.min() >= 1 / 1001 and p.max() <= 1 and (q >= p - 1e-7).all()
    np.testing.assert_array_equal(significant, q <= 0.05)
    tables = demo / "results" / "tables" / "demo"
    # the best model's map: voxels with a true signal are found, the few without are not
    voxels = pd.read_csv(tables / "voxels.csv.gz")
    best = voxels[voxels["subject"] == "UTS01"].sort_values("voxel")
    found, signal = best["significant"].to_numpy(bool), truth["has_signal"]
    assert found[signal].sum() >= 10
    assert (found & ~signal).sum() <= 0.1 * found.sum()  # false discoveries within ~FDR
    encoding = pd.read_csv(tables / "encoding.csv")
    assert encoding["fraction_significant"].between(0, 1).all()
    row = encoding[(encoding["subject"] == "UTS01") & (encoding["model"] == "tiny-opt-m")
                   & (encoding["layer"] == 2) & encoding["full_train"]].iloc[0]  # fmt: skip
    assert row["n_significant"] == significant.sum()
    assert encoding["fraction_alpha_min"].between(0, 1).all()
    assert (encoding[["fraction_alpha_min", "fraction_alpha_max"]] <= 0.05).all().all()
    logs = (demo / "results/logs/fit_encoding").rglob("*.log")
    assert not [log for log in logs if "widen encoding.alphas" in log.read_text()]
    assert pd.read_csv(tables / "headline.csv")["best_fraction_significant"].between(0, 1).all()
    rois = pd.read_csv(tables / "rois.csv")
    assert rois.loc[rois["n_voxels"] > 0, "fraction_significant"].between(0, 1).all()
    assert {"test_p", "test_q", "significant"} <= set(voxels.columns)
    assert pd.read_csv(tables / "stacking.csv")["fraction_significant_stack"].notna().any()
    vision = pd.read_csv(demo / "results/tables/demo-vision/encoding.csv")
    fits = vision[vision["kind"] != "ensemble"]
    assert fits["fraction_significant"].between(0, 1).all()
    # the tiny-clip-m vertices are driven by its features: most are found
    best = fits[(fits["model"] == "tiny-clip-m") & (fits["kind"] == "full")]
    assert (best["fraction_significant"] > 0.5).all()


def test_demo_is_complete_and_a_deleted_target_is_rebuilt_alone(demo, demo_copy):
    assert pending_jobs(demo) == {}
    target = demo_copy / "results/encoding/demo/UTS02/tiny-opt-s/layer-1/scores.npz"
    other = demo_copy / "results/encoding/demo/UTS01/tiny-opt-s/layer-1/scores.npz"
    before, other_before = np.load(target)["test_r"], np.load(other)["test_r"]
    target.unlink()
    rel = str(target.relative_to(demo_copy))
    assert pending_jobs(demo_copy, rel) == {"fit_encoding": 1}
    snakemake(demo_copy, rel)
    np.testing.assert_allclose(np.load(target)["test_r"], before, rtol=1e-5, atol=1e-6)
    # the job fits both subjects (they share their training stories) and rewrites UTS01's too
    np.testing.assert_array_equal(np.load(other)["test_r"], other_before)
    summary = json.loads(target.with_suffix(".json").read_text())
    assert summary["shared_with"] == ["UTS01"]


def test_changed_param_reruns_exactly_the_affected_jobs(demo, tmp_path):
    overlay = tmp_path / "delays.yaml"
    overlay.write_text("encoding:\n  delays: [1, 2, 3]\n")
    jobs = pending_jobs(demo, overlays=(str(overlay),))
    # every fit and what is drawn from the fits; nothing upstream of the design matrices. One
    # job per (model, layer[, subset]) fits both subjects: they share their training stories
    assert jobs["fit_encoding"] == 18
    assert jobs["fit_encoding_subset"] == 3 * 3
    assert jobs["fit_encoding_width"] == 3 + 4 + 5  # the text models' layers at d = 16
    # the stacks' members are those fits' designs, folds and alphas (per subject), and the
    # partitions' bands are fitted on them too
    assert jobs["stack_member"] == 2 * 4 and jobs["stack_regression"] == 2 * 2
    assert jobs["fit_partition"] == 2
    assert set(jobs) == {
        "fit_encoding",
        "fit_encoding_subset",
        "fit_encoding_width",
        "encoding_table",
        "bootstrap_means",
        "scaling_table",
        "scaling_figures",
        "roi_tables",
        "noise_ceiling_figure",
        "brain_map",
        "cost_table",
        "cost_figure",
        "stack_member",
        "stack_regression",
        "stacking_table",
        "stacking_figure",
        "fit_partition",
        "partition_table",
        "partition_figure",
        "partition_map",
        # the language track's maps on fsaverage5 and its viewers; not the vision track's
        "surface_maps",
        "group_maps",
        "group_figures",
        "subject_viewer",
    }


def test_demo_stack_weighs_speech_in_auditory_voxels_and_text_elsewhere(demo):
    """The demo's auditory voxels hear the sound: the stacks weigh tiny-whisper there."""
    tables = demo / "results" / "tables" / "demo"
    table = pd.read_csv(tables / "stacking.csv")
    # the demo's true groups ("auditory" is also an anatomical ROI's name)
    stacking = table[table["group_source"] == "label"].set_index(["subject", "stack", "group"])
    truth_groups = set(table.loc[table["group_source"] == "label", "group"])
    assert truth_groups == {"auditory", "semantic", "unresponsive"}
    # the subjects' ROIs are summarised too, and their gains join the ROI table
    rois = pd.read_csv(tables / "rois.csv")
    roi_groups = set(table.loc[table["group_source"].isin(["anatomical", "functional"]), "group"])
    assert roi_groups and roi_groups <= set(rois["roi"])
    assert {"stacking_gain:speech-text", "stacking_gain:pair"} <= set(rois.columns)
    cortex = rois[rois["roi"] == "cortex"].set_index("subject")["stacking_gain:pair"]
    whole = table[(table["stack"] == "pair") & (table["group"] == "all")]
    np.testing.assert_allclose(
        cortex.loc[whole["subject"]].to_numpy(), whole["gain_over_best_member"].to_numpy()
    )
    for subject in ("UTS01", "UTS02"):
        for stack in ("speech-text", "pair"):
            auditory, semantic = (
                stacking.loc[subject, stack, "auditory"],
                stacking.loc[subject, stack, "semantic"],
            )
            assert auditory["weight_speech"] > 0.6
            assert auditory["weight_speech"] > semantic["weight_speech"] + 0.2
            assert semantic["weight_text"] > 0.5
            assert auditory["n_solver_fallback"] == 0
            # the stack predicts the sound-driven voxels as well as the speech model alone
            assert auditory["mean_r_stack"] > auditory["mean_r_best_member"] - 0.03
    members = pd.read_csv(tables / "stacking_members.csv")
    best = pd.read_csv(tables / "best_layers.csv").set_index(["subject", "model"])["layer"]
    text = members[(members["model"] == "tiny-opt-m") & (members["group"] == "all")]
    assert (text["layer_choice"] == "best").all() and len(text) == 4
    for row in text.itertuples():  # 'best' is the layer sweep's CV choice, never test r
        assert row.layer == best[row.subject, "tiny-opt-m"]
    speech = members[(members["stack"] == "speech-text") & (members["kind"] == "speech")]
    assert sorted(set(speech["layer"])) == [0, 2]  # tiny-whisper's even layers
    scores = demo / "results/stacking/demo/UTS01/speech-text/scores.npz"
    with np.load(scores, allow_pickle=False) as data:
        weights = data["weights"]
        assert weights.shape == (3, 300) and (weights >= 0).all()
        np.testing.assert_allclose(weights.sum(0), 1.0, atol=1e-6)
        assert data["solver_certified"].all()
    assert (scores.with_name("scores.npz.provenance.json")).is_file()
    member = demo / "results/stacking/demo/UTS01/members/tiny-opt-m/layer-best.h5"
    with h5py.File(member, "r") as f:
        assert f["oof_pred"].dtype == np.float16 and f.attrs["alpha_agreement"] == 1.0


def test_demo_partition_finds_the_sound_in_auditory_voxels_and_the_words_elsewhere(demo):
    """Variance partitioning of the CV-best speech and text layers against the demo's truth."""
    tables = demo / "results" / "tables" / "demo"
    table = pd.read_csv(tables / "partition.csv")
    truth = table[table["group_source"] == "label"]
    assert set(truth["group"]) == {"auditory", "semantic", "unresponsive"}
    unique = truth[truth["measure"] == "unique"].set_index(["subject", "group", "bands"])
    joint = truth[truth["measure"] == "joint"].set_index(["subject", "group"])["mean_r2"]
    for subject in ("UTS01", "UTS02"):
        speech = unique.loc[subject, :, "tiny-whisper"]["mean_r2"]
        text = unique.loc[subject, :, "tiny-opt-m"]["mean_r2"]
        # unique speech variance is highest in the auditory group, and dominates there
        assert speech.idxmax() == "auditory" and speech["auditory"] > 0.1
        assert speech["auditory"] > 5 * text["auditory"]
        # the words explain the semantic voxels: more than the sound does there, and a larger
        # share of what the joint model explains than in the auditory voxels (in absolute R²
        # the auditory voxels' signal is stronger: UTS02's text term is larger there)
        assert text["semantic"] > 0 and text["semantic"] > speech["semantic"]
        assert (
            text["semantic"] / joint[subject, "semantic"]
            > text["auditory"] / joint[subject, "auditory"] + 0.3
        )
    # the regions add up to the joint model's R² in every group
    regions = table[table["measure"].isin(["unique", "shared"]) & (table["n_voxels"] > 0)]
    summed = regions.groupby(["subject", "group", "group_source"])["mean_r2"].sum()
    joints = table[table["measure"] == "joint"].set_index(["subject", "group", "group_source"])
    np.testing.assert_allclose(summed, joints.loc[summed.index, "mean_r2"], atol=1e-6)
    # which method explains auditory cortex best: every method is listed per group
    methods = pd.read_csv(tables / "method_comparison.csv")
    auditory = methods[(methods["group"] == "auditory") & (methods["group_source"] == "label")]
    assert set(auditory["method"]) == {"single", "member", "best single", "stack", "banded"}
    best = auditory[auditory["method"] == "best single"].set_index("subject")["name"]
    assert best.str.startswith("tiny-whisper/layer-").all()
    scores = demo / "results/partition/demo/UTS01/speech-text/scores.npz"
    with np.load(scores) as data:
        assert list(data["band_layers"]) == [
            pd.read_csv(tables / "best_layers.csv")
            .set_index(["subject", "model"])
            .loc[("UTS01", model), "layer"]
            for model in ("tiny-whisper", "tiny-opt-m")
        ]
        assert data["joint_significant"].any()
    assert scores.with_name("scores.npz.provenance.json").is_file()


def test_changed_trim_or_raw_file_rebuilds_the_prepared_responses(demo_copy, tmp_path):
    overlay = tmp_path / "trim.yaml"
    overlay.write_text("encoding:\n  test_extra_trim: 30\n")
    jobs = pending_jobs(demo_copy, overlays=(str(overlay),))
    assert jobs["prepare_responses"] == 2 and jobs["noise_ceiling"] == 2
    assert jobs["fit_encoding"] == 18 and jobs["fit_encoding_subset"] == 9
    assert pending_jobs(demo_copy) == {}
    raw = demo_copy / "results/data/demo/derivative/preprocessed_data/UTS02/synthstory03.hf5"
    os.utime(raw)  # touched, same bytes: Snakemake 9 compares input checksums, so does the fit
    assert pending_jobs(demo_copy) == {}
    with h5py.File(raw, "r+") as f:  # a changed raw file
        f["data"][0, 0] += 1.0
    jobs = pending_jobs(demo_copy)
    # that subject's prepared responses, then every fit of its group; no ceiling, no features
    assert jobs["prepare_responses"] == 1
    assert jobs["fit_encoding"] == 18 and jobs["fit_encoding_subset"] == 9
    assert "noise_ceiling" not in jobs and "extract_text_features" not in jobs


def test_corrupt_prepared_responses_are_refused_named_and_kept(demo_copy):
    """A damaged byte Snakemake cannot see: the fit refuses the file, names it and the rule
    that rebuilds it, and deletes nothing (it is another rule's output)."""
    prepared = demo_copy / "results/responses/demo/UTS01.h5"
    stat = prepared.stat()
    with h5py.File(prepared, "r") as f:
        offset = f["stories"]["synthstory02"].id.get_chunk_info(0).byte_offset
    with open(prepared, "r+b") as f:  # one damaged byte; size and mtime as they were
        f.seek(offset + 8)
        byte = f.read(1)
        f.seek(offset + 8)
        f.write(bytes([byte[0] ^ 0x55]))
    os.utime(prepared, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert pending_jobs(demo_copy) == {}  # Snakemake cannot tell
    target = demo_copy / "results/encoding/demo/UTS01/tiny-opt-xs/layer-0/scores.npz"
    before = np.load(target)["test_r"]
    target.unlink()
    rel = str(target.relative_to(demo_copy))
    failed = snakemake(demo_copy, rel, check=False)
    assert failed.returncode != 0
    log = demo_copy / "results/logs/fit_encoding/demo/UTS01+UTS02/tiny-opt-xs/layer-0.log"
    text = log.read_text()
    assert "results/responses/demo/UTS01.h5" in text and "the file is corrupt" in text
    assert "rule prepare_responses" in text
    assert "snakemake --cores 1 --force results/responses/demo/UTS01.h5" in text
    assert prepared.exists() and prepared.stat().st_size == stat.st_size
    # the fix the message gives: rebuild the file, then the fit
    snakemake(demo_copy, "--force", "results/responses/demo/UTS01.h5")
    assert pending_jobs(demo_copy, rel) == {"fit_encoding": 1}
    snakemake(demo_copy, rel)
    np.testing.assert_array_equal(np.load(target)["test_r"], before)


def test_provenance_beside_scores(demo):
    scores = demo / "results/encoding/demo/UTS01/tiny-opt-xs/layer-0/scores.npz"
    record = json.loads(scores.with_name("scores.npz.provenance.json").read_text())
    assert record["params"]["delays"] == [1, 2, 3, 4]
    assert len(record["config_hash"]) == 16
    assert record["versions"]["himalaya"]


# ---------------------------------------------------------------------------- vision track

VISION_TABLES = outputs.VISION_TABLES
VISION_FIGURES = outputs.VISION_FIGURES


def test_demo_runs_the_vision_track_and_finds_its_ground_truth(demo):
    tables = demo / "results" / "tables" / "demo-vision"
    figures = demo / "results" / "figures" / "demo-vision"
    for name in VISION_TABLES:
        assert (tables / f"{name}.csv").is_file() and (tables / f"{name}.md").is_file()
    for name in VISION_FIGURES:
        for fmt in ("png", "pdf"):
            assert (figures / f"{name}.{fmt}").stat().st_size > 1000
    fits = pd.read_csv(tables / "encoding.csv")
    # 2 subjects x (3 full fits + 3 sizes x 2 seeds of tiny-clip-m + the ensemble)
    assert len(fits) == 2 * (3 + 6 + 1)
    assert sorted(fits.loc[fits["kind"] == "subsample", "n_train_images"].unique()) == [12, 30, 76]
    assert (fits["n_test_images"] == 48).all() and (fits["n_vertices"] == 200).all()
    assert fits["mean_noise_norm"].between(0, 100).all()
    # the scaling table stacks under the language track's
    language = pd.read_csv(demo / "results" / "tables" / "demo" / "scaling.csv")
    vision = pd.read_csv(tables / "scaling.csv")
    assert list(vision.columns) == list(language.columns)
    assert set(vision["axis"]) == {"params", "images"} and set(vision["kind"]) == {"vision"}
    r = vision[vision["metric"] == "mean_r"]
    assert (
        (r["slope_lo"] <= r["slope_per_decade"]) & (r["slope_per_decade"] <= r["slope_hi"])
    ).all()
    # more training images predict better (the synthetic responses are learnable)
    assert (r.loc[r["axis"] == "images", "slope_lo"] > 0).all()
    for subject in ("subj01", "subj02"):
        truth = np.load(demo / f"results/data/demo-vision/ground_truth/{subject}.npz")
        scores = np.load(
            demo / f"results/encoding/demo-vision/{subject}/tiny-clip-m/selected/scores.npz"
        )
        for driver in (1, 2):
            at = truth["driver"] == driver
            right = (scores["layer"] == truth["true_layer"]) & (
                scores["pool"] == truth["true_pool"]
            )
            assert right[at].mean() > 0.6, (subject, driver)


def test_demo_group_maps_on_fsaverage5_for_both_tracks(demo):
    from fmriscaling.surface.project import load_surface_maps, read_func_gifti
    from fmriscaling.surface.sphere import FSAVERAGE5_VERTICES, fsaverage_mesh
    from fmriscaling.workflow import Study, load_config

    study = Study(load_config([demo / "config" / "config.yaml"]), demo)
    missing = [f for f in study.surface_targets() if not (demo / f).exists()]
    assert not missing, missing[:5]
    surface = demo / "results" / "surface"
    # the group map is the mean of the subjects' maps, vertex by vertex (GIFTIs, through nibabel)
    name = "tiny-whisper.test_r"
    for hemi in ("L", "R"):
        group = read_func_gifti(
            surface / "demo" / "group" / f"group_space-fsaverage5_hemi-{hemi}_desc-{name}.func.gii"
        )
        subjects = np.stack(
            [
                read_func_gifti(
                    surface / "demo" / s / f"{s}_space-fsaverage5_hemi-{hemi}_desc-{name}.func.gii"
                )
                for s in ("UTS01", "UTS02")
            ]
        )
        both = np.isfinite(subjects).all(axis=0)
        assert both.mean() > 0.7  # the demo's coarse voxels cover most of the cortex
        np.testing.assert_allclose(group[both], subjects[:, both].mean(axis=0), rtol=1e-5)
    # the sound drives the auditory voxels: the speech model predicts them best, also on
    # fsaverage5, through the synthetic registration and the labels carried with it
    rois = pd.read_csv(demo / "results" / "tables" / "demo" / "group_rois.csv")
    whisper = rois[rois["map"] == name].set_index("roi")
    assert whisper.loc["auditory", "mean"] > 1.5 * whisper.loc["cortex", "mean"]
    assert whisper.loc["auditory", "n_vertices"] > 100
    assert (rois["n_subjects"] == 2).all()
    maps = load_surface_maps(surface / "demo" / "group" / "maps.npz")
    assert set(maps.labels) == {"aparc", "aparc.a2009s"}
    assert maps.counts.max() == 2
    # vision: the challenge's (synthetic) vertices at the occipital pole, carried exactly
    vision = load_surface_maps(surface / "demo-vision" / "group" / "maps.npz")
    covered = np.isfinite(vision["tiny-clip.test_r"])
    for half in (covered[:FSAVERAGE5_VERTICES], covered[FSAVERAGE5_VERTICES:]):
        assert 100 <= half.sum() <= 2 * 100  # 100 per hemisphere and subject, overlapping
    posterior = np.concatenate([fsaverage_mesh()[h]["inflated"][:, 1] for h in ("lh", "rh")])
    assert np.percentile(posterior[covered], 95) < np.percentile(posterior, 10)
    assert vision.values.shape[1] == 2 * FSAVERAGE5_VERTICES
    vrois = pd.read_csv(demo / "results" / "tables" / "demo-vision" / "group_rois.csv")
    assert {"V1v", "V1d"} & set(vrois["roi"])  # the challenge's ROI labels came along


def test_viewers_draw_in_a_real_browser_from_localhost(demo):
    """Every viewer of the demo, served on 127.0.0.1 and opened in headless Chromium: drawn,
    no console error of its own loading (the Leap Motion socket aside), nothing fetched from
    anywhere but the server; screenshots under results/screenshots/."""
    from _browser import chromium, distinct_colours, open_page, picture_shown

    from fmriscaling.viewers import find_viewers, serve

    results = demo / "results"
    pages = find_viewers(results)
    kinds = {"pycortex": 0, "nilearn": 0}
    driver = chromium()
    try:
        with serve(results) as url:
            for page in pages:
                kind = "pycortex" if page.name == "index.html" else "nilearn"
                kinds[kind] += 1
                view = open_page(driver, f"{url}/{page.as_posix()}", kind=kind)
                assert not view.errors, (page, view.errors)
                foreign = [
                    r for r in view.requests
                    if not r.startswith((url, "data:", "blob:", "ws://127.0.0.1:6437"))
                ]  # fmt: skip
                assert not foreign, (page, foreign[:3])
                image = view.image()
                assert picture_shown(image) > 0.05, page
                assert distinct_colours(image) > 100, page  # a coloured brain, not a message
                name = "_".join(page.with_suffix("").parts[1:])
                view.save(results / "screenshots" / f"{name}.png")
    finally:
        driver.quit()
    assert kinds == {"pycortex": 2, "nilearn": 2}  # the demo pages the gain maps only
