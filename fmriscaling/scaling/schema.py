"""What the scaling fits of the two tracks share, and the few names in which they differ.

Both tracks go through the same two steps (`fmriscaling.scaling.resample.replicate_means`, then
`fmriscaling.scaling.fits.scaling_fits`) and write the same tables: the bootstrap table (one row
per fit, ROI and replicate) and the scaling table (`FIT_COLUMNS`). A `Track` names what differs:
the column that counts training items (stories or images), the data-size axes, the
noise-normalised metric (CC_norm for the language track, the Algonauts noise-normalised score
for the vision track), whether a fit has one layer (language) or selects one per vertex
(vision: no layer), and whether fits also come at fixed widths (language: ``width``, the
layer's features projected to d dimensions, `fmriscaling.encoding.width`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..encoding.width import NATIVE, width_label

__all__ = ["CORTEX", "LANGUAGE", "ROI_COLUMNS", "VISION", "Track"]

#: the ROI columns of the bootstrap table; `CORTEX` is every voxel (vertex)
ROI_COLUMNS = ("roi_group", "roi")
CORTEX = ("cortex", "cortex")


@dataclass(frozen=True)
class Track:
    """The names of one track's scaling fits.

    Attributes
    ----------
    name : str
        "language" or "vision".
    size_column : str
        The encoding table's column counting the training items of a fit.
    data_axes : mapping
        Data-size axis -> the column of its x (per fit; averaged over a size's fits).
    metrics : tuple of str
        Mean test r and the mean noise-normalised score (columns of the encoding table and of
        the bootstrap table).
    kind : str or None
        The ``kind`` of every fit of the track; None: each model's ``model_kind`` column.
    layered : bool
        Whether a fit is one layer's (its key and its lines carry ``layer``).
    widths : bool
        Whether fits come at fixed widths besides the native one (``features.fixed_dim``: the
        key carries ``width``, `fmriscaling.encoding.width`).
    """

    name: str
    size_column: str
    data_axes: Mapping[str, str] = field(hash=False)
    metrics: tuple[str, str]
    kind: str | None
    layered: bool
    widths: bool = False

    @property
    def key_columns(self) -> tuple[str, ...]:
        """The columns that identify one fit."""
        layer = ("layer",) if self.layered else ()
        width = ("width",) if self.widths else ()
        return ("subject", "model", *layer, *width, "full_train", self.size_column, "seed")

    def key(self, row: Mapping[str, Any]) -> tuple:
        """Key of one fit: (subject, model[, layer][, width], n_train or None for the full
        set, seed)."""
        full = bool(row["full_train"])
        n = None if full else int(row[self.size_column])
        layer = (int(row["layer"]),) if self.layered else ()
        width = (width_label(row.get("width")),) if self.widths else ()
        return (str(row["subject"]), str(row["model"]), *layer, *width, n, int(row["seed"]))

    def describe(self, key: tuple) -> str:
        """A fit's key in words, for messages."""
        subject, model, *rest = key
        layer = f" layer {rest.pop(0)}" if self.layered else ""
        width = rest.pop(0) if self.widths else NATIVE
        layer += "" if width == NATIVE else f" at width {width}"
        n, seed = rest
        unit = self.size_column.removeprefix("n_train_")
        size = "full training set" if n is None else f"{n} {unit}, seed {seed}"
        return f"{subject} {model}{layer} ({size})"


LANGUAGE = Track(
    name="language",
    size_column="n_train_stories",
    data_axes={"stories": "n_train_stories", "trs": "n_train_trs"},
    metrics=("mean_r", "mean_cc_norm"),
    kind=None,
    layered=True,
    widths=True,
)
VISION = Track(
    name="vision",
    size_column="n_train_images",
    data_axes={"images": "n_train_images"},
    metrics=("mean_r", "mean_noise_norm"),
    kind="vision",
    layered=False,
)
