"""Fixed-width features: every layer projected to the same dimension d before the delays.

AlKhamissi et al. 2025 (arXiv 2503.01830) report that model size stops predicting brain
alignment once the number of features is controlled. The control here (``features.fixed_dim``):
each layer's features, trimmed and z-scored within each story as for a native fit, are projected
to ``d`` columns, then delayed and fitted exactly as a native fit is, so that models of every
size enter the ridge with ``d x n_delays`` features. Two projections
(``features.fixed_dim_method``):

* ``pca``: scikit-learn's `~sklearn.decomposition.PCA` with ``d`` components, fitted on the rows
  of the fit's own training stories only; the test story is transformed with that fit. A fit on
  a subset of the stories sees nothing of the others.
* ``random``: scikit-learn's `~sklearn.random_projection.GaussianRandomProjection`, a matrix of
  shape (d, n_features) with entries drawn from N(0, 1/d) with seed ``features.fixed_dim_seed``,
  so that squared norms are kept in expectation (Johnson-Lindenstrauss). It reads no data but
  the width.

The projected columns are not standardised again: the projection keeps the geometry of the
z-scored features (PCA: their top-d subspace, ridge's penalty unchanged on it; random: a
norm-preserving sketch), so a fixed-width fit sees what a native fit would see of the layer, in
``d`` dimensions.

A layer narrower than ``d`` cannot be projected up to ``d`` dimensions: `project_design` keeps
its native features and says so (``projected: False``, a warning), the fit is recorded as such,
and the scaling tables leave it out of the width-``d`` curve (`fixed_width_rows`).

Labels: a fit's ``width`` is `NATIVE` (its native features) or ``d`` written as a string
("16"), so that the tables' ``width`` column reads back from CSV the same way.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .._utils import DataError
from .design import delay_matrix

logger = logging.getLogger(__name__)

__all__ = [
    "METHODS",
    "NATIVE",
    "FixedWidthProjection",
    "delay_stories",
    "fixed_width_rows",
    "fixed_widths",
    "native_rows",
    "project_design",
    "projection_spec",
    "width_groups",
    "width_label",
    "widths_of",
    "with_width",
]

#: the projections `features.fixed_dim_method` names
METHODS = ("pca", "random")
#: the ``width`` of a fit on a layer's own features
NATIVE = "native"


class FixedWidthProjection(TransformerMixin, BaseEstimator):
    """Project features to ``dim`` columns: PCA fitted on the rows `fit` sees, or a seeded
    Gaussian random projection.

    Parameters
    ----------
    dim : int, default 16
        Columns of the output (d).
    method : {"pca", "random"}, default "pca"
        ``pca``: `sklearn.decomposition.PCA` (``svd_solver="auto"``, ``random_state``);
        ``random``: `sklearn.random_projection.GaussianRandomProjection` (entries of
        N(0, 1/dim)).
    random_state : int, default 0
        Seed of the random projection (and of PCA's randomized solver where scikit-learn
        chooses it).

    Attributes
    ----------
    projector_ : PCA or GaussianRandomProjection
        The fitted scikit-learn transformer.
    n_features_in_ : int
        Columns seen in `fit`.
    explained_variance_ratio_ : float or None
        PCA: the fraction of the training rows' variance the ``dim`` components keep; None
        for the random projection.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(50, 8))
    >>> FixedWidthProjection(dim=3).fit(X).transform(X).shape
    (50, 3)
    """

    def __init__(self, dim: int = 16, method: str = "pca", random_state: int = 0):
        self.dim = dim
        self.method = method
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> FixedWidthProjection:
        """Fit the projection on the rows of ``X`` (the training stories' only).

        Parameters
        ----------
        X : array of shape (n_trs, n_features)
        y : ignored

        Returns
        -------
        self : FixedWidthProjection

        Raises
        ------
        ValueError
            An unknown method, ``dim < 1``, fewer features than ``dim`` (a narrower layer),
            or fewer rows than ``dim`` for PCA.
        """
        from sklearn.decomposition import PCA
        from sklearn.random_projection import GaussianRandomProjection

        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (n_trs, n_features), got shape {X.shape}")
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r}: expected one of {METHODS}")
        dim = int(self.dim)
        if dim < 1:
            raise ValueError(f"dim={self.dim!r}: expected an integer >= 1")
        n_rows, n_features = X.shape
        if n_features < dim:
            raise ValueError(
                f"{n_features} features cannot be projected to dim={dim}: the layer is narrower"
            )
        if self.method == "pca":
            if n_rows < dim:
                raise ValueError(f"PCA to dim={dim} needs at least {dim} rows, got {n_rows}")
            self.projector_ = PCA(n_components=dim, random_state=self.random_state).fit(X)
            self.explained_variance_ratio_ = float(self.projector_.explained_variance_ratio_.sum())
        else:
            self.projector_ = GaussianRandomProjection(
                n_components=dim, random_state=self.random_state
            ).fit(X)
            self.explained_variance_ratio_ = None
        self.n_features_in_ = n_features
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Project ``X``.

        Parameters
        ----------
        X : array of shape (n_trs, n_features)

        Returns
        -------
        X_projected : float64 array of shape (n_trs, dim)
        """
        check_is_fitted(self, "projector_")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has shape {X.shape}; expected (n_trs, {self.n_features_in_}) as seen in fit"
            )
        return np.asarray(self.projector_.transform(X), dtype=np.float64)


