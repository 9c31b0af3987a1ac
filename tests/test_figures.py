"""Every figure function runs on a minimal table and returns its Axes; tables behind them."""

from __future__ import annotations

import logging

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from fmriscaling import DataError, figures
from fmriscaling.demo.synthetic import generate_dataset
from fmriscaling.figures.brain import draw_brain_maps, plot_flatmap
from fmriscaling.figures.ceiling import (
    draw_noise_ceiling_figure,
    plot_cc_max_distribution,
    plot_cc_norm_by_roi,
    plot_roi_values,
)
from fmriscaling.figures.costs import draw_cost_figure, plot_costs
from fmriscaling.figures.stacking import plot_stacking_gain_by_roi
from fmriscaling.measured_costs import benchmark_table
from fmriscaling.scaling import fits_to_resample, scaling_fits
from fmriscaling.voxel_tables import (
    add_stacking_gain,
    roi_summary,
    roi_voxel_table,
    voxel_table,
)

PNG = b"\x89PNG\r\n\x1a\n"
N_VOXELS = 40


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def _voxels(rng, subject="S01", n=N_VOXELS) -> pd.DataFrame:
    cc_max = rng.uniform(0.2, 0.9, n)
    cc_max[:4] = np.nan  # no ceiling
    return voxel_table(
        subject, model="m", layer=2, test_r=0.5 * np.nan_to_num(cc_max, nan=0.1), cc_max=cc_max
    )


def _roi_voxels(subject="S01") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "subject": subject,
            "roi": ["precuneus"] * 10 + ["AC"] * 6 + ["tiny"] * 1,
            "source": ["anatomical"] * 10 + ["functional"] * 7,
            "voxel": list(range(0, 10)) + list(range(10, 16)) + [20],
        }
    )


# --------------------------------------------------------------------------- tables behind them


def test_roi_summary_means_match_an_independent_computation(rng):
    voxels = _voxels(rng)
    rois = roi_summary(voxels, _roi_voxels())
    pre = rois[rois["roi"] == "precuneus"].iloc[0]
    inside = voxels.iloc[0:10]
    with_ceiling = inside[inside["has_ceiling"]]
    assert (pre["n_voxels"], pre["n_voxels_ceiling"]) == (10, 6)
    assert pre["mean_r"] == pytest.approx(inside["test_r"].mean())
    assert pre["mean_cc_max"] == pytest.approx(with_ceiling["cc_max"].mean())
    assert pre["mean_cc_norm"] == pytest.approx(
        (with_ceiling["test_r"] / with_ceiling["cc_max"]).mean()
    )
    cortex = rois[rois["roi"] == "cortex"].iloc[0]
    assert cortex["n_voxels"] == N_VOXELS and cortex["source"] == "all"
    assert list(rois["source"]) == ["all", "anatomical", "functional", "functional"]


def test_an_roi_without_voxels_stays_in_the_roi_table_with_zero_voxels(rng):
    """A functional ROI that misses a coarse grid is listed, with no voxels and no means."""
    from fmriscaling.rois import VoxelLabels

    n = N_VOXELS
    inside = np.zeros((2, n), dtype=bool)
    inside[0, :5] = True  # the second ROI has no voxel of this grid
    labels = VoxelLabels(
        subject="S01", vertex=np.arange(n), distance_mm=np.zeros(n),
        hemisphere=np.array(["lh"] * n), atlas_labels={}, roi_names=["AC", "OFA"],
        roi_sources=["functional", "functional"], membership=inside,
    )  # fmt: skip
    members = roi_voxel_table(labels)
    assert members["voxel"].isna().sum() == 1 and (members["roi"] == "AC").sum() == 5
    rois = roi_summary(_voxels(rng), members).set_index("roi")
    assert rois.loc["OFA", "n_voxels"] == 0 and np.isnan(rois.loc["OFA", "mean_r"])
    assert rois.loc["AC", "n_voxels"] == 5


def test_stacking_gain_joins_the_roi_table_per_stack(rng):
    rois = roi_summary(_voxels(rng), _roi_voxels())
    stacking = pd.DataFrame(
        {
            "subject": "S01",
            "stack": ["st", "st", "st", "other"],
            "group": ["all", "precuneus", "AC", "all"],
            "group_source": ["all", "anatomical", "functional", "all"],
            "gain_over_best_member": [0.01, 0.05, -0.02, 0.03],
        }
    )
    joined = add_stacking_gain(rois, stacking).set_index("roi")
    assert joined.loc["cortex", "stacking_gain:st"] == pytest.approx(0.01)
    assert joined.loc["precuneus", "stacking_gain:st"] == pytest.approx(0.05)
    assert joined.loc["AC", "stacking_gain:st"] == pytest.approx(-0.02)
    assert joined.loc["cortex", "stacking_gain:other"] == pytest.approx(0.03)
    assert np.isnan(joined.loc["AC", "stacking_gain:other"])
    assert len(joined) == len(rois)
    with pytest.raises(DataError, match=r"no rows for subjects \['S01'\]"):
        add_stacking_gain(rois, stacking.assign(subject="S02"))


