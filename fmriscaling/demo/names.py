"""Names of the demo dataset's stories, without the generator.

The workflow needs the story list when it parses a demo config; importing it from here keeps
numpy, scipy, h5py and nibabel (which `fmriscaling.demo.synthetic` needs) out of that parse.
This module imports nothing beyond the standard library.
"""

from __future__ import annotations

__all__ = ["TRAIN_STORY_PREFIX", "synthetic_story_names"]

TRAIN_STORY_PREFIX = "synthstory"


def synthetic_story_names(n_train_stories: int) -> list[str]:
    """Names of the training stories `generate_dataset` writes: synthstory01, synthstory02, ...

    Parameters
    ----------
    n_train_stories : int
        Number of training stories.

    Returns
    -------
    names : list of str, length n_train_stories
    """
    return [f"{TRAIN_STORY_PREFIX}{i + 1:02d}" for i in range(n_train_stories)]
