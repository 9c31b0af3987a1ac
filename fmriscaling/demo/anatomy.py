"""A synthetic subject's anatomy: its volume, cortical mask, smooth voxel weights and auditory voxels.

Small box volumes by default; with ``cortex="S1"`` the mask and voxels come from pycortex's
sample subject (`fmriscaling.demo.cortex`), so flatmaps and ROIs work on the demo.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

from .._utils import atomic_path
from .stories import seeded_rng

__all__ = [
    "auditory_voxels",
    "cortical_anatomy",
    "save_nifti",
    "smooth_on_mask",
    "subject_anatomy",
    "volume_shape",
]


def volume_shape(n_voxels: int) -> tuple[int, int, int]:
    """(nx, ny, nz) with at least 2.5 n_voxels voxels, starting from 10 x 10 x 8."""
    k = 0
    while True:
        shape = (10 + 2 * k, 10 + 2 * k, 8 + k)
        if np.prod(shape) >= 2.5 * n_voxels:
            return shape
        k += 1


def subject_anatomy(
    subject: str, n_voxels: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mask and reference as (z, y, x) arrays (the pycortex orientation) and the affine."""
    rng = seeded_rng(seed, "anatomy", subject)
    nx, ny, nz = volume_shape(n_voxels)
    z, y, x = np.meshgrid(
        (np.arange(nz) + 0.5) / nz - 0.5,
        (np.arange(ny) + 0.5) / ny - 0.5,
        (np.arange(nx) + 0.5) / nx - 0.5,
        indexing="ij",
    )
    radius = np.sqrt((x / 0.45) ** 2 + (y / 0.45) ** 2 + (z / 0.5) ** 2)
    wobble = ndimage.gaussian_filter(rng.standard_normal(radius.shape), 1.5)
    score = radius + 0.3 * wobble / (wobble.std() + 1e-12)
    mask = np.zeros(radius.size, dtype=bool)
    mask[np.argsort(score.ravel(), kind="stable")[:n_voxels]] = True
    mask = mask.reshape(radius.shape)
    # anatomical-ish: bright head, darker core, a rim, smoothed, a little noise
    head = np.clip(1.2 - radius, 0, None)
    ref = ndimage.gaussian_filter(600 * head + 300 * (np.abs(radius - 0.7) < 0.15), 0.8)
    ref = ref + 10 * rng.standard_normal(ref.shape)
    ref = np.clip(ref, 0, None).astype(np.float32)
    affine = np.diag([2.5, 2.5, 4.0, 1.0])
    affine[:3, 3] = -0.5 * np.array([nx * 2.5, ny * 2.5, nz * 4.0])
    return mask, ref, affine


def smooth_on_mask(rng: np.random.Generator, mask: np.ndarray, n: int, sigma: float) -> np.ndarray:
    """``n`` spatially smooth random fields, read at the mask voxels: (n, n_voxels)."""
    fields = rng.standard_normal((n, *mask.shape))
    out = np.empty((n, int(mask.sum())))
    for i in range(n):
        out[i] = ndimage.gaussian_filter(fields[i], sigma)[mask]
    return out


def auditory_voxels(mask: np.ndarray, has_signal: np.ndarray, fraction: float) -> np.ndarray:
    """The ``fraction`` of signal voxels nearest the middle of the volume's +x face.

    Returns a bool array of shape (n_voxels,).

    A compact patch on one side, as auditory cortex lies on the lateral surface; no random draw.
    """
    zyx = np.argwhere(mask).astype(np.float64)
    nz, ny, nx = mask.shape
    distance = np.linalg.norm(zyx - np.array([(nz - 1) / 2, (ny - 1) / 2, nx - 1]), axis=1)
    distance[~has_signal] = np.inf
    n_auditory = round(fraction * int(has_signal.sum()))
    auditory = np.zeros(len(zyx), dtype=bool)
    auditory[np.argsort(distance, kind="stable")[:n_auditory]] = True
    return auditory


def save_nifti(array_zyx: np.ndarray, affine: np.ndarray, path: Path, dtype) -> None:
    # NIfTI stores (x, y, z); pycortex reads get_fdata().T, giving back (z, y, x)
    img = nib.Nifti1Image(np.ascontiguousarray(array_zyx.T).astype(dtype), affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_data_dtype(dtype)
    with atomic_path(path, suffix=".nii.gz") as tmp:
        nib.save(img, tmp)


def cortical_anatomy(
    root: Path, subjects: Sequence[str], n_voxels: int, seed: int, paths: dict[str, Any]
) -> dict[str, Any]:
    """Grids on pycortex's S1 and each subject's pycortex folder and annotations."""
    from . import cortex as demo_cortex

    cortices = demo_cortex.demo_cortices(subjects, n_voxels, seed)
    parcellation = demo_cortex.synthetic_parcellation()
    paths["pycortex"] = {}
    with tempfile.TemporaryDirectory() as tmp:
        curvature = demo_cortex.sample_curvature(Path(tmp) / "curvature.npz")
        for subject in subjects:
            paths["pycortex"][subject] = demo_cortex.write_demo_subject(
                root, subject, cortices[subject], curvature=curvature, parcellation=parcellation
            )
    return cortices
