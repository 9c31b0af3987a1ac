"""Tidy tables of encoding results, best-layer choice and log-linear scaling fits."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._utils import DataError, atomic_path
from ..stats import fit_log_linear
from .noise_ceiling import load_noise_ceiling, normalized_correlation, summarize_normalized
from .width import NATIVE, native_rows, width_label

logger = logging.getLogger(__name__)

__all__ = [
    "ENCODING_COLUMNS",
    "SCALING_COLUMNS",
    "best_layers",
    "collect_encoding_scores",
    "encoding_table",
    "fit_log_linear",
    "scaling_summary",
    "to_markdown",
    "write_table",
]

#: Columns of the tidy encoding table, one row per fit, in this order.
ENCODING_COLUMNS: tuple[str, ...] = (
    "subject",
    "model",
    "family",
    "n_params",
    "layer",
    "n_layers",
    "relative_depth",
    "full_train",
    "width",
    "n_features",
    "projected",
    "explained_variance",
    "n_train_stories",
    "n_train_trs",
    "seed",
    "mean_r",
    "mean_cc_norm",
    "mean_cv_score",
    "n_voxels",
    "n_voxels_no_ceiling",
    "n_significant",
    "fraction_significant",
    "median_alpha",
    "fraction_alpha_min",
    "fraction_alpha_max",
    "solver",
    "solver_impl",
    "backend",
    "score_dtype",
    "fit_seconds",
    "peak_memory_mb",
)


#: Columns of the scaling fits (`scaling_summary`), in this order; the vision track's share them.
SCALING_COLUMNS: tuple[str, ...] = (
    "kind",
    "family",
    "model",
    "layer",
    "n_points",
    "slope_per_decade",
    "intercept",
    "r",
    "pct_per_decade",
)


def encoding_table(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per fit, with the columns of `ENCODING_COLUMNS` in order.

    Parameters
    ----------
    records : sequence of mapping
        One mapping per fit; keys missing from a record become NaN, ``relative_depth`` is
        computed as ``layer / n_layers`` when absent. Extra keys are kept after the standard
        columns.

    Returns
    -------
    table : DataFrame of shape (n_fits, >= len(ENCODING_COLUMNS))
        Sorted by subject, model, layer, width (native first, then d ascending),
        n_train_stories, seed.
    """
    df = pd.DataFrame.from_records([dict(r) for r in records])
    for col in ENCODING_COLUMNS:
        if col not in df.columns:
            df[col] = np.nan
    if len(df):
        depth = pd.to_numeric(df["layer"], errors="coerce") / pd.to_numeric(
            df["n_layers"], errors="coerce"
        )
        df["relative_depth"] = pd.to_numeric(df["relative_depth"], errors="coerce").fillna(depth)
    extra = [c for c in df.columns if c not in ENCODING_COLUMNS]
    df = df[[*ENCODING_COLUMNS, *extra]]
    if len(df):
        df["width"] = df["width"].map(width_label)
        # native first, then the fixed widths in ascending d
        order = df["width"].map(lambda w: -1 if w == NATIVE else int(w)).rename("_width_order")
        df = (
            df.assign(_width_order=order)
            .sort_values(
                ["subject", "model", "layer", "_width_order", "n_train_stories", "seed"],
                kind="stable",
            )
            .drop(columns="_width_order")
            .reset_index(drop=True)
        )
    return df


