"""Tests of fmriscaling.figures (scaling figures, ceilings, maps, saving): numbers drawn against independent computations."""

from __future__ import annotations

import logging

import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb

from fmriscaling import DataError, figures
from fmriscaling.encoding.tables import scaling_summary

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SUBJECTS = ("UTS01", "UTS02", "UTS03")
# subject offsets sum to zero: the across-subject mean is the noise-free value
SUBJECT_OFFSETS = {"UTS01": -0.01, "UTS02": 0.0, "UTS03": 0.01}
MODELS = {  # model: (family, n_params, n_layers)
    "opt-125m": ("OPT", 1.25e8, 12),
    "opt-1.3b": ("OPT", 1.3e9, 24),
    "opt-13b": ("OPT", 1.3e10, 40),
    "llama-7b": ("LLaMA", 7e9, 32),
    "llama-30b": ("LLaMA", 3e10, 60),
}
SLOPES = {"OPT": 0.02, "LLaMA": 0.03}
CV_BEST, TEST_BEST = 3, 1  # layer indices (of 5 sampled layers) chosen by CV / by test


def _row(**values):
    base = {
        "n_train_trs": 9000,
        "mean_cc_norm": np.nan,
        "n_voxels": 1000,
        "n_voxels_no_ceiling": 10,
        "median_alpha": 1e4,
        "solver": "primal",
        "backend": "numpy",
        "fit_seconds": 1.0,
        "peak_memory_mb": 100.0,
    }
    base.update(values)
    if np.isnan(base["mean_cc_norm"]):
        base["mean_cc_norm"] = base["mean_r"] / 0.8
    return base


def expected_best_r(model: str) -> float:
    family, n_params, _ = MODELS[model]
    return 0.1 + SLOPES[family] * np.log10(n_params / 1e8)


def make_full_rows() -> list[dict]:
    """Five sampled layers per model; CV prefers layer index 3, the test metric index 1."""
    rows = []
    for model, (family, n_params, n_layers) in MODELS.items():
        layers = np.linspace(0, n_layers, 5).round().astype(int)
        for subject in SUBJECTS:
            best = expected_best_r(model) + SUBJECT_OFFSETS[subject]
            for i, layer in enumerate(layers):
                mean_r = {CV_BEST: best, TEST_BEST: best + 0.05}.get(i, best - 0.03)
                mean_cv = {CV_BEST: 0.2, TEST_BEST: 0.15}.get(i, 0.1)
                rows.append(
                    _row(
                        subject=subject,
                        model=model,
                        family=family,
                        n_params=n_params,
                        layer=layer,
                        relative_depth=layer / n_layers,
                        n_train_stories=84,
                        seed=-1,
                        mean_r=mean_r,
                        mean_cv_score=mean_cv,
                        kind="full",
                    )
                )
    return rows


def make_subsample_rows(rng: np.random.Generator) -> list[dict]:
    """OPT-125M layer 9, two subjects, 4 story counts, 4 seeds of random spread."""
    rows = []
    for subject in SUBJECTS[:2]:
        for n_stories in (1, 3, 10, 30):
            for seed in range(4):
                rows.append(
                    _row(
                        subject=subject,
                        model="opt-125m",
                        family="OPT",
                        n_params=1.25e8,
                        layer=9,
                        relative_depth=0.75,
                        n_train_stories=n_stories,
                        seed=seed,
                        mean_r=0.05 + 0.02 * np.log10(n_stories) + rng.normal(0, 0.005),
                        mean_cv_score=0.1,
                        kind="subsample",
                    )
                )
    return rows


@pytest.fixture
def table(rng) -> pd.DataFrame:
    return pd.DataFrame(make_full_rows() + make_subsample_rows(rng))


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def by_gid(ax, gid):
    artists = [a for a in (*ax.collections, *ax.lines) if a.get_gid() == gid]
    assert len(artists) == 1, f"expected one artist with gid {gid!r}, found {len(artists)}"
    return artists[0]


def legend_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


