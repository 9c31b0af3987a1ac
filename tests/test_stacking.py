"""Stacked regression: member files, the streamed solve, recovery of known drivers, tables."""

from __future__ import annotations

import json
import warnings

import h5py
import numpy as np
import pytest

from fmriscaling import ConfigError, DataError
from fmriscaling.config import stack_members, validate_config
from fmriscaling.encoding.folds import story_folds
from fmriscaling.encoding.oof import (
    MemberPredictions,
    best_layer,
    fit_stack_member,
    write_member_predictions,
)
from fmriscaling.encoding.ridge import fit_ridge_cv
from fmriscaling.encoding.stacking import (
    residual_cross_products,
    stack_predictions,
    stack_regression,
    stacking_tables,
    summarize_stack,
)

# ------------------------------------------------------------------------------ synthetic data


def _two_driver_data(rng, n_voxels=90, lengths=(120, 150, 130, 140, 110), n_test=200):
    """Responses of three voxel groups: driven by space A, by space B, by both (half each)."""
    n = sum(lengths)
    A = rng.standard_normal((n + n_test, 12))
    B = rng.standard_normal((n + n_test, 12))
    wa, wb = rng.standard_normal((12, n_voxels)), rng.standard_normal((12, n_voxels))
    group = np.repeat(np.array(["A", "B", "AB"]), n_voxels // 3)
    mix = {"A": (1.0, 0.0), "B": (0.0, 1.0), "AB": (0.5, 0.5)}
    share_a = np.array([mix[g][0] for g in group])
    signal = share_a * (A @ wa) / 3.5 + (1 - share_a) * (B @ wb) / 3.5
    Y = signal + rng.standard_normal(signal.shape)
    return A, B, Y, group, n, list(lengths)


def _members(A, B, Y, n, lengths):
    """OOF and test predictions of a ridge on each feature space (leave-stories-out folds)."""
    folds = story_folds(lengths, n_folds=5)
    out = []
    for X in (A, B):
        fit = fit_ridge_cv(
            X[:n],
            Y[:n],
            alphas=np.logspace(-1, 4, 11),
            folds=folds,
            X_test=X[n:],
            Y_test=Y[n:],
            backend="numpy",
            return_test_pred=True,
            return_oof_pred=True,
        )
        out.append((fit.oof_pred, fit.test_pred))
    return out


@pytest.fixture(scope="module")
def two_drivers():
    rng = np.random.default_rng(0)
    A, B, Y, group, n, lengths = _two_driver_data(rng)
    return _members(A, B, Y, n, lengths), Y, group, n


def _write_members(tmp_path, members, Y, n, *, dtype="float32", rows=None):
    rows = np.ones(n, dtype=bool) if rows is None else rows
    paths = []
    for i, (oof, test) in enumerate(members):
        path = tmp_path / f"member{i}.h5"
        write_member_predictions(
            path,
            oof_pred=oof.copy(),
            oof_rows=rows,
            Y_train=Y[:n],
            test_pred=test,
            Y_test=Y[n:],
            oof_dtype=dtype,
            attrs={"subject": "S1", "model": f"m{i}", "layer": i, "test_story": "t"},
        )
        paths.append(path)
    return paths


LABELS = [{"model": "m0", "kind": "speech"}, {"model": "m1", "kind": "text"}]


# ------------------------------------------------------------------------------ the method


def test_weights_recover_the_true_driver_of_each_voxel_group(two_drivers):
    members, Y, group, n = two_drivers
    scores = stack_predictions(
        [m[0] for m in members], Y[:n], [m[1] for m in members], Y[n:], backend="numpy"
    )
    w = scores["weights"]
    assert w[0, group == "A"].mean() > 0.9
    assert w[1, group == "B"].mean() > 0.9
    mixed = group == "AB"
    assert 0.3 < w[0, mixed].mean() < 0.7
    # where both drivers matter, the stack beats either member alone
    assert (scores["stack_r"][mixed] > scores["member_r"][:, mixed].max(0)).mean() > 0.8


def test_cross_products_are_the_mean_products_of_the_residuals(rng):
    preds = [rng.standard_normal((30, 4)) for _ in range(3)]
    Y = rng.standard_normal((30, 4))
    R = residual_cross_products(preds, Y)
    for v in range(4):
        E = np.stack([Y[:, v] - p[:, v] for p in preds], axis=1)
        np.testing.assert_allclose(R[v], E.T @ E / 30, atol=1e-12)


def test_streamed_solve_equals_in_memory_solve(two_drivers, tmp_path):
    members, Y, _, n = two_drivers
    paths = _write_members(tmp_path, members, Y, n)
    memory = stack_predictions(
        [m[0] for m in members], Y[:n], [m[1] for m in members], Y[n:], backend="numpy"
    )
    out = tmp_path / "scores.npz"
    # blocks of 7 voxels: not a multiple of anything, the last one short
    summary = stack_regression(
        member_files=paths,
        members=LABELS,
        out_npz=out,
        backend="numpy",
        block_voxels=7,
        calibrate=False,
    )
    streamed = np.load(out)
    np.testing.assert_allclose(streamed["weights"], memory["weights"], atol=1e-5)
    np.testing.assert_allclose(streamed["stack_r"], memory["stack_r"], atol=1e-5)
    np.testing.assert_allclose(streamed["member_r"], memory["member_r"], atol=1e-6)
    np.testing.assert_allclose(streamed["stack_oof_mse"], memory["objective"], rtol=1e-5)
    assert summary["block_voxels"] == 7 and summary["n_not_certified"] == 0
    assert list(streamed["members"]) == ["m0/layer-0", "m1/layer-1"]
    assert list(streamed["kinds"]) == ["speech", "text"]
    record = json.loads((tmp_path / "scores.npz.provenance.json").read_text())
    assert record["summary"]["n_members"] == 2


def test_held_out_rows_only_enter_the_cross_products(two_drivers, tmp_path):
    """Bootstrap folds leave some TRs never held out: they are left out of R."""
    members, Y, _, n = two_drivers
    rows = np.ones(n, dtype=bool)
    rows[100:160] = False
    garbage = [(np.where(rows[:, None], oof, 1e3), test) for oof, test in members]
    paths = _write_members(tmp_path, garbage, Y, n, rows=rows)
    memory = stack_predictions(
        [m[0] for m in members], Y[:n], [m[1] for m in members], Y[n:], rows=rows
    )
    out = tmp_path / "scores.npz"
    stack_regression(member_files=paths, members=LABELS, out_npz=out, calibrate=False)
    np.testing.assert_allclose(np.load(out)["weights"], memory["weights"], atol=1e-5)


def test_calibration_stacks_each_member_scaled_by_its_least_squares_gain(two_drivers, tmp_path):
    members, Y, _, n = two_drivers
    # a member shrunk 50-fold (a large alpha chosen by correlation) keeps its r, not its MSE
    shrunk = [(members[0][0] / 50, members[0][1] / 50), members[1]]
    paths = _write_members(tmp_path, shrunk, Y, n)
    out = tmp_path / "scores.npz"
    stack_regression(member_files=paths, members=LABELS, out_npz=out, calibrate=True)
    scores = np.load(out)
    y = Y[:n].astype(np.float64)
    gains = [
        np.maximum((y * oof).sum(0), 0) / (oof.astype(np.float64) ** 2).sum(0) for oof, _ in shrunk
    ]
    expected = stack_predictions(
        [oof * g for (oof, _), g in zip(shrunk, gains, strict=True)],
        Y[:n],
        [test * g for (_, test), g in zip(shrunk, gains, strict=True)],
        Y[n:],
    )
    np.testing.assert_allclose(scores["calibration"], np.stack(gains), rtol=1e-4)
    np.testing.assert_allclose(scores["weights"], expected["weights"], atol=1e-4)
    np.testing.assert_allclose(scores["stack_r"], expected["stack_r"], atol=1e-5)
    # calibrated, the shrunk member gets back the weight it has unshrunk
    out = tmp_path / "unshrunk" / "scores.npz"
    paths = _write_members(tmp_path / "unshrunk", members, Y, n)
    stack_regression(member_files=paths, members=LABELS, out_npz=out, calibrate=True)
    np.testing.assert_allclose(scores["weights"], np.load(out)["weights"], atol=1e-4)


def test_float16_members_move_weights_and_r_very_little(two_drivers, tmp_path):
    members, Y, _, n = two_drivers
    results = {}
    for dtype in ("float16", "float32"):
        paths = _write_members(tmp_path / dtype, members, Y, n, dtype=dtype)
        out = tmp_path / dtype / "scores.npz"
        stack_regression(member_files=paths, members=LABELS, out_npz=out)
        results[dtype] = np.load(out)
        with h5py.File(paths[0]) as f:
            assert f["oof_pred"].dtype == np.dtype(dtype)
            assert f["oof_pred"].chunks[0] == n  # chunks hold every TR of a few voxels
    a, b = results["float16"], results["float32"]
    assert np.abs(a["weights"] - b["weights"]).max() < 1e-2
    assert np.abs(a["stack_r"] - b["stack_r"]).max() < 1e-3


def test_gain_is_over_the_member_cross_validation_picks(two_drivers, tmp_path):
    members, Y, _, n = two_drivers
    out = tmp_path / "scores.npz"
    stack_regression(
        member_files=_write_members(tmp_path, members, Y, n), members=LABELS, out_npz=out
    )
    s = np.load(out)
    pick = np.argmin(s["oof_mse"], axis=0)
    np.testing.assert_array_equal(s["cv_member"], pick)
    np.testing.assert_allclose(s["gain"], s["stack_r"] - s["member_r"][pick, np.arange(pick.size)])


def _ceiling(path, cc_max):
    n = len(cc_max)
    ones = np.ones(n)
    np.savez(
        path, tp=ones, sp=ones, np=ones, cc_max=cc_max, valid=np.isfinite(cc_max), n_repeats=10
    )
    return path


def test_cc_norm_is_the_stack_r_over_the_floored_ceiling(two_drivers, tmp_path):
    members, Y, _, n = two_drivers
    paths = _write_members(tmp_path, members, Y, n)
    cc_max = np.linspace(0.1, 0.9, Y.shape[1])
    cc_max[0] = np.nan  # no ceiling there
    out = tmp_path / "scores.npz"
    ceiling = _ceiling(tmp_path / "nc.npz", cc_max)
    stack_regression(
        member_files=paths, members=LABELS, out_npz=out, noise_ceiling=ceiling, floor=0.25
    )
    s = np.load(out)
    assert np.isnan(s["cc_norm"][0])
    np.testing.assert_allclose(
        s["cc_norm"][1:], s["stack_r"][1:] / np.maximum(cc_max[1:], 0.25), rtol=1e-6
    )
    with pytest.raises(DataError, match=r"has 5 voxels, the members 90"):
        stack_regression(
            member_files=paths,
            members=LABELS,
            out_npz=out,
            noise_ceiling=_ceiling(tmp_path / "small.npz", np.ones(5)),
        )


def test_members_fitted_on_other_data_are_refused(two_drivers, tmp_path):
    members, Y, _, n = two_drivers
    paths = _write_members(tmp_path, members, Y, n)
    other = Y.copy()
    other[n:] += 1.0  # another test story's responses
    write_member_predictions(
        paths[1],
        oof_pred=members[1][0].copy(),
        oof_rows=np.ones(n, bool),
        Y_train=other[:n],
        test_pred=members[1][1],
        Y_test=other[n:],
        attrs={"subject": "S1", "model": "m1", "layer": 1, "test_story": "t"},
    )
    with pytest.raises(DataError, match=r"do not fit the same data: test_true_sha256 differs"):
        stack_regression(member_files=paths, members=LABELS, out_npz=tmp_path / "x.npz")


def test_a_member_file_of_another_kind_names_the_file_and_the_fix(tmp_path):
    path = tmp_path / "member.h5"
    with h5py.File(path, "w") as f:
        f["oof_pred"] = np.zeros((3, 2))
    with pytest.raises(DataError, match=r"member.h5: not a stack member file.*stack_member"):
        MemberPredictions(path)


def test_one_member_stack_is_that_member(two_drivers, tmp_path):
    members, Y, _, n = two_drivers
    paths = _write_members(tmp_path, members[:1], Y, n)
    for calibrate in (False, True):
        out = tmp_path / f"scores-{calibrate}.npz"
        stack_regression(member_files=paths, members=LABELS[:1], out_npz=out, calibrate=calibrate)
        s = np.load(out)
        np.testing.assert_array_equal(s["weights"], 1.0)
        assert s["solver_degenerate"].all()
        # calibrated, a member that anti-predicts a voxel out of fold predicts nothing there
        predicts = (s["calibration"][0] > 0) | (not calibrate)
        np.testing.assert_allclose(s["stack_r"][predicts], s["member_r"][0, predicts], atol=1e-6)
        np.testing.assert_array_equal(s["stack_r"][~predicts], 0.0)
    assert not predicts.all()


# ---------------------------------------------------------------- members of real fits


@pytest.fixture(scope="module")
def demo_members(tmp_path_factory):
    """A small demo dataset, its true word and sound features as two layers, fits and members."""
    from fmriscaling.demo.synthetic import generate_dataset
    from fmriscaling.encoding.fit import fit_encoding
    from fmriscaling.features.io import FeatureWriter, layer_path
    from fmriscaling.stimuli import response_rows

    tmp = tmp_path_factory.mktemp("stack")
    root = tmp / "ds"
    summary = generate_dataset(
        root,
        subjects=["UTS01"],
        n_train_stories=6,
        n_voxels=120,
        n_latent=8,
        story_n_trs=(90, 110),
        test_n_trs=200,
        seed=2,
    )
    features = tmp / "features"
    with (
        h5py.File(root / "ground_truth" / "stimulus_features.h5") as truth,
        FeatureWriter(features, n_layers=1, model_name="truth") as writer,
    ):
        for story, n_trs in summary["n_trs"].items():
            rows = response_rows(n_trs)
            words = truth[story]["tr_features"][()][rows]
            sound = truth[story]["tr_acoustic"][()][rows]
            writer.write_story(story, np.stack([words, np.hstack([sound, sound])]))
    responses = summary["paths"]["responses"]["UTS01"]
    settings = {
        "test_story": summary["test_story"],
        "alphas": np.logspace(0, 4, 9).tolist(),
        "n_folds": 3,
        "backend": "numpy",
        "score_dtype": "float32",
    }
    fits, files = {}, {}
    for layer in (0, 1):
        fits[layer] = tmp / f"fit{layer}" / "scores.npz"
        fit_encoding(
            feature_file=layer_path(features, layer),
            response_files=responses,
            train_stories=summary["train_stories"],
            out_npz=fits[layer],
            **settings,
        )
        files[layer] = tmp / "members" / f"layer-{layer}.h5"
        fit_stack_member(
            feature_dir=features,
            layer=layer,
            layer_fits={layer: fits[layer]},
            response_files=responses,
            train_stories=summary["train_stories"],
            out_h5=files[layer],
            meta={"subject": "UTS01", "model": "truth"},
            **settings,
        )
    truth = np.load(root / "ground_truth" / "UTS01.npz")
    return {"fits": fits, "files": files, "truth": truth, "tmp": tmp, "settings": settings}


def test_a_member_is_its_ridge_fit(demo_members):
    for layer, path in demo_members["files"].items():
        with MemberPredictions(path) as member, np.load(demo_members["fits"][layer]) as fit:
            assert member.attrs["alpha_agreement"] == 1.0
            np.testing.assert_array_equal(member.per_voxel("alpha"), fit["alpha"])
            np.testing.assert_allclose(member.per_voxel("test_r"), fit["test_r"], atol=1e-6)
            assert member.attrs["layer"] == layer and member.attrs["layer_choice"] == "fixed"
            assert member.oof_rows.all()  # story folds hold every TR out once


def test_best_layer_is_the_best_mean_cv_score_never_test_r(demo_members, tmp_path):
    fits = demo_members["fits"]
    cv = {layer: np.load(p)["cv_score"].mean() for layer, p in fits.items()}
    assert best_layer(fits) == max(cv, key=cv.get)
    # a fit whose test r is better but CV worse does not win
    with np.load(fits[0]) as data:
        arrays = dict(data)
    arrays["cv_score"] = arrays["cv_score"] - 1.0
    arrays["test_r"] = arrays["test_r"] + 1.0
    np.savez(tmp_path / "scores.npz", **arrays)
    (tmp_path / "scores.json").write_text(fits[0].with_suffix(".json").read_text())
    assert best_layer({0: tmp_path / "scores.npz", 1: fits[1]}) == 1


def test_the_stack_weighs_the_sound_in_auditory_voxels_and_the_words_elsewhere(demo_members):
    out = demo_members["tmp"] / "stack.npz"
    stack_regression(
        member_files=[demo_members["files"][0], demo_members["files"][1]],
        members=[{"model": "truth", "kind": "text"}, {"model": "truth", "kind": "speech"}],
        out_npz=out,
    )
    scores = np.load(out)
    truth = demo_members["truth"]
    group, high = truth["voxel_group"], truth["cc_max"] > 0.5
    sound = scores["weights"][1]
    auditory, semantic = sound[(group == "auditory") & high], sound[(group == "semantic") & high]
    assert auditory.mean() > 0.85 and semantic.mean() < 0.25
    stacking, _ = stacking_tables(
        [{"subject": "UTS01", "stack": "s", "path": out}], {"UTS01": group}
    )
    by_group = stacking.set_index("group")
    assert by_group.loc["auditory", "weight_speech"] > by_group.loc["semantic", "weight_speech"]


def test_member_settings_are_the_ridge_fits(demo_members):
    with pytest.raises(TypeError, match=r"unknown fit settings \['save_weights'\]"):
        fit_stack_member(
            feature_dir=".",
            layer=0,
            layer_fits={},
            response_files={},
            train_stories=[],
            out_h5="x.h5",
            save_weights=True,
            **demo_members["settings"],
        )


# ---------------------------------------------------------------------------------- tables


def _scores(**overrides):
    scores = {
        "weights": np.array([[1.0, 0.2, 0.0, 0.5], [0.0, 0.8, 1.0, 0.5]]),
        "member_r": np.array([[0.3, 0.1, 0.0, 0.2], [0.1, 0.2, 0.4, 0.2]]),
        "stack_r": np.array([0.3, 0.25, 0.4, 0.3]),
        "gain": np.array([0.0, 0.05, 0.0, 0.1]),
        "cc_norm": np.array([0.5, np.nan, 0.8, 0.6]),
        "solver_fallback": np.zeros(4, bool),
        "members": np.array(["a/layer-1", "b/layer-3"]),
        "models": np.array(["a", "b"]),
        "kinds": np.array(["speech", "text"]),
        "layers": np.array([1, 3]),
        "layer_choices": np.array(["1", "best"]),
    }
    scores.update(overrides)
    return scores


def test_summary_of_a_voxel_set():
    row, members = summarize_stack(_scores(), np.array([True, True, False, True]))
    assert row["n_voxels"] == 3 and row["n_members"] == 2
    assert row["mean_r_stack"] == pytest.approx((0.3 + 0.25 + 0.3) / 3)
    assert row["mean_cc_norm_stack"] == pytest.approx(0.55) and row["n_voxels_no_ceiling"] == 1
    assert row["best_member"] == "a/layer-1"  # mean r 0.2 against 0.1667
    assert row["mean_r_best_member"] == pytest.approx(0.2)
    assert row["mean_gain"] == pytest.approx(0.05) and row["frac_improved"] == pytest.approx(2 / 3)
    assert row["weight_speech"] == pytest.approx(1.7 / 3)
    assert row["weight_text"] == pytest.approx(1.3 / 3)
    assert [m["mean_weight"] for m in members] == pytest.approx([1.7 / 3, 1.3 / 3])
    assert members[1]["layer_choice"] == "best" and members[1]["layer"] == 3


def test_summary_of_an_empty_voxel_set_names_no_best_member():
    """An ROI that misses the subject's grid: zero voxels, no means, no best member."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "mean of empty slice" in the job logs
        row, members = summarize_stack(_scores(), np.zeros(4, dtype=bool))
    assert row["n_voxels"] == 0 and row["best_member"] is None
    assert np.isnan(row["mean_r_stack"]) and np.isnan(row["gain_over_best_member"])
    assert np.isnan(row["weight_speech"]) and all(np.isnan(m["mean_r"]) for m in members)


def test_tables_have_all_voxels_and_each_group(tmp_path):
    np.savez(tmp_path / "s.npz", **_scores())
    entries = [{"subject": "S1", "stack": "st", "path": tmp_path / "s.npz"}]
    labels = {"S1": np.array(["x", "y", "x", "y"])}
    stacking, members = stacking_tables(entries, labels)
    assert list(stacking["group"]) == ["all", "x", "y"]
    assert list(stacking["n_voxels"]) == [4, 2, 2]
    assert len(members) == 6 and set(members["member"]) == {"a/layer-1", "b/layer-3"}
    assert {"subject", "stack", "n_members", "mean_r_stack", "frac_improved"} <= set(stacking)
    plain, _ = stacking_tables(entries)
    assert list(plain["group"]) == ["all"]
    with pytest.raises(DataError, match=r"4 voxels but 3 voxel labels for S1"):
        stacking_tables(entries, {"S1": np.array(["x", "y", "x"])})
    # overlapping voxel sets (ROIs): each summarised over its own voxels
    sets = {
        "S1": [
            ("front", "anatomical", np.array([True, True, False, False])),
            ("left", "functional", np.array([True, False, True, False])),
        ]
    }
    by_roi, by_roi_members = stacking_tables(entries, voxel_sets=sets)
    assert list(by_roi["group"]) == ["all", "front", "left"]
    assert list(by_roi["group_source"]) == ["all", "anatomical", "functional"]
    assert list(by_roi["n_voxels"]) == [4, 2, 2]
    scores = _scores()
    left = by_roi.set_index("group").loc["left"]
    assert left["mean_r_stack"] == pytest.approx(scores["stack_r"][[0, 2]].mean())
    front = by_roi_members[(by_roi_members["group"] == "front")].set_index("member")
    assert front.loc["a/layer-1", "mean_weight"] == pytest.approx(scores["weights"][0, :2].mean())
    with pytest.raises(DataError, match=r"4 voxels but 2 voxels of set 'x' for S1"):
        stacking_tables(entries, voxel_sets={"S1": [("x", "anatomical", np.ones(2, bool))]})


# ---------------------------------------------------------------------------------- config


def _config():
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parent.parent
    return yaml.safe_load((root / "config" / "config.yaml").read_text())


def test_demo_stacks_expand_even_layers_and_keep_best():
    config = validate_config(_config())
    stacks = {s["name"]: stack_members(s, config["models"]) for s in config["stacks"]}
    assert stacks["speech-text"] == [
        {"model": "tiny-whisper", "kind": "speech", "layer": 0},
        {"model": "tiny-whisper", "kind": "speech", "layer": 2},
        {"model": "tiny-opt-m", "kind": "text", "layer": "best"},
    ]
    assert [m["layer"] for m in stacks["pair"]] == [2, "best"]


def _with_members(*members):
    return lambda config: config.update(stacks=[{"name": "s", "members": list(members)}])


def _renamed(second: str):
    return lambda config: config.update(
        stacks=[config["stacks"][0], dict(config["stacks"][1], name=second)]
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            _with_members({"model": "tiny-gpt", "layer": 1}),
            r"stacks\[0\].members\[0\].model' is 'tiny-gpt'",
        ),
        (
            _with_members({"model": "tiny-opt-xs", "layer": 5}),
            r"members\[0\].layer' is 5; tiny-opt-xs has",
        ),
        (
            _with_members(
                {"model": "tiny-whisper", "layer": "even"}, {"model": "tiny-whisper", "layer": 2}
            ),
            r"lists \['tiny-whisper/layer-2'\] more than once",
        ),
        (_with_members({"model": "tiny-opt-xs", "layer": "middle"}), r"stacks.0.members.0.layer"),
        (_renamed("speech-text"), r"names \['speech-text'\] more than once"),
        (_renamed("members"), r"stacks.1.name"),
        (
            lambda config: config["encoding"].update(solver_impl="himalaya"),
            r"'stacks' is not empty but 'encoding.solver_impl'",
        ),
    ],
    ids=["model", "depth", "twice", "layer", "names", "reserved", "no-oof"],
)
def test_bad_stacks_name_the_key(change, message):
    config = _config()
    change(config)
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


def test_the_stack_s_test_r_gets_a_permutation_p_per_voxel(two_drivers, tmp_path):
    """With statistics, the stacked test prediction is tested like a fit's: the p of every
    voxel is the block permutation test of the stack's own test prediction (streamed in
    blocks), and the member labels stay as they were."""
    from fmriscaling.encoding.significance import fdr, permutation_pvalues

    members, Y, _, n = two_drivers
    paths = _write_members(tmp_path, members, Y, n)
    out = tmp_path / "scores.npz"
    stats = {"n_permutations": 199, "block_trs": 5, "fdr_q": 0.05, "seed": 3}
    summary = stack_regression(member_files=paths, members=LABELS, out_npz=out,
                               backend="numpy", block_voxels=7, statistics=stats)  # fmt: skip
    scores = np.load(out)
    assert list(scores["members"]) == ["m0/layer-0", "m1/layer-1"]
    mix = scores["weights"] * scores["calibration"]
    stacked = np.einsum("ktv,kv->tv", np.stack([test for _, test in members]), mix)
    expected = permutation_pvalues(stacked, Y[n:], block_trs=5, n_permutations=199, seed=3)
    np.testing.assert_allclose(scores["stack_p"], expected["p"], atol=1e-9)
    q, significant = fdr(expected["p"], q=0.05)
    np.testing.assert_allclose(scores["stack_q"], q, rtol=1e-6)
    np.testing.assert_array_equal(scores["stack_significant"], significant)
    assert summary["n_significant"] == significant.sum() > 0