def collect_encoding_scores(
    entries: Sequence[Mapping[str, Any]],
    noise_ceiling_files: Mapping[str, str | os.PathLike],
    *,
    floor: float | None = None,
) -> pd.DataFrame:
    """Read the ``scores.npz`` of many fits into one tidy table.

    Parameters
    ----------
    entries : sequence of mapping
        One per fit, with ``subject``, ``model``, ``family``, ``n_params``, ``layer``,
        ``n_layers``, ``n_train`` (None for the full training set), ``seed``, ``width`` (d of a
        fixed-width fit; absent or None: native features) and ``path`` (the ``scores.npz``;
        its ``scores.json`` summary must lie beside it).
    noise_ceiling_files : mapping subject -> path-like
        Noise-ceiling npz per subject (`compute_noise_ceiling_file`). A subject without one
        gets NaN ``mean_cc_norm``.
    floor : float, optional
        Floor on ``cc_max`` when normalising.

    Returns
    -------
    table : DataFrame
        See `encoding_table`. ``mean_r`` is the mean test r over all voxels, ``mean_cc_norm``
        the mean of ``r / CC_max`` over voxels that have a ceiling, ``n_voxels_no_ceiling``
        counts the others (excluded from that mean), ``peak_memory_mb`` is in MB (10^6 bytes).
        ``width`` is ``native`` or the fixed width d (a string), ``n_features`` the layer's
        columns the ridge saw before the delays, ``projected`` whether a fixed-width fit's
        layer was projected (False for native fits and for a layer narrower than d, fitted
        native) and ``explained_variance`` the fraction of the training variance its PCA kept.

    Raises
    ------
    DataError
        A scores file or its summary is missing or malformed, holds non-finite test r, or
        covers a different number of voxels than the subject's noise ceiling.
    """
    ceilings: dict[str, Any] = {}
    records = []
    for entry in entries:
        path = Path(entry["path"])
        test_r, mean_cv = _read_scores(path)
        summary = _read_summary(path)
        subject = entry["subject"]
        if subject not in ceilings:
            nc_path = noise_ceiling_files.get(subject)
            ceilings[subject] = None if nc_path is None else load_noise_ceiling(nc_path)
        nc = ceilings[subject]
        if nc is None:
            mean_cc_norm, n_no_ceiling = float("nan"), np.nan
        else:
            if nc.cc_max.shape != test_r.shape:
                raise DataError(
                    f"{path}: {test_r.size} voxels, but the noise ceiling of {subject} "
                    f"({noise_ceiling_files[subject]}) has {nc.cc_max.size}. Both must use "
                    "the same subject and cortical mask; rerun the out-of-date one."
                )
            cc_norm = normalized_correlation(test_r, nc.cc_max, floor=floor)
            mean_cc_norm, _, n_no_ceiling = summarize_normalized(cc_norm, nc.valid)
        n_train = entry.get("n_train")
        projection = summary.get("projection") or {}
        n_delays = len(summary.get("delays") or [None])
        records.append(
            {
                "subject": subject,
                "model": entry["model"],
                "family": entry.get("family"),
                "n_params": entry.get("n_params"),
                "layer": int(entry["layer"]),
                "n_layers": entry.get("n_layers"),
                "full_train": n_train is None,
                "width": width_label(entry.get("width")),
                "n_features": (
                    int(summary["n_features"]) // n_delays if "n_features" in summary else np.nan
                ),
                "projected": bool(projection.get("projected", False)),
                "explained_variance": projection.get("explained_variance_ratio") or np.nan,
                "model_kind": entry.get("kind"),
                "n_train_stories": int(summary["n_train_stories"]),
                "n_train_trs": int(summary["n_train_trs"]),
                "seed": entry.get("seed", 0),
                "mean_r": float(test_r.astype(np.float64).mean()),
                "mean_cc_norm": mean_cc_norm,
                "mean_cv_score": mean_cv,
                "n_voxels": int(test_r.size),
                "n_voxels_no_ceiling": n_no_ceiling,
                # the block permutation test (NaN: the fit ran without one)
                "n_significant": summary.get("n_significant", np.nan),
                "fraction_significant": summary.get("fraction_significant", np.nan),
                "median_alpha": float(summary.get("median_alpha", np.nan)),
                # among voxels with a positive CV score: at the ends of encoding.alphas
                "fraction_alpha_min": summary.get("fraction_alpha_min", np.nan),
                "fraction_alpha_max": summary.get("fraction_alpha_max", np.nan),
                "solver": summary.get("solver"),
                "solver_impl": summary.get("solver_impl"),
                "backend": summary.get("backend"),
                "score_dtype": summary.get("score_dtype"),
                "fit_seconds": float(summary.get("fit_seconds", np.nan)),
                "peak_memory_mb": float(summary.get("peak_memory_bytes", np.nan)) / 1e6,
            }
        )
    table = encoding_table(records)
    logger.info("collected %d encoding fits", len(table))
    return table


