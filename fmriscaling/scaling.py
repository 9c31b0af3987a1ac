"""Scaling-law fits with bootstrap confidence intervals: model size, training stories, TRs.

Three kinds of fit (``axis``), each for mean test r and mean CC_norm (``metric``):

- ``params``: per family, the best layer of each (subject, model) chosen by cross-validation
  (`~fmriscaling.encoding.tables.best_layers`, never the test story), averaged over subjects,
  against log10(n_params);
- ``stories`` and ``trs``: per subsampled (model, layer), the mean over subjects and random
  subsets at each training-set size (the full training set is the largest point) against
  log10(training stories) and log10(mean training TRs at that size).

A least-squares line ``y = intercept + slope * log10(x)`` gives the slope per decade (10x),
the percentage per decade (the slope over the line's value at the smallest x) and Pearson's r
of the fit. Confidence intervals are percentile intervals over bootstrap replicates that
resample voxels and subjects:

1. `bootstrap_means`: per subject, ``n_replicates`` resamples of the voxels (with replacement)
   are drawn once and shared by every fit of that subject, and each fit's mean test r and
   mean CC_norm are computed on each resample (a tidy table, built once by a rule);
2. `scaling_fits`: per replicate, subjects are drawn with replacement (one draw shared by
   every fit), the subject-level means of that replicate are averaged over the drawn
   subjects, and the line is refitted.

So a slope's interval reflects both the sampling of voxels and of subjects. With
``resample_subjects=False`` subjects are kept as they are (voxels only).
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ._utils import DataError, write_provenance
from .encoding.noise_ceiling import load_noise_ceiling, normalized_correlation
from .encoding.tables import best_layers, fit_log_linear

logger = logging.getLogger(__name__)

__all__ = [
    "FIT_COLUMNS",
    "METRICS",
    "bootstrap_means",
    "bootstrap_means_file",
    "entry_key",
    "fits_to_resample",
    "headline_table",
    "resampled_means",
    "row_key",
    "scaling_fits",
    "scaling_table_files",
]

#: Metrics fitted: mean test correlation and mean noise-normalised correlation.
METRICS = ("mean_r", "mean_cc_norm")
#: Columns that identify one fit of the encoding table.
KEY_COLUMNS = ("subject", "model", "layer", "full_train", "n_train_stories", "seed")
#: Columns of the scaling table, in order.
FIT_COLUMNS = (
    "axis",
    "metric",
    "kind",
    "family",
    "model",
    "layer",
    "n_points",
    "x_min",
    "x_max",
    "slope_per_decade",
    "slope_lo",
    "slope_hi",
    "intercept",
    "r",
    "pct_per_decade",
    "pct_lo",
    "pct_hi",
    "n_subjects",
    "n_replicates",
    "ci",
)
_AXIS_X = {"stories": "n_train_stories", "trs": "n_train_trs"}


def row_key(row: Mapping[str, Any]) -> tuple:
    """Key of an encoding-table row: (subject, model, layer, n_train or None, seed)."""
    full = bool(row["full_train"])
    n = None if full else int(row["n_train_stories"])
    return (str(row["subject"]), str(row["model"]), int(row["layer"]), n, int(row["seed"]))


def entry_key(entry: Mapping[str, Any]) -> tuple:
    """Key of a fit entry of the workflow (``n_train`` None for the full training set)."""
    n = entry.get("n_train")
    return (
        str(entry["subject"]),
        str(entry["model"]),
        int(entry["layer"]),
        None if n is None else int(n),
        int(entry.get("seed", -1)),
    )


def _full(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["full_train"].astype(bool)]


def _swept(table: pd.DataFrame) -> pd.DataFrame:
    """(model, layer) pairs that have data-size subsets."""
    return table.loc[~table["full_train"].astype(bool), ["model", "layer"]].drop_duplicates()


def fits_to_resample(encoding: pd.DataFrame) -> pd.DataFrame:
    """The encoding-table rows the scaling fits use.

    Parameters
    ----------
    encoding : DataFrame
        The tidy encoding table (one row per fit).

    Returns
    -------
    DataFrame
        The best layer (by CV) of each (subject, model) on the full training set, and every
        fit (full and subsets) of each subsampled (model, layer); rows unique.
    """
    _check_encoding(encoding)
    best = best_layers(_full(encoding))
    sweeps = encoding.merge(_swept(encoding), on=["model", "layer"])
    rows = pd.concat([best, sweeps], ignore_index=True)
    return rows.drop_duplicates(list(KEY_COLUMNS)).reset_index(drop=True)


def _check_encoding(encoding: pd.DataFrame) -> None:
    """Every model has a full-training-set fit for every subject, and finite means."""
    missing_cols = [
        c
        for c in (*KEY_COLUMNS, "family", "n_params", "mean_cv_score", *METRICS)
        if c not in encoding
    ]
    if missing_cols:
        raise DataError(f"the encoding table lacks column(s) {missing_cols}")
    full = _full(encoding)
    subjects = sorted(encoding["subject"].unique())
    have = full.groupby("model")["subject"].unique()
    for model in sorted(encoding["model"].unique()):
        lacking = sorted(set(subjects) - set(have.get(model, [])))
        if lacking:
            raise DataError(
                f"the encoding table has no full-training-set fit of model {model!r} for "
                f"subject(s) {lacking}; run its fits (fit_encoding) and rebuild the table"
            )
    bad = full[full["mean_r"].isna()]
    if len(bad):
        first = bad.iloc[0]
        raise DataError(
            f"the encoding table has no mean_r for {len(bad)} fit(s), e.g. {first['subject']} "
            f"{first['model']} layer {first['layer']}; refit them"
        )


def _subject_stream(seed: int, subject: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(subject.encode())])


def bootstrap_means(
    rows: pd.DataFrame,
    scores: Mapping[tuple, str | os.PathLike],
    ceilings: Mapping[str, str | os.PathLike],
    *,
    n_replicates: int = 1000,
    seed: int = 0,
    floor: float | None = None,
    chunk: int = 100,
) -> pd.DataFrame:
    """Mean test r and CC_norm of each fit on voxel resamples shared within a subject.

    Parameters
    ----------
    rows : DataFrame
        Fits to resample (`fits_to_resample`), with the columns of `KEY_COLUMNS`.
    scores : mapping of key to path-like
        `entry_key` of each fit -> its ``scores.npz`` (with ``test_r`` of shape (n_voxels,)).
    ceilings : mapping of str to path-like
        Subject -> its noise-ceiling npz.
    n_replicates : int
        Bootstrap replicates per subject.
    seed : int
        Seed of the voxel resamples (one stream per subject).
    floor : float, optional
        Floor on CC_max when normalising, as in the encoding table.
    chunk : int
        Replicates drawn at a time (memory: chunk x n_voxels counts).

    Returns
    -------
    DataFrame
        One row per (fit, replicate): the columns of `KEY_COLUMNS`, ``replicate`` (0 ..
        n_replicates - 1), ``mean_r`` and ``mean_cc_norm`` (mean over the resampled voxels
        that have a ceiling).

    Raises
    ------
    DataError
        When a fit has no scores file or the fits of a subject differ in voxel count.
    """
    if n_replicates < 1:
        raise ValueError(f"n_replicates must be >= 1, got {n_replicates}")
    out = []
    for subject, fits in rows.groupby("subject", sort=True):
        keys = [row_key(r) for r in fits.to_dict("records")]
        missing = [k for k in keys if k not in scores]
        if missing:
            raise DataError(f"no scores file for fit(s) {missing[:3]} of subject {subject}")
        test_r = np.stack([_read_test_r(scores[k]) for k in keys])  # (n_fits, n_voxels)
        n_voxels = test_r.shape[1]
        nc = load_noise_ceiling(ceilings[subject])
        if nc.cc_max.shape != (n_voxels,):
            raise DataError(
                f"{ceilings[subject]}: {nc.cc_max.size} voxels, the fits of {subject} have "
                f"{n_voxels}"
            )
        cc_max = np.broadcast_to(nc.cc_max, test_r.shape)
        cc_norm = normalized_correlation(test_r, cc_max, floor=floor)
        rng = _subject_stream(seed, str(subject))
        mean_r, mean_cc = resampled_means(test_r, cc_norm, n_replicates, rng, chunk=chunk)
        frame = fits[list(KEY_COLUMNS)].reset_index(drop=True)
        long = frame.loc[frame.index.repeat(n_replicates)].reset_index(drop=True)
        long["replicate"] = np.tile(np.arange(n_replicates), len(frame))
        long["mean_r"] = mean_r.ravel()
        long["mean_cc_norm"] = mean_cc.ravel()
        out.append(long)
        logger.info(
            "%s: %d fits x %d voxel resamples of %d voxels",
            subject,
            len(frame),
            n_replicates,
            n_voxels,
        )
    if not out:
        raise DataError("bootstrap_means: no fits to resample")
    return pd.concat(out, ignore_index=True)


def resampled_means(
    test_r: np.ndarray,
    cc_norm: np.ndarray,
    n_replicates: int,
    rng: np.random.Generator,
    *,
    chunk: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """Means of several fits over the same voxel resamples (with replacement).

    Parameters
    ----------
    test_r : array of shape (n_fits, n_voxels)
    cc_norm : array of shape (n_fits, n_voxels)
        NaN where a voxel has no ceiling (the same voxels for every fit).
    n_replicates : int
    rng : numpy.random.Generator
    chunk : int
        Replicates drawn at a time (memory: chunk x n_voxels counts).

    Returns
    -------
    mean_r, mean_cc_norm : arrays of shape (n_fits, n_replicates)
        ``mean_cc_norm`` averages the resampled voxels that have a ceiling.
    """
    n_voxels = test_r.shape[1]
    has_ceiling = np.isfinite(cc_norm[0])
    cc_norm = np.where(has_ceiling, cc_norm, 0.0)
    means_r, means_cc = [], []
    for start in range(0, n_replicates, chunk):
        k = min(chunk, n_replicates - start)
        # counts of each voxel in k resamples of n_voxels draws with replacement
        draws = rng.integers(0, n_voxels, size=(k, n_voxels))
        flat = draws + n_voxels * np.arange(k)[:, None]
        counts = np.bincount(flat.ravel(), minlength=k * n_voxels).reshape(k, n_voxels)
        counts = counts.astype(np.float64)
        means_r.append(test_r @ counts.T / n_voxels)
        with np.errstate(invalid="ignore", divide="ignore"):
            means_cc.append(cc_norm @ counts.T / counts[:, has_ceiling].sum(axis=1))
    return np.concatenate(means_r, axis=1), np.concatenate(means_cc, axis=1)


def _read_test_r(path: str | os.PathLike) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as f:
            return f["test_r"].astype(np.float64)
    except (OSError, KeyError) as exc:
        raise DataError(f"{path}: cannot read test_r ({exc}); rerun the fit") from None


def _percent(slope: np.ndarray, intercept: np.ndarray, x_min: float) -> np.ndarray:
    base = intercept + slope * np.log10(x_min)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(base != 0, 100.0 * slope / base, np.nan)


def _lines(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares slope and intercept of each column of y (n_points, n) on log10(x)."""
    lx = np.log10(x)[:, None]
    lx_c = lx - lx.mean()
    slope = (lx_c * (y - y.mean(axis=0))).sum(axis=0) / (lx_c**2).sum()
    intercept = y.mean(axis=0) - slope * lx.mean()
    return slope, intercept


