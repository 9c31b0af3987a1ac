"""Size versus width (``features.fixed_dim``): every layer projected to d dimensions before the
delays, PCA fitted on the fit's own training stories only or a seeded Gaussian projection; the
Study's extra fits; the scaling tables' and figure's curves at a fixed width."""

from __future__ import annotations

import json
import logging

import h5py
import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import PCA

from fmriscaling import ConfigError, DataError
from fmriscaling.encoding.design import build_design, zscore
from fmriscaling.encoding.fit import fit_encoding, fit_encoding_subjects
from fmriscaling.encoding.inputs import feature_design
from fmriscaling.encoding.prepared import prepare_responses
from fmriscaling.encoding.tables import encoding_table
from fmriscaling.encoding.width import (
    NATIVE,
    FixedWidthProjection,
    delay_stories,
    project_design,
    width_label,
)
from fmriscaling.scaling import fits_to_resample, headline_table, scaling_fits

DELAYS = (1, 2, 3, 4)
TRAIN = ["alpha", "beta", "gamma", "delta"]
TEST = "test"
STORY_TRS = {"alpha": 120, "beta": 100, "gamma": 110, "delta": 90, "test": 160, "outside": 80}
TEST_TRIM = 40


def _layer_file(path, features):
    with h5py.File(path, "w") as f:
        for story, x in features.items():
            f[story] = np.asarray(x, dtype=np.float32)
    return path


def _design(path, train=TRAIN, projection=None):
    return feature_design(
        path,
        train,
        TEST,
        delays=DELAYS,
        test_extra_trim=TEST_TRIM,
        extra_trim_train=None,
        projection=projection,
    )


@pytest.fixture
def stories(rng):
    """Per story 10 features that live in a 4-dimensional subspace, plus a little noise."""
    basis = rng.standard_normal((4, 10))
    return {
        s: rng.standard_normal((n, 4)) @ basis + 0.05 * rng.standard_normal((n, 10))
        for s, n in STORY_TRS.items()
    }


# ------------------------------------------------------------------------- the projections


