"""Step 1 of the scaling fits: which fits are resampled, and their means over resampled voxels.

`replicate_means` draws, per subject (and ROI), ``n_replicates`` resamples of the voxels (with
replacement) once, from a stream seeded by (seed, subject), and computes every fit's mean test r
and mean noise-normalised score on each of them: the bootstrap table of both tracks.
`bootstrap_means` reads the language track's fits into it and `bootstrap_means_file` is its
rule-level driver; the vision track's tables call `replicate_means` on their vertices.
`fmriscaling.scaling.fits` resamples subjects on top and refits the lines.
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
from ..encoding.width import native_rows, width_groups, width_label, with_width
from .schema import CORTEX, LANGUAGE, ROI_COLUMNS, Track

logger = logging.getLogger(__name__)

__all__ = [
    "KEY_COLUMNS",
    "METRICS",
    "bootstrap_means",
    "bootstrap_means_file",
    "entry_key",
    "fits_to_resample",
    "replicate_means",
    "resampled_means",
    "row_key",
]

#: Metrics fitted by the language track: mean test correlation and mean CC_norm.
METRICS = LANGUAGE.metrics

#: Columns that identify one fit of the language track's encoding table.
KEY_COLUMNS = LANGUAGE.key_columns


def row_key(row: Mapping[str, Any]) -> tuple:
    """Key of an encoding-table row: (subject, model, layer, width, n_train or None, seed)."""
    return LANGUAGE.key(row)


def entry_key(entry: Mapping[str, Any]) -> tuple:
    """Key of a fit entry of the workflow (``n_train`` None for the full training set,
    ``width`` absent or None for native features)."""
    n = entry.get("n_train")
    return (
        str(entry["subject"]),
        str(entry["model"]),
        int(entry["layer"]),
        width_label(entry.get("width")),
        None if n is None else int(n),
        int(entry.get("seed", -1)),
    )


def _full(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["full_train"].astype(bool)]


def _swept(table: pd.DataFrame, columns: Sequence[str] = ("model", "layer")) -> pd.DataFrame:
    """(model, layer) pairs (or ``columns``) that have data-size subsets, in the table's order."""
    return table.loc[~table["full_train"].astype(bool), list(columns)].drop_duplicates()


def fits_to_resample(encoding: pd.DataFrame) -> pd.DataFrame:
    """The encoding-table rows the scaling fits use.

    Parameters
    ----------
    encoding : DataFrame
        The tidy encoding table (one row per fit).

    Returns
    -------
    DataFrame
        The best layer (by CV) of each (subject, model) on the full training set, at its
        native width and at each fixed width (a layer narrower than d left out), and every fit
        (full and subsets) of each subsampled (model, layer) at its native width; rows unique.
    """
    check_encoding(encoding)
    encoding = with_width(encoding)
    best = [best_layers(rows) for _, rows in width_groups(_full(encoding))]
    native = native_rows(encoding)
    sweeps = native.merge(_swept(native), on=["model", "layer"])
    rows = pd.concat([*best, sweeps], ignore_index=True)
    return rows.drop_duplicates(list(KEY_COLUMNS)).reset_index(drop=True)


