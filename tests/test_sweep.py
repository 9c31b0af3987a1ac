"""The data-size sweep of both tracks: size grids and reproducible subset draws."""

from __future__ import annotations

import numpy as np
import pytest

from fmriscaling import ConfigError, DataError
from fmriscaling.sweep import draw_subset, size_grid, sweep_sizes

STORIES = [f"story{i:02d}" for i in range(30)]


def test_draw_is_reproducible_and_order_independent():
    a = draw_subset(STORIES, 7, seed=3)
    b = draw_subset(STORIES[::-1], 7, seed=3)
    c = draw_subset(list(np.random.default_rng(1).permutation(STORIES)), 7, seed=3)
    assert a == b == c
    assert len(a) == 7 and len(set(a)) == 7 and set(a) <= set(STORIES)
    assert a == sorted(a)
    assert draw_subset(STORIES, 7, seed=4) != a


def test_the_draw_is_the_seeded_choice_over_the_sorted_pool():
    """Both tracks' subsets are this draw: stories by name, images by row."""
    rows = list(range(100, 0, -1))
    expected = np.sort(np.random.default_rng(5).choice(100, size=12, replace=False)) + 1
    assert draw_subset(rows, 12, seed=5, unit="images") == expected.tolist()
    names = sorted(STORIES)
    idx = np.sort(np.random.default_rng(2).choice(30, size=4, replace=False))
    assert draw_subset(STORIES[::-1], 4, seed=2) == [names[i] for i in idx]


def test_draw_all_and_too_many():
    assert draw_subset(STORIES[::-1], "all", seed=0) == sorted(STORIES)
    assert draw_subset(STORIES, None, seed=0) == sorted(STORIES)
    assert draw_subset(STORIES, 30, seed=5) == sorted(STORIES)
    with pytest.raises(DataError, match="cannot draw 31 training stories: 30 are available"):
        draw_subset(STORIES, 31, seed=0)
    with pytest.raises(DataError, match="cannot draw 101 training images"):
        draw_subset(range(100), 101, seed=0, unit="images")
    with pytest.raises(DataError, match=r"listed twice: \['a'\]"):
        draw_subset(["a", "a", "b"], 1, seed=0)


def test_grid_log_spaced():
    counts = size_grid(84, {"num": 6})
    assert counts[0] == 2 and counts[-1] == 84
    assert counts == sorted(set(counts))
    ratios = np.diff(np.log(counts))
    # log-spaced: equal steps in log up to integer rounding
    np.testing.assert_allclose(ratios, np.log(84 / 2) / 5, atol=0.15)
    assert size_grid(84, {"num": 4, "min": 10}) == [10, 20, 41, 84]


def test_grid_dedupes_small_ranges_and_explicit_lists():
    assert size_grid(4, {"num": 10}) == [2, 3, 4]
    assert size_grid(27, [5, 1, 10, 40, "all", 10]) == [1, 5, 10, 27]
    with pytest.raises(ConfigError, match="'min' >= 2"):
        size_grid(27, {"num": 3, "min": 1})
    with pytest.raises(ConfigError, match="expected an integer or 'all'"):
        size_grid(27, ["many"])
    with pytest.raises(ConfigError, match=r"images-count grid .* leaves no count for 5 available"):
        size_grid(5, [10, 20], unit="images")


def test_the_sweep_is_the_grid_below_the_full_training_set():
    assert sweep_sizes(12, {"num": 4}) == [2, 4, 7]  # 12 is the full fit
    assert sweep_sizes(192, {"num": 4, "min": 12}, unit="images") == [12, 30, 76]
    assert sweep_sizes(12, [12, "all"]) == []