def test_benchmark_table_reads_snakemake_benchmarks(tmp_path, caplog):
    bench = tmp_path / "fit.tsv"
    bench.write_text(
        "s\th:m:s\tmax_rss\tcpu_time\n2.0\t0:00:02\t100.5\t1.5\n4.0\t0:00:04\tNA\t2.5\n"
    )
    records = [
        {"rule": "fit_encoding", "model": "m", "n_params": 1e6, "path": bench},
        {"rule": "fit_encoding", "model": "m", "n_params": 1e6, "path": tmp_path / "gone.tsv"},
    ]
    with caplog.at_level(logging.WARNING, logger="fmriscaling.measured_costs"):
        table = benchmark_table(records)
    assert len(table) == 1
    row = table.iloc[0]
    assert (row["seconds"], row["cpu_seconds"], row["max_rss_mb"]) == (3.0, 2.0, 100.5)
    assert "gone.tsv" in caplog.text
    with pytest.raises(DataError, match="no benchmark files"):
        benchmark_table(records[1:])


# ------------------------------------------------------------------------- figure functions


def _costs() -> pd.DataFrame:
    rows = []
    for model, size in (("a", 1e6), ("b", 1e7)):
        rows.append(
            {
                "rule": "extract_text_features",
                "model": model,
                "family": "f",
                "n_params": size,
                "seconds": size / 1e5,
                "max_rss_mb": 500.0,
            }
        )
        for layer in range(3):
            rows.append(
                {
                    "rule": "fit_encoding",
                    "model": model,
                    "family": "f",
                    "n_params": size,
                    "seconds": 2.0 + layer,
                    "max_rss_mb": 300.0,
                }
            )
    return pd.DataFrame(rows)  # fmt: skip


def _gains(rng) -> pd.DataFrame:
    """A stacking table: the whole cortex and two ROIs, one stack."""
    return pd.DataFrame(
        {
            "subject": "S01",
            "stack": "st",
            "group": ["all", "precuneus", "AC"],
            "group_source": ["all", "anatomical", "functional"],
            "n_voxels": [N_VOXELS, 10, 6],
            "gain_over_best_member": rng.uniform(-0.02, 0.05, 3),
        }
    )


FIGURES = {
    "cc_max_distribution": lambda rng, ax: plot_cc_max_distribution(_voxels(rng), ax),
    "cc_norm_by_roi": lambda rng, ax: plot_cc_norm_by_roi(
        roi_summary(_voxels(rng), _roi_voxels()), ax, min_voxels=2
    ),
    "stacking_gain_by_roi": lambda rng, ax: plot_stacking_gain_by_roi(
        _gains(rng), ax, min_voxels=2
    ),
    "costs": lambda rng, ax: plot_costs(_costs(), "seconds", ax),
}


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_figure_functions_draw_into_the_given_axes_and_return_it(name, rng):
    fig, (left, right) = plt.subplots(1, 2)
    try:
        assert FIGURES[name](rng, right) is right
        assert right.patches or right.collections or right.lines
        assert not (left.patches or left.collections or left.lines)
        plt.sca(left)
        assert FIGURES[name](rng, None) is left
    finally:
        plt.close(fig)


def test_roi_values_leave_out_small_rois_and_mark_the_ceiling(rng, ax):
    rois = roi_summary(_voxels(rng), _roi_voxels())
    plot_cc_norm_by_roi(rois, ax, min_voxels=2)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0] == f"cortex (n={N_VOXELS})"
    assert "precuneus (n=10)" in labels and not any(lab.startswith("tiny") for lab in labels)
    assert [line.get_xdata()[0] for line in ax.lines] == [1.0]
    with pytest.raises(DataError, match="no ROI has 1000 voxels"):
        plot_roi_values(rois, "mean_cc_norm", ax, min_voxels=1000)


