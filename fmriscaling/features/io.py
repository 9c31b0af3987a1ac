"""Feature files: one HDF5 file per layer, one float32 dataset per story.

Layout written by `FeatureWriter`::

    <out_dir>/layer-0.h5     # embedding output
    <out_dir>/layer-1.h5     # block 1
    ...                      # each holds datasets <story>: float32 (n_trs, n_dims)

A model's layers may differ in width (OPT-350m's last hidden state is 512 wide, the others
1024): its features come as one array as wide as the widest layer, NaN past each narrower
layer's width (`check_layer_padding`), and each layer file gets its own width.

Files are built under hidden temporary names (``.layer-<l>.h5.part``) and renamed onto their
final names only when the writer closes without error, so an interrupted run leaves nothing that
looks complete.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import numpy as np

from .._hdf5 import open_hdf5
from .._utils import DataError

logger = logging.getLogger(__name__)


def check_layer_padding(
    feats: np.ndarray, layer_widths: Sequence[int], *, what: str = "features"
) -> None:
    """Check the NaN padding of features whose layers differ in width.

    Layer ``l``'s features are ``feats[l, :, :layer_widths[l]]``; the columns past its width
    are padding and must be NaN, and the features themselves must hold no NaN, so padding can
    neither be taken for features nor hide among them.

    Parameters
    ----------
    feats : array of shape (n_layers + 1, n_times, max(layer_widths))
    layer_widths : sequence of int, length n_layers + 1
    what : str
        What the features are, in messages (e.g. ``"story 'wheretheressmoke'"``).

    Raises
    ------
    ValueError
        When the shape does not match ``layer_widths``.
    DataError
        When a padding value is not NaN or a feature is NaN.
    """
    feats = np.asarray(feats)
    widths = [int(w) for w in layer_widths]
    if feats.ndim != 3 or feats.shape[0] != len(widths) or feats.shape[2] != max(widths):
        raise ValueError(
            f"{what}: expected features of shape ({len(widths)}, n_times, {max(widths)}) for "
            f"layer widths {widths}, got {feats.shape}"
        )
    for layer, width in enumerate(widths):
        if not np.isnan(feats[layer, :, width:]).all():
            raise DataError(
                f"{what}: layer {layer} has values past its width {width}, where only NaN "
                "padding may be; the recorded layer widths do not match the features"
            )
        if np.isnan(feats[layer, :, :width]).any():
            raise DataError(
                f"{what}: layer {layer} ({width} wide) has NaN features; the model produced "
                "NaN (e.g. a float16 overflow: try features.dtype bfloat16 or float32) or "
                "the recorded layer widths do not match the features"
            )


def layer_path(out_dir: str | os.PathLike, layer: int) -> Path:
    """Path of the feature file of ``layer`` in ``out_dir``: ``layer-<layer>.h5``."""
    return Path(out_dir) / f"layer-{layer}.h5"


class FeatureWriter:
    """Stream per-story features of every layer into ``layer-<l>.h5`` files, atomically.

    Parameters
    ----------
    out_dir : path-like
        Output directory (created).
    n_layers : int
        Number of transformer blocks; ``n_layers + 1`` files are written (layer 0 = embeddings).
    model_name : str
        Stored as the ``model_name`` attribute of every file.
    layer_widths : sequence of int, optional
        Width of each layer, length ``n_layers + 1``, for a model whose layers differ in
        width: the features given to `write_story` are then ``max(layer_widths)`` wide and
        layer ``l`` is written as its first ``layer_widths[l]`` columns (the rest is padding;
        see `check_layer_padding`). Default: every layer as wide as the features.

    Examples
    --------
    >>> with FeatureWriter(out_dir, n_layers=12, model_name="opt-125m") as writer:  # doctest: +SKIP
    ...     for story in stories:
    ...         writer.write_story(story, feats)  # (13, n_trs, 768)
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        n_layers: int,
        model_name: str,
        layer_widths: Sequence[int] | None = None,
    ) -> None:
        if n_layers < 0:
            raise ValueError(f"n_layers must be >= 0, got {n_layers}")
        if layer_widths is not None and (
            len(layer_widths) != n_layers + 1 or min(layer_widths) < 1
        ):
            raise ValueError(
                f"layer_widths must be n_layers + 1 = {n_layers + 1} positive widths, got "
                f"{list(layer_widths)}"
            )
        self.out_dir = Path(out_dir)
        self.n_layers = int(n_layers)
        self.layer_widths = None if layer_widths is None else [int(w) for w in layer_widths]
        self.model_name = model_name
        self.stories: list[str] = []
        self._closed = False
        self.out_dir.mkdir(parents=True, exist_ok=True)
        import h5py

        # "w": a temporary left by a crashed earlier run is started afresh
        for layer in range(self.n_layers + 1):
            with h5py.File(self._tmp_path(layer), "w") as f:
                f.attrs["model_name"] = model_name
                f.attrs["layer"] = layer
                f.attrs["n_layers"] = self.n_layers

    def _tmp_path(self, layer: int) -> Path:
        return self.out_dir / f".layer-{layer}.h5.part"

    def final_paths(self) -> list[Path]:
        """Final paths of the layer files, layer 0 first."""
        return [layer_path(self.out_dir, layer) for layer in range(self.n_layers + 1)]

    def write_story(self, story: str, layer_feats: np.ndarray) -> None:
        """Append one story's features to every layer file.

        Parameters
        ----------
        story : str
            Dataset name (no ``/``); each story may be written once.
        layer_feats : array of shape (n_layers + 1, n_trs, n_dims)
            Features of every layer at the story's response TRs; stored as float32. With
            ``layer_widths``, ``n_dims`` is ``max(layer_widths)`` and each layer is stored at
            its own width; a stored value that is NaN is then an error (`DataError`).
        """
        import h5py

        if self._closed:
            raise RuntimeError("FeatureWriter is closed")
        if not story or "/" in story:
            raise ValueError(f"story name must be non-empty and contain no '/', got {story!r}")
        if story in self.stories:
            raise ValueError(f"story {story!r} was already written to {self.out_dir}")
        layer_feats = np.asarray(layer_feats)
        if layer_feats.ndim != 3 or layer_feats.shape[0] != self.n_layers + 1:
            raise ValueError(
                f"story {story!r}: expected features of shape ({self.n_layers + 1}, n_trs, "
                f"n_dims), got {layer_feats.shape}"
            )
        widths = self.layer_widths or [layer_feats.shape[2]] * (self.n_layers + 1)
        if self.layer_widths is not None:
            if layer_feats.shape[2] != max(widths):
                raise ValueError(
                    f"story {story!r}: features are {layer_feats.shape[2]} wide, expected "
                    f"max(layer_widths) = {max(widths)}"
                )
            # the padding is checked before the downsampling (check_layer_padding): whether it
            # stays NaN at a TR whose Lanczos weights are all 0 depends on the BLAS (0 * NaN)
            kept_nan = [
                layer
                for layer, width in enumerate(widths)
                if np.isnan(layer_feats[layer, :, :width]).any()
            ]
            if kept_nan:
                raise DataError(
                    f"model {self.model_name!r}, story {story!r}: layers {kept_nan} have NaN "
                    f"within their widths ({[widths[k] for k in kept_nan]}), so padding or NaN "
                    f"features would be written to {self.out_dir}; nothing was written for this "
                    "story. Check the model's layer widths (provenance.json) and its dtype "
                    "(features.dtype float32 rules out a float16 overflow)"
                )
        for layer, width in enumerate(widths):
            data = layer_feats[layer, :, :width].astype(np.float32, copy=False)
            with h5py.File(self._tmp_path(layer), "a") as f:
                f.create_dataset(story, data=data)
        self.stories.append(story)
        logger.debug("wrote %s %s to %s", story, layer_feats.shape, self.out_dir)

    def close(self) -> None:
        """Rename the temporary files onto their final names (idempotent)."""
        if self._closed:
            return
        for layer in range(self.n_layers + 1):
            os.replace(self._tmp_path(layer), layer_path(self.out_dir, layer))
        self._closed = True
        logger.info(
            "wrote %d stories x %d layer files to %s",
            len(self.stories),
            self.n_layers + 1,
            self.out_dir,
        )

    def abort(self) -> None:
        """Delete the temporary files; the final files (if any, from earlier runs) are untouched."""
        if self._closed:
            return
        for layer in range(self.n_layers + 1):
            with contextlib.suppress(FileNotFoundError):
                self._tmp_path(layer).unlink()
        self._closed = True

    def __enter__(self) -> FeatureWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _open_feature_file(path: str | os.PathLike) -> contextlib.AbstractContextManager:
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"feature file {path} does not exist; run the feature extraction rule that "
            "creates it (e.g. `snakemake <that path>`)"
        )
    # the rule's output is the whole directory results/features/<dataset>/<model>
    rebuild = shlex.join(["snakemake", "--cores", "1", "--force", str(path.parent)])
    fix = f"Rebuild it: `{rebuild}` (extracts every layer of the model again)."
    return open_hdf5(path, kind="HDF5 feature file", fix=fix)


