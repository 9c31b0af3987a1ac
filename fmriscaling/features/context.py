"""The dynamic word context of the LM features, and the windows that compute it in few passes.

Context policy (METHODS, "LM features"), counted in **words**: word ``i``'s context is the
words ``[s(i), i]``; it grows word by word up to ``max_words`` words, and when adding word ``i``
would make it ``max_words + 1`` words long it resets to the last ``reset_words`` words ending
at word ``i``::

    s(0) = 0
    s(i) = s(i-1)                      if i - s(i-1) + 1 <= max_words
         = i - reset_words + 1         otherwise

A word's feature is the hidden state (every layer, embeddings = layer 0) at the word's last
sub-word token, from a forward pass over ``[BOS] + tokens(words[s(i)..i])``.

Window schedule. A causal model's state at a position does not depend on later tokens, so
one pass over the window ``words[s, s + max_words)`` gives, at once, the feature of every word
whose context starts at ``s``. The words sharing a start form consecutive runs:

* window 0 starts at 0 and serves words ``0 .. max_words - 1`` (contexts of 1..max_words words);
* window k+1 starts at ``start_{k+1} = stop_k - reset_words + 1`` (``stop_k`` = one past the
  last word window k served) and serves words ``stop_k .. start_{k+1} + max_words - 1``, i.e.
  ``max_words - reset_words + 1`` words, whose contexts are ``reset_words .. max_words`` long.

So a story costs about ``n_words / (max_words - reset_words + 1)`` passes of ``max_words``
words: ``max_words / (max_words - reset_words + 1)`` (≈ 1.99 for 512/256) times the story's
tokens, against one pass per word for `naive_lm_features`, the per-word reference.
"""

from __future__ import annotations

import numpy as np

__all__ = ["check_context", "context_starts", "window_schedule"]


def check_context(max_words: int, reset_words: int) -> None:
    if not 1 <= reset_words <= max_words:
        raise ValueError(
            f"need 1 <= reset_words <= max_words, got reset_words={reset_words}, "
            f"max_words={max_words}"
        )


def context_starts(n_words: int, max_words: int, reset_words: int) -> np.ndarray:
    """First word of each word's context under the dynamic policy, word by word.

    Returns
    -------
    starts : array of shape (n_words,), int
        Word ``i``'s context is ``words[starts[i] : i + 1]``.
    """
    check_context(max_words, reset_words)
    starts = np.zeros(n_words, dtype=np.int64)
    start = 0
    for i in range(n_words):
        if i - start + 1 > max_words:
            start = i - reset_words + 1
        starts[i] = start
    return starts


def window_schedule(n_words: int, max_words: int, reset_words: int) -> list[tuple[int, int, int]]:
    """Windows of the dynamic policy: one forward pass each.

    Returns
    -------
    windows : list of (start, first, stop)
        The pass runs over ``words[start:stop]`` and serves words ``first .. stop - 1``, whose
        contexts all start at ``start``; the served ranges tile ``0 .. n_words - 1``.
    """
    check_context(max_words, reset_words)
    windows = []
    start, first = 0, 0
    while first < n_words:
        stop = min(start + max_words, n_words)
        windows.append((start, first, stop))
        first = stop
        start = stop - reset_words + 1
    return windows
