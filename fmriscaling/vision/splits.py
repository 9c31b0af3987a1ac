"""Which images train and which test, training-set subsets and K-fold splits of the vision study.

The challenge withheld its test fMRI, so the test set is the last ``test_fraction`` of the first
``n_images`` training images (Matsuyama et al.: the first 8,779, the smallest subject's count,
last 10 % held out), unless test fMRI is given (`image_split`, `split_rows`). Training-set sizes
of the data-scaling sweep are seeded random subsets of the remaining images
(`fmriscaling.sweep.draw_subset`, as the language track's stories), always scored on the same
held-out images. Cross-validation folds are shuffled K-fold splits of
the training images (`image_folds`: images are independent trials, unlike story TRs). Features
and responses are z-scored with the training images' statistics (`standardize`).
"""

from __future__ import annotations

import logging
import math

import numpy as np

from .._utils import DataError
from ..encoding.folds import Fold

logger = logging.getLogger(__name__)

__all__ = ["TEST_SOURCES", "image_folds", "image_split", "split_rows", "standardize"]


TEST_SOURCES = ("held_out", "test_split")


def image_split(
    n_available: int,
    *,
    n_images: int | None = None,
    test_fraction: float = 0.1,
    n_train: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Training and held-out test rows of a subject's training split.

    Parameters
    ----------
    n_available : int
        Training images (fMRI rows) of the subject.
    n_images : int, optional
        Use only the first ``n_images`` (the paper: 8779, so that every subject has the same
        sizes); None = all.
    test_fraction : float, default 0.1
        The last ``n_images - floor(n_images * (1 - test_fraction))`` of them are the test
        set (8779 -> 7901 training, 878 test).
    n_train : int, optional
        Keep only the first ``n_train`` of the remaining images for training; None = all.

    Returns
    -------
    train, test : int arrays
        Row indices, ascending.

    Raises
    ------
    DataError
        When the subject has fewer images than asked for, or a side would be empty.
    """
    n_available = int(n_available)
    used = n_available if n_images is None else int(n_images)
    if used > n_available:
        raise DataError(
            f"vision.split.n_images is {used}, but the subject has {n_available} training "
            "images; lower it to the smallest subject's count"
        )
    if not 0 < float(test_fraction) < 1:
        raise DataError(f"vision.split.test_fraction must be in (0, 1), got {test_fraction}")
    n_pool = math.floor(used * (1.0 - float(test_fraction)) + 1e-9)
    if n_pool < 2 or n_pool >= used:
        raise DataError(
            f"splitting {used} images with test_fraction {test_fraction} leaves {n_pool} "
            f"training and {used - n_pool} test images; both need at least 1 (training 2)"
        )
    if n_train is not None:
        if int(n_train) > n_pool:
            raise DataError(
                f"vision.split.n_train is {n_train}, but only {n_pool} images remain for "
                "training after the held-out test set"
            )
        n_pool_used = int(n_train)
    else:
        n_pool_used = n_pool
    return np.arange(n_pool_used), np.arange(n_pool, used)


def split_rows(
    n_available: int,
    *,
    test_split: bool = False,
    n_images: int | None = None,
    test_fraction: float = 0.1,
    n_train: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Training rows of a subject's training split, and its held-out test rows.

    Parameters
    ----------
    n_available : int
        Training images (fMRI rows) of the subject.
    test_split : bool
        The test split (its own fMRI) is the test set: nothing is held out, and the training
        rows are the first ``n_train`` (default all) of the first ``n_images``.
    n_images, test_fraction, n_train
        See `image_split`.

    Returns
    -------
    train : int array
    test : int array, or None with ``test_split``
    """
    if not test_split:
        return image_split(
            n_available, n_images=n_images, test_fraction=test_fraction, n_train=n_train
        )
    used = int(n_available) if n_images is None else min(int(n_images), int(n_available))
    n = used if n_train is None else int(n_train)
    if n > used:
        raise DataError(f"vision.split.n_train is {n}, but {used} training images are used")
    return np.arange(n), None


def image_folds(n_images: int, n_folds: int = 8, seed: int = 0, *, min_val: int = 3) -> list[Fold]:
    """K-fold cross-validation over shuffled images (they are independent trials, not time).

    Parameters
    ----------
    n_images : int
        Training images.
    n_folds : int, default 8
        Folds (the paper's 8); fewer when the images cannot give each fold ``min_val``
        validation images (a correlation over 1-2 images is meaningless), but at least 2.
    seed : int
        Seed of the shuffle.
    min_val : int, default 3
        Fewest validation images per fold.

    Returns
    -------
    folds : list of (train_idx, val_idx)
        Every image is in exactly one ``val_idx``.
    """
    n_images = int(n_images)
    if n_images < 4:
        raise DataError(f"cross-validation needs at least 4 training images, got {n_images}")
    k = max(2, min(int(n_folds), n_images // int(min_val)))
    if k < int(n_folds):
        logger.info("%d training images: %d folds instead of %d", n_images, k, n_folds)
    order = np.random.default_rng(seed).permutation(n_images)
    folds = []
    for val in np.array_split(order, k):
        is_val = np.zeros(n_images, dtype=bool)
        is_val[val] = True
        folds.append((np.flatnonzero(~is_val), np.sort(val)))
    return folds


def standardize(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Z-score columns with the training rows' mean and sd (constant columns -> 0), float32."""
    train64 = np.asarray(train, dtype=np.float64)
    mean = train64.mean(axis=0)
    sd = train64.std(axis=0)
    scale = np.where(sd > 0, 1.0 / np.where(sd > 0, sd, 1.0), 0.0)
    z_train = ((train64 - mean) * scale).astype(np.float32)
    z_test = ((np.asarray(test, dtype=np.float64) - mean) * scale).astype(np.float32)
    return z_train, z_test