def test_pca_projection_is_sklearn_s_pca_fitted_on_the_training_rows(rng):
    X_train = rng.standard_normal((200, 12)) * np.linspace(3, 0.2, 12)
    X_test = rng.standard_normal((50, 12)) * 5.0
    P_train, P_test, record = project_design(X_train, X_test, dim=4, method="pca", seed=0)
    pca = PCA(n_components=4, random_state=0).fit(X_train)
    np.testing.assert_allclose(P_train, pca.transform(X_train), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(P_test, pca.transform(X_test), rtol=1e-5, atol=1e-5)
    assert P_train.dtype == P_test.dtype == np.float32
    assert record["explained_variance_ratio"] == pytest.approx(pca.explained_variance_ratio_.sum())
    assert record | {"explained_variance_ratio": None} == {
        "method": "pca", "dim": 4, "seed": 0, "projected": True, "n_features_native": 12,
        "n_fit_rows": 200, "explained_variance_ratio": None,
    }  # fmt: skip
    # a PCA that also saw the test rows would give other components: the check can fail
    leaky = PCA(n_components=4, random_state=0).fit(np.vstack([X_train, X_test]))
    assert not np.allclose(P_test, leaky.transform(X_test), atol=1e-2)


def test_random_projection_is_seeded_with_entries_of_variance_one_over_d(rng):
    X = rng.standard_normal((300, 400))
    d = 50
    first = FixedWidthProjection(dim=d, method="random", random_state=3).fit(X)
    again = FixedWidthProjection(dim=d, method="random", random_state=3).fit(X[:10])
    other = FixedWidthProjection(dim=d, method="random", random_state=4).fit(X)
    G = first.projector_.components_
    assert G.shape == (d, 400)
    # the matrix depends on the seed and the width only, never on the rows
    np.testing.assert_array_equal(G, again.projector_.components_)
    assert not np.allclose(G, other.projector_.components_)
    assert G.mean() == pytest.approx(0.0, abs=0.01)
    assert G.var() == pytest.approx(1 / d, rel=0.05)  # N(0, 1/d): norms kept in expectation
    P = first.transform(X)
    np.testing.assert_allclose(P, X @ G.T, rtol=1e-10)
    ratio = (P**2).sum(axis=1) / (X**2).sum(axis=1)
    assert ratio.mean() == pytest.approx(1.0, abs=0.05)
    assert first.explained_variance_ratio_ is None


def test_projection_errors_name_the_problem(rng):
    with pytest.raises(ValueError, match="method='svd'"):
        FixedWidthProjection(dim=2, method="svd").fit(rng.standard_normal((10, 4)))
    with pytest.raises(ValueError, match="dim=0"):
        FixedWidthProjection(dim=0).fit(rng.standard_normal((10, 4)))
    with pytest.raises(DataError, match="PCA to dim=8 needs at least 8 rows, got 5"):
        project_design(rng.standard_normal((5, 10)), rng.standard_normal((3, 10)), dim=8)


def test_a_layer_narrower_than_d_stays_native_and_is_flagged(rng, caplog):
    X_train, X_test = rng.standard_normal((60, 6)), rng.standard_normal((20, 6))
    with caplog.at_level(logging.WARNING, logger="fmriscaling.encoding.width"):
        P_train, P_test, record = project_design(X_train, X_test, dim=16, what="layer-3.h5")
    np.testing.assert_array_equal(P_train, X_train.astype(np.float32))
    np.testing.assert_array_equal(P_test, X_test.astype(np.float32))
    assert record["projected"] is False and record["n_features_native"] == 6
    assert "layer-3.h5: 6 features, narrower than fixed_dim 16" in caplog.text


def test_delays_after_the_projection_are_build_design_s_delays(stories, tmp_path):
    """The fixed-width path delays each story on its own, as `build_design` does."""
    z, _, lengths = build_design(stories, None, TRAIN, delays=(0,))
    delayed, _, _ = build_design(stories, None, TRAIN, delays=DELAYS)
    np.testing.assert_array_equal(delay_stories(z, lengths, DELAYS), delayed)


# ------------------------------------------------------------- fitted on the training rows only


def test_feature_design_projects_with_a_pca_of_the_training_stories_only(stories, tmp_path):
    """Independently: z-score each kept story, PCA of the training rows, then delays."""
    path = _layer_file(tmp_path / "layer-3.h5", stories)
    design = _design(path, projection={"dim": 3, "method": "pca", "seed": 0})
    train = np.vstack([zscore(stories[s]) for s in TRAIN])
    test = zscore(stories[TEST][TEST_TRIM:])
    pca = PCA(n_components=3, random_state=0).fit(train)
    lengths = [STORY_TRS[s] for s in TRAIN]
    expected_train = delay_stories(pca.transform(train), lengths, DELAYS)
    expected_test = delay_stories(pca.transform(test), [len(test)], DELAYS)
    np.testing.assert_allclose(design.X_train, expected_train, atol=1e-5)
    np.testing.assert_allclose(design.X_test, expected_test, atol=1e-5)
    assert design.X_train.shape == (sum(lengths), 3 * len(DELAYS))
    assert design.projection["n_fit_rows"] == sum(lengths)
    assert design.projection["explained_variance_ratio"] > 0.9  # the 4-d subspace's top 3


def test_the_test_story_cannot_leak_into_the_projection(stories, tmp_path):
    """A test story loud along a direction the training stories lack: the training design and
    the fitted projection do not change, and that direction is projected away."""
    projection = {"dim": 4, "method": "pca", "seed": 0}
    clean = _design(_layer_file(tmp_path / "clean.h5", stories), projection=projection)
    # outside the training stories' 4-d subspace: their least singular direction
    direction = np.linalg.svd(np.vstack([stories[s] for s in TRAIN]))[2][-1]
    signal = 10.0 * np.random.default_rng(5).standard_normal((STORY_TRS[TEST], 1))
    loud = dict(stories, test=stories[TEST] + signal * direction)
    leaked = _design(_layer_file(tmp_path / "loud.h5", loud), projection=projection)
    np.testing.assert_array_equal(leaked.X_train, clean.X_train)
    assert leaked.projection == clean.projection
    train = np.vstack([zscore(loud[s]) for s in TRAIN])
    test = zscore(loud[TEST][TEST_TRIM:])
    ours = PCA(n_components=4, random_state=0).fit(train)
    np.testing.assert_allclose(
        leaked.X_test, delay_stories(ours.transform(test), [len(test)], DELAYS), atol=1e-5
    )
    # fitted on train + test, the loud direction would take a component of its own
    leaky = PCA(n_components=4, random_state=0).fit(np.vstack([train, test]))
    kept = [np.linalg.norm(p.components_ @ direction) for p in (ours, leaky)]
    assert kept[0] < 0.3 < 0.6 < kept[1]


def test_a_subset_fit_sees_nothing_of_the_stories_outside_it(stories, tmp_path):
    """A data-size fit's projection: changing a story outside its training subset (another
    training story of the full set, or a story of the file no fit uses) changes nothing."""
    projection = {"dim": 3, "method": "pca", "seed": 0}
    subset = ["beta", "delta"]
    before = _design(_layer_file(tmp_path / "a.h5", stories), subset, projection)
    rng = np.random.default_rng(9)
    changed = dict(stories)
    for story in ("alpha", "gamma", "outside"):
        changed[story] = 30 * rng.standard_normal(stories[story].shape)
    after = _design(_layer_file(tmp_path / "b.h5", changed), subset, projection)
    np.testing.assert_array_equal(after.X_train, before.X_train)
    np.testing.assert_array_equal(after.X_test, before.X_test)
    assert after.projection == before.projection
    assert before.projection["n_fit_rows"] == STORY_TRS["beta"] + STORY_TRS["delta"]
    # and a change inside the subset does change it (the check can fail)
    inside = dict(stories, beta=changed["alpha"][:100])
    moved = _design(_layer_file(tmp_path / "c.h5", inside), subset, projection)
    assert not np.allclose(moved.X_test, before.X_test)


# ------------------------------------------------------------------------------- whole fits


@pytest.fixture
def prepared(encoding_dataset, tmp_path):
    feature_file, raw = encoding_dataset(subjects=("S1", "S2"))
    files = {}
    for subject, story_files in raw.items():
        files[subject] = tmp_path / "prepared" / f"{subject}.h5"
        prepare_responses(story_files, files[subject], stories=[*TRAIN, TEST],
                          extra_trim={TEST: TEST_TRIM}, subject=subject)  # fmt: skip
    return feature_file, raw, files


SETTINGS = {"delays": DELAYS, "alphas": np.logspace(-1, 4, 6), "backend": "numpy"}


def _shared(prepared, out, **kw):
    feature_file, _, files = prepared
    return fit_encoding_subjects(
        feature_file=feature_file, prepared_files=files, train_stories=TRAIN, test_story=TEST,
        out_npz={s: out / s / "scores.npz" for s in files}, **SETTINGS, **kw,
    )  # fmt: skip


def test_pca_to_the_full_width_is_a_rotation_and_fits_as_the_native_features(prepared, tmp_path):
    """Ridge is rotation-invariant: PCA to all 6 features gives the native fit's scores, and
    its summary and provenance record the projection."""
    native = _shared(prepared, tmp_path / "native")
    rotated = _shared(prepared, tmp_path / "pca", projection={"dim": 6, "method": "pca", "seed": 0})
    for subject in ("S1", "S2"):
        with np.load(tmp_path / "native" / subject / "scores.npz") as a:
            with np.load(tmp_path / "pca" / subject / "scores.npz") as b:
                np.testing.assert_allclose(b["test_r"], a["test_r"], atol=2e-4)
                np.testing.assert_array_equal(b["alpha"], a["alpha"])
        assert "projection" not in native[subject]
        record = rotated[subject]["projection"]
        assert record["projected"] and record["dim"] == 6 and record["method"] == "pca"
        assert record["explained_variance_ratio"] == pytest.approx(1.0)
        saved = json.loads((tmp_path / "pca" / subject / "scores.json").read_text())
        assert saved["projection"] == record and saved["n_features"] == 6 * len(DELAYS)
        provenance = (tmp_path / "pca" / subject / "scores.npz.provenance.json").read_text()
        assert json.loads(provenance)["projection"] == record


def test_both_fit_entry_points_project_alike(prepared, tmp_path):
    """The raw-file path (`fit_encoding`) and the prepared path agree at a fixed width."""
    feature_file, raw, _ = prepared
    projection = {"dim": 3, "method": "random", "seed": 7}
    shared = _shared(prepared, tmp_path / "shared", projection=projection)
    alone = fit_encoding(
        feature_file=feature_file, response_files=raw["S1"], train_stories=TRAIN,
        test_story=TEST, out_npz=tmp_path / "alone" / "scores.npz", projection=projection,
        **SETTINGS,
    )  # fmt: skip
    assert alone["projection"] == shared["S1"]["projection"]
    assert alone["n_features"] == 3 * len(DELAYS)
    with np.load(tmp_path / "alone" / "scores.npz") as a:
        with np.load(tmp_path / "shared" / "S1" / "scores.npz") as b:
            np.testing.assert_allclose(a["test_r"], b["test_r"], atol=1e-4)


# ------------------------------------------------------------------------------- the Study


def _study(overlay):
    from _workflow import ROOT

    from fmriscaling.workflow import Study, load_config, merge_configs

    return Study(merge_configs(load_config([ROOT / "config/config.yaml"]), overlay), ROOT)


def test_the_study_plans_a_fit_per_layer_and_width_beside_the_native_ones():
    s = _study({"features": {"fixed_dim": [16, 32], "fixed_dim_kinds": ["text", "speech"]}})
    jobs = [j for j in s.jobs() if j.rule == "fit_encoding_width"]
    layers = sum(len(s.layers_of(m)) for m in s.run_models)
    assert len(jobs) == 2 * layers  # one group of subjects, every layer of every model
    job = next(j for j in jobs if j.wildcards == dict(dataset="demo", model="tiny-opt-m",
                                                        layer=2, width=32))  # fmt: skip
    assert job.outputs == [
        f"results/encoding/demo/{subject}/tiny-opt-m/layer-2/width-32/scores.{ext}"
        for ext in ("npz", "json")
        for subject in ("UTS01", "UTS02")
    ]
    assert job.params["train_stories"] == s.train_stories("UTS01")  # all of them
    assert job.params["width"] == 32 and job.params["n_train"] is None
    assert s.width_encoding_params("32") == dict(
        s.encoding_params(), projection={"dim": 32, "method": "pca", "seed": 0}
    )
    # no native path changes, and the logs mirror the outputs
    assert s.path("fit", model="m", layer=1) == (
        "results/encoding/{dataset}/{subject}/m/layer-1/scores.{ext}"
    )
    assert s.log("fit_encoding_width", "width_fit", dataset="demo", subject="UTS01+UTS02") == (
        "results/logs/fit_encoding_width/demo/UTS01+UTS02/{model}/layer-{layer}/width-{width}.log"
    )
    # the tables read every width fit; the ROI tables, maps and stacks the native ones only
    widths = [e for e in s.table_entries if "width" in e]
    assert len(widths) == 2 * 2 * layers  # x 2 subjects
    assert all("width" not in e for e in s.full_fits_of("UTS01"))
    # no data-size subset at a fixed width: the control is about the model-size axis
    assert not [j for j in jobs if j.params.get("n_train") is not None]
    records = [r for r in s.benchmark_records() if r["rule"] == "fit_encoding_width"]
    assert len(records) == len(jobs)
    assert records[0]["path"].endswith("/layer-0/width-16.tsv")


def test_kinds_and_known_widths_choose_the_models(caplog):
    overlay = {"features": {"fixed_dim": [24], "fixed_dim_kinds": ["text"]},
               "models": {"tiny-opt-xs": {"hidden_size": 16}}}  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="fmriscaling.workflow.study"):
        s = _study(overlay)
    # a registry width below d: left out of the d = 24 curve before any job runs
    assert s.fixed_dims == {"tiny-opt-xs": [], "tiny-opt-s": [24], "tiny-opt-m": [24],
                            "tiny-hubert": [], "tiny-whisper": []}  # fmt: skip
    assert "tiny-opt-xs (hidden_size 16) is narrower than features.fixed_dim [24]" in caplog.text
    assert not any(j.rule == "fit_encoding_width" for j in _study({}).jobs()
                   if j.wildcards.get("model") == "tiny-hubert")  # fmt: skip
    off = _study({"features": {"fixed_dim": []}})
    assert not any(j.rule == "fit_encoding_width" for j in off.jobs())


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([0], r"config key 'features.fixed_dim.0': 0 is less than the minimum of 1"),
        ([16, 16], r"features.fixed_dim"),
        ("16", r"features.fixed_dim"),
    ],
)
def test_bad_widths_are_refused_naming_the_key(value, message):
    with pytest.raises(ConfigError, match=message):
        _study({"features": {"fixed_dim": value}})
    with pytest.raises(ConfigError, match="fixed_dim_method"):
        _study({"features": {"fixed_dim_method": "svd"}})


