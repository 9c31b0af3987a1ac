"""Design matrices for voxelwise encoding: z-scoring, FIR delays and per-story assembly.

Order of operations per story (METHODS, "Downsampling, trimming, delays"), in `build_design`:

1. check that the feature and response TR counts agree;
2. drop the extra rows at the start (``extra_trim``, e.g. 40 TRs of the test story);
3. z-score every feature column and every voxel *within the story*, on the kept rows only;
4. apply the FIR delays *within the story* (zero-padded, so no row of one story ever feeds
   a delayed copy in the next story, and the trimmed rows never re-enter through a delay);
5. concatenate the stories.

Trimming before the delays matches the companion code (it delays each already-trimmed story):
the first ``max(delays)`` rows of a trimmed story see zeros, not the dropped TRs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .._utils import DataError

logger = logging.getLogger(__name__)

__all__ = ["FIRDelayer", "build_design", "delay_matrix", "zscore"]


def zscore(X: np.ndarray, axis: int = 0, *, name: str | None = None) -> np.ndarray:
    """Z-score ``X`` along ``axis``; constant columns become zeros, never NaN.

    The standard deviation is the population one (``ddof=0``), as in the companion code.

    Parameters
    ----------
    X : array of shape (n_trs, n_columns)
        Data to standardise (any shape; statistics are taken along ``axis``).
    axis : int, default 0
        Axis along which mean and standard deviation are computed (time).
    name : str, optional
        What ``X`` is (e.g. ``"features of story 'souls'"``), used in the log line that counts
        constant columns.

    Returns
    -------
    Z : array of the shape of ``X``, float32 for float32 input, float64 otherwise
        ``(X - mean) / std`` where ``std > 0`` and ``0`` where a column is constant.

    Raises
    ------
    DataError
        If ``X`` contains NaN or infinite values.
    """
    X = np.asarray(X)
    dtype = np.float32 if X.dtype == np.float32 else np.float64
    if not np.all(np.isfinite(X)):
        raise DataError(
            f"cannot z-score {name or 'an array'}: {int(np.size(X) - np.isfinite(X).sum())} "
            "non-finite values (NaN or inf). Expected finite values; regenerate the input or "
            "mask the bad columns before fitting."
        )
    # statistics in float64: float32 sums over ~10^4 TRs lose digits
    X64 = X.astype(np.float64, copy=False)
    mean = X64.mean(axis=axis, keepdims=True)
    std = X64.std(axis=axis, keepdims=True)
    constant = std <= np.finfo(np.float64).tiny
    n_constant = int(constant.sum())
    if n_constant:
        logger.info(
            "z-scoring %s: %d constant column(s) set to zero", name or "an array", n_constant
        )
    safe_std = np.where(constant, 1.0, std)
    Z = np.where(constant, 0.0, (X64 - mean) / safe_std)
    return Z.astype(dtype, copy=False)


def delay_matrix(X: np.ndarray, delays: Sequence[int]) -> np.ndarray:
    """Zero-padded, shifted copies of ``X`` concatenated column-block-wise.

    Block ``k`` holds ``X`` shifted *down* by ``delays[k]`` rows: row ``t`` of the block is
    ``X[t - delays[k]]`` (zero where that index is outside ``X``), so a response at TR ``t``
    sees the stimulus at ``t - d``. A delay of 0 copies ``X``; a negative delay shifts up.

    Parameters
    ----------
    X : array of shape (n_trs, n_features)
    delays : sequence of int

    Returns
    -------
    X_delayed : array of shape (n_trs, n_features * len(delays)), dtype of ``X``
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_trs, n_features), got shape {X.shape}")
    n_trs, n_features = X.shape
    out = np.zeros((n_trs, n_features * len(delays)), dtype=X.dtype)
    for k, delay in enumerate(delays):
        delay = int(delay)
        block = out[:, k * n_features : (k + 1) * n_features]
        if delay >= 0:
            if delay < n_trs:
                block[delay:] = X[: n_trs - delay]
        elif -delay < n_trs:
            block[: n_trs + delay] = X[-delay:]
    return out


