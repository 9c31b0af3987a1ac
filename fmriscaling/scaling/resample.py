"""Step 1 of the scaling fits: which fits are resampled, and their means over resampled voxels.

`bootstrap_means` draws, per subject, ``n_replicates`` resamples of the voxels (with
replacement) once, from a stream seeded by (seed, subject), and computes every fit's mean test r
and mean CC_norm on each of them; `bootstrap_means_file` is the rule-level driver that writes
that tidy table. `fmriscaling.scaling.fits` resamples subjects on top and refits the lines.
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
from ..encoding.noise_ceiling import load_noise_ceiling, normalized_correlation
from ..encoding.tables import best_layers

logger = logging.getLogger(__name__)

__all__ = [
    "KEY_COLUMNS",
    "METRICS",
    "bootstrap_means",
    "bootstrap_means_file",
    "entry_key",
    "fits_to_resample",
    "resampled_means",
    "row_key",
]

#: Metrics fitted: mean test correlation and mean noise-normalised correlation.
METRICS = ("mean_r", "mean_cc_norm")

#: Columns that identify one fit of the encoding table.
KEY_COLUMNS = ("subject", "model", "layer", "full_train", "n_train_stories", "seed")


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


def subject_stream(seed: int, subject: str) -> np.random.Generator:
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
        rng = subject_stream(seed, str(subject))
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
    from ..encoding.tables import write_table

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