# --------------------------------------------------------------------- tables and the curves

SIZES = {"m-1": 1e8, "m-2": 1e9, "m-3": 1e10}


def _encoding(native_slope=0.02, width_slope=0.0, narrower=("m-1",)):
    """Full fits of 2 subjects x 3 models x 3 layers, natively and at width 16 (layer 1 the
    CV-best at both); the models in ``narrower`` were too narrow for 16 (fitted native)."""
    rows = []
    for subject in ("A", "B"):
        for model, n in SIZES.items():
            for width in (NATIVE, "16"):
                slope = native_slope if width == NATIVE else width_slope
                value = 0.1 + slope * np.log10(n / 1e8)
                for layer in range(3):
                    best = layer == 1
                    rows.append(dict(
                        subject=subject, model=model, family="fam", model_kind="text",
                        n_params=n, layer=layer, n_layers=2, full_train=True, width=width,
                        projected=width != NATIVE and model not in narrower,
                        n_train_stories=12, n_train_trs=1200, seed=-1,
                        # a narrower model's "width-16" fit is its native one, better than any
                        mean_r=(value if best else value - 0.05) + (
                            0.5 if width != NATIVE and model in narrower else 0.0),
                        mean_cc_norm=2 * value, mean_cv_score=0.3 if best else 0.1,
                    ))  # fmt: skip
    return encoding_table(rows)