# --------------------------------------------------------------------------------------------
# model size
# --------------------------------------------------------------------------------------------
def test_model_size_slope_text_and_fit_line(table, ax):
    out = figures.plot_model_size_scaling(table, ax=ax)
    assert out is ax
    texts = legend_texts(ax)
    assert "OPT: +0.020 r per 10x (r=1.00)" in texts
    assert "LLaMA: +0.030 r per 10x (r=1.00)" in texts

    line = by_gid(ax, "fit:OPT")
    x_line, y_line = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
    np.testing.assert_allclose(x_line, [1.25e8, 1.3e10])
    np.testing.assert_allclose(y_line, 0.1 + 0.02 * np.log10(x_line / 1e8), atol=1e-12)
    assert ax.get_xscale() == "log"


def test_model_size_uses_cv_best_layer_not_test_best(table, ax):
    figures.plot_model_size_scaling(table, ax=ax)
    full = table[table["kind"] == "full"]
    opt = full[full["family"] == "OPT"]

    subject_points = by_gid(ax, "subjects:OPT").get_offsets()
    cv_choice = opt.loc[opt.groupby(["subject", "model"])["mean_cv_score"].idxmax()]
    test_choice = opt.loc[opt.groupby(["subject", "model"])["mean_r"].idxmax()]
    drawn = sorted(map(tuple, np.asarray(subject_points)))
    assert drawn == sorted(zip(cv_choice["n_params"], cv_choice["mean_r"], strict=True))
    assert drawn != sorted(zip(test_choice["n_params"], test_choice["mean_r"], strict=True))

    means = np.asarray(by_gid(ax, "mean:OPT").get_offsets())
    expected = cv_choice.groupby("n_params")["mean_r"].mean()
    np.testing.assert_allclose(means[:, 0], expected.index)
    np.testing.assert_allclose(means[:, 1], expected.to_numpy())


def test_model_size_ignores_a_repeated_table_index(table, ax):
    repeated = table.set_axis(np.zeros(len(table), dtype=int))
    figures.plot_model_size_scaling(repeated, ax=ax)
    assert len(by_gid(ax, "subjects:OPT").get_offsets()) == 3 * 3  # subjects x OPT models


def test_model_size_single_size_family_has_no_fit(table, ax):
    one = table[table["model"] != "llama-30b"]
    figures.plot_model_size_scaling(one, ax=ax)
    assert "LLaMA" in legend_texts(ax)
    assert not [line for line in ax.lines if line.get_gid() == "fit:LLaMA"]


def test_model_size_cc_norm_metric_label(table, ax):
    figures.plot_model_size_scaling(table, metric="mean_cc_norm", ax=ax)
    # mean_cc_norm = mean_r / 0.8: the slope is 0.02 / 0.8
    assert "OPT: +0.025 CC_norm per 10x (r=1.00)" in legend_texts(ax)


# --------------------------------------------------------------------------------------------
# data size
# --------------------------------------------------------------------------------------------
def test_data_scaling_means_and_error_bars_match_groupby(table, ax):
    out = figures.plot_data_scaling(table, ax=ax)
    assert out is ax
    # the sweep's points plus the fit on all stories of the same (model, layer)
    swept = table[(table["model"] == "opt-125m") & (table["layer"] == 9)]
    assert set(swept["kind"]) == {"full", "subsample"}
    stats = swept.groupby(["subject", "n_train_stories"])["mean_r"].agg(["mean", "std"])
    for subject in ("UTS01", "UTS02"):
        expected = stats.loc[subject]
        key = f"opt-125m:9:{subject}"
        line = by_gid(ax, f"data:{key}")
        np.testing.assert_allclose(line.get_xdata(), expected.index)
        np.testing.assert_allclose(line.get_ydata(), expected["mean"])
        segments = by_gid(ax, f"errorbars:{key}").get_segments()
        lows = np.array([seg[0][1] for seg in segments])
        highs = np.array([seg[1][1] for seg in segments])
        spread = expected["std"].fillna(0.0)
        np.testing.assert_allclose(lows, expected["mean"] - spread)
        np.testing.assert_allclose(highs, expected["mean"] + spread)


