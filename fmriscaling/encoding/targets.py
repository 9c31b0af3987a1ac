"""Ridge targets read in voxel blocks: an array in memory, or several subjects side by side.

`fmriscaling.encoding.ridge.fit_ridge_cv` never needs all targets at once: it sends the voxels
through the fit in column batches. A *target source* is anything with

* ``shape``: ``(n_samples, n_columns)``;
* ``read(cols)``: the float32, C-contiguous block ``(n_samples, cols.stop - cols.start)`` of
  a column slice;
* ``segments``: the widths of the independent column groups it holds (one per subject), which
  the batches never straddle.

`ArrayColumns` wraps an array; `StackedColumns` puts several sources side by side (the
subjects of a shared fit: same TRs, each its own voxels). The prepared responses of
`fmriscaling.encoding.prepared` are sources that read their blocks from disk.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Protocol

import numpy as np

__all__ = ["ArrayColumns", "StackedColumns", "TargetSource", "as_target_source"]


class TargetSource(Protocol):
    """Targets of shape (n_samples, n_columns) that hand out column blocks."""

    shape: tuple[int, int]
    segments: tuple[int, ...]

    def read(self, cols: slice) -> np.ndarray:
        """Float32 block of shape (n_samples, len(cols)) for a column slice (step 1)."""


class ArrayColumns:
    """A 2-D array as a target source.

    Parameters
    ----------
    array : array of shape (n_samples, n_columns)
        Cast to float32 once.
    """

    def __init__(self, array: np.ndarray):
        self.array = np.asarray(array, dtype=np.float32)
        if self.array.ndim != 2:
            raise ValueError(f"targets must be 2-D (n_samples, n_columns), got {self.array.shape}")
        self.shape = self.array.shape
        self.segments = (self.shape[1],)

    def read(self, cols: slice) -> np.ndarray:
        """Float32 copy of ``array[:, cols]``, shape (n_samples, len(cols))."""
        return np.ascontiguousarray(self.array[:, cols])


class StackedColumns:
    """Target sources side by side: the columns of ``parts[0]``, then of ``parts[1]``, ...

    Parameters
    ----------
    parts : sequence of target sources
        Sources with the same number of samples (rows); e.g. one per subject of a fit that shares
        its design matrix.

    Attributes
    ----------
    shape : (n_samples, sum of the parts' columns)
    segments : tuple of int
        The parts' own segments, in order (one entry per subject for subject sources).
    starts : array of shape (n_parts + 1,)
        First column of each part in the stack (and the total).
    """

    def __init__(self, parts: Sequence[TargetSource]):
        self.parts = list(parts)
        if not self.parts:
            raise ValueError("StackedColumns needs at least one part")
        rows = {int(p.shape[0]) for p in self.parts}
        if len(rows) != 1:
            raise ValueError(f"stacked targets need the same rows, got {sorted(rows)}")
        widths = [int(p.shape[1]) for p in self.parts]
        self.starts = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
        self.shape = (rows.pop(), int(self.starts[-1]))
        self.segments = tuple(w for p in self.parts for w in p.segments)

    def read(self, cols: slice) -> np.ndarray:
        """Float32 block (n_samples, len(cols)) of the stacked columns, read part by part."""
        start, stop = int(cols.start or 0), int(self.shape[1] if cols.stop is None else cols.stop)
        blocks = []
        for part, (p0, p1) in zip(self.parts, itertools.pairwise(self.starts), strict=True):
            lo, hi = max(start, p0), min(stop, p1)
            if lo < hi:
                blocks.append(part.read(slice(int(lo - p0), int(hi - p0))))
        if len(blocks) == 1:
            return blocks[0]
        return np.ascontiguousarray(np.concatenate(blocks, axis=1))


def as_target_source(Y) -> TargetSource:
    """``Y`` itself when it is a target source (has ``read``), else `ArrayColumns` of it."""
    return Y if hasattr(Y, "read") and hasattr(Y, "segments") else ArrayColumns(Y)