def test_costs_one_point_per_job_and_a_median_line_per_rule(ax):
    plot_costs(_costs(), "seconds", ax)
    jobs = [c for c in ax.collections if c.get_gid() == "jobs:fit_encoding"]
    assert len(jobs[0].get_offsets()) == 6
    median = next(line for line in ax.lines if line.get_gid() == "median:fit_encoding:f")
    np.testing.assert_allclose(median.get_ydata(), [3.0, 3.0])


def test_stacking_gain_needs_a_stack_when_there_are_several(rng, ax):
    gains = pd.concat([_gains(rng), _gains(rng).assign(stack="other")])
    with pytest.raises(DataError, match=r"choose one of the stacks \['other', 'st'\]"):
        plot_stacking_gain_by_roi(gains, ax)


def test_drawing_functions_write_every_format(rng, tmp_path):
    voxels = pd.concat([_voxels(rng), _voxels(rng, "S02")])
    rois = pd.concat(
        [roi_summary(v, _roi_voxels(s)) for s, v in voxels.groupby("subject")], ignore_index=True
    )
    paths = [tmp_path / "nc.png", tmp_path / "nc.pdf"]
    assert draw_noise_ceiling_figure(voxels, rois, paths, min_voxels=2) == paths
    assert paths[0].read_bytes()[:8] == PNG and paths[1].read_bytes()[:4] == b"%PDF"
    assert draw_cost_figure(_costs(), [tmp_path / "costs.png"])[0].read_bytes()[:8] == PNG
    assert plt.get_fignums() == []


# ------------------------------------------------------------------- scaling figure with CIs


def _encoding() -> pd.DataFrame:
    rows = []
    for subject in ("A", "B"):
        for model, size, kind in (
            ("t1", 1e6, "text"),
            ("t2", 1e8, "text"),
            ("s1", 1e6, "speech"),
            ("s2", 1e7, "speech"),
        ):
            for layer in range(3):
                r = 0.05 + 0.01 * np.log10(size) + (0.02 if layer == 1 else 0.0)
                rows.append({
                    "subject": subject, "model": model, "family": model[0], "model_kind": kind,
                    "n_params": size, "layer": layer, "n_layers": 2, "relative_depth": layer / 2,
                    "full_train": True, "n_train_stories": 12, "n_train_trs": 1200, "seed": -1,
                    "mean_r": r, "mean_cc_norm": 2 * r, "mean_cv_score": 0.1 + 0.1 * (layer == 1),
                })  # fmt: skip
    return pd.DataFrame(rows)


def _fits(encoding):
    rows = fits_to_resample(encoding)
    rng = np.random.default_rng(0)
    keys = rows.loc[rows.index.repeat(20)].reset_index(drop=True)
    keys["replicate"] = np.tile(np.arange(20), len(rows))
    noise = rng.normal(0, 0.002, len(keys))
    keys["mean_r"] += noise
    keys["mean_cc_norm"] += 2 * noise
    return scaling_fits(encoding, keys)


def test_model_size_figure_with_fits_has_band_and_interval_legend(ax):
    encoding = _encoding()
    fits, lines = _fits(encoding)
    figures.plot_model_size_scaling(encoding, ax=ax, fits=fits, bootstrap=lines, model_kind="text")
    (text,) = [t.get_text() for t in ax.get_legend().get_texts()]
    fit = fits[
        (fits["axis"] == "params") & (fits["metric"] == "mean_r") & (fits["family"] == "t")
    ].iloc[0]
    assert text.startswith(
        f"t: {fit['slope_per_decade']:+.3f} r per 10x, {fit['pct_per_decade']:+.1f}% ["
    )
    assert [c for c in ax.collections if c.get_gid() == "band:t"]
    # speech models are another figure
    assert not [c for c in ax.collections if c.get_gid() == "mean:s"]


def test_a_fits_table_missing_a_family_fails_naming_it(ax):
    encoding = _encoding()
    fits, _ = _fits(encoding)
    with pytest.raises(DataError, match="params fit\\(s\\) of mean_r for family s"):
        figures.plot_model_size_scaling(encoding, ax=ax, fits=fits[fits["family"] != "s"])


def test_scaling_report_draws_a_panel_per_metric(tmp_path):
    encoding = _encoding()
    fits, lines = _fits(encoding)
    outputs = {
        name: [tmp_path / f"{name}.png"]
        for name in ("model_size_scaling", "speech_model_size_scaling")
    }
    written = figures.scaling_report(
        encoding, outputs, metrics=("mean_r", "mean_cc_norm"), fits=fits, bootstrap=lines
    )
    assert set(written) == set(outputs)
    assert all(p[0].read_bytes()[:8] == PNG for p in written.values())