def test_data_scaling_pooled_fit_and_percent_annotation(ax):
    # seeds and subjects spread symmetrically: pooled means lie exactly on 0.05 + 0.02 log10(n)
    rows = []
    for subject, subject_offset in (("UTS01", -0.01), ("UTS02", 0.01)):
        for n_stories in (1, 3, 10, 30):
            for seed, offset in enumerate((-0.004, 0.0, 0.004)):
                rows.append(
                    _row(
                        subject=subject,
                        model="opt-125m",
                        family="OPT",
                        n_params=1.25e8,
                        layer=9,
                        relative_depth=0.75,
                        n_train_stories=n_stories,
                        seed=seed,
                        mean_r=0.05 + 0.02 * np.log10(n_stories) + subject_offset + offset,
                        mean_cv_score=0.1,
                        kind="subsample",
                    )
                )
    figures.plot_data_scaling(pd.DataFrame(rows), ax=ax)
    # +0.02 per decade relative to the fitted 0.05 at one story = +40 %
    assert "opt-125m L9: +0.020 r per 10x stories (+40%, r=1.00)" in legend_texts(ax)
    line = by_gid(ax, "fit:opt-125m:9")
    x_line = np.asarray(line.get_xdata(), float)
    np.testing.assert_allclose(x_line, [1, 30])
    np.testing.assert_allclose(line.get_ydata(), 0.05 + 0.02 * np.log10(x_line))


def test_data_scaling_agrees_with_scaling_summary_on_full_train_tables(table, ax):
    # encoding.tables writes a boolean full_train column instead of kind
    sub = table[table["kind"] == "subsample"].drop(columns="kind").assign(full_train=False)
    figures.plot_data_scaling(sub, ax=ax)
    summary = scaling_summary(sub).set_index("kind").loc["data"]
    expected = (
        f"opt-125m L9: {summary['slope_per_decade']:+.3f} r per 10x stories "
        f"({summary['pct_per_decade']:+.0f}%, r={summary['r']:.2f})"
    )
    assert expected in legend_texts(ax)


# --------------------------------------------------------------------------------------------
# layer profiles
# --------------------------------------------------------------------------------------------
def test_layer_profiles_mark_cv_best_layer(table, ax):
    out = figures.plot_layer_profiles(table, ax=ax)
    assert out is ax
    full = table[table["kind"] == "full"]
    for model in MODELS:
        rows = full[full["model"] == model]
        profile = rows.groupby("layer")[["relative_depth", "mean_r", "mean_cv_score"]].mean()
        line = by_gid(ax, f"profile:{model}")
        np.testing.assert_allclose(line.get_xdata(), profile["relative_depth"])
        np.testing.assert_allclose(line.get_ydata(), profile["mean_r"])
        best = profile.loc[profile["mean_cv_score"].idxmax()]
        star = np.asarray(by_gid(ax, f"best:{model}").get_offsets())
        np.testing.assert_allclose(star, [[best["relative_depth"], best["mean_r"]]])
        assert best["mean_r"] < profile["mean_r"].max()  # CV and test disagree here


def test_layer_profiles_darker_for_larger_models_within_family(table, ax):
    figures.plot_layer_profiles(table, ax=ax)

    def luminance(model):
        return np.dot(to_rgb(by_gid(ax, f"profile:{model}").get_color()), [0.299, 0.587, 0.114])

    assert luminance("opt-125m") > luminance("opt-1.3b") > luminance("opt-13b")
    assert luminance("llama-7b") > luminance("llama-30b")
    opt_hue = to_rgb(by_gid(ax, "profile:opt-13b").get_color())
    llama_hue = to_rgb(by_gid(ax, "profile:llama-30b").get_color())
    assert not np.allclose(opt_hue, llama_hue)


# --------------------------------------------------------------------------------------------
# shared behaviour of the scaling plots
# --------------------------------------------------------------------------------------------
SCALING_PLOTS = [
    figures.plot_model_size_scaling,
    figures.plot_data_scaling,
    figures.plot_layer_profiles,
]


