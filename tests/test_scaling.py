"""Scaling fits with bootstrap intervals: known log-linear curves, interval coverage, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fmriscaling import DataError
from fmriscaling.scaling import (
    KEY_COLUMNS,
    LANGUAGE,
    VISION,
    bootstrap_means,
    fits_to_resample,
    headline_table,
    replicate_means,
    resampled_means,
    row_key,
    scaling_fits,
)

SIZES = {"m-1": 1e8, "m-2": 1e9, "m-3": 1e10, "m-4": 1e11}
N_LAYERS = 4


def encoding_rows(means: dict[tuple[str, str], float], *, cv_best: int = 2) -> pd.DataFrame:
    """A full-training encoding table: per (subject, model) the given mean_r at the CV-best layer,
    and lower values at the others (one of them better on the test story than on CV)."""
    rows = []
    for (subject, model), value in means.items():
        for layer in range(N_LAYERS + 1):
            best = layer == cv_best
            rows.append(
                {
                    "subject": subject,
                    "model": model,
                    "family": "fam",
                    "model_kind": "text",
                    "n_params": SIZES[model],
                    "layer": layer,
                    "relative_depth": layer / N_LAYERS,
                    "full_train": True,
                    "n_train_stories": 12,
                    "n_train_trs": 1200,
                    "seed": -1,
                    # layer 4 beats the CV-best layer on the test story: it must not be chosen
                    "mean_r": value if best else value + (0.05 if layer == 4 else -0.05),
                    "mean_cc_norm": 2 * value if best else 2 * value - 0.1,
                    "mean_cv_score": 0.3 if best else 0.1,
                }
            )
    return pd.DataFrame(rows)


def means_table(rows: pd.DataFrame, values_r, values_cc=None) -> pd.DataFrame:
    """A bootstrap table with the given (n_rows, n_replicates) replicate means per row."""
    values_r = np.asarray(values_r, dtype=float)
    values_cc = values_r if values_cc is None else np.asarray(values_cc, dtype=float)
    n_rep = values_r.shape[1]
    keys = rows[list(KEY_COLUMNS)].reset_index(drop=True)
    long = keys.loc[keys.index.repeat(n_rep)].reset_index(drop=True)
    long["replicate"] = np.tile(np.arange(n_rep), len(keys))
    long["mean_r"] = values_r.ravel()
    long["mean_cc_norm"] = values_cc.ravel()
    return long


def test_fit_recovers_slope_and_percent_of_a_log_linear_curve():
    intercept, slope = 0.05, 0.02
    truth = {m: intercept + slope * np.log10(n) for m, n in SIZES.items()}
    encoding = encoding_rows({(s, m): v for s in ("A", "B") for m, v in truth.items()})
    rows = fits_to_resample(encoding)
    assert (rows["layer"] == 2).all()  # the CV-best layer, not the test-best layer 4
    means = means_table(rows, np.repeat(rows["mean_r"].to_numpy()[:, None], 50, axis=1))
    fits, replicates = scaling_fits(encoding, means)
    fit = fits[(fits["axis"] == "params") & (fits["metric"] == "mean_r")].iloc[0]
    assert fit["family"] == "fam" and fit["kind"] == "text" and fit["n_points"] == 4
    assert fit["slope_per_decade"] == pytest.approx(slope)
    assert fit["intercept"] == pytest.approx(intercept)
    assert fit["r"] == pytest.approx(1.0)
    assert fit["pct_per_decade"] == pytest.approx(100 * slope / truth["m-1"])
    # no sampling noise in the replicates: the interval collapses onto the estimate
    assert fit["slope_lo"] == pytest.approx(slope) and fit["slope_hi"] == pytest.approx(slope)
    cc = fits[(fits["axis"] == "params") & (fits["metric"] == "mean_cc_norm")].iloc[0]
    assert cc["slope_per_decade"] == pytest.approx(2 * slope)
    assert set(replicates["replicate"]) == set(range(50))


def _coverage_draw(rng, *, n_subjects, n_voxels, subject_sd, voxel_sd, resample_subjects):
    """One simulated study; True when the interval of the size slope covers the true one."""
    intercept, slope = 0.1, 0.02
    x = np.log10(np.array(list(SIZES.values())))
    means, boot = {}, []
    for i_subject in range(n_subjects):
        subject_slope = slope + subject_sd * rng.standard_normal()
        voxel_effect = 0.1 * rng.standard_normal(n_voxels)  # shared across models
        test_r = (
            intercept
            + subject_slope * x[:, None]
            + voxel_effect[None, :]
            + voxel_sd * rng.standard_normal((len(x), n_voxels))
        )
        mean_r, _ = resampled_means(test_r, test_r, 200, rng)
        for model, r_model in zip(SIZES, test_r, strict=True):
            means[(f"S{i_subject:02d}", model)] = r_model.mean()
        boot.append(mean_r)
    encoding = encoding_rows(means)
    rows = fits_to_resample(encoding)
    # rows are sorted by subject, then model: the order of the simulated means
    values = np.concatenate(boot, axis=0)
    fits, _ = scaling_fits(
        encoding,
        means_table(rows, values),
        seed=int(rng.integers(1 << 30)),
        resample_subjects=resample_subjects,
    )
    fit = fits[(fits["axis"] == "params") & (fits["metric"] == "mean_r")].iloc[0]
    return fit["slope_lo"] <= slope <= fit["slope_hi"]


@pytest.mark.parametrize(
    ("setting", "low", "high"),
    [
        # fixed subjects, voxel sampling only: the voxel bootstrap's own setting
        (dict(n_subjects=2, subject_sd=0.0, resample_subjects=False), 0.89, 0.99),
        # subjects vary in their slope: resampling them carries that spread into the interval
        (dict(n_subjects=15, subject_sd=0.02, resample_subjects=True), 0.86, 0.99),
    ],
    ids=["voxels", "voxels+subjects"],
)
def test_interval_covers_the_true_slope_at_about_the_nominal_rate(setting, low, high):
    rng = np.random.default_rng(1)
    draws = 120
    covered = [_coverage_draw(rng, n_voxels=300, voxel_sd=0.3, **setting) for _ in range(draws)]
    rate = np.mean(covered)
    assert low <= rate <= high, f"95 % intervals covered the true slope in {rate:.0%} of draws"


def test_bootstrap_means_share_voxel_resamples_within_a_subject(tmp_path):
    rng = np.random.default_rng(0)
    encoding = encoding_rows({(s, m): 0.1 for s in ("A", "B") for m in SIZES})
    rows = fits_to_resample(encoding)
    n_voxels = 40
    base = rng.standard_normal(n_voxels)
    scores = {}
    for row in rows.to_dict("records"):
        path = tmp_path / f"{row['subject']}_{row['model']}.npz"
        # every model of a subject: the same voxel values plus a constant
        np.savez(path, test_r=base + SIZES[row["model"]] / 1e11)
        scores[row_key(row)] = path
    ceilings = {}
    for subject in ("A", "B"):
        ceilings[subject] = tmp_path / f"nc_{subject}.npz"
        cc_max = np.full(n_voxels, 0.5)
        cc_max[:5] = np.nan
        valid = np.isfinite(cc_max)
        np.savez(
            ceilings[subject], cc_max=cc_max, valid=valid, sp=np.where(valid, 1.0, -1.0),
            tp=np.ones(n_voxels), n_repeats=np.int64(10), **{"np": np.zeros(n_voxels)},
        )  # fmt: skip
    means = bootstrap_means(rows, scores, ceilings, n_replicates=30, seed=5, chunk=7)
    assert len(means) == len(rows) * 30
    wide = means.pivot_table(index=["subject", "replicate"], columns="model", values="mean_r")
    # shared resamples: the models of one subject differ by their constant in every replicate
    np.testing.assert_allclose(wide["m-4"] - wide["m-1"], (1e11 - 1e8) / 1e11, atol=1e-12)
    # and replicates differ from each other (voxels were resampled)
    assert wide["m-1"].std() > 0.01
    # CC_norm averages the voxels with a ceiling only: r / 0.5 there
    sub = means[(means["subject"] == "A") & (means["model"] == "m-1")]
    assert np.isfinite(sub["mean_cc_norm"]).all()
    again = bootstrap_means(rows, scores, ceilings, n_replicates=30, seed=5, chunk=30)
    pd.testing.assert_frame_equal(means, again)  # the chunk size does not change the draws


def test_a_model_missing_for_a_subject_fails_naming_both():
    encoding = encoding_rows({(s, m): 0.1 for s in ("A", "B") for m in SIZES})
    encoding = encoding[~((encoding["subject"] == "B") & (encoding["model"] == "m-3"))]
    with pytest.raises(DataError, match=r"'m-3' for subject\(s\) \['B'\]"):
        fits_to_resample(encoding)


def test_a_fit_missing_from_the_bootstrap_table_fails_naming_it():
    encoding = encoding_rows({(s, m): 0.1 for s in ("A", "B") for m in SIZES})
    rows = fits_to_resample(encoding)
    means = means_table(rows, np.full((len(rows), 10), 0.1))
    means = means[~((means["subject"] == "A") & (means["model"] == "m-2"))]
    with pytest.raises(DataError, match="no replicates of A m-2 layer 2"):
        scaling_fits(encoding, means)


def data_sweep_rows(encoding: pd.DataFrame) -> pd.DataFrame:
    """Subsets of m-1 layer 2: 2 and 4 stories, two seeds, r = 0.02 + 0.03 log10(stories)."""
    rows = []
    for subject in ("A", "B"):
        for n in (2, 4):
            for seed in (0, 1):
                rows.append(
                    {
                        **encoding.iloc[0].to_dict(),
                        "subject": subject,
                        "layer": 2,
                        "full_train": False,
                        "n_train_stories": n,
                        "n_train_trs": 100 * n,
                        "seed": seed,
                        "mean_r": 0.02 + 0.03 * np.log10(n),
                        "mean_cc_norm": 0.1,
                    }
                )
    return pd.DataFrame(rows)


def test_data_fits_against_stories_and_trs_and_headline_with_the_paper():
    full_r = 0.02 + 0.03 * np.log10(12)
    encoding = encoding_rows({(s, m): full_r for s in ("A", "B") for m in SIZES})
    encoding = pd.concat([encoding, data_sweep_rows(encoding)], ignore_index=True)
    rows = fits_to_resample(encoding)
    means = means_table(rows, np.repeat(rows["mean_r"].to_numpy()[:, None], 20, axis=1))
    fits, _ = scaling_fits(encoding, means)
    stories = fits[(fits["axis"] == "stories") & (fits["metric"] == "mean_r")].iloc[0]
    assert (stories["model"], stories["layer"], stories["n_points"]) == ("m-1", 2, 3)
    assert stories["slope_per_decade"] == pytest.approx(0.03)
    trs = fits[(fits["axis"] == "trs") & (fits["metric"] == "mean_r")].iloc[0]
    assert trs["x_min"] == 200 and trs["x_max"] == 1200
    paper = [
        {"axis": "params", "name": "OPT", "pct_per_decade": 4.4, "fit_r": 0.91},
        {"axis": "stories", "name": "opt-125m", "pct_per_decade": 122.0},
    ]
    head = headline_table(fits, encoding, paper=paper, aliases={"fam": "OPT", "m-1": "opt-125m"})
    assert list(head["axis"]) == ["params", "stories", "trs"]
    params = head.iloc[0]
    assert (params["paper_pct_per_decade"], params["paper_fit_r"]) == (4.4, 0.91)
    assert params["best_layer"] == 2  # by CV
    assert head.iloc[1]["paper_pct_per_decade"] == 122.0
    assert pd.isna(head.iloc[2]["paper_pct_per_decade"])  # the paper has no TR number
    # no fit at all (one model, no sweep): no rows, but the header, so the CSV reads back
    empty = headline_table(fits.iloc[:0], encoding)
    assert empty.empty and list(empty.columns) == list(head.columns)


def test_a_subject_without_a_subset_fit_fails_naming_the_line_and_the_size():
    full_r = 0.02 + 0.03 * np.log10(12)
    encoding = encoding_rows({(s, m): full_r for s in ("A", "B") for m in SIZES})
    sweep = data_sweep_rows(encoding)
    sweep = sweep[~((sweep["subject"] == "B") & (sweep["n_train_stories"] == 2))]
    encoding = pd.concat([encoding, sweep], ignore_index=True)
    rows = fits_to_resample(encoding)
    means = means_table(rows, np.repeat(rows["mean_r"].to_numpy()[:, None], 20, axis=1))
    with pytest.raises(DataError, match=r"stories fit of mean_r for m-1 layer 2: subject\(s\) "
                                        r"\['B'\] have no fit at x = 2"):  # fmt: skip
        scaling_fits(encoding, means)


def test_both_tracks_write_one_bootstrap_schema_and_fit_it_with_one_function():
    """The language track's bootstrap table, renamed by the tracks' own names, is the vision
    track's: the same key, ROI, replicate and metric columns, fitted by `scaling_fits`."""
    rng = np.random.default_rng(4)
    test_r = 0.1 + 0.05 * rng.standard_normal((2, 30))
    cc = 2 * test_r
    fits = pd.DataFrame({"subject": "A", "model": ["m-1", "m-2"], "layer": 2,
                         "full_train": True, "n_train_stories": 12, "seed": -1})  # fmt: skip
    language = replicate_means(fits, test_r, cc, track=LANGUAGE, n_replicates=5, seed=1)
    vision_fits = fits.drop(columns="layer").rename(columns={"n_train_stories": "n_train_images"})
    rois = {("stream", "early"): np.arange(30) < 10}
    vision = replicate_means(vision_fits, test_r, cc, track=VISION, n_replicates=5, seed=1,
                             rois=rois)  # fmt: skip
    renamed = {"n_train_stories": "n_train_images", "mean_cc_norm": "mean_noise_norm"}
    # the language track's own: a fit's layer and its width (native here, or a fixed width d)
    assert set(language["width"]) == {"native"}
    own = ("layer", "width")
    assert [renamed.get(c, c) for c in language.columns if c not in own] == list(vision.columns)
    # the whole-cortex rows draw the same resamples in both tracks
    cortex = vision[vision["roi"] == "cortex"].reset_index(drop=True)
    np.testing.assert_array_equal(cortex["mean_r"], language["mean_r"])
    np.testing.assert_array_equal(cortex["mean_noise_norm"], language["mean_cc_norm"])
    # an ROI's rows are its voxels' means on their own resamples
    early = vision[vision["roi"] == "early"]
    assert early["mean_r"].between(test_r[:, :10].min(), test_r[:, :10].max()).all()
    assert not np.allclose(early["mean_r"].to_numpy(), cortex["mean_r"].to_numpy())