def _means(rows, n_rep=20):
    from fmriscaling.scaling import KEY_COLUMNS

    keys = rows[list(KEY_COLUMNS)].reset_index(drop=True)
    long = keys.loc[keys.index.repeat(n_rep)].reset_index(drop=True)
    long["replicate"] = np.tile(np.arange(n_rep), len(keys))
    long["mean_r"] = np.repeat(rows["mean_r"].to_numpy(), n_rep)
    long["mean_cc_norm"] = np.repeat(rows["mean_cc_norm"].to_numpy(), n_rep)
    return long


def test_scaling_tables_fit_a_size_curve_per_width_with_the_same_bootstrap(caplog):
    encoding = _encoding(native_slope=0.02, width_slope=-0.01, narrower=())
    assert list(encoding["width"].unique()) == [NATIVE, "16"]
    rows = fits_to_resample(encoding)
    # the CV-best layer of each (subject, model) at each width
    assert len(rows) == 2 * 3 * 2 and (rows["layer"] == 1).all()
    fits, lines = scaling_fits(encoding, _means(rows))
    size = fits[(fits["axis"] == "params") & (fits["metric"] == "mean_r")].set_index("width")
    assert size.loc[NATIVE, "slope_per_decade"] == pytest.approx(0.02)
    assert size.loc["16", "slope_per_decade"] == pytest.approx(-0.01)
    assert size.loc["16", "slope_lo"] == pytest.approx(-0.01)  # no noise in the replicates
    assert size.loc["16", "n_points"] == 3 and size.loc["16", "family"] == "fam"
    assert set(lines["width"]) == {NATIVE, "16"}
    head = headline_table(fits, encoding, paper=[
        {"axis": "params", "name": "fam", "pct_per_decade": 4.4, "fit_r": 0.9, "source": "x"}
    ]).set_index("width")  # fmt: skip
    assert head.loc[NATIVE, "paper_pct_per_decade"] == 4.4
    assert pd.isna(head.loc["16", "paper_pct_per_decade"])  # the paper's number is native
    assert head.loc["16", "best_layer"] == 1