@pytest.mark.parametrize("plot", SCALING_PLOTS)
def test_scaling_plots_draw_into_given_or_current_axes(plot, table):
    fig, (ax_left, ax_right) = plt.subplots(1, 2)
    try:
        assert plot(table, ax=ax_right) is ax_right
        assert ax_right.lines or ax_right.collections
        assert not (ax_left.lines or ax_left.collections)
        plt.sca(ax_left)
        assert plot(table) is ax_left
    finally:
        plt.close(fig)


@pytest.mark.parametrize("plot", SCALING_PLOTS)
def test_scaling_plots_name_missing_columns(plot, table, ax):
    with pytest.raises(DataError, match=r"mean_cv_score|n_train_stories"):
        plot(table.drop(columns=["mean_cv_score", "n_train_stories"]), ax=ax)


def test_scaling_plot_without_rows_of_its_kind_raises(table, ax):
    with pytest.raises(DataError, match="kind == 'subsample'"):
        figures.plot_data_scaling(table[table["kind"] == "full"], ax=ax)


# --------------------------------------------------------------------------------------------
# noise ceiling
# --------------------------------------------------------------------------------------------
def test_noise_ceiling_hist_counts_valid_voxels(rng, ax):
    cc_max = rng.uniform(0, 1, 500)
    valid = rng.uniform(size=500) > 0.1
    out = figures.plot_noise_ceiling_hist(cc_max, valid, ax=ax, bins=20)
    assert out is ax
    heights = [patch.get_height() for patch in ax.patches]
    expected, _ = np.histogram(cc_max[valid], bins=np.linspace(0, 1, 21))
    np.testing.assert_array_equal(heights, expected)
    assert f"{500 - valid.sum()} without" in ax.get_title()


def test_cc_norm_vs_ceiling_draws_valid_voxels_and_identity(rng, ax):
    cc_max = rng.uniform(0.2, 1, 300)
    r = cc_max * rng.uniform(0, 1, 300)
    valid = rng.uniform(size=300) > 0.2
    out = figures.plot_cc_norm_vs_ceiling(r, cc_max, valid, ax=ax)
    assert out is ax
    np.testing.assert_allclose(by_gid(ax, "voxels").get_offsets(), np.c_[cc_max, r][valid])
    identity = by_gid(ax, "identity")
    np.testing.assert_array_equal(identity.get_xdata(), identity.get_ydata())


def test_voxel_plots_reject_mismatched_shapes(ax):
    with pytest.raises(ValueError, match=r"shape \(n_voxels,\)"):
        figures.plot_cc_norm_vs_ceiling(np.zeros(3), np.zeros(4), np.ones(3, bool), ax=ax)


# --------------------------------------------------------------------------------------------
# brain maps
# --------------------------------------------------------------------------------------------
@pytest.fixture
def mask_img(rng) -> nib.Nifti1Image:
    mask = (rng.uniform(size=(10, 10, 8)) > 0.5).astype(np.uint8)
    return nib.Nifti1Image(mask, affine=np.diag([3.0, 3.0, 3.0, 1.0]))


def test_unmask_c_order_matches_manual_fill(mask_img):
    mask = np.asanyarray(mask_img.dataobj) != 0
    values = np.arange(1, mask.sum() + 1, dtype=np.float32)
    expected = np.zeros(mask.shape, np.float32)
    counter = iter(values)
    for i in range(mask.shape[0]):  # C order: last axis fastest
        for j in range(mask.shape[1]):
            for k in range(mask.shape[2]):
                if mask[i, j, k]:
                    expected[i, j, k] = next(counter)
    img = figures.unmask_values(values, mask_img)
    np.testing.assert_array_equal(img.get_fdata(), expected)
    np.testing.assert_array_equal(img.affine, mask_img.affine)


