"""Figures of the scaling study: model size, training-data size, layer profiles, ceilings, maps.

Every ``plot_*`` function draws into a given Matplotlib Axes (``ax=None`` uses the current one)
and returns it; only :func:`save_figure` and :func:`scaling_report` save and close figures.

The scaling figures read one tidy table with one row per fit (columns ``subject``, ``model``,
``family``, ``n_params``, ``layer``, ``relative_depth``, ``n_train_stories``, ``seed``,
``mean_r``, ``mean_cc_norm``, ``mean_cv_score``, ``kind`` and others). Rows with
``kind == "full"`` are fits on all training stories; rows with ``kind == "subsample"`` are the
data-size fits. A table without ``kind`` but with the boolean ``full_train`` column of
:mod:`fmriscaling.encoding.tables` is read as ``kind = "full" if full_train else "subsample"``.
Layers are always chosen by the cross-validation score ``mean_cv_score``
(:func:`~fmriscaling.encoding.tables.best_layers`), never by a test-set metric, and lines are
fitted with :func:`~fmriscaling.encoding.tables.fit_log_linear`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from ._utils import DataError, atomic_path
from .encoding.tables import best_layers, fit_log_linear

if TYPE_CHECKING:
    import nibabel as nib
    from matplotlib.axes import Axes

logger = logging.getLogger(__name__)

__all__ = [
    "plot_brain_map",
    "plot_cc_norm_vs_ceiling",
    "plot_data_scaling",
    "plot_layer_profiles",
    "plot_model_size_scaling",
    "plot_noise_ceiling_hist",
    "save_figure",
    "scaling_report",
    "unmask_values",
]

#: Axis labels of the metrics a scaling figure can show.
METRIC_LABELS = {
    "mean_r": "mean test correlation r",
    "mean_cc_norm": "mean test CC_norm",
    "mean_cv_score": "mean CV score",
}
#: Short unit used in slope texts ("+0.012 r per 10x").
METRIC_UNITS = {"mean_r": "r", "mean_cc_norm": "CC_norm", "mean_cv_score": "CV score"}

# one sequential colormap per family, in the hue order of seaborn's "colorblind" palette
_SEQUENTIAL_CMAPS = ("Blues", "Oranges", "Greens", "Reds", "Purples", "YlOrBr", "RdPu", "Greys")

_FIGURE_SIZE = (6.4, 4.8)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _get_ax(ax: Axes | None) -> Axes:
    return plt.gca() if ax is None else ax


def _check_columns(table: pd.DataFrame, columns: Sequence[str], where: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataError(
            f"{where}: the scaling table lacks column(s) {missing}; "
            f"it has {sorted(map(str, table.columns))}"
        )


def _fit_kinds(table: pd.DataFrame, where: str) -> pd.Series:
    """``kind`` per row: the ``kind`` column, else derived from a boolean ``full_train``."""
    if "kind" in table.columns:
        return table["kind"]
    if "full_train" in table.columns:
        # encoding.tables writes full_train (bool) instead of kind
        full = table["full_train"].eq(True).to_numpy()
        return pd.Series(np.where(full, "full", "subsample"), index=table.index, name="kind")
    raise DataError(
        f"{where}: the scaling table needs a 'kind' column ('full' or 'subsample') or a "
        f"boolean 'full_train' column; it has {sorted(map(str, table.columns))}"
    )


def _rows_of_kind(
    table: pd.DataFrame, kind: str, columns: Sequence[str], where: str
) -> pd.DataFrame:
    _check_columns(table, columns, where)
    # a fresh index: best-layer selection goes through index labels, which may repeat in input
    rows = table.loc[(_fit_kinds(table, where) == kind).to_numpy()].reset_index(drop=True)
    if rows.empty:
        raise DataError(f"{where}: the scaling table has no rows with kind == {kind!r}")
    return rows


def _metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def _metric_unit(metric: str) -> str:
    return METRIC_UNITS.get(metric, metric)


def _family_colors(families: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """One colour per family, stable across figures (families sorted by name)."""
    names = sorted({str(f) for f in families})
    palette = sns.color_palette("colorblind", n_colors=max(len(names), 1))
    return {name: tuple(palette[i % len(palette)]) for i, name in enumerate(names)}


def _format_params(value: float, _pos: int | None = None) -> str:
    """Tick label of a parameter count: 125M, 1.3B, 30B."""
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def _format_minor(value: float, _pos: int | None = None) -> str:
    """Minor tick label: only at 2, 3 and 5 times a power of ten, so labels never collide."""
    leading = value / 10 ** np.floor(np.log10(value))
    return _format_params(value) if np.round(leading) in (2, 3, 5) else ""


def _of_model_kind(table: pd.DataFrame, model_kind: str | None, where: str) -> pd.DataFrame:
    """Rows of one model kind (text, speech) when asked and the table says; else all rows."""
    if model_kind is None or "model_kind" not in table.columns:
        return table
    rows = table[table["model_kind"] == model_kind]
    if rows.empty:
        raise DataError(f"{where}: the scaling table has no {model_kind} models")
    return rows


def _fit_of(fits: pd.DataFrame, where: str, axis: str, metric: str, **labels: Any) -> pd.Series:
    """The row of the scaling-fit table for one (axis, metric, family or model/layer)."""
    _check_columns(fits, ["axis", "metric", "slope_per_decade", "intercept", "r"], where)
    match = (fits["axis"] == axis) & (fits["metric"] == metric)
    for name, value in labels.items():
        match &= fits[name].astype(str) == str(value) if name != "layer" else fits[name] == value
    rows = fits[match]
    if len(rows) != 1:
        named = ", ".join(f"{k} {v}" for k, v in labels.items())
        raise DataError(
            f"{where}: the scaling-fit table has {len(rows)} {axis} fit(s) of {metric} for "
            f"{named}, expected one; rebuild it (rule scaling_table)"
        )
    return rows.iloc[0]


def _fit_label(name: str, fit: Mapping[str, Any], unit: str, per: str) -> str:
    """``"OPT: +0.012 r per 10x, +4.4% [+2.1, +6.3] (r=0.91)"``."""
    text = f"{name}: {fit['slope_per_decade']:+.3f} {unit} per 10x{per}"
    if np.isfinite(fit.get("pct_per_decade", np.nan)):
        text += f", {fit['pct_per_decade']:+.1f}%"
        if np.isfinite(fit.get("pct_lo", np.nan)):
            text += f" [{fit['pct_lo']:+.1f}, {fit['pct_hi']:+.1f}]"
    return text + f" (r={fit['r']:.2f})"


def _draw_band(
    ax: Axes,
    bootstrap: pd.DataFrame,
    fit: Mapping[str, Any],
    x_range: Sequence[float],
    color: Any,
    gid: str,
) -> None:
    """Pointwise percentile band of the bootstrap replicates' lines of one fit."""
    keys = ("axis", "metric", "family", "model", "layer")
    match = np.ones(len(bootstrap), dtype=bool)
    for key in keys:
        value = fit.get(key)
        column = bootstrap[key]
        if value is None or (isinstance(value, float) and np.isnan(value)):
            match &= column.isna().to_numpy()
        else:
            match &= (
                (column == value).to_numpy()
                if key == "layer"
                else (column.astype(str) == str(value)).to_numpy()
            )
    lines = bootstrap[match]
    if lines.empty:
        raise DataError(
            f"the bootstrap-line table has no replicates of the {fit['axis']} fit of "
            f"{fit['family'] if fit['axis'] == 'params' else fit['model']}; rebuild it"
        )
    ci = float(fit.get("ci", 0.95))
    x = np.geomspace(min(x_range), max(x_range), 50)
    y = lines["intercept"].to_numpy()[:, None] + lines["slope"].to_numpy()[:, None] * np.log10(x)
    low, high = np.percentile(y, [50 * (1 - ci), 50 * (1 + ci)], axis=0)
    ax.fill_between(x, low, high, color=color, alpha=0.2, linewidth=0, label="_nolegend_", gid=gid)