def best_layers(table: pd.DataFrame, *, by: Sequence[str] = ("subject", "model")) -> pd.DataFrame:
    """Per group, the row of the layer with the best mean cross-validation score.

    The choice uses ``mean_cv_score`` (training data only), never the test correlation, so
    the reported test r of the chosen layer is not selected on the test story.

    Parameters
    ----------
    table : DataFrame
        From `collect_encoding_scores`; filter it first to one training set per group
        (e.g. ``table[table.full_train]``).
    by : sequence of str, default ("subject", "model")
        Grouping columns; each (group, layer) must occur once.

    Returns
    -------
    best : DataFrame
        One row per group, the table's columns.

    Raises
    ------
    DataError
        A layer occurs more than once within a group, or a CV score is missing.
    """
    by = list(by)
    if table.empty:
        return table.copy()
    dup = table.duplicated([*by, "layer"], keep=False)
    if dup.any():
        raise DataError(
            f"best_layers: {int(dup.sum())} rows share {[*by, 'layer']} (several training "
            "sets, seeds or widths per layer); filter the table to one fit per layer, e.g. "
            "native_rows(table[table.full_train]), or pass a finer `by` (with width)."
        )
    if table["mean_cv_score"].isna().any():
        raise DataError(
            "best_layers: some rows have no mean_cv_score; the best layer is chosen on "
            "cross-validation, never on test r. Refit those layers."
        )
    idx = table.groupby(by, sort=True)["mean_cv_score"].idxmax()
    return table.loc[idx.to_numpy()].reset_index(drop=True)