def check_encoding(encoding: pd.DataFrame, track: Track = LANGUAGE, *, finite: bool = True) -> None:
    """Every model has a full-training-set fit for every subject (and, with ``finite``, a
    finite mean r there): what the scaling fits of a track need from its encoding table."""
    # the language track picks each model's layer by its CV score
    cv = ("mean_cv_score",) if track.layered else ()
    needed = (*track.key_columns, "family", "n_params", *track.metrics, *cv)
    # a table without width holds native fits only (`fmriscaling.encoding.width.widths_of`)
    missing_cols = [c for c in needed if c not in encoding and c != "width"]
    if missing_cols:
        raise DataError(f"the {track.name} encoding table lacks column(s) {missing_cols}")
    full = _full(encoding)
    subjects = sorted(encoding["subject"].unique())
    have = full.groupby("model")["subject"].unique()
    rule = "fit_encoding" if track.layered else "select_vision"
    for model in sorted(encoding["model"].unique()):
        lacking = sorted(set(subjects) - set(have.get(model, [])))
        if lacking:
            raise DataError(
                f"the {track.name} encoding table has no full-training-set fit of model "
                f"{model!r} for subject(s) {lacking}; run its fits ({rule}) and rebuild the table"
            )
    bad = full[full["mean_r"].isna()] if finite else full.iloc[:0]
    if len(bad):
        first = bad.iloc[0].to_dict()
        raise DataError(
            f"the {track.name} encoding table has no mean_r for {len(bad)} fit(s), e.g. "
            f"{track.describe(track.key(first))}; refit them"
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
    """Mean test r and CC_norm of each language fit on voxel resamples shared within a subject.

    Reads the fits' scores and the subjects' noise ceilings, then `replicate_means` (the
    vision track's tables call the same function on their vertices).

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
        The bootstrap table (`replicate_means`; one ROI, `CORTEX`).

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
        out.append(
            replicate_means(
                fits,
                test_r,
                cc_norm,
                track=LANGUAGE,
                n_replicates=n_replicates,
                seed=seed,
                chunk=chunk,
            )
        )
        logger.info(
            "%s: %d fits x %d voxel resamples of %d voxels",
            subject,
            len(fits),
            n_replicates,
            n_voxels,
        )
    if not out:
        raise DataError("bootstrap_means: no fits to resample")
    return pd.concat(out, ignore_index=True)


def replicate_means(
    fits: pd.DataFrame,
    test_r: np.ndarray,
    normalized: np.ndarray,
    *,
    track: Track,
    n_replicates: int,
    seed: int,
    rois: Mapping[tuple[str, str], np.ndarray] | None = None,
    chunk: int = 100,
) -> pd.DataFrame:
    """Step 1 of both tracks' scaling intervals: one subject's fits on shared resamples.

    Per ROI (and over all voxels, `CORTEX`), ``n_replicates`` resamples of the voxels (with
    replacement) are drawn once from a stream seeded by (seed, subject[/group/ROI]) and every
    fit's means are computed on each (`resampled_means`), so the fits of one replicate compare.

    Parameters
    ----------
    fits : DataFrame
        One subject's fits, with the columns of ``track.key_columns``, in the order of the rows
        of the arrays.
    test_r, normalized : arrays of shape (n_fits, n_voxels)
        Per voxel test r and the noise-normalised score (NaN where a voxel has no ceiling: the
        same voxels for every fit).
    track : Track
        Names of the key columns and the metrics.
    n_replicates, seed : int
    rois : mapping (group, roi) -> bool array of shape (n_voxels,), optional
        ROIs resampled within (an empty one is left out).
    chunk : int
        Replicates drawn at a time.

    Returns
    -------
    DataFrame
        The bootstrap table: ``track.key_columns``, `ROI_COLUMNS`, ``replicate`` and
        ``track.metrics``, one row per fit, ROI and replicate.
    """
    if n_replicates < 1:
        raise ValueError(f"n_replicates must be >= 1, got {n_replicates}")
    subjects = fits["subject"].unique()
    if len(subjects) != 1:
        raise ValueError(f"replicate_means takes one subject's fits, got {list(subjects)}")
    subject = str(subjects[0])
    if test_r.shape != normalized.shape or test_r.shape[0] != len(fits):
        raise ValueError(
            f"{subject}: {len(fits)} fits, test_r {test_r.shape}, scores {normalized.shape}"
        )
    fits = with_width(fits) if track.widths else fits
    frame = fits[list(track.key_columns)].reset_index(drop=True)
    out = []
    for roi, mask in {CORTEX: None, **(rois or {})}.items():
        if mask is not None and mask.shape != (test_r.shape[1],):
            raise DataError(
                f"{subject}: ROI {'/'.join(roi)} covers {mask.size} voxels, the fits "
                f"{test_r.shape[1]}"
            )
        r = test_r if mask is None else test_r[:, mask]
        s = normalized if mask is None else normalized[:, mask]
        if r.shape[1] == 0:
            continue  # an empty ROI has no means; its scaling fits are left out
        name = subject if roi == CORTEX else "/".join((subject, *roi))
        mean_r, mean_s = resampled_means(
            r, s, n_replicates, subject_stream(seed, name), chunk=chunk
        )
        long = frame.loc[frame.index.repeat(n_replicates)].reset_index(drop=True)
        long[ROI_COLUMNS[0]], long[ROI_COLUMNS[1]] = roi
        long["replicate"] = np.tile(np.arange(n_replicates), len(frame))
        long[track.metrics[0]] = mean_r.ravel()
        long[track.metrics[1]] = mean_s.ravel()
        out.append(long)
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