class FIRDelayer(TransformerMixin, BaseEstimator):
    """Finite-impulse-response delays as a scikit-learn transformer.

    Stateless: `fit` only records the input width. Apply it to one story at a time (or use
    `build_design`), otherwise the first rows of a story see the end of the previous one.

    Parameters
    ----------
    delays : tuple of int, default (1, 2, 3, 4)
        Delays in TRs. Block ``k`` of the output is the input shifted down by ``delays[k]``
        rows, zero-padded. 0 is allowed; negative delays shift up.

    Attributes
    ----------
    n_features_in_ : int
        Number of input columns seen in `fit`.

    Examples
    --------
    >>> import numpy as np
    >>> FIRDelayer(delays=(1, 2)).fit_transform(np.arange(3.0)[:, None])
    array([[0., 0.],
           [0., 0.],
           [1., 0.]])
    """

    def __init__(self, delays: tuple[int, ...] = (1, 2, 3, 4)):
        self.delays = delays

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> FIRDelayer:
        """Record the number of input columns.

        Parameters
        ----------
        X : array of shape (n_trs, n_features)
        y : ignored

        Returns
        -------
        self : FIRDelayer
        """
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (n_trs, n_features), got shape {X.shape}")
        if len(tuple(self.delays)) == 0:
            raise ValueError("delays must contain at least one delay")
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Delay ``X``.

        Parameters
        ----------
        X : array of shape (n_trs, n_features)

        Returns
        -------
        X_delayed : array of shape (n_trs, n_features * len(delays))
        """
        check_is_fitted(self, "n_features_in_")
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has shape {X.shape}; expected (n_trs, {self.n_features_in_}) as seen in fit"
            )
        return delay_matrix(X, tuple(self.delays))

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Names ``"<feature>_delay<d>"`` of the output columns, block by block."""
        check_is_fitted(self, "n_features_in_")
        if input_features is None:
            input_features = [f"x{i}" for i in range(self.n_features_in_)]
        return np.asarray(
            [f"{name}_delay{int(d)}" for d in self.delays for name in input_features],
            dtype=object,
        )


