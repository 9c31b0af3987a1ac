"""Scaling figures: score against model size, against training-data size, and layer profiles.

Every ``plot_*`` function draws into a given Matplotlib Axes (``ax=None`` uses the current one)
and returns it; only :func:`scaling_report` saves and closes figures.

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

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from ..encoding.tables import best_layers
from ..encoding.width import NATIVE, native_rows, width_groups
from ..outputs import SCALING_FIGURES
from ..stats import fit_log_linear
from ._base import (
    _FIGURE_SIZE,
    _SEQUENTIAL_CMAPS,
    _draw_band,
    _family_colors,
    _fit_kinds,
    _fit_label,
    _fit_of,
    _log_count_axis,
    _metric_label,
    _metric_unit,
    _of_model_kind,
    _params_per_model,
    _rows_of_kind,
    format_params,
    get_ax,
    saving,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

logger = logging.getLogger(__name__)

__all__ = ["plot_data_scaling", "plot_layer_profiles", "plot_model_size_scaling", "scaling_report"]


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

    With fixed-width fits in the table (``width`` = d, ``features.fixed_dim``), each family
    gets a second curve per width beside its native one: the same colour, dashed, hollow
    markers, labelled ``"OPT, d = 16: ..."``, its best layer chosen by CV among the width-d
    fits (a layer narrower than d left out, `fmriscaling.encoding.width.fixed_width_rows`).

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
        table agree; a family (and width) it lacks is an error.
    bootstrap : pandas.DataFrame, optional
        Its replicate lines: a shaded band of the fit's confidence interval.
    model_kind : str, optional
        Only models of this kind (``"text"``, ``"speech"``; the table's ``model_kind``).

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn into. Artists carry a ``gid``: ``"subjects:<family>"`` and
        ``"mean:<family>"`` for the point collections, ``"fit:<family>"`` for the fit line,
        ``"band:<family>"`` for the interval; a fixed width's end in ``":d<d>"``
        (``"fit:<family>:d16"``).
    """
    where = "plot_model_size_scaling"
    table = _of_model_kind(table, model_kind, where)
    full = _rows_of_kind(
        table,
        "full",
        ["subject", "model", "family", "n_params", "layer", "mean_cv_score", metric],
        where,
    )
    ax = get_ax(ax)
    n_params = _params_per_model(full)
    family_of = full.groupby("model")["family"].first()
    colors = _family_colors(family_of.to_numpy())
    for width, rows in width_groups(full, what=where):
        _size_curves(ax, rows, width, metric, colors, n_params, family_of, fits, bootstrap)

    _log_count_axis(ax)
    ax.set_xlabel("model parameters")
    ax.set_ylabel(f"{_metric_label(metric)} (best CV layer)")
    ax.legend(fontsize="small", frameon=False)
    return ax


def _size_curves(ax, full, width, metric, colors, n_params, family_of, fits, bootstrap) -> None:
    """One width's points and lines of `plot_model_size_scaling`, one per family."""
    where = "plot_model_size_scaling"
    native = width == NATIVE
    # a fixed width: dashed line, hollow markers, no per-subject points, gids ending in :d<d>
    tag = "" if native else f":d{width}"
    best = best_layers(full, by=("subject", "model"))
    per_model = best.groupby("model")[metric].mean().to_frame("value")
    per_model["n_params"] = n_params.reindex(per_model.index)
    per_model["family"] = family_of.reindex(per_model.index)

    for family in sorted(colors):
        color = colors[family]
        name = str(family) if native else f"{family}, d = {width}"
        if native:
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
        if means.empty:
            continue
        fittable = means.dropna(subset=["value"])
        label = name
        if fittable["n_params"].nunique() >= 2:
            slope, intercept, r = fit_log_linear(fittable["n_params"], fittable["value"])
            x_line = np.array([fittable["n_params"].min(), fittable["n_params"].max()], float)
            label = f"{name}: {slope:+.3f} {_metric_unit(metric)} per 10x (r={r:.2f})"
            if fits is not None:
                fit = _fit_of(fits, where, "params", metric, family=family, width=width)
                slope, intercept = fit["slope_per_decade"], fit["intercept"]
                label = _fit_label(name, fit, _metric_unit(metric), "")
                if bootstrap is not None:
                    _draw_band(ax, bootstrap, fit, x_line, color, f"band:{family}{tag}")
                    if not native:  # hatched, so the two bands of a family tell apart
                        band = next(
                            c for c in ax.collections if c.get_gid() == f"band:{family}{tag}"
                        )
                        band.set(facecolor="none", edgecolor=color, hatch="//", alpha=0.35)
            ax.plot(
                x_line,
                intercept + slope * np.log10(x_line),
                color=color,
                linewidth=1.5,
                linestyle="-" if native else "--",
                label="_nolegend_",
                gid=f"fit:{family}{tag}",
            )
        else:
            logger.info("%s: %s has < 2 model sizes; no fit drawn", where, name)
        ax.scatter(
            means["n_params"],
            means["value"],
            color=color if native else "none",
            s=45,
            edgecolors="black" if native else color,
            linewidths=0.5 if native else 1.5,
            zorder=3,
            label=label,
            gid=f"mean:{family}{tag}",
        )


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
        ``kind == "full"`` rows of the same (model, layer) on native features: the fit on all
        training stories is the largest size of the sweep (a subset of all stories is the same
        for every seed).
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
    table = native_rows(table)  # the sweeps are fitted on native features
    columns = ["subject", "model", "layer", "n_train_stories", metric] + (
        [x] if x != "n_train_stories" else []
    )
    sub = _rows_of_kind(table, "subsample", columns, where)
    if (_fit_kinds(table, where) == "full").any():
        full = _rows_of_kind(table, "full", columns, where)
        swept = sub[["model", "layer"]].drop_duplicates()
        sub = pd.concat([sub, full.merge(swept, on=["model", "layer"])], ignore_index=True)
    ax = get_ax(ax)
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
        The scaling table; only rows with ``kind == "full"`` on native features are used.
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
    table = native_rows(table)  # the layers' native features (fixed widths: the size figure)
    full = _rows_of_kind(
        table,
        "full",
        ["model", "family", "n_params", "layer", "relative_depth", "mean_cv_score", metric],
        where,
    )
    ax = get_ax(ax)
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
                label=f"{model} ({format_params(models[model])})",
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
        Several columns, one panel (row) each; overrides ``metric``. A metric the fits do not
        cover (``fraction_significant``: the fraction of voxels significant at the FDR level)
        is drawn without lines.
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
    assert set(figures) == set(SCALING_FIGURES)  # the names' one home: fmriscaling.outputs
    unknown = sorted(set(outputs) - set(figures))
    if unknown:
        raise ValueError(f"scaling_report: unknown figures {unknown}; known: {SCALING_FIGURES}")
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
                    if fits is not None and panel_metric not in set(fits["metric"]):
                        # a metric without scaling fits (the fraction of significant voxels):
                        # its points and their spread, no line
                        options = {k: v for k, v in options.items() if k not in bands}
                    plot(table, metric=panel_metric, ax=axes[row, col], **options)
        written[name] = files
    return written
