"""Step 2 of the scaling fits: log-linear lines per family and per swept layer, with intervals.

`scaling_fits` resamples subjects (one draw per replicate, shared by every fit) on top of
`fmriscaling.scaling.resample.bootstrap_means`, averages each replicate over the drawn
subjects and refits ``y = intercept + slope * log10(x)``; `headline_table` is the study's
answer in a few rows, `scaling_table_files` the rule-level driver.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .._utils import DataError, write_provenance
from ..encoding.tables import best_layers
from ..stats import fit_log_linear
from .resample import KEY_COLUMNS, METRICS, _check_encoding, _full, _swept, row_key

logger = logging.getLogger(__name__)

__all__ = ["FIT_COLUMNS", "headline_table", "scaling_fits", "scaling_table_files"]

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
#: Columns of the headline table, in order.
HEADLINE_COLUMNS = (
    "axis", "kind", "family", "model", "layer", "n_points", "slope_per_decade", "slope_lo",
    "slope_hi", "pct_per_decade", "pct_lo", "pct_hi", "r", "best_model", "best_layer",
    "best_relative_depth", "best_mean_r", "best_mean_cc_norm", "paper_name",
    "paper_pct_per_decade", "paper_fit_r",
)  # fmt: skip
_AXIS_X = {"stories": "n_train_stories", "trs": "n_train_trs"}


def _percent(slope: np.ndarray, intercept: np.ndarray, x_min: float) -> np.ndarray:
    base = intercept + slope * np.log10(x_min)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(base != 0, 100.0 * slope / base, np.nan)


def lines_of_replicates(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
        """See `mean_over_drawn_subjects`."""
        return mean_over_drawn_subjects(per_subject, self.draws)


def subject_draws(
    n_replicates: int, n_subjects: int, seed: int, resample: bool = True
) -> np.ndarray:
    """Indices of the subjects of each replicate, shape (n_replicates, n_subjects): drawn
    with replacement from a stream seeded by ``seed`` (all of them in order if not
    ``resample``). One draw is shared by every fit, so lines of one replicate compare."""
    rng = np.random.default_rng([seed, zlib.crc32(b"subjects")])
    if resample:
        return rng.integers(0, n_subjects, size=(n_replicates, n_subjects))
    return np.tile(np.arange(n_subjects), (n_replicates, 1))


def mean_over_drawn_subjects(per_subject: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """(n_subjects, n_points, n_replicates) -> (n_points, n_replicates): per replicate, the
    mean over that replicate's drawn subjects (`subject_draws`)."""
    idx = draws.T  # (n_subjects, n_replicates)
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
    draws = subject_draws(n_rep, len(subjects), seed, resample_subjects)
    reps = _Replicates(means, draws, subjects)
    kind_of = encoding.groupby("model")["model_kind"].first() if "model_kind" in encoding else None
    rows, lines = [], []
    common = dict(n_subjects=len(subjects), n_replicates=n_rep, ci=ci)
    for metric in METRICS:
        for fit, (slopes, intercepts) in _params_fits(encoding, reps, subjects, metric, kind_of):
            rows.append(with_interval(fit, slopes, intercepts, ci) | common)
            lines.append(_replicate_lines(fit, slopes, intercepts))
        for fit, (slopes, intercepts) in _data_fits(encoding, reps, subjects, metric, kind_of):
            rows.append(with_interval(fit, slopes, intercepts, ci) | common)
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
        fit = fit_point("params", metric, x, y, family=family, kind=_kind(kind_of, models.index))
        yield fit, lines_of_replicates(x, boot)


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
            fit = fit_point(
                axis,
                metric,
                x,
                y,
                family=family,
                model=model,
                layer=layer,
                kind=_kind(kind_of, [model]),
            )
            yield fit, lines_of_replicates(x, boot)


def _kind(kind_of: pd.Series | None, models) -> str | None:
    if kind_of is None:
        return None
    kinds = sorted({str(kind_of[m]) for m in models})
    return kinds[0] if len(kinds) == 1 else "/".join(kinds)


def fit_point(
    axis: str, metric: str, x: np.ndarray, y: np.ndarray, **labels: Any
) -> dict[str, Any]:
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


def with_interval(fit: dict, slopes: np.ndarray, intercepts: np.ndarray, ci: float) -> dict:
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
    # with no fit (one model, no data-size sweep) the table still has its header
    return pd.DataFrame(rows, columns=list(HEADLINE_COLUMNS))


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
    from ..encoding.tables import write_table

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
