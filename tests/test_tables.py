"""Tidy encoding tables, best-layer choice by CV and log-linear scaling fits."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fmriscaling import DataError
from fmriscaling.encoding.tables import (
    ENCODING_COLUMNS,
    best_layers,
    collect_encoding_scores,
    scaling_summary,
    write_table,
)
from fmriscaling.stats import fit_log_linear

N_VOXELS = 8


def _write_scores(path, test_r, cv_score, n_train_stories=10, n_train_trs=3000):
    path.parent.mkdir(parents=True, exist_ok=True)
    test_r = np.full(N_VOXELS, test_r, dtype=np.float32)
    cv = np.full(N_VOXELS, cv_score, dtype=np.float32)
    np.savez(path, test_r=test_r, cv_score=cv, alpha=np.full(N_VOXELS, 100.0, np.float32))
    summary = {
        "n_train_stories": n_train_stories,
        "n_train_trs": n_train_trs,
        "solver": "primal",
        "solver_impl": "fast",
        "backend": "numpy",
        "score_dtype": "float32",
        "fit_seconds": 1.5,
        "peak_memory_bytes": 2_000_000,
        "median_alpha": 100.0,
    }
    path.with_suffix(".json").write_text(json.dumps(summary))
    return path


def _noise_ceiling(path, n_invalid=2):
    cc_max = np.full(N_VOXELS, 0.5)
    valid = np.ones(N_VOXELS, bool)
    cc_max[:n_invalid] = np.nan
    valid[:n_invalid] = False
    ones = np.ones(N_VOXELS)
    np.savez(path, cc_max=cc_max, sp=ones, tp=ones, np=ones, valid=valid, n_repeats=10)
    return path


def _entry(tmp_path, layer, test_r, cv_score, *, model="opt-125m", n_params=125e6, **kw):
    path = _write_scores(
        tmp_path
        / model
        / f"layer-{layer}"
        / f"seed{kw.get('seed', 0)}-{kw.get('n_train')}"
        / "scores.npz",
        test_r,
        cv_score,
        n_train_stories=kw.get("n_train") or 10,
    )
    return {
        "subject": "UTS01",
        "model": model,
        "family": "opt",
        "n_params": n_params,
        "layer": layer,
        "n_layers": 12,
        "n_train": kw.get("n_train"),
        "seed": kw.get("seed", 0),
        "path": path,
    }


def test_collect_columns_and_values(tmp_path):
    nc = _noise_ceiling(tmp_path / "nc.npz", n_invalid=2)
    table = collect_encoding_scores(
        [_entry(tmp_path, 3, 0.2, 0.1), _entry(tmp_path, 6, 0.3, 0.2)], {"UTS01": nc}
    )
    assert list(table.columns[: len(ENCODING_COLUMNS)]) == list(ENCODING_COLUMNS)
    assert len(table) == 2
    row = table.iloc[1]
    assert row.layer == 6 and row.relative_depth == pytest.approx(0.5)
    assert row.mean_r == pytest.approx(0.3)
    # invalid voxels are excluded from the normalised mean and counted
    assert row.mean_cc_norm == pytest.approx(0.3 / 0.5)
    assert row.n_voxels == N_VOXELS and row.n_voxels_no_ceiling == 2
    assert row.mean_cv_score == pytest.approx(0.2)
    assert row.peak_memory_mb == pytest.approx(2.0)
    assert row.n_train_stories == 10 and bool(row.full_train)
    assert (row.solver, row.solver_impl, row.backend, row.score_dtype) == (
        "primal",
        "fast",
        "numpy",
        "float32",
    )


def test_collect_rejects_voxel_mismatch_and_nan(tmp_path):
    nc = tmp_path / "nc.npz"
    ones = np.ones(3)
    np.savez(nc, cc_max=ones, sp=ones, tp=ones, np=ones, valid=ones > 0, n_repeats=10)
    with pytest.raises(DataError, match="8 voxels, but the noise ceiling"):
        collect_encoding_scores([_entry(tmp_path, 1, 0.2, 0.1)], {"UTS01": nc})
    entry = _entry(tmp_path, 2, np.nan, 0.1)
    with pytest.raises(DataError, match="non-finite test_r"):
        collect_encoding_scores([entry], {})


def test_best_layer_uses_cv_not_test(tmp_path):
    entries = [
        _entry(tmp_path, 2, test_r=0.40, cv_score=0.10),  # best on test
        _entry(tmp_path, 5, test_r=0.25, cv_score=0.30),  # best on CV
        _entry(tmp_path, 8, test_r=0.20, cv_score=0.20),
    ]
    table = collect_encoding_scores(entries, {})
    assert table.mean_cc_norm.isna().all()
    best = best_layers(table)
    assert len(best) == 1
    assert best.iloc[0].layer == 5 and best.iloc[0].mean_r == pytest.approx(0.25)
    # several fits per layer are ambiguous: refuse rather than pick silently
    with pytest.raises(DataError, match="filter the table"):
        best_layers(pd.concat([table, table]))


def test_fit_log_linear_recovers_slope(rng):
    x = np.logspace(8, 10.5, 7)
    y = 0.044 * np.log10(x) - 0.1
    slope, intercept, r = fit_log_linear(x, y)
    assert slope == pytest.approx(0.044) and intercept == pytest.approx(-0.1)
    assert r == pytest.approx(1.0)
    noisy = y + 0.002 * rng.standard_normal(y.size)
    slope, _, r = fit_log_linear(x, noisy)
    assert slope == pytest.approx(0.044, abs=0.005) and 0.9 < r <= 1
    with pytest.raises(ValueError, match="positive"):
        fit_log_linear([0.0, 1.0], [1.0, 2.0])


def test_scaling_summary(tmp_path):
    entries = []
    # parameter scaling: best layer (by CV) of each model; +0.05 per decade of parameters
    for model, n_params in [("opt-125m", 1.25e8), ("opt-1.3b", 1.3e9), ("opt-13b", 1.3e10)]:
        r_best = 0.05 * np.log10(n_params) - 0.3
        entries.append(_entry(tmp_path, 1, r_best - 0.05, 0.1, model=model, n_params=n_params))
        entries.append(_entry(tmp_path, 2, r_best, 0.2, model=model, n_params=n_params))
    # data scaling at layer 3 of opt-125m: +0.1 per decade of stories, two seeds each
    for n in (2, 5, 20):
        for seed, jitter in ((0, -0.01), (1, 0.01)):
            r = 0.1 * np.log10(n) + 0.05 + jitter
            # high CV score: subset fits must not take part in the best-layer choice
            entries.append(_entry(tmp_path, 3, r, 0.9, n_train=n, seed=seed, n_params=1.25e8))
    table = collect_encoding_scores(entries, {})
    summary = scaling_summary(table)
    params = summary[summary.kind == "params"].iloc[0]
    assert params.family == "opt" and params.n_points == 3
    assert params.slope_per_decade == pytest.approx(0.05)
    data = summary[summary.kind == "data"]
    assert len(data) == 1
    row = data.iloc[0]
    assert (row.model, row.layer, row.n_points) == ("opt-125m", 3, 3)
    assert row.slope_per_decade == pytest.approx(0.1)
    assert row.r == pytest.approx(1.0)


def test_write_table_csv_and_markdown(tmp_path):
    df = pd.DataFrame(
        {"model": ["a|b", "c\nd"], "mean_r": [0.123456, np.nan], "layer": [1, 2]},
    )
    csv, md = write_table(df, tmp_path / "out" / "table.csv")
    # the CSV round-trips every column, the one with a "|" and a newline included
    pd.testing.assert_frame_equal(pd.read_csv(csv), df)
    # the markdown written by hand: "|" escaped, newline flattened, NaN an empty cell, floats
    # at 4 significant digits, numbers right-aligned
    assert md.read_text() == (
        "| model | mean_r | layer |\n|:---|---:|---:|\n| a\\|b | 0.1235 | 1 |\n| c d |  | 2 |\n"
    )
