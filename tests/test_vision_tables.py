"""Vision tables and figures: one row per fit / ROI / chosen candidate, scores from the files,
scaling fits in the language track's columns with bootstrap intervals, and every figure drawn."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fmriscaling.scaling import FIT_COLUMNS as LANGUAGE_SCALING_COLUMNS
from fmriscaling.scaling import ROI_COLUMNS, VISION, replicate_means
from fmriscaling.vision.plots import VISION_FIGURES, vision_report
from fmriscaling.vision.scores import write_vision_noise_ceiling
from fmriscaling.vision.tables import (
    FIT_COLUMNS,
    SCALING_COLUMNS,
    collect_vision_tables,
    vision_scaling,
)

N_VERTICES = 12
CANDIDATES = np.array([[0, 1], [1, 1], [1, 4]])


def _write_fit(path, test_r, candidate=None, n_train=100, significant=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"test_r": np.asarray(test_r, np.float32)}
    if significant is not None:
        arrays["significant"] = np.asarray(significant, bool)
    if candidate is not None:
        arrays.update(
            candidate=np.asarray(candidate), candidates=CANDIDATES,
            cv_score=np.asarray(test_r, np.float32) / 2,
        )  # fmt: skip
    np.savez(path, **arrays)
    summary = {"n_train_images": n_train, "n_test_images": 20, "test_source": "held_out",
               "n_candidates": 3, "solvers": ["dual", "primal"], "median_alpha": 10.0}  # fmt: skip
    if significant is not None:
        summary.update(n_significant=int(np.sum(significant)),
                       fraction_significant=float(np.mean(significant)))  # fmt: skip
    path.with_suffix(".json").write_text(json.dumps(summary))


@pytest.fixture
def fits(tmp_path, rng):
    streams = np.array([1] * 4 + [5] * 4 + [6] * 3 + [0])
    masks = {
        ("all", "all"): np.ones(N_VERTICES, bool),
        ("stream", "early"): streams == 1,
        ("stream", "ventral"): streams == 5,
        ("stream", "lateral"): streams == 6,
        ("category", "faces"): np.isin(np.arange(N_VERTICES), [4, 5, 8]),
    }
    entries, ceilings = [], {}
    for subject in ("subj01", "subj02"):
        ceilings[subject] = tmp_path / f"{subject}_nc.npz"
        ncsnr = np.where(streams > 0, 1.0, 0.0)  # the Unknown vertex has no ceiling
        write_vision_noise_ceiling(
            ceilings[subject], ncsnr=ncsnr, n_repeats_test=[3] * 20,
            n_vertices={"lh": 6, "rh": 6},
        )  # fmt: skip
        for model, size, base in (("m-s", 1e6, 0.2), ("m-l", 1e8, 0.4)):
            path = tmp_path / subject / model / "scores.npz"
            candidate = np.where(streams == 1, 2, 1)
            _write_fit(path, base + 0.01 * rng.random(N_VERTICES), candidate)
            entries.append(dict(subject=subject, model=model, family="fam", n_params=size,
                                kind="full", n_train=None, seed=-1, path=path))  # fmt: skip
            if model == "m-l":
                for n, gain in ((10, -0.2), (30, -0.1)):
                    for seed in (0, 1):
                        sub = tmp_path / subject / model / f"{n}-{seed}.npz"
                        _write_fit(sub, base + gain + 0 * streams, candidate, n_train=n)
                        entries.append(dict(subject=subject, model=model, family="fam",
                                            n_params=size, kind="subsample", n_train=n,
                                            seed=seed, path=sub))  # fmt: skip
        path = tmp_path / subject / "ensemble.npz"
        _write_fit(path, np.full(N_VERTICES, 0.5))
        entries.append(dict(subject=subject, model="ensemble", family="ensemble", n_params=None,
                            kind="ensemble", n_train=None, seed=-1, path=path))  # fmt: skip
    tables = collect_vision_tables(
        entries, ceilings=ceilings, roi_masks={"subj01": masks, "subj02": masks},
        bootstrap={"n_replicates": 200, "seed": 0},
    )  # fmt: skip
    return tables, masks


def test_one_row_per_fit_with_scores_from_the_files(fits):
    tables, _ = fits
    encoding = tables["encoding"]
    assert list(encoding.columns) == list(FIT_COLUMNS)
    assert len(encoding) == 2 * (2 + 4 + 1)
    ens = encoding[encoding["model"] == "ensemble"].iloc[0]
    # r = 0.5 everywhere, NC = 1 / (1 + 1/3) = 0.75: 100 * 0.25 / 0.75, one vertex without NC
    assert ens["mean_noise_norm"] == pytest.approx(100 / 3)
    assert ens["n_vertices_no_ceiling"] == 1 and ens["mean_r"] == pytest.approx(0.5)
    assert set(encoding["kind"]) == {"full", "subsample", "ensemble"}
    rois = tables["rois"]
    early = rois[(rois["roi"] == "early") & (rois["model"] == "ensemble")]
    assert (early["n_vertices"] == 4).all()
    selection = tables["selection"]
    assert set(selection["kind"]) == {"full"}
    by_roi = selection.groupby(["subject", "model", "roi"])["fraction"].sum()
    np.testing.assert_allclose(by_roi, 1.0)
    early_choice = selection[(selection["roi"] == "early") & (selection["n_vertices"] > 0)]
    assert set(zip(early_choice["layer"], early_choice["k"], strict=True)) == {(1, 4)}


def test_scaling_fits_have_the_language_tracks_columns_and_intervals(fits):
    tables, _ = fits
    scaling, lines = vision_scaling(tables["encoding"], tables["bootstrap_means"])
    assert list(scaling.columns) == list(SCALING_COLUMNS) == list(LANGUAGE_SCALING_COLUMNS)
    assert set(scaling["kind"]) == {"vision"} and set(scaling["metric"]) == {
        "mean_r",
        "mean_noise_norm",
    }
    assert (scaling["n_subjects"] == 2).all() and (scaling["n_replicates"] == 200).all()
    r = scaling[scaling["metric"] == "mean_r"].set_index("axis")
    means = tables["encoding"].query("kind == 'full'").groupby("model")["mean_r"].mean()
    assert r.loc["params", "slope_per_decade"] == pytest.approx((means["m-l"] - means["m-s"]) / 2)
    assert r.loc["params", "x_min"] == 1e6 and r.loc["params", "x_max"] == 1e8
    data = r.loc["images"]
    assert data["model"] == "m-l" and data["n_points"] == 3  # 10, 30 and the full fit's 100
    assert pd.isna(data["layer"])
    # the subsample fits are constant over vertices and equal across subjects and seeds: their
    # resamples all give the point's value, so only the full fit's jitter widens the interval
    for axis in ("params", "images"):
        assert r.loc[axis, "slope_lo"] <= r.loc[axis, "slope_per_decade"] <= r.loc[axis, "slope_hi"]
    assert r.loc["images", "slope_hi"] - r.loc["images", "slope_lo"] < 0.01
    assert len(lines) == len(scaling) * 200
    rois, _ = vision_scaling(tables["rois"], tables["bootstrap_means"], by=("roi_group", "roi"))
    assert list(rois.columns) == [*SCALING_COLUMNS, "roi_group", "roi"]
    assert set(rois["roi"]) == {"all", "early", "ventral", "lateral", "faces"}
    whole = rois[(rois["roi"] == "all") & (rois["metric"] == "mean_r")].set_index("axis")
    # the "all" ROI holds every vertex: the cortex's point estimate, its own resamples
    assert whole.loc["params", "slope_per_decade"] == pytest.approx(
        r.loc["params", "slope_per_decade"]
    )
    assert whole.loc["params", "slope_lo"] <= whole.loc["params", "slope_per_decade"]


def test_scaling_intervals_are_a_two_level_bootstrap():
    """Against a direct computation: per subject, vertices resampled with replacement; per
    replicate, subjects drawn with replacement; the line refitted to the drawn means."""
    from fmriscaling.scaling.fits import subject_draws
    from fmriscaling.scaling.resample import subject_stream

    rng = np.random.default_rng(3)
    subjects, sizes, n_vert, n_rep = ("s1", "s2", "s3"), (1e6, 1e7, 1e8), 40, 50
    r = {(s, i): 0.1 * i + 0.05 * rng.standard_normal(n_vert) for s in subjects for i in range(3)}
    rows, means = [], []
    for s in subjects:
        test_r = np.stack([r[s, i] for i in range(3)])
        fits_of_s = [dict(subject=s, model=f"m{i}", family="f", n_params=sizes[i], kind="full",
                          full_train=True, n_train_images=100, seed=-1, mean_cv_score=0.1,
                          mean_r=r[s, i].mean(), mean_noise_norm=np.nan)
                     for i in range(3)]  # fmt: skip
        rows += fits_of_s
        means.append(
            replicate_means(pd.DataFrame(fits_of_s), test_r, np.full_like(test_r, np.nan),
                            track=VISION, n_replicates=n_rep, seed=7)
        )  # fmt: skip
    means = pd.concat(means, ignore_index=True)
    # the bootstrap table of both tracks: key, ROI, replicate, the track's two metrics
    assert list(means.columns) == [*VISION.key_columns, *ROI_COLUMNS, "replicate",
                                   "mean_r", "mean_noise_norm"]  # fmt: skip
    fits, _ = vision_scaling(pd.DataFrame(rows), means, seed=5, ci=0.9)
    (fit,) = fits.to_dict("records")  # no ceiling: the score's line is left out
    # the direct computation
    draws = subject_draws(n_rep, 3, seed=5)
    means = np.empty((3, 3, n_rep))  # subject, model, replicate
    for j, s in enumerate(subjects):
        stream = subject_stream(7, s)
        idx = stream.integers(0, n_vert, size=(n_rep, n_vert))
        for i in range(3):
            means[j, i] = r[s, i][idx].mean(axis=1)
    slopes = [
        np.polyfit(np.log10(sizes), means[draws[b], :, b].mean(axis=0), 1)[0] for b in range(n_rep)
    ]
    lo, hi = np.percentile(slopes, [5, 95])
    assert fit["slope_lo"] == pytest.approx(lo) and fit["slope_hi"] == pytest.approx(hi)
    point = np.polyfit(
        np.log10(sizes), [np.mean([r[s, i].mean() for s in subjects]) for i in range(3)], 1
    )
    assert fit["slope_per_decade"] == pytest.approx(point[0])


def test_every_figure_is_drawn(fits, tmp_path):
    tables, _ = fits
    outputs = {name: [tmp_path / f"{name}.png"] for name in VISION_FIGURES}
    written = vision_report(tables, outputs, data_model="m-l")
    assert set(written) == set(VISION_FIGURES)
    for name in VISION_FIGURES:
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_significance_is_counted_per_fit_and_roi_and_drawn_beside_the_scores(fits, tmp_path):
    """Fits with a permutation test: encoding.csv counts the significant vertices, rois.csv
    gives each ROI's fraction, and the size and data figures gain a panel."""
    from PIL import Image

    from fmriscaling.vision.tables import collect_vision_tables

    tables, masks = fits
    entries = []
    for i, row in enumerate(tables["encoding"].to_dict("records")):
        path = tmp_path / "sig" / f"{i}.npz"
        significant = np.arange(N_VERTICES) % (2 + i % 3) == 0
        _write_fit(path, np.full(N_VERTICES, 0.3 + 0.01 * i), np.zeros(N_VERTICES, int),
                   n_train=row["n_train_images"], significant=significant)  # fmt: skip
        entries.append(dict(row, n_train=None if row["full_train"] else row["n_train_images"],
                            path=path))  # fmt: skip
    with_sig = collect_vision_tables(entries, ceilings=None,
                                     roi_masks={"subj01": masks, "subj02": masks})  # fmt: skip
    enc = with_sig["encoding"]
    expected = [float(np.mean(np.arange(N_VERTICES) % (2 + i % 3) == 0)) for i in range(len(enc))]
    np.testing.assert_allclose(enc["fraction_significant"], expected)
    rois = with_sig["rois"]
    early = rois[(rois["roi"] == "early")].iloc[0]
    i = int(enc.index[(enc["subject"] == early["subject"]) & (enc["model"] == early["model"])
                      & (enc["n_train_images"] == early["n_train_images"])
                      & (enc["seed"] == early["seed"])][0])  # fmt: skip
    mask = masks[("stream", "early")]
    assert early["fraction_significant"] == pytest.approx(
        np.mean((np.arange(N_VERTICES) % (2 + i % 3) == 0)[mask])
    )
    widths = {}
    for label, source in (("plain", tables), ("significance", with_sig)):
        outputs = {"model_size_scaling": [tmp_path / f"{label}.png"]}
        vision_report(source, outputs, data_model="m-l")
        widths[label] = Image.open(tmp_path / f"{label}.png").size[0]
    assert widths["significance"] > 1.8 * widths["plain"]