# --------------------------------------------------------------------------- brain maps


def test_flatmap_draws_into_the_given_axes(cortex_dataset, ax):
    root, _ = cortex_dataset
    db = root / "derivative" / "pycortex-db"
    mask = db / "UTS01" / "transforms" / "UTS01_auto" / "mask_thick.nii.gz"
    values = np.linspace(0, 1, 300)
    out = plot_flatmap(
        values, db_dir=db, subject="UTS01", xfmname="UTS01_auto", mask=mask, ax=ax,
        label="r", height=256, pixelwise=False, with_rois=False,
    )  # fmt: skip
    assert out is ax
    data = ax.images[0].get_array()
    assert np.isfinite(data).mean() > 0.3  # the voxels cover the flatmap
    with pytest.raises(DataError, match="299 values for a mask of 300 voxels"):
        plot_flatmap(
            values[:-1], db_dir=db, subject="UTS01", xfmname="UTS01_auto", mask=mask, ax=ax
        )


def test_flatmap_dims_the_voxels_given_a_lower_opacity(cortex_dataset, ax):
    """Non-significant voxels are drawn with opacity 0.3 (a pycortex VolumeRGB): the image
    carries both opacities, and the colours of the opaque pixels are the colormap's."""
    root, _ = cortex_dataset
    db = root / "derivative" / "pycortex-db"
    mask = db / "UTS01" / "transforms" / "UTS01_auto" / "mask_thick.nii.gz"
    values = np.full(300, 0.8)
    opacity = np.where(np.arange(300) % 2 == 0, 1.0, 0.3)
    plot_flatmap(
        values, db_dir=db, subject="UTS01", xfmname="UTS01_auto", mask=mask, ax=ax, height=256,
        pixelwise=False, with_rois=False, with_curvature=False, vmin=0.0, vmax=1.0,
        cmap="viridis", opacity=opacity,
    )  # fmt: skip
    image = np.asarray(ax.images[0].get_array(), dtype=float)
    assert image.ndim == 3 and image.shape[2] == 4
    scale = 255.0 if image.max() > 1 else 1.0
    alpha = image[..., 3] / scale
    drawn = alpha[alpha > 0.05]
    assert np.isclose(drawn, 1.0, atol=0.02).mean() > 0.2
    assert np.isclose(drawn, 0.3, atol=0.02).mean() > 0.2
    from matplotlib import colormaps

    opaque = image[np.isclose(alpha, 1.0, atol=0.02)][:, :3] / scale
    np.testing.assert_allclose(opaque.mean(axis=0), colormaps["viridis"](0.8)[:3], atol=0.02)
    with pytest.raises(DataError, match="299 opacities for 300 voxels"):
        plot_flatmap(values, db_dir=db, subject="UTS01", xfmname="UTS01_auto", mask=mask,
                     ax=ax, opacity=opacity[:-1], with_rois=False)  # fmt: skip


def test_a_dataset_without_pycortex_surfaces_falls_back_to_nilearn(tmp_path, caplog, rng):
    root = tmp_path / "ds"
    generate_dataset(root, subjects=("UTS01",), n_train_stories=2, n_voxels=50, n_latent=4,
                     story_n_trs=(60, 70), test_n_trs=90, cortex=None)  # fmt: skip
    xfm = root / "derivative" / "pycortex-db" / "UTS01" / "transforms" / "UTS01_auto"
    voxels = _voxels(rng, "UTS01", n=50)
    with caplog.at_level(logging.INFO, logger="fmriscaling.figures.brain"):
        paths = draw_brain_maps(
            voxels, [tmp_path / "map.png"], subject="UTS01", db_dir=root / "derivative" / "pycortex-db",
            mask=xfm / "mask_thick.nii.gz", reference=xfm / "reference.nii.gz", xfmname="UTS01_auto",
        )  # fmt: skip
    assert paths[0].read_bytes()[:8] == PNG
    assert "no pycortex surfaces" in caplog.text and "nilearn slices" in caplog.text


def test_unfloored_ceiling_matches_the_ceiling_computed_without_a_floor(rng):
    from fmriscaling.encoding.noise_ceiling import noise_ceiling
    from fmriscaling.voxel_tables import unfloored_cc_max

    repeats = rng.standard_normal((100, 30)) + 2 * rng.standard_normal((8, 100, 30))
    floored = noise_ceiling(repeats, floor=0.5)
    np.testing.assert_allclose(unfloored_cc_max(floored), noise_ceiling(repeats).cc_max, atol=1e-12)
