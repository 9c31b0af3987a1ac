"""Seeded synthetic vision dataset in the Algonauts 2023 layout, with known ground truth.

`generate_vision_dataset` writes, under ``root`` and per subject
(`fmriscaling.vision.dataset` describes the layout)::

    <subject>/training_split/training_images/train-0001_nsd-XXXXX.png ...   procedural images
    <subject>/training_split/training_fmri/{lh,rh}_training_fmri.npy        (n_train, n_vertices)
    <subject>/test_split/test_images/test-0001_nsd-XXXXX.png ...            no fMRI, as the challenge
    <subject>/roi_masks/{lh,rh}.<class>_challenge_space.npy, mapping_<class>.npy (pickled dicts),
                        {lh,rh}.all-vertices_fsaverage_space.npy (`fsaverage_mask`)
    <subject>/noise_ceiling/{lh,rh}_ncsnr.npy, training_n_repeats.npy
    ground_truth/<subject>.npz, ground_truth/manifest.json, ground_truth/README.md

Generative model:

1. Images: shapes, gratings, textures and their mixtures (`procedural_image`), drawn per
   subject.
2. Truth features: a tiny vision model (a snapshot of `fmriscaling.demo.tiny_vision`) is run on
   the training images; two (layer, k) feature spaces of it, max-pooled as the analysis pools
   them (`fmriscaling.vision.features.adaptive_max_pool`), drive the vertices: ``early``
   drives the early and mid streams (and the prf-visualrois), ``higher`` the ventral,
   lateral and parietal streams (and the floc category ROIs). Vertices of stream 0 (Unknown)
   carry no signal.
3. A signal vertex responds with ``z(F) @ U @ a_v`` (F the pooled features, z-scored; ``U`` a
   fixed random projection to ``n_latent`` dimensions per driver, ``a_v`` the vertex's own
   weights), scaled to unit variance. Each image was shown 1-3 times; its row is the signal
   plus the mean of that many single-trial noises of sd ``1 / ncsnr_v`` (NSD's ncsnr is signal
   sd over single-trial noise sd), then every vertex is z-scored over images, as the
   challenge's rows are.

So the challenge's noise ceiling of a test set (`fmriscaling.vision.scores`) is the r² a
perfect prediction reaches on average, and the per-vertex selection should choose the truth's
(layer, k) for the truth model's vertices.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._utils import ConfigError, atomic_path, write_json
from ..vision.dataset import PUBLISHED_LABELS, relpath
from .stories import seeded_rng

logger = logging.getLogger(__name__)

__all__ = ["generate_vision_dataset", "procedural_image"]

# stream labels 1-4 (early, midventral, midlateral, midparietal) follow the "early" driver,
# 5-7 (ventral, lateral, parietal) the "higher" one
_EARLY_STREAMS = (1, 2, 3, 4)
_HIGHER_STREAMS = (5, 6, 7)
# share of each stream label among a hemisphere's vertices (0 = Unknown)
_STREAM_SHARES = np.array([0.06, 0.22, 0.08, 0.08, 0.08, 0.2, 0.16, 0.12])
# which category ROIs sit in which higher stream, and how many of its vertices they take
_CATEGORY_STREAMS = {
    "floc-faces": (5, 6),
    "floc-bodies": (6,),
    "floc-places": (5, 7),
    "floc-words": (5,),
}
_CATEGORY_SHARE = 0.35
# probabilities of 1, 2 and 3 presentations of an image (NSD shows most images 3 times)
_REPEAT_PROBS = (0.1, 0.15, 0.75)
# fsaverage vertices per hemisphere (the all-vertices masks' length), and the spread (mm) of the
# per-subject jitter that moves each subject's synthetic vertex set a little
_FSAVERAGE_VERTICES = 163842
_MASK_JITTER_MM = 3.0


# ------------------------------------------------------------------------------------- images


def procedural_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """One random image: a texture or grating background with shapes on top.

    Parameters
    ----------
    rng : numpy Generator
    size : int
        Side in pixels.

    Returns
    -------
    image : uint8 array of shape (size, size, 3)
    """
    from PIL import Image, ImageDraw

    yy, xx = np.mgrid[0:size, 0:size] / size
    kind = rng.integers(3)
    if kind == 0:  # oriented sinusoidal grating in two random colours
        theta, freq, phase = rng.uniform(0, np.pi), rng.uniform(1.5, 8), rng.uniform(0, 2 * np.pi)
        wave = 0.5 + 0.5 * np.sin(
            2 * np.pi * freq * (xx * np.cos(theta) + yy * np.sin(theta)) + phase
        )
        a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        base = wave[..., None] * a + (1 - wave[..., None]) * b
    elif kind == 1:  # smoothed colour noise (a texture)
        coarse = rng.uniform(0, 255, (int(rng.integers(2, 9)),) * 2 + (3,))
        base = np.asarray(
            Image.fromarray(coarse.astype(np.uint8)).resize((size, size), Image.BICUBIC),
            dtype=np.float64,
        )
    else:  # checkerboard
        n = int(rng.integers(2, 8))
        check = ((np.floor(xx * n) + np.floor(yy * n)) % 2)[..., None]
        base = check * rng.uniform(0, 255, 3) + (1 - check) * rng.uniform(0, 255, 3)
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(0, 4))):
        x0, y0 = rng.uniform(-0.1, 0.8, 2) * size
        w, h = rng.uniform(0.15, 0.6, 2) * size
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = rng.integers(3)
        if shape == 0:
            draw.ellipse([x0, y0, x0 + w, y0 + h], fill=color)
        elif shape == 1:
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=color)
        else:
            draw.polygon([(x0, y0 + h), (x0 + w / 2, y0), (x0 + w, y0 + h)], fill=color)
    return np.asarray(image)


def _write_images(folder: Path, prefix: str, images: Sequence[np.ndarray], nsd_ids) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (image, nsd) in enumerate(zip(images, nsd_ids, strict=True)):
        path = folder / f"{prefix}-{i + 1:04d}_nsd-{int(nsd):05d}.png"
        with atomic_path(path) as tmp:
            Image.fromarray(image).save(tmp, format="PNG")
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------- truth features


def _truth_features(
    model_dir: Path, images: Sequence[np.ndarray], drivers: Mapping[str, Mapping[str, int]]
) -> dict[str, np.ndarray]:
    """Pooled features of the truth model's driving (layer, k), z-scored over images."""
    import torch
    from PIL import Image

    from ..vision.features import adaptive_max_pool
    from ..vision.models import load_vision_model

    model = load_vision_model(model_dir, device="cpu", dtype="float32")
    out: dict[str, list[np.ndarray]] = {name: [] for name in drivers}
    for start in range(0, len(images), 64):
        batch = [Image.fromarray(im) for im in images[start : start + 64]]
        maps = model.layer_maps(torch.from_numpy(model.preprocess(batch)))
        for name, spec in drivers.items():
            layer, k = int(spec["layer"]), int(spec["pool"])
            if layer > model.n_layers or k > min(maps[layer].shape[-2:]):
                raise ConfigError(
                    f"config key 'vision.synthetic.truth.{name}': layer {layer}, pool {k} does "
                    f"not exist in {model_dir} ({model.n_layers} layers, layer map "
                    f"{tuple(maps[min(layer, model.n_layers)].shape[1:])})"
                )
            out[name].append(adaptive_max_pool(maps[layer], k).numpy().astype(np.float64))
    feats = {}
    for name, blocks in out.items():
        f = np.concatenate(blocks)
        sd = f.std(axis=0)
        feats[name] = (f - f.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    return feats


# ------------------------------------------------------------------------------------ anatomy


def _hemisphere_labels(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Stream, retinotopic and category labels of one hemisphere's vertices."""
    counts = np.floor(_STREAM_SHARES * n).astype(int)
    counts[1] += n - counts.sum()
    streams = np.repeat(np.arange(len(counts)), counts)
    labels = {"streams": streams}
    early = np.flatnonzero(streams == 1)
    prf = np.zeros(n, dtype=np.int64)
    # V1v .. hV4 in contiguous runs of the early stream (not all early vertices are mapped)
    n_mapped = int(0.8 * early.size)
    prf[early[:n_mapped]] = 1 + np.arange(n_mapped) * 7 // max(n_mapped, 1)
    labels["prf-visualrois"] = prf
    for roi_class, in_streams in _CATEGORY_STREAMS.items():
        values = np.zeros(n, dtype=np.int64)
        n_rois = len(PUBLISHED_LABELS[roi_class]) - 1
        pool = np.flatnonzero(np.isin(streams, in_streams))
        chosen = np.sort(rng.choice(pool, size=int(_CATEGORY_SHARE * pool.size), replace=False))
        values[chosen] = 1 + rng.integers(0, n_rois, chosen.size)
        labels[roi_class] = values
    return labels


def fsaverage_mask(rng: np.random.Generator, hemi: str, n_vertices: int) -> np.ndarray:
    """A synthetic ``<hemi>.all-vertices_fsaverage_space.npy``: fsaverage's 163,842 vertices,
    ``n_vertices`` of them selected (1.0) at the occipital pole.

    The selected vertices are fsaverage5 vertices (fsaverage's first 10,242, which sit where
    fsaverage5's do), the ``n_vertices`` most posterior on the inflated surface after a seeded
    jitter of a few mm, so each subject's set differs a little, as the challenge's do. The
    challenge's vertex order is the mask's (ascending fsaverage index). Not the real layout
    (the challenge's ~20,000 vertices per hemisphere cover nsdgeneral), but the group maps run
    on it unchanged.
    """
    from ..surface.sphere import FSAVERAGE5_VERTICES, fsaverage_mesh

    if n_vertices > FSAVERAGE5_VERTICES:
        raise ConfigError(
            f"vision.synthetic.n_vertices = {n_vertices}: at most {FSAVERAGE5_VERTICES} per "
            "hemisphere (the synthetic vertices are fsaverage5 vertices)"
        )
    posterior = fsaverage_mesh()[hemi]["inflated"][:, 1]
    score = posterior + _MASK_JITTER_MM * rng.standard_normal(posterior.size)
    mask = np.zeros(_FSAVERAGE_VERTICES, dtype=np.float32)
    mask[np.argsort(score, kind="stable")[:n_vertices]] = 1.0
    return mask


def _save_npy(path: Path, array: np.ndarray, *, allow_pickle: bool = False) -> None:
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, array, allow_pickle=allow_pickle)


def _check(
    subjects: Sequence[str],
    n_train_images: int,
    n_test_images: int,
    n_vertices: int,
    ncsnr_range: Sequence[float],
    truth: Mapping[str, Any],
) -> None:
    if not subjects:
        raise ConfigError("config key 'vision.dataset.subjects' lists no subject")
    if n_train_images < 20 or n_test_images < 1:
        raise ConfigError(
            "config keys 'vision.synthetic.n_train_images' (>= 20) and 'n_test_images' (>= 1): "
            f"got {n_train_images} and {n_test_images}"
        )
    if n_vertices < 20:
        raise ConfigError(
            f"config key 'vision.synthetic.n_vertices' must be >= 20, got {n_vertices}"
        )
    low, high = (float(x) for x in ncsnr_range)
    if not 0 < low <= high:
        raise ConfigError(
            f"config key 'vision.synthetic.ncsnr' must be 0 < low <= high, got {ncsnr_range}"
        )
    missing = {"early", "higher"} - set(truth)
    if missing:
        raise ConfigError(f"config key 'vision.synthetic.truth' lacks {sorted(missing)}")


def generate_vision_dataset(
    root: str | os.PathLike,
    *,
    subjects: Sequence[str] = ("subj01", "subj02"),
    hemispheres: Sequence[str] = ("lh", "rh"),
    truth_model_dir: str | os.PathLike,
    truth: Mapping[str, Mapping[str, int]],
    seed: int = 0,
    n_train_images: int = 200,
    n_test_images: int = 20,
    image_size: int = 48,
    n_vertices: int = 100,
    n_latent: int = 8,
    ncsnr: Sequence[float] = (0.3, 1.5),
) -> dict[str, Any]:
    """Write a seeded synthetic dataset in the Algonauts 2023 layout, with its ground truth.

    Parameters
    ----------
    root : path-like
        Dataset root (the folder holding the subject folders and ``ground_truth/``).
    subjects : sequence of str
    hemispheres : sequence of str
    truth_model_dir : path-like
        Snapshot of the tiny vision model whose features drive the responses.
    truth : mapping
        ``{"early": {"layer": l, "pool": k}, "higher": {"layer": l, "pool": k}}``: the
        feature spaces of the truth model that drive the early/mid and the higher streams.
    seed : int
        Seed of every random draw.
    n_train_images, n_test_images : int
        Images per subject in the training and test splits.
    image_size : int
        Side of the PNG images in pixels.
    n_vertices : int
        Vertices per hemisphere.
    n_latent : int
        Dimensions of each driver's random projection.
    ncsnr : (float, float)
        Range of the signal vertices' ncsnr (log-uniform); Unknown-stream vertices have 0.

    Returns
    -------
    summary : dict
        The arguments, the files per subject and the seconds taken.
    """
    _check(subjects, n_train_images, n_test_images, n_vertices, ncsnr, truth)
    started = time.perf_counter()
    root = Path(root)
    truth_dir = root / "ground_truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    drivers = {name: dict(truth[name]) for name in ("early", "higher")}
    # one projection per driver, shared by the subjects (a "population" code)
    for subject in subjects:
        rng = seeded_rng(seed, "vision", subject)
        n_total = n_train_images + n_test_images
        nsd_ids = seeded_rng(seed, "nsd-ids", subject).choice(73_000, size=n_total, replace=False)
        images = [procedural_image(rng, image_size) for _ in range(n_total)]
        _write_images(
            root / relpath("training_images", subject=subject),
            "train",
            images[:n_train_images],
            nsd_ids[:n_train_images],
        )
        _write_images(
            root / relpath("test_images", subject=subject),
            "test",
            images[n_train_images:],
            nsd_ids[n_train_images:],
        )
        feats = _truth_features(Path(truth_model_dir), images[:n_train_images], drivers)
        n_repeats = seeded_rng(seed, "repeats", subject).choice(
            [1, 2, 3], size=n_train_images, p=_REPEAT_PROBS
        )
        truth_arrays: dict[str, list[np.ndarray]] = {
            key: [] for key in ("driver", "true_layer", "true_pool", "ncsnr", "signal")
        }
        for hemi in hemispheres:
            hrng = seeded_rng(seed, "vision", subject, hemi)
            labels = _hemisphere_labels(hrng, n_vertices)
            streams = labels["streams"]
            driver = np.where(
                np.isin(streams, _EARLY_STREAMS),
                1,
                np.where(np.isin(streams, _HIGHER_STREAMS), 2, 0),
            )
            signal = np.zeros((n_train_images, n_vertices))
            for code, name in ((1, "early"), (2, "higher")):
                cols = np.flatnonzero(driver == code)
                projection = seeded_rng(seed, "projection", name).standard_normal(
                    (feats[name].shape[1], n_latent)
                )
                weights = hrng.standard_normal((n_latent, cols.size))
                s = feats[name] @ projection @ weights
                signal[:, cols] = (s - s.mean(0)) / s.std(0)
            log_lo, log_hi = np.log(ncsnr[0]), np.log(ncsnr[1])
            vertex_ncsnr = np.where(
                driver > 0, np.exp(hrng.uniform(log_lo, log_hi, n_vertices)), 0.0
            )
            # single-trial noise sd 1/ncsnr (sd 1 where there is no signal), averaged over repeats
            noise_sd = np.where(driver > 0, 1.0 / np.maximum(vertex_ncsnr, 1e-12), 1.0)
            noise = hrng.standard_normal((n_train_images, n_vertices)) * noise_sd
            fmri = signal + noise / np.sqrt(n_repeats)[:, None]
            fmri = (fmri - fmri.mean(0)) / fmri.std(0)
            _save_npy(
                root / relpath("training_fmri", subject=subject, hemi=hemi),
                fmri.astype(np.float32),
            )
            for roi_class, values in labels.items():
                _save_npy(
                    root / relpath("roi_mask", subject=subject, hemi=hemi, roi_class=roi_class),
                    values.astype(np.float32),  # the challenge's masks are float arrays
                )
            _save_npy(
                root / relpath("all_vertices", subject=subject, hemi=hemi),
                fsaverage_mask(seeded_rng(seed, "fsaverage", subject, hemi), hemi, n_vertices),
            )
            _save_npy(
                root / relpath("ncsnr", subject=subject, hemi=hemi),
                vertex_ncsnr.astype(np.float32),
            )
            layer_of = {0: -1, 1: drivers["early"]["layer"], 2: drivers["higher"]["layer"]}
            pool_of = {0: -1, 1: drivers["early"]["pool"], 2: drivers["higher"]["pool"]}
            truth_arrays["driver"].append(driver)
            truth_arrays["true_layer"].append(np.vectorize(layer_of.get)(driver))
            truth_arrays["true_pool"].append(np.vectorize(pool_of.get)(driver))
            truth_arrays["ncsnr"].append(vertex_ncsnr)
            truth_arrays["signal"].append(signal.astype(np.float32))
        for roi_class, table in PUBLISHED_LABELS.items():
            # pickled dicts, exactly as the challenge ships them
            _save_npy(
                root / relpath("roi_mapping", subject=subject, roi_class=roi_class),
                np.array(dict(table), dtype=object),
                allow_pickle=True,
            )
        _save_npy(root / relpath("n_repeats", subject=subject), n_repeats.astype(np.int64))
        with atomic_path(truth_dir / f"{subject}.npz", suffix=".npz") as tmp:
            np.savez(
                tmp,
                driver=np.concatenate(truth_arrays["driver"]),
                true_layer=np.concatenate(truth_arrays["true_layer"]),
                true_pool=np.concatenate(truth_arrays["true_pool"]),
                ncsnr=np.concatenate(truth_arrays["ncsnr"]),
                signal=np.concatenate(truth_arrays["signal"], axis=1),
                n_repeats=n_repeats,
            )
    seconds = time.perf_counter() - started
    summary = {
        "subjects": list(subjects),
        "hemispheres": list(hemispheres),
        "truth_model_dir": str(truth_model_dir),
        "truth": drivers,
        "seed": seed,
        "n_train_images": n_train_images,
        "n_test_images": n_test_images,
        "image_size": image_size,
        "n_vertices": n_vertices,
        "n_latent": n_latent,
        "ncsnr": list(ncsnr),
    }
    write_json(truth_dir / "manifest.json", summary)
    with atomic_path(truth_dir / "README.md") as tmp:
        tmp.write_text(_README)
    logger.info(
        "synthetic vision dataset: %d subjects x (%d + %d images, %d x %d vertices) in %.1f s",
        len(subjects),
        n_train_images,
        n_test_images,
        len(hemispheres),
        n_vertices,
        seconds,
    )
    return {**summary, "seconds": seconds}


_README = """\
# Ground truth of the synthetic Algonauts-like dataset

Written by `fmriscaling.demo.vision.generate_vision_dataset`; `manifest.json` holds its
arguments. Per subject, `<subject>.npz` has one entry per vertex, both hemispheres concatenated
(lh then rh), and the training images' repeat counts:

- `driver` (n_vertices,): 0 = no signal (stream Unknown), 1 = the `early` (layer, k) of the truth
  model (early and mid streams), 2 = the `higher` one (ventral, lateral, parietal).
- `true_layer`, `true_pool` (n_vertices,): that driver's layer and pooling size (-1 = none).
- `ncsnr` (n_vertices,): signal sd over single-trial noise sd (0 without signal); the same
  values as `noise_ceiling/<hemi>_ncsnr.npy`.
- `signal` (n_train_images, n_vertices): the noise-free response (unit variance over images).
- `n_repeats` (n_train_images,): presentations of each image (1-3); the fMRI row is the signal
  plus the mean of that many single-trial noises, z-scored per vertex over images.
"""
