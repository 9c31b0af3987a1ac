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
from ..encoding.width import NATIVE, native_rows, width_groups, width_label, with_width
from ..stats import fit_log_linear
from .resample import _full, _swept, check_encoding
from .schema import CORTEX, LANGUAGE, ROI_COLUMNS, Track

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
    "width",
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
    "axis", "kind", "family", "model", "layer", "width", "n_points", "slope_per_decade", "slope_lo",
    "slope_hi", "pct_per_decade", "pct_lo", "pct_hi", "r", "best_model", "best_layer",
    "best_relative_depth", "best_mean_r", "best_mean_cc_norm", "best_fraction_significant",
    "paper_name",
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
    """The bootstrap table, indexed by (fit, ROI) for fast lookup."""

    def __init__(self, means: pd.DataFrame, track: Track):
        missing = [c for c in (*track.key_columns, "replicate", *track.metrics) if c not in means]
        if missing:
            raise DataError(f"the bootstrap table lacks column(s) {missing}")
        self.track = track
        self.n_replicates = int(means["replicate"].max()) + 1
        if not all(c in means for c in ROI_COLUMNS):  # a table of all voxels only
            means = means.assign(**dict(zip(ROI_COLUMNS, CORTEX, strict=True)))
        # per (fit, ROI): the positions of its rows in replicate order
        self.rows: dict[tuple, np.ndarray] = {}
        columns = [*track.key_columns, *ROI_COLUMNS]
        replicate = means["replicate"].to_numpy()
        for key, positions in means.groupby(columns, sort=False).indices.items():
            labels = dict(zip(columns, key, strict=True))
            roi = tuple(labels[c] for c in ROI_COLUMNS)
            order = np.argsort(replicate[positions], kind="stable")
            self.rows[(track.key(labels), roi)] = positions[order]
        self.metrics = {m: means[m].to_numpy(dtype=np.float64) for m in track.metrics}

    def get(self, row: Mapping[str, Any], roi: tuple, metric: str, what: str) -> np.ndarray:
        key = self.track.key(row)
        if (key, roi) not in self.rows:
            where = "" if roi == CORTEX else f" in ROI {'/'.join(roi)}"
            raise DataError(
                f"the bootstrap table has no replicates of {self.track.describe(key)}{where}, "
                f"needed for {what}; rebuild it (rule bootstrap_means or vision_table)"
            )
        values = self.metrics[metric][self.rows[(key, roi)]]
        if values.size != self.n_replicates:
            raise DataError(f"{key}: {values.size} replicates, expected {self.n_replicates}")
        return values


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
    track: Track = LANGUAGE,
    by: Sequence[str] = (),
    ci: float = 0.95,
    seed: int = 0,
    resample_subjects: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Log-linear scaling fits with percentile bootstrap intervals, for either track.

    - ``axis="params"``, per family with >= 2 model sizes: each model's full-training-set fit
      (the language track: its CV-best layer per subject), ``metric`` averaged over subjects,
      against ``log10(n_params)``; the language track fits one such line per width, the native
      one and one at each fixed width d (``width``; the best layer chosen among the width-d
      fits, a layer narrower than d left out with a warning);
    - the track's data axes (language ``stories`` and ``trs``, vision ``images``), per swept
      model (and layer) with >= 2 training-set sizes: ``metric`` averaged over the fits at each
      size (seeds, subjects; the full fit is the largest size) against ``log10`` of the size.

    Parameters
    ----------
    encoding : DataFrame
        The tidy encoding table (point estimates; the language track's ``model_kind`` column,
        text or speech, is carried into ``kind``), or the ROI table with ``by``.
    means : DataFrame
        The bootstrap table of the same fits (`fmriscaling.scaling.resample.replicate_means`).
    track : Track
        `LANGUAGE` or `VISION`.
    by : sequence of str
        ``()`` for all voxels, or `ROI_COLUMNS`: one fit per ROI, its labels kept as columns. A
        whole-brain line needs every subject at every point (else DataError); an ROI's line
        without a finite value for every subject (an empty ROI) is left out with a log line.
    ci : float
        Coverage of the intervals.
    seed : int
        Seed of the subject resamples.
    resample_subjects : bool
        Draw subjects with replacement in each replicate (else keep them all).

    Returns
    -------
    fits : DataFrame
        One row per (axis, metric, family and width or (model, layer)[, ROI]), columns
        `FIT_COLUMNS` then ``by``; ``width`` is ``native`` but for the fixed-width size fits.
    replicates : DataFrame
        One row per fit and replicate: axis, metric, family, model, layer, width, replicate,
        slope, intercept (the lines behind the intervals and the figures' bands), then ``by``.

    Raises
    ------
    DataError
        When the encoding table misses a model for a subject, or the bootstrap table misses
        replicates of a fit the scaling fits need (the message names the fit).
    """
    by = list(by)
    if by not in ([], list(ROI_COLUMNS)):
        raise ValueError(f"by must be () or {ROI_COLUMNS}, got {by}")
    check_encoding(encoding, track, finite=not by)
    if track.widths:
        encoding, means = with_width(encoding), with_width(means)
    subjects = sorted(str(s) for s in encoding["subject"].unique())
    n_rep = int(means["replicate"].max()) + 1 if len(means) else 0
    if n_rep == 0:
        raise DataError("the bootstrap table is empty; rebuild it (rule bootstrap_means)")
    draws = subject_draws(n_rep, len(subjects), seed, resample_subjects)
    reps = _Replicates(means, track)
    kind_of = encoding.groupby("model")["model_kind"].first() if "model_kind" in encoding else None
    rows, lines = [], []
    common = dict(n_subjects=len(subjects), n_replicates=n_rep, ci=ci)
    groups = encoding.groupby(by, sort=True) if by else [(CORTEX, encoding)]
    for roi, table in groups:
        roi = tuple(roi)
        where = dict(zip(by, roi, strict=True)) if by else {}
        for metric in track.metrics:
            for axis, labels, models, points in _lines_of(table, track):
                what = f"the {axis} fit of {metric} for {_name(labels)}" + (
                    f" in ROI {'/'.join(roi)}" if by else ""
                )
                line = _line(points, subjects, metric, reps, roi, draws, what, strict=not by)
                if line is None:
                    continue
                x, y, boot = line
                kind = track.kind or _kind(kind_of, models)
                fit = fit_point(axis, metric, x, y, kind=kind, **labels)
                slopes, intercepts = lines_of_replicates(x, boot)
                rows.append(with_interval(fit, slopes, intercepts, ci) | common | where)
                lines.append(_replicate_lines(fit, slopes, intercepts).assign(**where))
    columns = [*FIT_COLUMNS, *by]
    fits = pd.DataFrame.from_records(rows, columns=columns)[columns]
    line_columns = ["axis", "metric", "family", "model", "layer", "width", "replicate", "slope"]
    line_columns += ["intercept", *by]
    replicates = (
        pd.concat(lines, ignore_index=True) if lines else pd.DataFrame(columns=line_columns)
    )
    return fits, replicates


def _lines_of(table: pd.DataFrame, track: Track):
    """(axis, labels, models, points) of every line a table supports: the size fit of each
    family (at the native width, then at each fixed width d), then the data-size fits of each
    swept model (and layer) in the table's order. A point is (x, the metrics' means over the
    fits at x, those fits), in ascending x."""
    full = _full(table)
    groups = width_groups(full, what="scaling fits") if track.widths else [(NATIVE, full)]
    for width, rows in groups:
        chosen = best_layers(rows) if track.layered else rows
        for family, group in chosen.groupby("family", sort=True):
            sizes = group.groupby("model")["n_params"].first().dropna().sort_values()
            at = "" if width == NATIVE else f" at width {width}"
            if sizes.nunique() < 2:
                logger.info("family %s has fewer than two model sizes%s: no size fit", family, at)
                continue
            means = group.groupby("model")[list(track.metrics)].mean()
            points = [(x, means.loc[m], group[group["model"] == m]) for m, x in sizes.items()]
            labels = {"family": family} | ({"width": width} if track.widths else {})
            yield "params", labels, list(sizes.index), points
    # the data-size sweeps are fitted on native features only
    table = native_rows(table) if track.widths else table
    swept = ["model", "layer"] if track.layered else ["model"]
    for values in _swept(table, swept).itertuples(index=False):
        labels = dict(zip(swept, values, strict=True))
        rows = table[(table[swept] == pd.Series(labels)).all(axis=1)]
        per_size = rows.groupby(track.size_column, sort=True)
        if len(per_size) < 2:
            continue
        labels = {"family": str(rows["family"].iloc[0]), **labels}
        if "layer" in labels:
            labels["layer"] = int(labels["layer"])
        for axis, column in track.data_axes.items():
            x = per_size[column].mean()
            means = per_size[list(track.metrics)].mean()
            points = [(x[n], means.loc[n], at_size) for n, at_size in per_size]
            yield axis, labels, [labels["model"]], points


def _name(labels: Mapping[str, Any]) -> str:
    if "model" not in labels:
        width = width_label(labels.get("width"))
        return f"family {labels['family']}" + ("" if width == NATIVE else f" at width {width}")
    layer = f" layer {labels['layer']}" if "layer" in labels else ""
    return f"{labels['model']}{layer}"


def _line(points, subjects, metric, reps: _Replicates, roi, draws, what, *, strict):
    """x, y (mean over the fits at each point) and the replicate means over drawn subjects
    (n_points, n_replicates) of one line; None when the line is left out."""
    xs, ys, per_subject = [], [], []
    columns = reps.track.key_columns
    for x, y, rows_at in points:
        # each subject's replicates at this point (several seeds: their mean)
        replicates: dict[str, list[np.ndarray]] = {}
        for values in zip(*(rows_at[c].to_numpy() for c in columns), strict=True):
            row = dict(zip(columns, values, strict=True))
            replicates.setdefault(str(row["subject"]), []).append(reps.get(row, roi, metric, what))
        lacking = sorted(set(subjects) - set(replicates))
        if lacking:
            message = f"{what}: subject(s) {lacking} have no fit at x = {x:g}"
            if strict:
                raise DataError(f"{message}; run their fits and rebuild the tables")
            logger.info("%s: left out", message)
            return None
        if not np.isfinite(rows_at[metric].to_numpy(dtype=np.float64)).all():
            log = logger.warning if strict else logger.info
            log("%s: left out (no finite %s at x = %g)", what, metric, x)
            return None
        xs.append(float(x))
        ys.append(float(y[metric]))
        per_subject.append([np.mean(replicates[s], axis=0) for s in subjects])
    boot = mean_over_drawn_subjects(np.array(per_subject).transpose(1, 0, 2), draws)
    return np.array(xs), np.array(ys), boot


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
        "width": width_label(labels.get("width")),
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
            "width": fit.get("width", NATIVE),
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
    """One line per family and width (model size) and per subsampled model (data size), mean
    test r.

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
        axis, kind, family, model, layer, width, n_points, slope_per_decade, slope_lo, slope_hi,
        pct_per_decade, pct_lo, pct_hi, r, best_model, best_layer, best_relative_depth,
        best_mean_r, best_mean_cc_norm, best_fraction_significant (the subject-mean fraction
        of voxels significant at the FDR level), paper_name, paper_pct_per_decade,
        paper_fit_r. A fixed-width line's best model and layer are its width's; the paper's
        numbers are given for the native lines only.
    """
    aliases = dict(aliases or {})
    by_name = {(p["axis"], p["name"]): p for p in paper}
    # the native fits and the projected fits of each fixed width (narrower layers left out)
    full = with_width(_full(encoding))
    groups = width_groups(full)
    full = pd.concat([rows for _, rows in groups]) if groups else full
    if "fraction_significant" not in full:  # a table from before the permutation test
        full = full.assign(fraction_significant=np.nan)
    # per model and width: the layer with the best subject-mean CV score (never the test score)
    per_layer = (
        full.groupby(["width", "family", "model", "layer"], sort=True)
        .agg(
            cv=("mean_cv_score", "mean"),
            mean_r=("mean_r", "mean"),
            mean_cc_norm=("mean_cc_norm", "mean"),
            relative_depth=("relative_depth", "mean"),
            fraction_significant=("fraction_significant", "mean"),
        )
        .reset_index()
    )
    best_per_model = per_layer.loc[per_layer.groupby(["width", "model"])["cv"].idxmax()]
    rows = []
    for fit in fits[fits["metric"] == "mean_r"].to_dict("records"):
        width = width_label(fit.get("width"))
        of_width = best_per_model[best_per_model["width"] == width]
        if fit["axis"] == "params":
            candidates = of_width[of_width["family"] == fit["family"]]
            name = fit["family"]
        else:
            candidates = of_width[of_width["model"] == fit["model"]]
            name = fit["model"]
        best = candidates.loc[candidates["cv"].idxmax()]
        # the paper's numbers are for native features
        ref = by_name.get((fit["axis"], aliases.get(name, name)), {}) if width == NATIVE else {}
        rows.append(
            {
                **{k: fit[k] for k in ("axis", "kind", "family", "model", "layer")},
                "width": width,
                "n_points": fit["n_points"],
                **{k: fit[k] for k in ("slope_per_decade", "slope_lo", "slope_hi")},
                **{k: fit[k] for k in ("pct_per_decade", "pct_lo", "pct_hi", "r")},
                "best_model": best["model"],
                "best_layer": int(best["layer"]),
                "best_relative_depth": float(best["relative_depth"]),
                "best_mean_r": float(best["mean_r"]),
                "best_mean_cc_norm": float(best["mean_cc_norm"]),
                "best_fraction_significant": float(best["fraction_significant"]),
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