def _log_count_axis(ax: Axes) -> None:
    """A log x axis of counts (parameters, TRs) with labels like 125M, 1.3B, 500, 2k."""
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(_format_params))
    # minor ticks labelled only when the values span less than two decades (else too crowded)
    low, high = ax.get_xlim()
    narrow = np.log10(high / low) < 2
    ax.xaxis.set_minor_formatter(FuncFormatter(_format_minor) if narrow else NullFormatter())


def _params_per_model(full: pd.DataFrame) -> pd.Series:
    counts = full.groupby("model")["n_params"].nunique()
    ambiguous = counts.index[counts > 1].tolist()
    if ambiguous:
        raise DataError(f"model(s) {ambiguous} have more than one n_params in the scaling table")
    return full.groupby("model")["n_params"].first()


# --------------------------------------------------------------------------------------------
# scaling figures
# --------------------------------------------------------------------------------------------
def plot_model_size_scaling(
    table: pd.DataFrame,
    *,
    metric: str = "mean_r",
    ax: Axes | None = None,
    fits: pd.DataFrame | None = None,
    bootstrap: pd.DataFrame | None = None,
    model_kind: str | None = None,
) -> Axes:
    """Encoding performance against language-model size, one log-linear fit per family.

    For each (subject, model) the layer with the highest ``mean_cv_score`` is chosen; its
    ``metric`` is drawn faintly per subject and averaged across subjects per model. A line
    ``metric = intercept + slope * log10(n_params)`` is fitted to the per-model means of each
    family with at least two model sizes; the legend gives the slope per 10x parameters and the
    Pearson r of the fit, e.g. ``"OPT: +0.012 r per 10x (r=0.91)"``.

    Parameters
    ----------
    table : pandas.DataFrame
        The scaling table; only rows with ``kind == "full"`` are used.
    metric : str
        Column drawn on the y axis (``"mean_r"`` or ``"mean_cc_norm"``).
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; defaults to the current Axes.
    fits : pandas.DataFrame, optional
        The scaling-fit table (`fmriscaling.scaling.scaling_fits`): the lines and legends come
        from its ``params`` rows (slope, % per decade with its interval, r), so figure and
        table agree; a family it lacks is an error.
    bootstrap : pandas.DataFrame, optional
        Its replicate lines: a shaded band of the fit's confidence interval.
    model_kind : str, optional
        Only models of this kind (``"text"``, ``"speech"``; the table's ``model_kind``).

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn into. Artists carry a ``gid``: ``"subjects:<family>"`` and
        ``"mean:<family>"`` for the point collections, ``"fit:<family>"`` for the fit line,
        ``"band:<family>"`` for the interval.
    """
    where = "plot_model_size_scaling"
    table = _of_model_kind(table, model_kind, where)
    full = _rows_of_kind(
        table,
        "full",
        ["subject", "model", "family", "n_params", "layer", "mean_cv_score", metric],
        where,
    )
    ax = _get_ax(ax)
    best = best_layers(full, by=("subject", "model"))
    n_params = _params_per_model(full)
    family_of = full.groupby("model")["family"].first()
    colors = _family_colors(family_of.to_numpy())

    per_model = best.groupby("model")[metric].mean().to_frame("value")
    per_model["n_params"] = n_params.reindex(per_model.index)
    per_model["family"] = family_of.reindex(per_model.index)

    for family in sorted(colors):
        color = colors[family]
        subj = best.loc[best["family"] == family]
        ax.scatter(
            subj["n_params"],
            subj[metric],
            color=color,
            alpha=0.3,
            s=18,
            linewidths=0,
            label="_nolegend_",
            gid=f"subjects:{family}",
        )
        means = per_model.loc[per_model["family"] == family].sort_values("n_params")
        fittable = means.dropna(subset=["value"])
        label = str(family)
        if fittable["n_params"].nunique() >= 2:
            slope, intercept, r = fit_log_linear(fittable["n_params"], fittable["value"])
            x_line = np.array([fittable["n_params"].min(), fittable["n_params"].max()], float)
            label = f"{family}: {slope:+.3f} {_metric_unit(metric)} per 10x (r={r:.2f})"
            if fits is not None:
                fit = _fit_of(fits, where, "params", metric, family=family)
                slope, intercept = fit["slope_per_decade"], fit["intercept"]
                label = _fit_label(str(family), fit, _metric_unit(metric), "")
                if bootstrap is not None:
                    _draw_band(ax, bootstrap, fit, x_line, color, f"band:{family}")
            ax.plot(
                x_line,
                intercept + slope * np.log10(x_line),
                color=color,
                linewidth=1.5,
                label="_nolegend_",
                gid=f"fit:{family}",
            )
        else:
            logger.info("%s: family %s has < 2 model sizes; no fit drawn", where, family)
        ax.scatter(
            means["n_params"],
            means["value"],
            color=color,
            s=45,
            edgecolors="black",
            linewidths=0.5,
            zorder=3,
            label=label,
            gid=f"mean:{family}",
        )

    _log_count_axis(ax)
    ax.set_xlabel("model parameters")
    ax.set_ylabel(f"{_metric_label(metric)} (best CV layer)")
    ax.legend(fontsize="small", frameon=False)
    return ax