def project_design(
    X_train: np.ndarray,
    X_test: np.ndarray,
    *,
    dim: int,
    method: str = "pca",
    seed: int = 0,
    what: str | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Fit the projection on the training rows only and apply it to both designs.

    Parameters
    ----------
    X_train : array of shape (n_train_trs, n_features)
        The training stories' z-scored, undelayed features, concatenated.
    X_test : array of shape (n_test_trs, n_features)
        The test story's; transformed with the training rows' fit, never fitted on.
    dim, method, seed
        ``features.fixed_dim`` (one of its values), ``fixed_dim_method``,
        ``fixed_dim_seed`` (see `FixedWidthProjection`).
    what : str, optional
        The layer in messages (its feature file).

    Returns
    -------
    P_train : float32 array of shape (n_train_trs, dim)
    P_test : float32 array of shape (n_test_trs, dim)
        A layer narrower than ``dim`` comes back as it is (float32), with a warning.
    record : dict
        What the fit's summary and provenance keep: ``method``, ``dim``, ``seed``,
        ``projected`` (False: a narrower layer kept native), ``n_features_native``,
        ``n_fit_rows`` (the training rows the projection saw) and
        ``explained_variance_ratio`` (PCA; None otherwise).

    Raises
    ------
    DataError
        An unknown method, ``dim < 1``, or fewer training rows than ``dim`` for PCA.
    """
    X_train = np.asarray(X_train)
    X_test = np.asarray(X_test)
    if X_train.ndim != 2 or X_test.ndim != 2 or X_train.shape[1] != X_test.shape[1]:
        raise DataError(
            f"project_design: training design {X_train.shape} and test design {X_test.shape} "
            "must be 2-D with the same columns."
        )
    n_features = X_train.shape[1]
    record: dict[str, Any] = {
        "method": str(method),
        "dim": int(dim),
        "seed": int(seed),
        "projected": False,
        "n_features_native": int(n_features),
        "n_fit_rows": int(X_train.shape[0]),
        "explained_variance_ratio": None,
    }
    if n_features < int(dim) and method in METHODS and int(dim) >= 1:
        logger.warning(
            "%s: %d features, narrower than fixed_dim %d: kept native (projected: false); the "
            "scaling tables leave it out of the d = %d curve",
            what or "the layer",
            n_features,
            int(dim),
            int(dim),
        )
        return (
            X_train.astype(np.float32, copy=False),
            X_test.astype(np.float32, copy=False),
            record,
        )
    try:
        projection = FixedWidthProjection(dim=dim, method=method, random_state=seed).fit(X_train)
    except ValueError as err:
        raise DataError(
            f"{what or 'fixed-width projection'}: {err}. Check features.fixed_dim and "
            "features.fixed_dim_method."
        ) from None
    record.update(projected=True, explained_variance_ratio=projection.explained_variance_ratio_)
    logger.info(
        "%s: %d features projected to %d (%s, seed %d, fitted on %d training TRs%s)",
        what or "layer",
        n_features,
        int(dim),
        method,
        int(seed),
        X_train.shape[0],
        ""
        if record["explained_variance_ratio"] is None
        else f", {100 * record['explained_variance_ratio']:.1f} % of their variance kept",
    )
    P_train = projection.transform(X_train).astype(np.float32)
    P_test = projection.transform(X_test).astype(np.float32)
    return P_train, P_test, record


def delay_stories(X: np.ndarray, story_lengths: Sequence[int], delays: Sequence[int]) -> np.ndarray:
    """FIR delays of a concatenation of stories, within each story (zero-padded).

    Parameters
    ----------
    X : array of shape (sum(story_lengths), n_features)
    story_lengths : sequence of int
        Rows of each story, in order.
    delays : sequence of int

    Returns
    -------
    X_delayed : array of shape (sum(story_lengths), n_features * len(delays)), dtype of ``X``
        What `fmriscaling.encoding.design.build_design` gives for the same stories: no row of
        one story feeds a delayed copy in the next.
    """
    X = np.asarray(X)
    if sum(story_lengths) != X.shape[0]:
        raise ValueError(f"story lengths sum to {sum(story_lengths)}, X has {X.shape[0]} rows")
    bounds = np.cumsum([0, *story_lengths])
    parts = [delay_matrix(X[a:b], delays) for a, b in itertools.pairwise(bounds)]
    return np.concatenate(parts, axis=0)


# ------------------------------------------------------------------------ tables' width labels


def width_label(value: Any) -> str:
    """A fit's ``width`` as the tables write it: `NATIVE`, or ``d`` as a string ("16").

    >>> width_label(16), width_label("16.0"), width_label(None), width_label("native")
    ('16', '16', 'native', 'native')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NATIVE
    text = str(value).strip()
    if text in ("", NATIVE, "nan"):
        return NATIVE
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


def widths_of(table: pd.DataFrame) -> pd.Series:
    """Each row's `width_label` (`NATIVE` for every row of a table without ``width``)."""
    if "width" not in table.columns:
        return pd.Series(NATIVE, index=table.index, name="width")
    return table["width"].map(width_label).rename("width")


def native_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of fits on native features (all rows of a table without ``width``)."""
    return table[(widths_of(table) == NATIVE).to_numpy()]


def fixed_width_rows(table: pd.DataFrame, width: str, *, what: str = "") -> pd.DataFrame:
    """The rows of the width-``width`` fits that were projected, the others left out with a
    warning (a layer narrower than ``width`` was fitted on its native features)."""
    rows = table[(widths_of(table) == width_label(width)).to_numpy()]
    if "projected" not in rows.columns:
        return rows
    projected = rows["projected"].map(_truthy).to_numpy(dtype=bool)
    narrower = rows.loc[~projected]
    if len(narrower):
        pairs = zip(narrower["model"], narrower["layer"], strict=True)
        layers = sorted({f"{model} layer {int(layer)}" for model, layer in pairs})
        logger.warning(
            "%swidth %s: %s narrower than %s features (fitted native), left out of the d = %s "
            "curve",
            f"{what}: " if what else "",
            width,
            ", ".join(layers),
            width,
            width,
        )
    return rows.loc[projected]


def with_width(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with its ``width`` column as `width_label` writes it (`NATIVE` for every row
    of a table without one, e.g. one written before the fixed widths)."""
    return table.assign(width=widths_of(table).to_numpy())


def fixed_widths(table: pd.DataFrame) -> list[str]:
    """The fixed widths d of a table's fits, ascending (no `NATIVE`)."""
    return sorted({w for w in widths_of(table) if w != NATIVE}, key=int)


def width_groups(table: pd.DataFrame, *, what: str = "") -> list[tuple[str, pd.DataFrame]]:
    """``(width, rows)``: the native fits, then the projected fits of each fixed width d in
    ascending order (`fixed_width_rows`: a layer narrower than d is left out, with a warning)."""
    groups = [(NATIVE, native_rows(table))]
    groups += [(w, fixed_width_rows(table, w, what=what)) for w in fixed_widths(table)]
    return [(w, rows) for w, rows in groups if len(rows)]


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return bool(value) and not (isinstance(value, float) and math.isnan(value))


def projection_spec(spec: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``projection`` settings as `project_design` takes them (keys dim, method, seed)."""
    if spec is None:
        return None
    unknown = sorted(set(spec) - {"dim", "method", "seed"})
    if unknown or "dim" not in spec:
        raise DataError(
            f"projection settings {dict(spec)}: expected keys dim (required), method, seed"
        )
    return {"dim": int(spec["dim"]), "method": str(spec.get("method", "pca")),
            "seed": int(spec.get("seed", 0))}  # fmt: skip
