"""Story-count grids and reproducible training-story draws."""

from __future__ import annotations

import numpy as np
import pytest

from fmriscaling import ConfigError, DataError
from fmriscaling.encoding.subsample import draw_stories, story_count_grid

STORIES = [f"story{i:02d}" for i in range(30)]


def test_draw_is_reproducible_and_order_independent():
    a = draw_stories(STORIES, 7, seed=3)
    b = draw_stories(STORIES[::-1], 7, seed=3)
    c = draw_stories(list(np.random.default_rng(1).permutation(STORIES)), 7, seed=3)
    assert a == b == c
    assert len(a) == 7 and len(set(a)) == 7 and set(a) <= set(STORIES)
    assert a == sorted(a)
    assert draw_stories(STORIES, 7, seed=4) != a


def test_draw_all_and_too_many():
    assert draw_stories(STORIES[::-1], "all", seed=0) == sorted(STORIES)
    assert draw_stories(STORIES, None, seed=0) == sorted(STORIES)
    assert draw_stories(STORIES, 30, seed=5) == sorted(STORIES)
    with pytest.raises(DataError, match="cannot draw 31 training stories: 30 are available"):
        draw_stories(STORIES, 31, seed=0)
    with pytest.raises(DataError, match="listed twice"):
        draw_stories(["a", "a", "b"], 1, seed=0)


def test_grid_log_spaced():
    counts = story_count_grid(84, {"num": 6})
    assert counts[0] == 2 and counts[-1] == 84
    assert counts == sorted(set(counts))
    ratios = np.diff(np.log(counts))
    # log-spaced: equal steps in log up to integer rounding
    np.testing.assert_allclose(ratios, np.log(84 / 2) / 5, atol=0.15)
    assert story_count_grid(84, {"num": 4, "min": 10}) == [10, 20, 41, 84]


def test_grid_dedupes_small_ranges_and_explicit_lists():
    assert story_count_grid(4, {"num": 10}) == [2, 3, 4]
    assert story_count_grid(27, [5, 1, 10, 40, "all", 10]) == [1, 5, 10, 27]
    with pytest.raises(ConfigError, match="'min' >= 2"):
        story_count_grid(27, {"num": 3, "min": 1})
    with pytest.raises(ConfigError, match="expected an integer or 'all'"):
        story_count_grid(27, ["many"])
    with pytest.raises(ConfigError, match="leaves no count"):
        story_count_grid(5, [10, 20])
