"""The data-size sweep of both tracks: which training-set sizes, and which subset at each.

The language track sweeps training *stories* (METHODS, "Data-size scaling"), the vision track
training *images*; both take their sizes from one grid (`size_grid`), fit every size below the
full training set (`sweep_sizes`: the full fit is the sweep's top point) and draw one random
subset per (size, seed) with `draw_subset`. The bootstrap of the sweep and its scaling lines
are `fmriscaling.scaling`'s, also shared by both tracks.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from ._utils import ConfigError, DataError

logger = logging.getLogger(__name__)

__all__ = ["draw_subset", "size_grid", "sweep_sizes"]

T = TypeVar("T")


def size_grid(
    n_available: int,
    grid: Sequence[int | str] | Mapping[str, Any],
    *,
    unit: str = "stories",
) -> list[int]:
    """Training-set sizes to fit with, ascending and unique.

    Parameters
    ----------
    n_available : int
        Training items (stories, images) available.
    grid : sequence of int or "all", or mapping
        Explicit sizes (``"all"`` means ``n_available``; sizes above ``n_available`` are
        dropped with a warning, so one grid serves subjects with different amounts of data), or
        ``{"num": k, "min": m}``: ``k`` log-spaced sizes from ``m`` (default 2, at least 2 so
        that cross-validation is possible) to ``n_available``, rounded to integers and
        deduplicated (so there may be fewer than ``k``).
    unit : str
        What is counted, for the messages ("stories", "images").

    Returns
    -------
    sizes : list of int
        Ascending, unique, each in ``[1, n_available]``.

    Raises
    ------
    ConfigError
        Malformed grid, or no size left.
    """
    n_available = int(n_available)
    what = f"{unit}-count grid"
    if n_available < 1:
        raise DataError(f"no training {unit} available (n_available={n_available}).")
    if isinstance(grid, Mapping):
        unknown = set(grid) - {"num", "min"}
        if unknown or "num" not in grid:
            raise ConfigError(
                f"{what} {dict(grid)!r}: expected {{'num': k}} with an optional "
                "'min' (>= 2), or a list of counts."
            )
        num = int(grid["num"])
        lo = int(grid.get("min", 2))
        if num < 1 or lo < 2:
            raise ConfigError(
                f"{what} {dict(grid)!r}: 'num' must be >= 1 and 'min' >= 2 "
                "(a one-item fit needs an explicit count and cv: bootstrap)."
            )
        if lo > n_available:
            raise ConfigError(
                f"{what} {dict(grid)!r}: min {lo} exceeds the {n_available} "
                f"available training {unit}."
            )
        if num == 1:
            sizes = [n_available]
        else:
            sizes = np.rint(np.geomspace(lo, n_available, num)).astype(int).tolist()
    else:
        sizes = []
        for value in grid:
            if isinstance(value, str):
                if value != "all":
                    raise ConfigError(f"{what} entry {value!r}: expected an integer or 'all'.")
                sizes.append(n_available)
                continue
            if int(value) != value or int(value) < 1:
                raise ConfigError(f"{what} entry {value!r}: expected a positive integer.")
            sizes.append(int(value))
        too_many = sorted(c for c in sizes if c > n_available)
        if too_many:
            logger.warning(
                "%s: dropping %s (only %d training %s available)",
                what,
                too_many,
                n_available,
                unit,
            )
        sizes = [c for c in sizes if c <= n_available]
    sizes = sorted(set(sizes))
    if not sizes:
        raise ConfigError(f"{what} {grid!r} leaves no count for {n_available} available {unit}.")
    return sizes


def sweep_sizes(
    n_full: int, grid: Sequence[int | str] | Mapping[str, Any], *, unit: str = "stories"
) -> list[int]:
    """The sizes of the sweep's subset fits: the grid (`size_grid`) below ``n_full``. The full
    training set is the sweep's top point, fitted once (a subset of every item is the same for
    every seed)."""
    return [n for n in size_grid(n_full, grid, unit=unit) if n < int(n_full)]


def draw_subset(
    pool: Sequence[T], n: int | str | None, seed: int, *, unit: str = "stories"
) -> list[T]:
    """A reproducible random subset of the training items, sorted.

    The draw is ``numpy.random.default_rng(seed).choice(len(pool), n, replace=False)`` over a
    *sorted* copy of ``pool``, so it depends only on the set of items, the size and the seed,
    not on the order the items were listed in.

    Parameters
    ----------
    pool : sequence
        Available training items (story names, image rows), unique and sortable.
    n : int, "all" or None
        How many to draw; ``"all"`` / ``None`` (or ``len(pool)``) returns every item.
    seed : int
        Seed of the draw (one per repeat of a size).
    unit : str
        What is drawn, for the messages.

    Returns
    -------
    subset : list
        Sorted subset of ``n`` items.

    Raises
    ------
    DataError
        ``n`` exceeds the items available or is < 1, or the items are not unique.
    """
    items = sorted(pool)
    if len(set(items)) != len(items):
        dupes = sorted({a for a, b in itertools.pairwise(items) if a == b})
        raise DataError(f"training {unit} listed twice: {dupes[:5]}; list each once.")
    if n is None or n == "all":
        return items
    if isinstance(n, str) or int(n) != n:
        raise DataError(f"number of {unit} {n!r}: expected an integer or 'all'.")
    n = int(n)
    if n < 1 or n > len(items):
        raise DataError(
            f"cannot draw {n} training {unit}: {len(items)} are available. Expected "
            f"1 <= n <= {len(items)}; lower the {unit}-count grid."
        )
    if n == len(items):
        return items
    idx = np.random.default_rng(int(seed)).choice(len(items), size=n, replace=False)
    return [items[i] for i in sorted(idx)]