def read_layer(path: str | os.PathLike, story: str) -> np.ndarray:
    """Read one story's features from a layer file.

    Parameters
    ----------
    path : path-like
        A layer file, ``results/features/<dataset>/<model>/layer-<l>.h5``.
    story : str
        Dataset name in that file.

    Returns
    -------
    feats : array of shape (n_trs, n_dims), float32

    Raises
    ------
    DataError
        When the file is missing, truncated, corrupt or not HDF5 (the message gives the
        command that rebuilds it), or lacks ``story``.
    """
    with _open_feature_file(path) as f:
        if story not in f:
            raise DataError(
                f"feature file {path} has no story {story!r} (it has {sorted(f.keys())}); "
                "re-run feature extraction with this story in the dataset's story list"
            )
        return np.asarray(f[story][()], dtype=np.float32)


def list_stories(path: str | os.PathLike) -> list[str]:
    """Names of the stories stored in a layer file, sorted.

    Raises
    ------
    DataError
        When the file is missing, truncated, corrupt or not HDF5 (the message gives the
        command that rebuilds it).
    """
    with _open_feature_file(path) as f:
        return sorted(f.keys())


def recorded_n_params(feature_dir: str | os.PathLike) -> int:
    """The parameter count that feature extraction recorded in ``<feature_dir>/provenance.json``
    (for models whose config leaves ``n_params`` null, e.g. the tiny demo models)."""
    import json

    record_path = Path(feature_dir) / "provenance.json"
    try:
        return int(json.loads(record_path.read_text())["n_params"])
    except (OSError, ValueError, KeyError) as err:
        raise DataError(
            f"{record_path}: no recorded n_params ({err}); rerun the feature extraction, or set "
            "the model's n_params in the config"
        ) from err