def scaling_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Log-linear scaling fits of mean test r.

    - ``kind="params"``, one row per family: best layer (by CV) per (subject, model) among
      full-training-set fits, averaged over subjects, then ``mean_r`` vs
      ``log10(n_params)`` across the family's models (families with >= 2 sizes).
    - ``kind="data"``, one row per (model, layer) fitted with >= 2 training-set sizes:
      ``mean_r`` averaged over subjects and seeds at each ``n_train_stories``, then vs
      ``log10(n_train_stories)``.

    Parameters
    ----------
    table : DataFrame
        From `collect_encoding_scores`.

    Returns
    -------
    summary : DataFrame
        Columns kind, family, model, layer, n_points, slope_per_decade, intercept, r,
        pct_per_decade (slope as a percentage of the fitted value at the smallest x).
    """
    columns = list(SCALING_COLUMNS)
    rows: list[dict[str, Any]] = []
    table = native_rows(table) if len(table) else table  # the fixed widths: `scaling_fits`
    full = table[table["full_train"].astype(bool)] if len(table) else table
    if len(full):
        best = best_layers(full)
        per_model = (
            best.groupby(["family", "model"], sort=True)
            .agg(n_params=("n_params", "first"), mean_r=("mean_r", "mean"))
            .reset_index()
        )
        for family, group in per_model.groupby("family", sort=True):
            group = group.dropna(subset=["n_params"])
            if group["n_params"].nunique() < 2:
                continue
            rows.append(_fit_row("params", group["n_params"], group["mean_r"], family=family))
    if len(table):
        per_size = (
            table.groupby(["family", "model", "layer", "n_train_stories"], sort=True)["mean_r"]
            .mean()
            .reset_index()
        )
        for (family, model, layer), group in per_size.groupby(
            ["family", "model", "layer"], sort=True
        ):
            if group["n_train_stories"].nunique() < 2:
                continue
            rows.append(
                _fit_row(
                    "data",
                    group["n_train_stories"],
                    group["mean_r"],
                    family=family,
                    model=model,
                    layer=int(layer),
                )
            )
    return pd.DataFrame(rows, columns=columns)


def _fit_row(kind: str, x: pd.Series, y: pd.Series, **labels: Any) -> dict[str, Any]:
    x = x.to_numpy(dtype=np.float64)
    slope, intercept, r = fit_log_linear(x, y.to_numpy(dtype=np.float64))
    base = slope * math.log10(x.min()) + intercept
    return {
        "kind": kind,
        "family": labels.get("family"),
        "model": labels.get("model"),
        "layer": labels.get("layer"),
        "n_points": int(x.size),
        "slope_per_decade": slope,
        "intercept": intercept,
        "r": r,
        "pct_per_decade": 100.0 * slope / base if base != 0 else float("nan"),
    }


def to_markdown(df: pd.DataFrame, *, float_format: str = "{:.4g}") -> str:
    """A GitHub-flavoured markdown table of ``df`` (no ``tabulate`` needed).

    Parameters
    ----------
    df : DataFrame
    float_format : str, default "{:.4g}"
        Format of float cells; NaN and None are written as empty cells.

    Returns
    -------
    markdown : str
        Header, separator (numbers right-aligned) and one line per row.
    """

    def cell(value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        if isinstance(value, float | np.floating):
            return float_format.format(float(value))
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = [str(c) for c in df.columns]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) for c in df.columns]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if n else ":---" for n in numeric) + "|",
    ]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def write_table(df: pd.DataFrame, path_csv: str | os.PathLike) -> tuple[Path, Path | None]:
    """Write ``df`` as CSV and as a markdown copy beside it (``.md``), both atomically.

    A ``.csv.gz`` path (a per-voxel or per-replicate table, too long to read as markdown) is
    written gzip-compressed (reproducibly: no timestamp in the header) and without markdown.

    Parameters
    ----------
    df : DataFrame
    path_csv : path-like
        Destination of the CSV; the markdown goes to the same name with suffix ``.md``.

    Returns
    -------
    path_csv : Path
    path_md : Path or None
        None for a ``.csv.gz``.
    """
    path_csv = Path(path_csv)
    if path_csv.name.endswith(".csv.gz"):
        with atomic_path(path_csv, suffix=".csv.gz") as tmp:
            df.to_csv(tmp, index=False, compression={"method": "gzip", "mtime": 0})
        return path_csv, None
    path_md = path_csv.with_suffix(".md")
    with atomic_path(path_csv) as tmp:
        df.to_csv(tmp, index=False)
    with atomic_path(path_md) as tmp:
        tmp.write_text(to_markdown(df))
    return path_csv, path_md


def _read_scores(path: Path) -> tuple[np.ndarray, float]:
    if not path.is_file():
        raise DataError(f"scores file {path} does not exist; run the fit_ridge rule for it.")
    with np.load(path) as data:
        missing = {"test_r", "cv_score"} - set(data.files)
        if missing:
            raise DataError(
                f"{path} lacks {sorted(missing)}; expected a scores.npz written by "
                "fit_encoding. Delete it and rerun the fit."
            )
        test_r = data["test_r"].astype(np.float64)
        cv_score = data["cv_score"].astype(np.float64)
    for name, values in (("test_r", test_r), ("cv_score", cv_score)):
        if not np.all(np.isfinite(values)):
            raise DataError(
                f"{path}: {int((~np.isfinite(values)).sum())} non-finite {name} values; "
                "expected finite scores (they are never averaged in). Refit."
            )
    return test_r, float(cv_score.mean())


def _read_summary(path: Path) -> dict[str, Any]:
    json_path = path.with_suffix(".json")
    if not json_path.is_file():
        raise DataError(
            f"{json_path} (summary of {path}) does not exist; expected it beside the scores "
            "written by fit_encoding. Rerun the fit."
        )
    summary = json.loads(json_path.read_text())
    for key in ("n_train_stories", "n_train_trs"):
        if key not in summary:
            raise DataError(f"{json_path} lacks {key!r}; rerun the fit that wrote it.")
    return summary