class _Replicates:
    """Bootstrap means of the fits, indexed for fast lookup."""

    def __init__(self, means: pd.DataFrame, n_subject_draws: np.ndarray, subjects: list[str]):
        missing = [c for c in (*KEY_COLUMNS, "replicate", *METRICS) if c not in means]
        if missing:
            raise DataError(f"the bootstrap table lacks column(s) {missing}")
        self.n_replicates = int(means["replicate"].max()) + 1
        self.values = {}
        for key, group in means.groupby(list(KEY_COLUMNS), sort=False):
            group = group.sort_values("replicate")
            self.values[row_key(dict(zip(KEY_COLUMNS, key, strict=True)))] = group
        self.draws = n_subject_draws  # (n_replicates, n_subjects) indices into subjects
        self.subjects = subjects

    def get(self, row: Mapping[str, Any], metric: str, what: str) -> np.ndarray:
        key = row_key(row)
        if key not in self.values:
            subject, model, layer, n, seed = key
            size = "full training set" if n is None else f"{n} stories, seed {seed}"
            raise DataError(
                f"the bootstrap table has no replicates of {subject} {model} layer {layer} "
                f"({size}), needed for {what}; rebuild it (rule bootstrap_means)"
            )
        values = self.values[key][metric].to_numpy(dtype=np.float64)
        if values.size != self.n_replicates:
            raise DataError(f"{key}: {values.size} replicates, expected {self.n_replicates}")
        return values

    def over_subjects(self, per_subject: np.ndarray) -> np.ndarray:
        """(n_subjects, n_points, n_replicates) -> (n_points, n_replicates): per replicate, the
        mean over that replicate's drawn subjects."""
        idx = self.draws.T  # (n_subjects, n_replicates)
        replicate = np.arange(idx.shape[1])[None, :]
        return per_subject[idx, :, replicate].mean(axis=0).T  # (n_subj, n_rep, n_points) -> ...


