"""What a voxelwise fit reads: story lists, the layer's features and the responses as designs.

Shared by `fmriscaling.encoding.fit.fit_encoding` (the layer sweep) and
`fmriscaling.encoding.oof.fit_stack_member` (the members of a stack) through `prepare_fit`, so
that a stack member sees exactly the training and test data, folds and alphas of its ridge fit.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .._utils import DataError
from .design import build_design

logger = logging.getLogger(__name__)

__all__ = [
    "CV_KINDS",
    "FeatureDesign",
    "FitDesign",
    "PreparedFit",
    "alpha_grid",
    "check_story_lists",
    "feature_design",
    "opened_prepared",
    "prepare_fit",
]

CV_KINDS = ("stories", "bootstrap")


@dataclass
class FitDesign:
    """Delayed features and responses of the training stories and of the test story.

    Attributes
    ----------
    X_train : float32 array of shape (n_train_trs, n_features * n_delays)
    Y_train : float32 array of shape (n_train_trs, n_voxels)
    story_lengths : list of int
        TRs of each training story in ``X_train``, in order.
    X_test : float32 array of shape (n_test_trs, n_features * n_delays)
    Y_test : float32 array of shape (n_test_trs, n_voxels)
    """

    X_train: np.ndarray
    Y_train: np.ndarray
    story_lengths: list[int]
    X_test: np.ndarray
    Y_test: np.ndarray


@dataclass
class PreparedFit:
    """Everything a ridge fit needs before it runs: designs, CV folds and the alpha grid.

    Attributes
    ----------
    design : FitDesign
    folds : list of (train_idx, val_idx)
        From `fmriscaling.encoding.folds.cv_folds`.
    alphas : float64 array of shape (n_alphas,)
    projection : dict or None
        What `fmriscaling.encoding.width.project_design` recorded of a fixed-width fit's
        projection (None: native features).
    """

    design: FitDesign
    folds: list
    alphas: np.ndarray
    projection: dict | None = None


def prepare_fit(
    feature_file: str | os.PathLike,
    response_files: Mapping[str, str | os.PathLike] | str | os.PathLike,
    train_stories: Sequence[str],
    test_story: str,
    *,
    delays: Sequence[int],
    alphas: Sequence[float],
    cv: str,
    n_folds: int,
    bootstrap: Mapping[str, int] | None,
    seed: int,
    test_extra_trim: int,
    extra_trim_train: Mapping[str, int] | None,
    projection: Mapping[str, int | str] | None = None,
) -> PreparedFit:
    """Check the story lists, read and build the designs, the CV folds and the alpha grid.

    Features come from ``feature_file`` (`fmriscaling.features.io.read_layer`), responses from one
    file per story (`fmriscaling.responses.read_responses`) or from a subject's prepared-responses
    file (a single path: `opened_prepared`, already trimmed and z-scored the same way); TR counts
    are checked per story, then `build_design` trims, z-scores and delays within each story
    (the features only, with prepared responses). The folds come from
    `fmriscaling.encoding.folds.cv_folds`. Parameters are those of
    `fmriscaling.encoding.fit.fit_encoding` of the same names; ``projection`` (``dim``,
    ``method``, ``seed``) projects the z-scored features to ``dim`` columns before the delays,
    fitted on the training stories only (`fmriscaling.encoding.width`).

    Returns
    -------
    prepared : PreparedFit

    Raises
    ------
    DataError
        An unusable story split (`check_story_lists`), a missing or malformed file, a TR-count
        mismatch, non-finite values, a bad alpha grid.
    """
    from ..features.io import read_layer
    from ..responses import check_tr_count, read_responses
    from .folds import cv_folds

    train_stories, test_story = [str(s) for s in train_stories], str(test_story)
    if isinstance(response_files, str | os.PathLike):  # a prepared-responses file
        check_story_lists(train_stories, test_story, None, cv)
        features = feature_design(
            feature_file,
            train_stories,
            test_story,
            delays=delays,
            test_extra_trim=test_extra_trim,
            extra_trim_train=extra_trim_train,
            projection=projection,
        )
        record = features.projection
        with opened_prepared(response_files, features, feature_file) as prepared:
            Y_train = prepared.columns(train_stories).read(slice(None))
            Y_test = prepared.read(test_story)
        X_train, lengths, X_test = features.X_train, features.story_lengths, features.X_test
    else:
        check_story_lists(train_stories, test_story, response_files, cv)
        layers: dict[str, np.ndarray] = {}
        responses: dict[str, np.ndarray] = {}
        for story in [*train_stories, test_story]:
            layers[story] = read_layer(feature_file, story)
            responses[story] = read_responses(response_files[story], story=story)
            check_tr_count(
                story,
                layers[story].shape[0],
                responses[story].shape[0],
                feature_file=feature_file,
                response_file=response_files[story],
            )
        trims = _trims(train_stories, test_story, test_extra_trim, extra_trim_train)
        # with a projection: z-scored, undelayed features first (delays after the projection)
        own = (0,) if projection is not None else delays
        X_train, Y_train, lengths = build_design(
            layers, responses, train_stories, delays=own, extra_trim=trims
        )
        X_test, Y_test, _ = build_design(
            layers, responses, [test_story], delays=own, extra_trim=trims
        )
        del layers, responses
        X_train, X_test, record = _projected(
            X_train, lengths, X_test, delays, projection, feature_file
        )
    folds = cv_folds(lengths, cv=cv, n_folds=n_folds, bootstrap=bootstrap, seed=seed)
    design = FitDesign(X_train, Y_train, list(lengths), X_test, Y_test)
    return PreparedFit(design, folds, alpha_grid(alphas), record)


def _projected(
    Z_train: np.ndarray,
    lengths: Sequence[int],
    Z_test: np.ndarray,
    delays: Sequence[int],
    projection: Mapping[str, int | str] | None,
    feature_file: str | os.PathLike,
) -> tuple[np.ndarray, np.ndarray, dict | None]:
    """The delayed designs of z-scored features ``Z_*`` projected to a fixed width, the
    projection fitted on the training rows only; unchanged designs without a projection."""
    if projection is None:
        return Z_train, Z_test, None
    from .width import delay_stories, project_design, projection_spec

    P_train, P_test, record = project_design(
        Z_train, Z_test, **projection_spec(projection), what=str(feature_file)
    )
    X_train = delay_stories(P_train, lengths, delays)
    X_test = delay_stories(P_test, [P_test.shape[0]], delays)
    return X_train, X_test, record


def _trims(
    train_stories: Sequence[str],
    test_story: str,
    test_extra_trim: int,
    extra_trim_train: Mapping[str, int] | None,
) -> dict[str, int]:
    """TRs dropped at the start of every story of a fit (test story last)."""
    train = dict(extra_trim_train or {})
    return {**{s: int(train.get(s, 0)) for s in train_stories}, test_story: int(test_extra_trim)}


@dataclass
class FeatureDesign:
    """The delayed features of a fit, without responses (these come prepared).

    Attributes
    ----------
    X_train : float32 array of shape (n_train_trs, n_features * n_delays)
    story_lengths : list of int
    X_test : float32 array of shape (n_test_trs, n_features * n_delays)
    trims : dict story -> int
        TRs dropped at the start of each story (what the prepared responses must have dropped).
    n_trs : dict story -> int
        TRs of each story's features before trimming (what the raw responses must have).
    projection : dict or None
        The fixed-width projection's record (`fmriscaling.encoding.width.project_design`;
        None: native features).
    """

    X_train: np.ndarray
    story_lengths: list[int]
    X_test: np.ndarray
    trims: dict[str, int]
    n_trs: dict[str, int]
    projection: dict | None = None


def feature_design(
    feature_file: str | os.PathLike,
    train_stories: Sequence[str],
    test_story: str,
    *,
    delays: Sequence[int],
    test_extra_trim: int,
    extra_trim_train: Mapping[str, int] | None,
    projection: Mapping[str, int | str] | None = None,
) -> FeatureDesign:
    """Read the layer's features of every story and build the training and test designs.

    The design depends on the features and the stories only, so subjects that share a training
    set share it (`fmriscaling.encoding.fit.fit_encoding_subjects`). Only the training stories
    and the test story are read. With ``projection`` (``dim``, ``method``, ``seed``), the
    z-scored features are projected to ``dim`` columns before the delays, the projection fitted
    on the training stories' rows only and applied to the test story
    (`fmriscaling.encoding.width.project_design`).
    """
    from ..features.io import read_layer

    stories = [*train_stories, test_story]
    layers = {story: read_layer(feature_file, story) for story in stories}
    trims = _trims(train_stories, test_story, test_extra_trim, extra_trim_train)
    # with a projection: z-scored, undelayed features first (delays after the projection)
    own = (0,) if projection is not None else delays
    X_train, _, lengths = build_design(layers, None, train_stories, delays=own, extra_trim=trims)
    X_test, _, _ = build_design(layers, None, [test_story], delays=own, extra_trim=trims)
    n_trs = {story: layers[story].shape[0] for story in stories}
    del layers
    X_train, X_test, record = _projected(X_train, lengths, X_test, delays, projection, feature_file)
    return FeatureDesign(X_train, list(lengths), X_test, trims, n_trs, record)


@contextlib.contextmanager
def opened_prepared(
    prepared_file: str | os.PathLike,
    features: FeatureDesign,
    feature_file: str | os.PathLike,
) -> Iterator:
    """A subject's prepared responses, checked current and trimmed as ``features`` asks, with
    every story's raw TR count checked against its features (`check_tr_count`).

    Yields
    ------
    fmriscaling.encoding.prepared.PreparedResponses

    Raises
    ------
    fmriscaling.encoding.prepared.StaleResponsesError
        The file is incomplete, damaged, stale or trimmed otherwise (see `open_prepared`).
    DataError
        A story's raw responses and features have different TR counts.
    """
    from ..responses import check_tr_count
    from .prepared import open_prepared

    with open_prepared(prepared_file, extra_trim=features.trims) as prepared:
        for story, n_trs in features.n_trs.items():
            check_tr_count(
                story,
                n_trs,
                prepared.n_trs_raw(story),
                feature_file=feature_file,
                response_file=prepared.source(story),
            )
        yield prepared


def alpha_grid(alphas: Sequence[float]) -> np.ndarray:
    """The ridge penalties as a float64 grid; a `DataError` unless 1-D, non-empty and positive."""
    alphas = np.asarray(alphas, dtype=np.float64)
    if alphas.ndim != 1 or alphas.size == 0 or not np.all(alphas > 0):
        raise DataError(f"alphas {alphas!r}: expected a non-empty 1-D grid of positive values.")
    return alphas


def check_story_lists(
    train_stories: list[str],
    test_story: str,
    response_files: Mapping[str, str | os.PathLike] | None,
    cv: str,
) -> None:
    """Fail clearly on an unusable training/test split or a missing response file
    (``response_files`` None: the responses come prepared, one file for every story).

    Raises
    ------
    DataError
        An unknown ``cv``, no or repeated training stories, the test story among them, a
        one-story training set with story folds, or a story without a response file.
    """
    if cv not in CV_KINDS:
        raise DataError(f"cv={cv!r}: expected one of {CV_KINDS}.")
    if not train_stories:
        raise DataError("no training stories given; expected at least one.")
    if len(set(train_stories)) != len(train_stories):
        raise DataError(f"training stories listed twice in {train_stories}; list each once.")
    if test_story in train_stories:
        raise DataError(
            f"test story {test_story!r} is also a training story; remove it from the "
            "training stories (it would leak into the fit)."
        )
    if cv == "stories" and len(train_stories) < 2:
        raise DataError(
            f"one training story ({train_stories[0]!r}) cannot be split into story folds; "
            "use at least 2 training stories or set encoding cv: bootstrap (contiguous "
            "held-out chunks within the story)."
        )
    if response_files is None:  # prepared responses: `open_prepared` checks their stories
        return
    missing = [s for s in [*train_stories, test_story] if s not in response_files]
    if missing:
        raise DataError(
            f"no response file for stories {missing}; expected one per training and test "
            "story. Check the subject's story list and the downloaded response files."
        )
