"""Vision-model features: every layer as a spatial map, max-pooled to k x k, written per layer.

Matsuyama et al. 2023 (METHODS.md, section 2): each layer's output is taken as a spatial
feature map (patch tokens without the CLS and register tokens reshaped to C x H x W; CNN
stages as they are), adaptively max-pooled to k x k for several k, and flattened
channel-major to ``C * k * k`` features.

The models and their loading (transformers snapshots, timm towers) are
`fmriscaling.vision.models`.

Layout written by `extract_vision_model` (see `fmriscaling.features.io.FeatureWriter`)::

    <out_dir>/layer-<l>.h5     datasets "<image set>_k<k>": float32 (n_images, C * k * k)
    <out_dir>/provenance.json  model, revision, map shapes, pooling, image counts, speed

An image set is one subject's split, ``"subj01_train"``; rows follow the set's image order
(the fMRI rows). A ``k`` larger than a layer's map is not written for that layer (it would only
repeat values).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .._utils import DataError, provenance, write_json
from ..features.extract import check_n_layers
from ..features.io import FeatureWriter, layer_path, read_layer
from .models import load_vision_model

logger = logging.getLogger(__name__)

__all__ = [
    "adaptive_max_pool",
    "extract_vision_model",
    "pooled_name",
    "read_pooled",
    "written_pooling",
]

# seconds between progress messages
_LOG_EVERY_S = 30.0


# ------------------------------------------------------------------------------ maps, pooling


def adaptive_max_pool(maps: Any, k: int) -> Any:
    """Adaptive max pooling of spatial maps to ``k x k`` cells, flattened channel-major.

    Cell ``(i, j)`` of an ``H x W`` map covers rows ``floor(i H / k) .. ceil((i + 1) H / k) - 1``
    and the same for columns (PyTorch's ``adaptive_max_pool2d``): cells tile the map, with
    overlaps of one row or column where ``k`` does not divide it.

    Parameters
    ----------
    maps : tensor of shape (n_images, n_channels, H, W)
    k : int
        Cells per side (1 = global max pooling).

    Returns
    -------
    pooled : tensor of shape (n_images, n_channels * k * k)
        Index ``c * k * k + i * k + j`` holds channel ``c``, cell ``(i, j)``.
    """
    import torch.nn.functional as F

    k = int(k)
    if k < 1:
        raise ValueError(f"pooling size k must be >= 1, got {k}")
    pooled = F.adaptive_max_pool2d(maps, (k, k))
    return pooled.reshape(pooled.shape[0], -1)


def pooled_name(image_set: str, k: int) -> str:
    """Dataset name of one image set pooled to ``k x k`` in a layer file: ``<set>_k<k>``."""
    return f"{image_set}_k{int(k)}"


def read_pooled(feature_dir: str | os.PathLike, layer: int, image_set: str, k: int) -> np.ndarray:
    """Pooled features of one image set and layer.

    Parameters
    ----------
    feature_dir : path-like
        The model's feature folder, ``results/features/<dataset>/<model>``.
    layer : int
    image_set : str
        ``"<subject>_train"`` or ``"<subject>_test"``.
    k : int

    Returns
    -------
    feats : array of shape (n_images, n_channels * k * k), float32
    """
    return read_layer(layer_path(feature_dir, layer), pooled_name(image_set, k))


def written_pooling(feature_dir: str | os.PathLike) -> dict[int, list[int]]:
    """The pooling sizes written for each layer, from ``provenance.json``.

    Returns
    -------
    pooling : dict layer -> sorted list of k

    Raises
    ------
    DataError
        When the folder has no readable provenance written by `extract_vision_model`.
    """
    record_path = Path(feature_dir) / "provenance.json"
    try:
        record = json.loads(record_path.read_text())
        return {int(layer): sorted(ks) for layer, ks in record["pooling_per_layer"].items()}
    except (OSError, ValueError, KeyError) as err:
        raise DataError(
            f"{record_path}: expected the provenance of a vision feature extraction with "
            f"'pooling_per_layer' ({err}); rerun the extraction of this model"
        ) from err


# ---------------------------------------------------------------------------------- extraction


class _PooledWriter(FeatureWriter):
    """`FeatureWriter` that appends batches of pooled rows, per layer and dataset name."""

    def append(self, layer: int, rows: Mapping[str, np.ndarray]) -> None:
        """Append rows to datasets of one layer file (created on first use, resizable).

        Parameters
        ----------
        layer : int
        rows : mapping dataset name -> array of shape (n_images, n_features)
        """
        import h5py

        with h5py.File(self._tmp_path(layer), "a") as f:
            for name, block in rows.items():
                block = np.asarray(block, dtype=np.float32)
                if name not in f:
                    f.create_dataset(name, data=block, maxshape=(None, block.shape[1]))
                    if name not in self.stories:
                        self.stories.append(name)
                    continue
                dataset = f[name]
                start = dataset.shape[0]
                dataset.resize(start + block.shape[0], axis=0)
                dataset[start:] = block


def _read_image(path: str | os.PathLike):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(
            f"cannot read image {path}: {err}. Expected a PNG of the challenge's image folders; "
            "re-extract the dataset archive."
        ) from err


def _names_digest(paths: Sequence[str | os.PathLike]) -> str:
    """Short hash of the image file names of a set, in order (ties rows to files)."""
    blob = "\n".join(Path(p).name for p in paths).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def extract_vision_model(
    model_dir: str | os.PathLike,
    image_sets: Mapping[str, Sequence[str | os.PathLike]],
    out_dir: str | os.PathLike,
    *,
    model_name: str,
    pooling: Sequence[int] = (1, 2, 4),
    batch_size: int = 32,
    device: str = "auto",
    dtype: str = "auto",
    expected_n_layers: int | None = None,
    n_workers: int = 4,
    params: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Extract the pooled features of every layer for every image set and write them.

    The model is loaded once; each set's images are read (PIL, ``n_workers`` threads, the next
    batch while the model runs on this one), prepared by the snapshot's processor, run in
    batches (bfloat16 on a GPU by default), and every layer's map is max-pooled to each
    ``k x k`` of ``pooling`` that fits it and appended to ``layer-<l>.h5`` (`_PooledWriter`;
    files appear under their final names only when everything is written).

    Parameters
    ----------
    model_dir : path-like
        Local snapshot (see `load_vision_model`).
    image_sets : mapping name -> sequence of paths
        Images per set, in row order (``{"subj01_train": [...], "subj01_test": [...]}``).
    out_dir : path-like
        Output folder (layer files and ``provenance.json``).
    model_name : str
        The model's name in the config (messages, file attributes).
    pooling : sequence of int, default (1, 2, 4)
        Pooling sizes k.
    batch_size : int, default 32
        Images per forward pass.
    device, dtype : str
        See `load_vision_model`.
    expected_n_layers : int, optional
        Layers the config declares (``n_layers``); a different count is an error.
    n_workers : int, default 4
        Threads reading images.
    params : mapping, optional
        The rule's params, stored (and hashed) in the provenance.

    Returns
    -------
    paths : list of Path
        The layer files, layer 0 first.

    Raises
    ------
    DataError
        An empty or missing image set, a layer count that differs from the config's, an
        unreadable image; nothing is written then.
    """
    import torch

    if not image_sets:
        raise DataError(f"no image sets given for model {model_name!r}")
    for name, paths in image_sets.items():
        if not paths:
            raise DataError(f"image set {name!r} has no images; check the dataset's image folder")
    pooling = sorted({int(k) for k in pooling})
    if not pooling or pooling[0] < 1:
        raise DataError(f"pooling sizes must be positive integers, got {pooling}")
    loaded = load_vision_model(model_dir, device=device, dtype=dtype, model_name=model_name)
    check_n_layers(loaded, expected_n_layers, model_name)
    out_dir = Path(out_dir)
    map_shapes: dict[int, list[int]] = {}
    pooling_per_layer: dict[int, list[int]] = {}
    sets: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    last_log = started
    n_done = 0
    n_total = sum(len(p) for p in image_sets.values())
    with (
        _PooledWriter(out_dir, loaded.n_layers, model_name) as writer,
        ThreadPoolExecutor(max_workers=max(1, int(n_workers))) as pool,
    ):
        for set_name, paths in image_sets.items():
            paths = [str(p) for p in paths]
            batches = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
            pending = [pool.submit(_read_image, p) for p in batches[0]]
            set_start = time.perf_counter()
            for i_batch in range(len(batches)):
                images = [f.result() for f in pending]
                if i_batch + 1 < len(batches):  # read ahead while the model runs
                    pending = [pool.submit(_read_image, p) for p in batches[i_batch + 1]]
                pixels = torch.from_numpy(loaded.preprocess(images))
                pixels = pixels.to(device=loaded.device, dtype=loaded.dtype)
                maps = loaded.layer_maps(pixels)
                if len(maps) != loaded.n_layers + 1:
                    raise DataError(
                        f"model {model_name!r} returned {len(maps)} layer maps, expected "
                        f"{loaded.n_layers + 1} (embeddings + {loaded.n_layers} layers)"
                    )
                for layer, layer_map in enumerate(maps):
                    if layer not in map_shapes:
                        shape = [int(s) for s in layer_map.shape[1:]]
                        map_shapes[layer] = shape
                        pooling_per_layer[layer] = [k for k in pooling if k <= min(shape[1:])]
                        skipped = [k for k in pooling if k > min(shape[1:])]
                        if skipped:
                            logger.info(
                                "layer %d: map %s is smaller than k=%s; not written",
                                layer,
                                "x".join(map(str, shape)),
                                skipped,
                            )
                    rows = {
                        pooled_name(set_name, k): adaptive_max_pool(layer_map, k)
                        .float()
                        .cpu()
                        .numpy()
                        for k in pooling_per_layer[layer]
                    }
                    writer.append(layer, rows)
                n_done += len(images)
                now = time.perf_counter()
                if now - last_log > _LOG_EVERY_S:
                    logger.info(
                        "%d/%d images (%.1f images/s)", n_done, n_total, n_done / (now - started)
                    )
                    last_log = now
            seconds = time.perf_counter() - set_start
            sets[set_name] = {
                "n_images": len(paths),
                "first": Path(paths[0]).name,
                "last": Path(paths[-1]).name,
                "names_sha256_16": _names_digest(paths),
                "seconds": round(seconds, 3),
                "images_per_s": round(len(paths) / max(seconds, 1e-9), 2),
            }
            logger.info(
                "%s: %d images in %.1f s (%.1f images/s)",
                set_name,
                len(paths),
                seconds,
                len(paths) / max(seconds, 1e-9),
            )
        paths_written = writer.final_paths()
    seconds = time.perf_counter() - started
    write_json(
        out_dir / "provenance.json",
        provenance(
            dict(params) if params is not None else {"pooling": pooling},
            model_name=model_name,
            model_dir=str(loaded.model_dir),
            **loaded.snapshot_provenance,
            backend=loaded.backend,
            n_layers=loaded.n_layers,
            n_params=loaded.n_params,
            dtype=str(loaded.dtype).removeprefix("torch."),
            device=loaded.device,
            batch_size=int(batch_size),
            pooling=pooling,
            map_shapes={str(k): v for k, v in map_shapes.items()},
            pooling_per_layer={str(k): v for k, v in pooling_per_layer.items()},
            image_sets=sets,
            seconds=round(seconds, 3),
            images_per_s=round(n_total / max(seconds, 1e-9), 2),
        ),
    )
    return paths_written