def build_design(
    features: Mapping[str, np.ndarray],
    responses: Mapping[str, np.ndarray] | None,
    stories: Sequence[str],
    *,
    delays: Sequence[int] = (1, 2, 3, 4),
    extra_trim: Mapping[str, int] | None = None,
    zscore_features: bool = True,
    zscore_responses: bool = True,
) -> tuple[np.ndarray, np.ndarray | None, list[int]]:
    """Stack the delayed features and the responses of several stories.

    Per story: check TR counts, drop ``extra_trim[story]`` rows at the start, z-score
    features and responses within the story, delay the features within the story, then
    concatenate in the order of ``stories``. Delays never cross a story boundary.

    Parameters
    ----------
    features : mapping story -> array of shape (n_trs, n_features)
    responses : mapping story -> array of shape (n_trs, n_voxels), or None
        None builds the features only (the responses come prepared, already trimmed and
        z-scored the same way: `fmriscaling.encoding.prepared`).
    stories : sequence of str
        Stories to use, in this order.
    delays : sequence of int, default (1, 2, 3, 4)
        FIR delays in TRs (see `FIRDelayer`).
    extra_trim : mapping story -> int, optional
        Rows dropped at the start of a story before z-scoring and delaying (e.g.
        ``{"wheretheressmoke": 40}``); stories not in it are not trimmed.
    zscore_features, zscore_responses : bool, default True
        Z-score within each story (after trimming).

    Returns
    -------
    X : float32 array of shape (sum_trs, n_features * len(delays))
    Y : float32 array of shape (sum_trs, n_voxels), or None without ``responses``
    story_lengths : list of int
        Rows contributed by each story, in order (after trimming).

    Raises
    ------
    DataError
        A story is missing, TR counts disagree, widths differ between stories, a trim leaves
        no rows, or a value is not finite.
    """
    stories = list(stories)
    if not stories:
        raise DataError("build_design got no stories; expected at least one story name.")
    extra_trim = dict(extra_trim or {})
    unknown = sorted(set(extra_trim) - set(stories))
    if unknown:
        logger.debug("extra_trim names stories not in this design: %s", unknown)
    delays = tuple(int(d) for d in delays)
    delayer = None
    X_parts: list[np.ndarray] = []
    Y_parts: list[np.ndarray] = []
    story_lengths: list[int] = []
    n_features = n_voxels = None
    tables = [("features", features)] + (
        [("responses", responses)] if responses is not None else []
    )
    for story in stories:
        for kind, table in tables:
            if story not in table:
                raise DataError(
                    f"story {story!r} has no {kind} (have {len(table)} stories). Expected "
                    f"every requested story in both features and responses; check the story "
                    "lists in the config against the files."
                )
        x = np.asarray(features[story])
        # without responses, a zero-width stand-in keeps one code path for the checks
        y = (
            np.asarray(responses[story])
            if responses is not None
            else np.zeros((x.shape[0], 0), np.float32)
        )
        if x.ndim != 2 or y.ndim != 2:
            raise DataError(
                f"story {story!r}: features {x.shape} and responses {y.shape} must both be "
                "2-D (n_trs, n_columns)."
            )
        if x.shape[0] != y.shape[0]:
            raise DataError(
                f"story {story!r}: features have {x.shape[0]} TRs but responses have "
                f"{y.shape[0]} TRs. They must agree (features are trimmed to the response "
                "length: first 10 and last 5 of the n - 5 simulated TRs); regenerate the "
                "features of this story or check respdict.json."
            )
        if n_features is None:
            n_features, n_voxels = x.shape[1], y.shape[1]
            delayer = FIRDelayer(delays=delays).fit(np.zeros((1, n_features), np.float32))
        elif x.shape[1] != n_features or y.shape[1] != n_voxels:
            raise DataError(
                f"story {story!r}: {x.shape[1]} features and {y.shape[1]} voxels, but the "
                f"first story has {n_features} features and {n_voxels} voxels. Features must "
                "come from one layer and responses from one subject."
            )
        trim = int(extra_trim.get(story, 0))
        if trim < 0 or trim >= x.shape[0]:
            raise DataError(
                f"story {story!r}: extra_trim={trim} but the story has {x.shape[0]} TRs; "
                "expected 0 <= extra_trim < n_trs. Lower encoding extra_trim."
            )
        x = x[trim:]
        y = y[trim:]
        x = (
            zscore(x, name=f"features of story {story!r}")
            if zscore_features
            else _finite(x, f"features of story {story!r}")
        )
        y = (
            zscore(y, name=f"responses of story {story!r}")
            if zscore_responses
            else _finite(y, f"responses of story {story!r}")
        )
        X_parts.append(delayer.transform(x.astype(np.float32, copy=False)))
        Y_parts.append(y.astype(np.float32, copy=False))
        story_lengths.append(x.shape[0])
    X = np.concatenate(X_parts, axis=0)
    Y = np.concatenate(Y_parts, axis=0) if responses is not None else None
    logger.info(
        "design: %d stories, %d TRs, %d features x %d delays, %d voxels",
        len(stories),
        X.shape[0],
        n_features,
        len(delays),
        n_voxels,
    )
    return X, Y, story_lengths


def _finite(a: np.ndarray, name: str) -> np.ndarray:
    if not np.all(np.isfinite(a)):
        raise DataError(
            f"{name}: {int(a.size - np.isfinite(a).sum())} non-finite values (NaN or inf); "
            "expected finite values. Regenerate the input."
        )
    return a
