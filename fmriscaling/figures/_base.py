"""What every figure shares: metric labels, family colours, axis formatters, and saving.

Every ``plot_*`` function of `fmriscaling.figures` draws into a given Matplotlib Axes
(``ax=None`` uses the current one) and returns it; only `save_figure`, `saving` and the
``draw_*`` / report functions save and close figures, atomically (no half-written file is left
under a figure's name).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from .._utils import DataError, atomic_path
from ..encoding.width import NATIVE, width_label, widths_of

if TYPE_CHECKING:
    from matplotlib.axes import Axes

logger = logging.getLogger(__name__)

__all__ = ["METRIC_LABELS", "METRIC_UNITS", "save_figure", "save_figure_files", "saving"]

METRIC_LABELS = {
    "mean_r": "mean test correlation r",
    "mean_cc_norm": "mean test CC_norm",
    "mean_cv_score": "mean CV score",
    "fraction_significant": "fraction of voxels significant (FDR)",
}
#: Short unit used in slope texts ("+0.012 r per 10x").
METRIC_UNITS = {
    "mean_r": "r",
    "mean_cc_norm": "CC_norm",
    "mean_cv_score": "CV score",
    "fraction_significant": "fraction",
}

# one sequential colormap per family, in the hue order of seaborn's "colorblind" palette
_SEQUENTIAL_CMAPS = ("Blues", "Oranges", "Greens", "Reds", "Purples", "YlOrBr", "RdPu", "Greys")

_FIGURE_SIZE = (6.4, 4.8)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def get_ax(ax: Axes | None) -> Axes:
    return plt.gca() if ax is None else ax


def _check_columns(table: pd.DataFrame, columns: Sequence[str], where: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataError(
            f"{where}: the table lacks column(s) {missing}; "
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


def format_params(value: float, _pos: int | None = None) -> str:
    """Tick label of a parameter count: 125M, 1.3B, 30B."""
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def _format_minor(value: float, _pos: int | None = None) -> str:
    """Minor tick label: only at 2, 3 and 5 times a power of ten, so labels never collide."""
    leading = value / 10 ** np.floor(np.log10(value))
    return format_params(value) if np.round(leading) in (2, 3, 5) else ""


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
    # native unless a width is named (a table without width: native fits only)
    width = width_label(labels.pop("width", None))
    match = (fits["axis"] == axis) & (fits["metric"] == metric) & (widths_of(fits) == width)
    for name, value in labels.items():
        match &= fits[name].astype(str) == str(value) if name != "layer" else fits[name] == value
    rows = fits[match]
    if len(rows) != 1:
        named = ", ".join(f"{k} {v}" for k, v in labels.items())
        named += "" if width == NATIVE else f" at width {width}"
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
    # one width's lines (the native fits', or those of a fixed width d)
    match = np.array(widths_of(bootstrap) == width_label(fit.get("width")), dtype=bool)
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
    ax.xaxis.set_major_formatter(FuncFormatter(format_params))
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
