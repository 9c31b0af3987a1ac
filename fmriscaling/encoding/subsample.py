"""Training-set subsets for the data-size scaling sweep (METHODS, "Data-size scaling")."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._utils import ConfigError, DataError

logger = logging.getLogger(__name__)

__all__ = ["draw_stories", "story_count_grid"]


def story_count_grid(n_available: int, grid: Sequence[int | str] | Mapping[str, Any]) -> list[int]:
    """Numbers of training stories to fit with, ascending and unique.

    Parameters
    ----------
    n_available : int
        Training stories available for the subject.
    grid : sequence of int or "all", or mapping
        Explicit counts (``"all"`` means ``n_available``; counts above ``n_available`` are
        dropped with a warning, so one grid serves subjects with different story counts), or
        ``{"num": k, "min": m}``: ``k`` log-spaced counts from ``m`` (default 2, at least 2 so
        that story-fold cross-validation is possible) to ``n_available``, rounded to integers
        and deduplicated (so there may be fewer than ``k``).

    Returns
    -------
    counts : list of int
        Ascending, unique, each in ``[1, n_available]``.

    Raises
    ------
    ConfigError
        Malformed grid, or no count left.
    """
    n_available = int(n_available)
    if n_available < 1:
        raise DataError(f"no training stories available (n_available={n_available}).")
    if isinstance(grid, Mapping):
        unknown = set(grid) - {"num", "min"}
        if unknown or "num" not in grid:
            raise ConfigError(
                f"story-count grid {dict(grid)!r}: expected {{'num': k}} with an optional "
                "'min' (>= 2), or a list of counts."
            )
        num = int(grid["num"])
        lo = int(grid.get("min", 2))
        if num < 1 or lo < 2:
            raise ConfigError(
                f"story-count grid {dict(grid)!r}: 'num' must be >= 1 and 'min' >= 2 "
                "(a one-story fit needs an explicit count and cv: bootstrap)."
            )
        if lo > n_available:
            raise ConfigError(
                f"story-count grid {dict(grid)!r}: min {lo} exceeds the {n_available} "
                "available training stories."
            )
        if num == 1:
            counts = [n_available]
        else:
            counts = np.rint(np.geomspace(lo, n_available, num)).astype(int).tolist()
    else:
        counts = []
        for value in grid:
            if isinstance(value, str):
                if value != "all":
                    raise ConfigError(
                        f"story-count grid entry {value!r}: expected an integer or 'all'."
                    )
                counts.append(n_available)
                continue
            if int(value) != value or int(value) < 1:
                raise ConfigError(f"story-count grid entry {value!r}: expected a positive integer.")
            counts.append(int(value))
        too_many = sorted(c for c in counts if c > n_available)
        if too_many:
            logger.warning(
                "story-count grid: dropping %s (only %d training stories available)",
                too_many,
                n_available,
            )
        counts = [c for c in counts if c <= n_available]
    counts = sorted(set(counts))
    if not counts:
        raise ConfigError(
            f"story-count grid {grid!r} leaves no count for {n_available} available stories."
        )
    return counts


def draw_stories(train_stories: Sequence[str], n: int | str | None, seed: int) -> list[str]:
    """A reproducible random subset of the training stories.

    The draw is made with ``numpy.random.default_rng(seed)`` over a *sorted* copy of
    ``train_stories``, so it depends only on the set of stories, the count and the seed, not
    on the order the stories were listed in.

    Parameters
    ----------
    train_stories : sequence of str
        Available training stories (unique).
    n : int, "all" or None
        How many to draw; ``"all"``/``None`` (or ``len(train_stories)``) returns all stories.
    seed : int
        Seed of the draw (one per repeat of a count).

    Returns
    -------
    stories : list of str
        Sorted subset of ``n`` stories.

    Raises
    ------
    DataError
        ``n`` exceeds the stories available, is < 1, or the stories are not unique.
    """
    pool = sorted(train_stories)
    if len(set(pool)) != len(pool):
        dupes = sorted({s for s in pool if pool.count(s) > 1})
        raise DataError(f"training stories listed twice: {dupes}; list each story once.")
    if n is None or n == "all":
        return pool
    if isinstance(n, str) or int(n) != n:
        raise DataError(f"number of stories {n!r}: expected an integer or 'all'.")
    n = int(n)
    if n < 1 or n > len(pool):
        raise DataError(
            f"cannot draw {n} training stories: {len(pool)} are available. Expected "
            f"1 <= n <= {len(pool)}; lower the story-count grid."
        )
    if n == len(pool):
        return pool
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(pool), size=n, replace=False)
    return [pool[i] for i in sorted(idx)]