def plot_data_scaling(
    table: pd.DataFrame,
    *,
    metric: str = "mean_r",
    ax: Axes | None = None,
    x: Literal["n_train_stories", "n_train_trs"] = "n_train_stories",
    fits: pd.DataFrame | None = None,
    bootstrap: pd.DataFrame | None = None,
) -> Axes:
    """Encoding performance against the number of training stories, with log-linear fits.

    Points: one series per (model, layer, subject), the mean of ``metric`` over the random
    subsets (seeds) of each story count, with error bars of one standard deviation across
    seeds (``ddof=1``; no bar where a count has a single seed). Colour encodes (model, layer),
    marker the subject.

    Fit: one line per (model, layer), ``metric = intercept + slope * log10(n_stories)`` fitted
    to the mean over subjects and seeds at each story count -- the fit
    ``fmriscaling.encoding.tables.scaling_summary`` reports. Its legend entry gives the slope per
    10x stories, the same slope as a percentage of the fitted value at the smallest story count
    (omitted when that value is not positive), and the fit's Pearson r.

    Parameters
    ----------
    table : pandas.DataFrame
        The scaling table. Rows with ``kind == "subsample"`` are used, plus the
        ``kind == "full"`` rows of the same (model, layer): the fit on all training stories is
        the largest size of the sweep (a subset of all stories is the same for every seed).
    metric : str
        Column drawn on the y axis.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; defaults to the current Axes.
    x : {"n_train_stories", "n_train_trs"}
        Training-set size on the x axis: stories, or TRs (averaged over the subsets of a story
        count, per subject for the points and over subjects for the fit).
    fits, bootstrap : pandas.DataFrame, optional
        The scaling-fit table and its replicate lines, as in `plot_model_size_scaling`
        (axis ``stories`` or ``trs``): the fit and legend come from the table, the band from
        the replicates.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn into. With ``key = "<model>:<layer>:<subject>"``, each series' data line
        has ``gid="data:<key>"`` and its error-bar LineCollection ``"errorbars:<key>"``; the fit
        line of a (model, layer) has ``gid="fit:<model>:<layer>"``, its band
        ``"band:<model>:<layer>"``.
    """
    where = "plot_data_scaling"
    columns = ["subject", "model", "layer", "n_train_stories", metric] + (
        [x] if x != "n_train_stories" else []
    )
    sub = _rows_of_kind(table, "subsample", columns, where)
    if (_fit_kinds(table, where) == "full").any():
        full = _rows_of_kind(table, "full", columns, where)
        swept = sub[["model", "layer"]].drop_duplicates()
        sub = pd.concat([sub, full.merge(swept, on=["model", "layer"])], ignore_index=True)
    ax = _get_ax(ax)
    stats = (
        sub.groupby(["model", "layer", "subject", "n_train_stories"], sort=True)
        .agg(mean=(metric, "mean"), std=(metric, "std"), x=(x, "mean"))
        .reset_index()
    )
    pooled = (
        sub.groupby(["model", "layer", "n_train_stories"], sort=True)
        .agg(value=(metric, "mean"), x=(x, "mean"))
        .dropna()
        .reset_index()
    )
    series_keys = [tuple(k) for k in stats[["model", "layer"]].drop_duplicates().to_numpy()]
    palette = sns.color_palette("colorblind", n_colors=max(len(series_keys), 1))
    colors = {key: palette[i % len(palette)] for i, key in enumerate(series_keys)}
    subjects = sorted(stats["subject"].astype(str).unique())
    markers = dict(zip(subjects, "osD^vP*Xh", strict=False))

    per = " stories" if x == "n_train_stories" else " TRs"
    for (model, layer), points in pooled.groupby(["model", "layer"], sort=True):
        label = f"{model} L{layer}"
        x_fit = points["x"].to_numpy(dtype=float)
        if np.unique(x_fit).size < 2:
            logger.info("%s: %s has < 2 story counts; no fit drawn", where, label)
            continue
        slope, intercept, r = fit_log_linear(x_fit, points["value"].to_numpy(dtype=float))
        reference = intercept + slope * np.log10(x_fit.min())
        percent = f"{100 * slope / reference:+.0f}%, " if reference > 0 else ""
        legend = f"{label}: {slope:+.3f} {_metric_unit(metric)} per 10x{per} ({percent}r={r:.2f})"
        x_line = np.array([x_fit.min(), x_fit.max()])
        if fits is not None:
            axis = "stories" if x == "n_train_stories" else "trs"
            fit = _fit_of(fits, where, axis, metric, model=model, layer=int(layer))
            slope, intercept = fit["slope_per_decade"], fit["intercept"]
            legend = _fit_label(label, fit, _metric_unit(metric), per)
            if bootstrap is not None:
                _draw_band(
                    ax, bootstrap, fit, x_line, colors[(model, layer)], f"band:{model}:{layer}"
                )
        ax.plot(
            x_line,
            intercept + slope * np.log10(x_line),
            color=colors[(model, layer)],
            linewidth=1.5,
            label=legend,
            gid=f"fit:{model}:{layer}",
        )

    for (model, layer, subject), points in stats.groupby(["model", "layer", "subject"], sort=True):
        key = f"{model}:{layer}:{subject}"
        container = ax.errorbar(
            points["x"].to_numpy(dtype=float),
            points["mean"].to_numpy(dtype=float),
            # a count with one seed has no spread: draw no bar rather than a NaN
            yerr=points["std"].fillna(0.0).to_numpy(dtype=float),
            color=colors[(model, layer)],
            marker=markers.get(str(subject), "o"),
            markersize=4,
            linestyle="none",
            capsize=2,
            alpha=0.8,
            label=f"{model} L{layer} {subject}",
        )
        data_line, _caps, (bars,) = container.lines
        data_line.set_gid(f"data:{key}")
        bars.set_gid(f"errorbars:{key}")

    ax.set_xscale("log")
    if x == "n_train_stories":
        # tick the story counts that were fitted, as plain numbers
        ax.set_xticks(np.unique(sub["n_train_stories"].to_numpy(dtype=float)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        _log_count_axis(ax)
    ax.set_xlabel("training stories" if x == "n_train_stories" else "training TRs")
    ax.set_ylabel(f"{_metric_label(metric)} (mean ± sd over subsets)")
    ax.legend(fontsize="x-small", frameon=False)
    return ax


def plot_layer_profiles(
    table: pd.DataFrame, *, metric: str = "mean_r", ax: Axes | None = None
) -> Axes:
    """Encoding performance across layers, one line per model, best CV layer marked.

    ``metric`` is averaged across subjects per (model, layer) and drawn against
    ``relative_depth`` (layer / n_layers). Colours come from one sequential colormap per family,
    darker for larger models. A star marks the layer with the highest subject-averaged
    ``mean_cv_score`` (never the test metric).

    Parameters
    ----------
    table : pandas.DataFrame
        The scaling table; only rows with ``kind == "full"`` are used.
    metric : str
        Column drawn on the y axis.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; defaults to the current Axes.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn into. Lines carry ``gid="profile:<model>"`` and the best-layer markers
        ``gid="best:<model>"``.
    """
    where = "plot_layer_profiles"
    full = _rows_of_kind(
        table,
        "full",
        ["model", "family", "n_params", "layer", "relative_depth", "mean_cv_score", metric],
        where,
    )
    ax = _get_ax(ax)
    n_params = _params_per_model(full)
    family_of = full.groupby("model")["family"].first()
    profiles = (
        full.groupby(["model", "layer"], sort=True)
        .agg(
            relative_depth=("relative_depth", "mean"),
            value=(metric, "mean"),
            cv=("mean_cv_score", "mean"),
        )
        .reset_index()
    )

    families = sorted(family_of.astype(str).unique())
    for i_family, family in enumerate(families):
        cmap = plt.get_cmap(_SEQUENTIAL_CMAPS[i_family % len(_SEQUENTIAL_CMAPS)])
        models = n_params[family_of.astype(str) == family].sort_values()
        shades = np.linspace(0.45, 0.95, len(models)) if len(models) > 1 else [0.7]
        for model, shade in zip(models.index, shades, strict=True):
            color = cmap(shade)
            profile = profiles.loc[profiles["model"] == model].sort_values("relative_depth")
            ax.plot(
                profile["relative_depth"],
                profile["value"],
                color=color,
                linewidth=1.5,
                label=f"{model} ({_format_params(models[model])})",
                gid=f"profile:{model}",
            )
            scored = profile.dropna(subset=["cv"])
            if scored.empty:
                logger.warning("%s: model %s has no mean_cv_score; no best layer", where, model)
                continue
            best = scored.loc[scored["cv"].idxmax()]
            ax.scatter(
                [best["relative_depth"]],
                [best["value"]],
                marker="*",
                s=120,
                color=color,
                edgecolors="black",
                linewidths=0.5,
                zorder=3,
                label="_nolegend_",
                gid=f"best:{model}",
            )

    ax.set_xlabel("relative depth (layer / number of layers)")
    ax.set_ylabel(f"{_metric_label(metric)} (mean over subjects)")
    ax.set_xlim(-0.02, 1.02)
    ax.legend(fontsize="x-small", frameon=False, title="★ best CV layer", title_fontsize="x-small")
    return ax


# --------------------------------------------------------------------------------------------
# noise ceiling
# --------------------------------------------------------------------------------------------
def _check_voxel_vectors(**arrays: Any) -> dict[str, np.ndarray]:
    out = {name: np.asarray(value) for name, value in arrays.items()}
    shapes = {name: value.shape for name, value in out.items()}
    if len(set(shapes.values())) != 1 or any(len(s) != 1 for s in shapes.values()):
        raise ValueError(f"expected 1-D arrays of shape (n_voxels,) of equal length, got {shapes}")
    return out


def plot_noise_ceiling_hist(
    cc_max: Any, valid: Any, ax: Axes | None = None, *, bins: int = 50
) -> Axes:
    """Histogram of the per-voxel noise ceiling CC_max over voxels that have one.

    Parameters
    ----------
    cc_max : array of shape (n_voxels,)
        Noise ceiling per voxel (undefined where ``valid`` is False).
    valid : array of bool, shape (n_voxels,)
        True where the signal power is positive and CC_max is defined.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; defaults to the current Axes.
    bins : int
        Number of bins between 0 and 1.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn into; the text in its title counts voxels without a ceiling.
    """
    arrays = _check_voxel_vectors(cc_max=cc_max, valid=valid)
    valid = arrays["valid"].astype(bool)
    values = arrays["cc_max"][valid].astype(float)
    ax = _get_ax(ax)
    ax.hist(values, bins=np.linspace(0.0, 1.0, bins + 1), color="0.4")
    ax.set_xlabel("noise ceiling CC_max")
    ax.set_ylabel("voxels")
    ax.set_title(
        f"{valid.sum()} voxels with a ceiling, {valid.size - valid.sum()} without",
        fontsize="small",
    )
    return ax


def plot_cc_norm_vs_ceiling(r: Any, cc_max: Any, valid: Any, ax: Axes | None = None) -> Axes:
    """Per-voxel test correlation against the noise ceiling, with the y = x line.

    Voxels on the line are predicted as well as their noise allows (CC_norm = 1); voxels far
    below it leave explainable variance unexplained.

    Parameters
    ----------
    r : array of shape (n_voxels,)
        Test correlation (CC_abs) per voxel.
    cc_max : array of shape (n_voxels,)
        Noise ceiling per voxel.
    valid : array of bool, shape (n_voxels,)
        True where CC_max is defined; other voxels are not drawn.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; defaults to the current Axes.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn into; the voxel scatter has ``gid="voxels"``, the line ``"identity"``.
    """
    arrays = _check_voxel_vectors(r=r, cc_max=cc_max, valid=valid)
    valid = arrays["valid"].astype(bool)
    ax = _get_ax(ax)
    # rasterized: a vector PDF of ~90k points is slow to open
    ax.scatter(
        arrays["cc_max"][valid],
        arrays["r"][valid],
        s=2,
        alpha=0.3,
        color="0.2",
        linewidths=0,
        rasterized=True,
        gid="voxels",
    )
    ax.plot([0, 1], [0, 1], color="tab:red", linewidth=1.0, label="r = CC_max", gid="identity")
    ax.set_xlim(0, 1)
    ax.set_ylim(min(0.0, float(np.nanmin(arrays["r"][valid], initial=0.0))), 1)
    ax.set_xlabel("noise ceiling CC_max")
    ax.set_ylabel("test correlation r")
    ax.legend(fontsize="small", frameon=False, loc="upper left")
    return ax


# --------------------------------------------------------------------------------------------
# brain maps
# --------------------------------------------------------------------------------------------
def unmask_values(values: Any, mask_img: Any, *, order: Literal["C", "F"] = "C") -> nib.Nifti1Image:
    """Put one value per masked voxel back into the mask's volume.

    Convention: ``values[i]`` belongs to the i-th nonzero voxel of the mask array as nibabel
    loads it, shape (x, y, z), counted in ``order``. ``order="C"`` (last axis fastest) is
    nilearn's and numpy's ``volume[mask]`` convention. pycortex, and with it the response files
    of ds003020, index the *transposed* mask, shape (z, y, x), in C order (x fastest): for those
    vectors pass ``order="F"``.

    Parameters
    ----------
    values : array of shape (n_voxels,)
        One value per nonzero mask voxel.
    mask_img : nibabel image or path
        3-D mask; nonzero voxels are in the mask.
    order : {"C", "F"}
        Order in which the voxels of ``values`` walk the mask array (see above).

    Returns
    -------
    nibabel.Nifti1Image
        float32 volume of the mask's shape and affine, 0 outside the mask.

    Raises
    ------
    ValueError
        When ``values`` does not hold one value per mask voxel or ``order`` is unknown.
    """
    from nilearn import image

    if order not in ("C", "F"):
        raise ValueError(f"order must be 'C' or 'F', got {order!r}")
    mask_img = image.load_img(mask_img)
    mask = np.asanyarray(mask_img.dataobj)
    if mask.ndim != 3:
        raise ValueError(f"the mask must be 3-D, got shape {mask.shape}")
    mask = mask != 0
    values = np.asarray(values, dtype=np.float32)
    n_in_mask = int(mask.sum())
    if values.shape != (n_in_mask,):
        raise ValueError(
            f"values has shape {values.shape} but the mask has {n_in_mask} voxels; "
            f"expected shape ({n_in_mask},)"
        )
    flat = np.zeros(mask.size, dtype=np.float32)
    flat[np.flatnonzero(mask.ravel(order=order))] = values
    volume = flat.reshape(mask.shape, order=order)
    return image.new_img_like(mask_img, volume, affine=mask_img.affine, copy_header=True)


def plot_brain_map(
    values: Any,
    mask_img: Any,
    reference_img: Any,
    *,
    title: str | None = None,
    vmax: float | None = None,
    order: Literal["C", "F"] = "C",
    axes: Axes | None = None,
    figure: Figure | None = None,
    cut_coords: int | Sequence[float] | None = None,
    **kwargs: Any,
) -> Any:
    """Axial slices of a per-voxel map over the subject's reference volume.

    Parameters
    ----------
    values : array of shape (n_voxels,)
        One value per mask voxel, in the order described in :func:`unmask_values`.
    mask_img : nibabel image or path
        The cortical mask the values were taken from.
    reference_img : nibabel image or path
        Anatomical/functional reference drawn underneath.
    title : str, optional
        Title of the display.
    vmax : float, optional
        Upper end of the colour scale (symmetric around 0 by nilearn's default).
    order : {"C", "F"}
        Voxel order of ``values``; ``"F"`` for pycortex / ds003020 response vectors.
    axes : matplotlib.axes.Axes, optional
        Axes to draw into.
    figure : matplotlib.figure.Figure, optional
        Figure to draw into.
    cut_coords : int or sequence of float, optional
        Number or positions of axial cuts; defaults to up to 7 cuts, fewer for small volumes.
    **kwargs
        Passed to :func:`nilearn.plotting.plot_stat_map` (``cmap``, ``threshold``...).

    Returns
    -------
    nilearn.plotting.displays.ZSlicer
        The display object; save with ``display.savefig`` or through its figure.
    """
    from nilearn import plotting

    img = unmask_values(values, mask_img, order=order)
    if cut_coords is None:
        cut_coords = min(7, img.shape[2])
    return plotting.plot_stat_map(
        img,
        bg_img=reference_img,
        display_mode="z",
        cut_coords=cut_coords,
        title=title,
        vmax=vmax,
        axes=axes,
        figure=figure,
        **kwargs,
    )


# --------------------------------------------------------------------------------------------
# saving
# --------------------------------------------------------------------------------------------
def save_figure(
    fig: Figure,
    path_stem: str | os.PathLike,
    formats: Sequence[str] = ("png", "pdf"),
    *,
    dpi: int = 200,
) -> list[Path]:
    """Save ``fig`` once per format, atomically, then close it.

    Each file is written to a temporary name in the destination directory and renamed onto
    ``<path_stem>.<format>`` only when complete. The figure is closed even when saving fails.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        Figure to save.
    path_stem : path-like
        Destination without extension; ``.<format>`` is appended.
    formats : sequence of str
        Matplotlib output formats, e.g. ``("png", "pdf", "svg")``.
    dpi : int
        Resolution of raster output.

    Returns
    -------
    list of pathlib.Path
        The files written, in the order of ``formats``.
    """
    try:
        supported = fig.canvas.get_supported_filetypes()
        paths = []
        for fmt in formats:
            fmt = fmt.lower().lstrip(".")
            if fmt not in supported:
                raise ValueError(
                    f"unsupported figure format {fmt!r}; use one of {sorted(supported)}"
                )
            path = Path(f"{os.fspath(path_stem)}.{fmt}")
            # no creation date in vector formats: identical inputs give identical files
            metadata = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}.get(fmt)
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight", metadata=metadata)
            logger.info("wrote %s", path)
            paths.append(path)
        return paths
    finally:
        plt.close(fig)


def save_figure_files(
    fig: Figure, paths: Sequence[str | os.PathLike], *, dpi: int = 200
) -> list[Path]:
    """`save_figure` to the given files, each in the format its suffix names.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    paths : sequence of path-like
        Files sharing one stem (``fig.png``, ``fig.pdf``); parent folders are created.
    dpi : int

    Returns
    -------
    list of pathlib.Path
    """
    paths = [Path(p) for p in paths]
    stems = {p.with_suffix("") for p in paths}
    if len(stems) != 1 or any(not p.suffix for p in paths):
        plt.close(fig)
        raise ValueError(f"expected one file per format of a single figure, got {paths}")
    (stem,) = stems
    stem.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, stem, [p.suffix for p in paths], dpi=dpi)