def scaling_fits(
    encoding: pd.DataFrame,
    means: pd.DataFrame,
    *,
    ci: float = 0.95,
    seed: int = 0,
    resample_subjects: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Log-linear scaling fits with percentile bootstrap intervals.

    Parameters
    ----------
    encoding : DataFrame
        The tidy encoding table (point estimates; a ``model_kind`` column, text or speech,
        is carried into ``kind`` when present).
    means : DataFrame
        `bootstrap_means` of `fits_to_resample` (encoding).
    ci : float
        Coverage of the intervals.
    seed : int
        Seed of the subject resamples.
    resample_subjects : bool
        Draw subjects with replacement in each replicate (else keep them all).

    Returns
    -------
    fits : DataFrame
        One row per (axis, metric, family or (model, layer)), columns `FIT_COLUMNS`.
    replicates : DataFrame
        One row per fit and replicate: axis, metric, family, model, layer, replicate,
        slope, intercept (the lines behind the intervals and the figures' bands).

    Raises
    ------
    DataError
        When the encoding table misses a model for a subject, or the bootstrap table misses
        replicates of a fit the scaling fits need (the message names the fit).
    """
    _check_encoding(encoding)
    subjects = sorted(str(s) for s in encoding["subject"].unique())
    n_rep = int(means["replicate"].max()) + 1 if len(means) else 0
    if n_rep == 0:
        raise DataError("the bootstrap table is empty; rebuild it (rule bootstrap_means)")
    rng = np.random.default_rng([seed, zlib.crc32(b"subjects")])
    if resample_subjects:
        draws = rng.integers(0, len(subjects), size=(n_rep, len(subjects)))
    else:
        draws = np.tile(np.arange(len(subjects)), (n_rep, 1))
    reps = _Replicates(means, draws, subjects)
    kind_of = encoding.groupby("model")["model_kind"].first() if "model_kind" in encoding else None
    rows, lines = [], []
    common = dict(n_subjects=len(subjects), n_replicates=n_rep, ci=ci)
    for metric in METRICS:
        for fit, (slopes, intercepts) in _params_fits(encoding, reps, subjects, metric, kind_of):
            rows.append(_with_interval(fit, slopes, intercepts, ci) | common)
            lines.append(_replicate_lines(fit, slopes, intercepts))
        for fit, (slopes, intercepts) in _data_fits(encoding, reps, subjects, metric, kind_of):
            rows.append(_with_interval(fit, slopes, intercepts, ci) | common)
            lines.append(_replicate_lines(fit, slopes, intercepts))
    fits = pd.DataFrame(rows, columns=list(FIT_COLUMNS))
    replicates = (
        pd.concat(lines, ignore_index=True)
        if lines
        else pd.DataFrame(
            columns=[
                "axis",
                "metric",
                "family",
                "model",
                "layer",
                "replicate",
                "slope",
                "intercept",
            ]
        )
    )
    return fits, replicates


def _params_fits(encoding, reps: _Replicates, subjects, metric, kind_of):
    best = best_layers(_full(encoding))
    for family, group in best.groupby("family", sort=True):
        models = group.groupby("model")["n_params"].first().sort_values()
        if models.nunique() < 2:
            logger.info("family %s has fewer than two model sizes: no size fit", family)
            continue
        x = models.to_numpy(dtype=np.float64)
        y = group.groupby("model")[metric].mean().reindex(models.index).to_numpy(np.float64)
        per_subject = np.empty((len(subjects), len(models), reps.n_replicates))
        for record in group.to_dict("records"):
            per_subject[
                subjects.index(record["subject"]), models.index.get_loc(record["model"])
            ] = reps.get(record, metric, f"the size fit of family {family}")
        boot = reps.over_subjects(per_subject)  # (n_models, n_replicates)
        fit = _point("params", metric, x, y, family=family, kind=_kind(kind_of, models.index))
        yield fit, _lines(x, boot)


def _data_fits(encoding, reps: _Replicates, subjects, metric, kind_of):
    for _, swept in _swept(encoding).iterrows():
        model, layer = swept["model"], int(swept["layer"])
        rows = encoding[(encoding["model"] == model) & (encoding["layer"] == layer)]
        sizes = sorted(rows["n_train_stories"].unique())
        if len(sizes) < 2:
            continue
        family = str(rows["family"].iloc[0])
        per_subject = np.full((len(subjects), len(sizes), reps.n_replicates), np.nan)
        for i_size, n in enumerate(sizes):
            at_size = rows[rows["n_train_stories"] == n]
            for subject, fits in at_size.groupby("subject"):
                values = [
                    reps.get(r, metric, f"the data fit of {model} layer {layer}")
                    for r in fits.to_dict("records")
                ]
                per_subject[subjects.index(subject), i_size] = np.mean(values, axis=0)
        if np.isnan(per_subject).any():
            raise DataError(
                f"{model} layer {layer}: not every subject has fits at every training-set size {sizes}"
            )
        boot = reps.over_subjects(per_subject)  # (n_sizes, n_replicates)
        per_size = rows.groupby("n_train_stories")
        y = per_size[metric].mean().reindex(sizes).to_numpy(np.float64)
        for axis, column in _AXIS_X.items():
            x = per_size[column].mean().reindex(sizes).to_numpy(np.float64)
            fit = _point(
                axis,
                metric,
                x,
                y,
                family=family,
                model=model,
                layer=layer,
                kind=_kind(kind_of, [model]),
            )
            yield fit, _lines(x, boot)


def _kind(kind_of: pd.Series | None, models) -> str | None:
    if kind_of is None:
        return None
    kinds = sorted({str(kind_of[m]) for m in models})
    return kinds[0] if len(kinds) == 1 else "/".join(kinds)


def _point(axis: str, metric: str, x: np.ndarray, y: np.ndarray, **labels: Any) -> dict[str, Any]:
    slope, intercept, r = fit_log_linear(x, y)
    return {
        "axis": axis,
        "metric": metric,
        "kind": labels.get("kind"),
        "family": labels.get("family"),
        "model": labels.get("model"),
        "layer": labels.get("layer"),
        "n_points": int(x.size),
        "x_min": float(x.min()),
        "x_max": float(x.max()),
        "slope_per_decade": slope,
        "intercept": intercept,
        "r": r,
        "pct_per_decade": float(_percent(np.array(slope), np.array(intercept), x.min())),
    }


def _with_interval(fit: dict, slopes: np.ndarray, intercepts: np.ndarray, ci: float) -> dict:
    tails = 100 * np.array([(1 - ci) / 2, (1 + ci) / 2])
    pct = _percent(slopes, intercepts, fit["x_min"])
    slope_lo, slope_hi = np.nanpercentile(slopes, tails)
    pct_lo, pct_hi = np.nanpercentile(pct, tails) if np.isfinite(pct).any() else (np.nan, np.nan)
    return fit | {
        "slope_lo": float(slope_lo),
        "slope_hi": float(slope_hi),
        "pct_lo": float(pct_lo),
        "pct_hi": float(pct_hi),
    }


def _replicate_lines(fit: dict, slopes: np.ndarray, intercepts: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "axis": fit["axis"],
            "metric": fit["metric"],
            "family": fit["family"],
            "model": fit["model"],
            "layer": fit["layer"],
            "replicate": np.arange(slopes.size),
            "slope": slopes,
            "intercept": intercepts,
        }
    )


def headline_table(
    fits: pd.DataFrame,
    encoding: pd.DataFrame,
    *,
    paper: Sequence[Mapping[str, Any]] = (),
    aliases: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """One line per family (model size) and per subsampled model (data size), mean test r.

    Parameters
    ----------
    fits : DataFrame
        From `scaling_fits`.
    encoding : DataFrame
        The tidy encoding table (for the best model and layer, chosen by CV).
    paper : sequence of mapping
        The paper's numbers: ``{"axis", "name", "pct_per_decade", "fit_r", "source"}`` with
        ``name`` a family (``params``) or a model (``stories``/``trs``).
    aliases : mapping of str to str, optional
        Our family or model name -> the paper's (the demo's stand-ins).

    Returns
    -------
    DataFrame
        axis, kind, family, model, layer, n_points, slope_per_decade, slope_lo, slope_hi,
        pct_per_decade, pct_lo, pct_hi, r, best_model, best_layer, best_relative_depth,
        best_mean_r, best_mean_cc_norm, paper_name, paper_pct_per_decade, paper_fit_r.
    """
    aliases = dict(aliases or {})
    by_name = {(p["axis"], p["name"]): p for p in paper}
    full = _full(encoding)
    # per model: the layer with the best subject-mean CV score (never the test score)
    per_layer = (
        full.groupby(["family", "model", "layer"], sort=True)
        .agg(
            cv=("mean_cv_score", "mean"),
            mean_r=("mean_r", "mean"),
            mean_cc_norm=("mean_cc_norm", "mean"),
            relative_depth=("relative_depth", "mean"),
        )
        .reset_index()
    )
    best_per_model = per_layer.loc[per_layer.groupby("model")["cv"].idxmax()]
    rows = []
    for fit in fits[fits["metric"] == "mean_r"].to_dict("records"):
        if fit["axis"] == "params":
            candidates = best_per_model[best_per_model["family"] == fit["family"]]
            name = fit["family"]
        else:
            candidates = best_per_model[best_per_model["model"] == fit["model"]]
            name = fit["model"]
        best = candidates.loc[candidates["cv"].idxmax()]
        ref = by_name.get((fit["axis"], aliases.get(name, name)), {})
        rows.append(
            {
                **{k: fit[k] for k in ("axis", "kind", "family", "model", "layer", "n_points")},
                **{k: fit[k] for k in ("slope_per_decade", "slope_lo", "slope_hi")},
                **{k: fit[k] for k in ("pct_per_decade", "pct_lo", "pct_hi", "r")},
                "best_model": best["model"],
                "best_layer": int(best["layer"]),
                "best_relative_depth": float(best["relative_depth"]),
                "best_mean_r": float(best["mean_r"]),
                "best_mean_cc_norm": float(best["mean_cc_norm"]),
                "paper_name": ref.get("name"),
                "paper_pct_per_decade": ref.get("pct_per_decade"),
                "paper_fit_r": ref.get("fit_r"),
            }
        )
    return pd.DataFrame(rows)


def bootstrap_means_file(
    encoding_csv: str | os.PathLike,
    entries: Sequence[Mapping[str, Any]],
    score_files: Sequence[str | os.PathLike],
    ceilings: Mapping[str, str | os.PathLike],
    out: str | os.PathLike,
    *,
    n_replicates: int,
    seed: int,
    floor: float | None,
    params: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """`bootstrap_means` of the fits the scaling fits use, written to ``out`` (a .csv.gz).

    Parameters
    ----------
    encoding_csv : path-like
        The encoding table.
    entries : sequence of mapping
        The workflow's fit entries (subject, model, layer, n_train, seed), in the order of
        ``score_files``.
    score_files : sequence of path-like
        Their ``scores.npz``.
    ceilings : mapping of str to path-like
        Subject -> noise-ceiling npz.
    out : path-like
    n_replicates, seed, floor
        See `bootstrap_means`.
    params : mapping, optional
        Recorded in the provenance sidecar of ``out``.

    Returns
    -------
    DataFrame
        The table written.
    """
    from .encoding.tables import write_table

    encoding = pd.read_csv(encoding_csv)
    scores = {entry_key(e): f for e, f in zip(entries, score_files, strict=True)}
    means = bootstrap_means(
        fits_to_resample(encoding),
        scores,
        ceilings,
        n_replicates=n_replicates,
        seed=seed,
        floor=floor,
    )
    write_table(means, out)
    write_provenance(out, params, n_replicates=n_replicates, seed=seed)
    return means


def scaling_table_files(
    encoding_csv: str | os.PathLike,
    means_file: str | os.PathLike,
    *,
    scaling: str | os.PathLike,
    headline: str | os.PathLike,
    lines: str | os.PathLike,
    ci: float,
    seed: int,
    resample_subjects: bool,
    paper: Sequence[Mapping[str, Any]] = (),
    aliases: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`scaling_fits` and `headline_table` from the tables on disk, written beside them.

    Parameters
    ----------
    encoding_csv, means_file : path-like
        The encoding table and the bootstrap table.
    scaling, headline, lines : path-like
        Outputs: the fits (.csv), the headline (.csv) and the replicate lines (.csv.gz).
    ci, seed, resample_subjects
        See `scaling_fits`.
    paper, aliases
        See `headline_table`.
    params : mapping, optional
        Recorded in the provenance sidecars of the three outputs.

    Returns
    -------
    fits, headline : DataFrame
    """
    from .encoding.tables import write_table

    encoding = pd.read_csv(encoding_csv)
    means = pd.read_csv(means_file)
    fits, replicates = scaling_fits(
        encoding, means, ci=ci, seed=seed, resample_subjects=resample_subjects
    )
    head = headline_table(fits, encoding, paper=paper, aliases=aliases)
    write_table(fits, scaling)
    write_table(head, headline)
    write_table(replicates, lines)
    for out in (scaling, headline, lines):
        write_provenance(out, params, ci=ci, seed=seed, resample_subjects=resample_subjects)
    return fits, head