def test_unmask_f_order_is_pycortex_convention(mask_img):
    mask = np.asanyarray(mask_img.dataobj) != 0
    values = np.arange(1, mask.sum() + 1, dtype=np.float32)
    volume = figures.unmask_values(values, mask_img, order="F").get_fdata()
    # pycortex indexes the transposed (z, y, x) mask in C order
    np.testing.assert_array_equal(volume.T[mask.T], values)
    assert np.all(volume[~mask] == 0)


def test_unmask_rejects_wrong_length(mask_img):
    with pytest.raises(ValueError, match="voxels"):
        figures.unmask_values(np.zeros(3), mask_img)


def test_brain_map_renders_png(mask_img, rng, tmp_path):
    n_voxels = int((np.asanyarray(mask_img.dataobj) != 0).sum())
    reference = nib.Nifti1Image(rng.uniform(size=(10, 10, 8)).astype(np.float32), mask_img.affine)
    fig = plt.figure()
    try:
        display = figures.plot_brain_map(
            rng.normal(size=n_voxels), mask_img, reference, title="test r", vmax=2.0, figure=fig
        )
        assert display.frame_axes.figure is fig
        display.savefig(tmp_path / "map.png")
    finally:
        plt.close(fig)
    assert (tmp_path / "map.png").read_bytes()[:8] == PNG_SIGNATURE


# --------------------------------------------------------------------------------------------
# saving
# --------------------------------------------------------------------------------------------
def test_save_figure_writes_every_format_atomically_and_closes(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    paths = figures.save_figure(fig, tmp_path / "sub" / "figure", formats=("png", "pdf", "svg"))
    assert paths == [tmp_path / "sub" / f"figure.{fmt}" for fmt in ("png", "pdf", "svg")]
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == [
        "figure.pdf",
        "figure.png",
        "figure.svg",
    ]
    assert paths[0].read_bytes()[:8] == PNG_SIGNATURE
    assert paths[1].read_bytes()[:5] == b"%PDF-"
    assert not plt.fignum_exists(fig.number)


def test_save_figure_bad_format_leaves_nothing_and_closes(tmp_path):
    fig, _ = plt.subplots()
    with pytest.raises(ValueError, match="unsupported figure format 'nope'"):
        figures.save_figure(fig, tmp_path / "figure", formats=("nope",))
    assert list(tmp_path.iterdir()) == []
    assert not plt.fignum_exists(fig.number)


def test_scaling_report_writes_three_figures(table, tmp_path):
    names = ("model_size_scaling", "data_scaling", "layer_profiles")
    outputs = {name: [tmp_path / "figures" / f"{name}.png"] for name in names}
    written = figures.scaling_report(table, outputs)
    assert set(written) == {"model_size_scaling", "data_scaling", "layer_profiles"}
    for name, paths in written.items():
        assert paths == [tmp_path / "figures" / f"{name}.png"]
        assert paths[0].read_bytes()[:8] == PNG_SIGNATURE
    assert plt.get_fignums() == []


def test_scaling_report_skips_missing_subsample_with_warning(table, tmp_path, caplog):
    full_only = table[table["kind"] == "full"]
    with caplog.at_level(logging.WARNING, logger="fmriscaling.figures.scaling"):
        written = figures.scaling_report(
            full_only,
            {name: [tmp_path / f"{name}.png"] for name in ("model_size_scaling", "data_scaling")}
            | {"layer_profiles": [tmp_path / "layer_profiles.png"]},
        )
    assert set(written) == {"model_size_scaling", "layer_profiles"}
    assert not (tmp_path / "data_scaling.png").exists()
    assert any(
        "data_scaling" in rec.getMessage() and rec.levelno == logging.WARNING
        for rec in caplog.records
    )


def test_scaling_report_propagates_table_errors(table, tmp_path):
    with pytest.raises(DataError, match="mean_cv_score"):
        figures.scaling_report(
            table.drop(columns=["mean_cv_score"]),
            {
                name: [tmp_path / f"{name}.png", tmp_path / f"{name}.pdf"]
                for name in ("model_size_scaling", "data_scaling", "layer_profiles")
            },
        )
    assert list(tmp_path.iterdir()) == []
