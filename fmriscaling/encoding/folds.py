"""Time-respecting CV folds for voxelwise ridge.

Neighbouring TRs are autocorrelated, so held-out TRs are whole stories or contiguous chunks,
never scattered TRs:

* `story_folds`: leave-stories-out, stories assigned to folds contiguously and balanced by TR
  count;
* `bootstrap_chunk_folds`: companion-style resamples that hold out random contiguous chunks
  (for one-story training sets, or to match the companion code), ``default_n_chunks`` of them
  by default;
* `cv_folds`: the folds an encoding fit uses, from its ``cv`` settings (the ridge fits and the
  members of a stack call it, so both hold out the same TRs);
* `_check_folds`: validation of the folds handed to `fit_ridge_cv`.

A fold is ``(train_idx, val_idx)``: integer index arrays into the TRs stacked in X and Y.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._utils import DataError

logger = logging.getLogger(__name__)

__all__ = ["Fold", "bootstrap_chunk_folds", "cv_folds", "default_n_chunks", "story_folds"]

# (train_idx, val_idx): integer index arrays into the stacked TRs
Fold = tuple[np.ndarray, np.ndarray]


def story_folds(story_lengths: Sequence[int], n_folds: int = 5) -> list[Fold]:
    """Leave-stories-out folds: whole stories held out, stories assigned to folds contiguously.

    Stories keep their order; the j-th fold boundary is the story boundary nearest to
    ``j * n_trs / n_folds`` (every fold keeps at least one story), which balances folds by TR count.

    Parameters
    ----------
    story_lengths : sequence of int, length n_stories
        Number of TRs of each training story, in the order they are stacked in X and Y.
    n_folds : int
        Number of folds; reduced to the number of stories when there are fewer.

    Returns
    -------
    folds : list of (train_idx, val_idx)
        Integer index arrays into the stacked TRs; every TR is in exactly one ``val_idx``.

    Raises
    ------
    DataError
        Fewer than 2 stories (use `bootstrap_chunk_folds`), or a non-positive length.
    """
    lengths = np.asarray(story_lengths, dtype=np.int64)
    if lengths.ndim != 1 or lengths.size < 2:
        raise DataError(
            f"story folds need at least 2 training stories, got {lengths.size}: leave-stories-out "
            "CV cannot hold out a story from a one-story training set. Use bootstrap CV "
            "(bootstrap_chunk_folds, config cv: bootstrap) or add training stories."
        )
    if np.any(lengths <= 0):
        raise DataError(f"story lengths must be positive TR counts, got {lengths.tolist()}.")
    if int(n_folds) < 2:
        raise DataError(f"n_folds must be at least 2, got {n_folds}.")
    n_folds = min(int(n_folds), lengths.size)

    ends = np.cumsum(lengths)
    n_stories, n_trs = lengths.size, int(ends[-1])
    # cuts[j] = index of the first story of fold j
    cuts = [0]
    for j in range(1, n_folds):
        lowest, highest = cuts[-1] + 1, n_stories - (n_folds - j)
        candidates = np.arange(lowest, highest + 1)
        target = j * n_trs / n_folds
        cuts.append(int(candidates[np.argmin(np.abs(ends[candidates - 1] - target))]))
    cuts.append(n_stories)
    starts = np.concatenate([[0], ends])
    all_idx = np.arange(n_trs)
    folds = []
    for first, stop in itertools.pairwise(cuts):
        is_val = np.zeros(n_trs, dtype=bool)
        is_val[starts[first] : starts[stop]] = True
        folds.append((all_idx[~is_val], all_idx[is_val]))
    return folds


def default_n_chunks(n_samples: int, chunk_len: int) -> int:
    """Chunks that hold out a fifth of ``n_samples`` TRs: ``ceil(n_samples / 5 / chunk_len)``.

    This is how the companion code sizes its bootstrap; tying the count to the training size keeps
    the held-out fraction near 20 % across a data-subsampling sweep.
    """
    return max(1, math.ceil(int(n_samples) / 5 / int(chunk_len)))


def bootstrap_chunk_folds(
    n_samples: int,
    *,
    n_boots: int,
    chunk_len: int = 40,
    n_chunks: int,
    random_state: int | np.random.Generator | None,
) -> list[Fold]:
    """Companion-style bootstrap folds: held-out = random contiguous chunks of TRs.

    As in the companion ``bootstrap_ridge``: the TRs are cut into consecutive chunks of
    ``chunk_len`` (a trailing partial chunk is never held out), and each resample holds out
    ``n_chunks`` chunks drawn without replacement; the rest is training data.

    Parameters
    ----------
    n_samples : int
        Number of training TRs.
    n_boots : int
        Number of resamples.
    chunk_len : int
        TRs per held-out chunk.
    n_chunks : int
        Chunks held out per resample.
    random_state : int, Generator or None
        Seed of the chunk draws.

    Returns
    -------
    folds : list of (train_idx, val_idx), length n_boots
    """
    n_samples, n_boots, chunk_len, n_chunks = map(int, (n_samples, n_boots, chunk_len, n_chunks))
    if n_boots < 1 or chunk_len < 1 or n_chunks < 1:
        raise DataError(
            f"bootstrap CV needs n_boots, chunk_len, n_chunks >= 1, got {n_boots}, "
            f"{chunk_len}, {n_chunks}."
        )
    n_available = n_samples // chunk_len
    if n_chunks >= n_available:
        raise DataError(
            f"bootstrap CV holds out {n_chunks} chunks of {chunk_len} TRs but {n_samples} TRs "
            f"make only {n_available} chunks; lower n_chunks or chunk_len so training data remain."
        )
    rng = np.random.default_rng(random_state)
    all_idx = np.arange(n_samples)
    folds = []
    for _ in range(n_boots):
        chunks = np.sort(rng.choice(n_available, size=n_chunks, replace=False))
        val = (chunks[:, None] * chunk_len + np.arange(chunk_len)[None, :]).ravel()
        is_val = np.zeros(n_samples, dtype=bool)
        is_val[val] = True
        folds.append((all_idx[~is_val], val))
    return folds


def cv_folds(
    story_lengths: Sequence[int],
    *,
    cv: str = "stories",
    n_folds: int = 5,
    bootstrap: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> list[Fold]:
    """The CV folds of an encoding fit over stories of ``story_lengths`` TRs.

    Parameters
    ----------
    story_lengths : sequence of int
        TRs of each training story, in the order they are stacked.
    cv : {"stories", "bootstrap"}, default "stories"
        `story_folds` with ``min(n_folds, n_stories)`` folds, or `bootstrap_chunk_folds`.
    n_folds : int, default 5
        Story folds.
    bootstrap : mapping, optional
        ``n_boots`` (default 15), ``chunk_len`` (default 40), ``n_chunks`` (default None:
        `default_n_chunks`, a fifth of the TRs), for ``cv="bootstrap"``.
    seed : int, default 0
        Seed of the bootstrap chunk draws.

    Returns
    -------
    folds : list of (train_idx, val_idx)
    """
    if cv == "stories":
        return story_folds(story_lengths, n_folds=min(int(n_folds), len(story_lengths)))
    if cv != "bootstrap":
        raise DataError(f"cv={cv!r}: expected 'stories' or 'bootstrap'.")
    boot = dict(bootstrap or {})
    n_samples = int(np.sum(story_lengths))
    chunk_len = int(boot.get("chunk_len", 40))
    n_chunks = boot.get("n_chunks")
    if n_chunks is None:
        n_chunks = default_n_chunks(n_samples, chunk_len)
    return bootstrap_chunk_folds(
        n_samples,
        n_boots=int(boot.get("n_boots", 15)),
        chunk_len=chunk_len,
        n_chunks=int(n_chunks),
        random_state=seed,
    )


def _check_folds(folds: Sequence[Fold], n_samples: int) -> list[Fold]:
    """Validate CV folds and cast their indices to flat int64 arrays.

    Parameters
    ----------
    folds : sequence of (train_idx, val_idx)
        Integer index arrays into the ``n_samples`` stacked TRs.
    n_samples : int
        Number of training TRs.

    Returns
    -------
    folds : list of (train_idx, val_idx)
        The same folds, each index array of shape (n_train,) / (n_val,), int64.

    Raises
    ------
    DataError
        No folds, an empty side, indices out of range, or training and validation TRs that
        overlap.
    """
    checked = []
    for i, (train, val) in enumerate(folds):
        train = np.asarray(train, dtype=np.int64).ravel()
        val = np.asarray(val, dtype=np.int64).ravel()
        if train.size == 0 or val.size == 0:
            raise DataError(f"fold {i} has an empty training or validation set.")
        for name, idx in (("train", train), ("val", val)):
            if idx.min() < 0 or idx.max() >= n_samples:
                raise DataError(f"fold {i} {name} indices fall outside 0..{n_samples - 1}.")
        if np.intersect1d(train, val).size:
            raise DataError(f"fold {i}: training and validation TRs overlap.")
        checked.append((train, val))
    if not checked:
        raise DataError("no CV folds given.")
    return checked