def test_a_model_narrower_than_d_is_left_out_of_that_curve_with_a_warning(caplog):
    encoding = _encoding(native_slope=0.02, width_slope=0.01, narrower=("m-1",))
    with caplog.at_level(logging.WARNING, logger="fmriscaling.encoding.width"):
        rows = fits_to_resample(encoding)
        fits, _ = scaling_fits(encoding, _means(rows))
    assert "m-1 layer 0, m-1 layer 1, m-1 layer 2 narrower than 16 features" in caplog.text
    assert not ((rows["model"] == "m-1") & (rows["width"] == "16")).any()
    size = fits[(fits["axis"] == "params") & (fits["metric"] == "mean_r")].set_index("width")
    # two sizes left at d = 16, and the narrower model's (native, much better) fit not among
    # them: the slope is the width-16 one
    assert size.loc["16", "n_points"] == 2 and size.loc["16", "x_min"] == 1e9
    assert size.loc["16", "slope_per_decade"] == pytest.approx(0.01)
    assert size.loc[NATIVE, "n_points"] == 3


def test_the_size_figure_draws_each_width_dashed_beside_the_native_curve():
    import matplotlib.pyplot as plt

    from fmriscaling.figures.scaling import plot_model_size_scaling

    encoding = _encoding(narrower=("m-1",))
    fits, lines = scaling_fits(encoding, _means(fits_to_resample(encoding)))
    fig, ax = plt.subplots()
    plot_model_size_scaling(encoding, fits=fits, bootstrap=lines, ax=ax)
    by_gid = {a.get_gid(): a for a in [*ax.lines, *ax.collections] if a.get_gid()}
    assert {"fit:fam", "fit:fam:d16", "band:fam:d16", "mean:fam:d16"} <= set(by_gid)
    assert by_gid["fit:fam:d16"].get_linestyle() == "--"
    assert by_gid["fit:fam"].get_linestyle() == "-"
    assert by_gid["fit:fam:d16"].get_color() == by_gid["fit:fam"].get_color()
    assert len(by_gid["mean:fam:d16"].get_offsets()) == 2  # m-1 is narrower than 16
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(label.startswith("fam, d = 16: ") for label in labels)
    plt.close(fig)


def test_width_labels_read_back_from_csv_alike():
    assert [width_label(v) for v in (None, np.nan, "native", 16, 16.0, "16")] == [
        NATIVE, NATIVE, NATIVE, "16", "16", "16"
    ]  # fmt: skip