@contextlib.contextmanager
def saving(fig: Figure, paths: Sequence[str | os.PathLike]) -> Iterator[list[Path]]:
    """Draw into ``fig`` in the block; then save it to ``paths`` (`save_figure_files`).

    The figure is closed either way, unsaved when the block raises.

    Yields
    ------
    list of pathlib.Path
        Filled with the files written once the block has ended.
    """
    written: list[Path] = []
    try:
        yield written
    except BaseException:
        plt.close(fig)
        raise
    written.extend(save_figure_files(fig, paths))


def scaling_report(
    table: pd.DataFrame,
    outputs: Mapping[str, Sequence[str | os.PathLike]],
    *,
    metric: str = "mean_r",
    metrics: Sequence[str] | None = None,
    fits: pd.DataFrame | None = None,
    bootstrap: pd.DataFrame | None = None,
) -> dict[str, list[Path]]:
    """Draw and save the scaling figures of a scaling table, each to the files asked for.

    Figures: ``model_size_scaling`` (text models when the table has ``model_kind``),
    ``speech_model_size_scaling`` (speech models), ``data_scaling`` (against training
    stories, and against training TRs when the table has ``n_train_trs`` and fits are given)
    and ``layer_profiles``. A figure whose rows are absent from the table (no ``kind ==
    "full"`` rows for the model-size and layer figures, no ``kind == "subsample"`` rows for the
    data figure, no speech models) is skipped with a logged warning.

    Parameters
    ----------
    table : pandas.DataFrame
        The scaling table (see the module docstring).
    outputs : mapping of str to sequence of path-like
        Figure name -> its files, one per format, told apart by their suffix
        (``{"data_scaling": ["fig/data_scaling.png", "fig/data_scaling.pdf"]}``); folders are
        created when missing. Names not among the figures above are an error.
    metric : str
        Column drawn on the y axes (one panel per figure).
    metrics : sequence of str, optional
        Several columns, one panel (row) each; overrides ``metric``.
    fits, bootstrap : pandas.DataFrame, optional
        Scaling fits and their replicate lines (`fmriscaling.scaling.scaling_fits`): lines,
        legends and confidence bands of the size and data figures come from them.

    Returns
    -------
    dict of str to list of pathlib.Path
        Figure name -> files written; skipped figures are absent.
    """
    kinds = _fit_kinds(table, "scaling_report")
    bands = dict(fits=fits, bootstrap=bootstrap)
    trs = fits is not None and "n_train_trs" in table.columns
    figures = {
        "model_size_scaling": ("full", "text", [(plot_model_size_scaling, dict(model_kind="text", **bands))]),
        "speech_model_size_scaling": ("full", "speech", [(plot_model_size_scaling, dict(model_kind="speech", **bands))]),
        "data_scaling": ("subsample", None, [(plot_data_scaling, bands)]
                         + ([(plot_data_scaling, dict(x="n_train_trs", **bands))] if trs else [])),
        "layer_profiles": ("full", None, [(plot_layer_profiles, {})]),
    }  # fmt: skip
    unknown = sorted(set(outputs) - set(figures))
    if unknown:
        raise ValueError(f"scaling_report: unknown figures {unknown}; known: {sorted(figures)}")
    metrics = [metric] if metrics is None else list(metrics)
    has_kind = "model_kind" in table.columns
    written: dict[str, list[Path]] = {}
    for name, paths in outputs.items():
        kind, model_kind, panels = figures[name]
        if not (kinds == kind).any():
            logger.warning("scaling_report: no rows with kind == %r; skipping %s", kind, name)
            continue
        if model_kind == "speech" and not (has_kind and (table["model_kind"] == "speech").any()):
            logger.warning("scaling_report: no speech models; skipping %s", name)
            continue
        width, height = _FIGURE_SIZE
        # a bare Figure: no pyplot state or GUI backend involved
        fig = Figure(figsize=(width * len(panels), height * len(metrics)), layout="constrained")
        axes = np.atleast_2d(fig.subplots(len(metrics), len(panels), squeeze=False))
        with saving(fig, paths) as files:
            for row, panel_metric in enumerate(metrics):
                for col, (plot, options) in enumerate(panels):
                    options = (
                        options
                        if has_kind
                        else {k: v for k, v in options.items() if k != "model_kind"}
                    )
                    plot(table, metric=panel_metric, ax=axes[row, col], **options)
        written[name] = files
    return written
