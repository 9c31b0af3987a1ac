"""The demo's cortex: pycortex's sample subject S1 seen through a coarse functional grid.

Each demo subject gets a pycortex subject folder and FreeSurfer-style parcellations of its own,
written in the ds003020 layout, so the analysis draws real flatmaps and labels real voxels
offline:

``derivative/pycortex-db/<subject>/``
    S1's surfaces (flat, inflated, pia, white matter) and ``overlays.svg`` (its functional
    ROIs: AC, Broca, sPMv, ...), copied; ``surface-info/curvature.npz`` (computed once by
    pycortex); ``transforms/<subject>_auto/`` with a functional grid of its own:
    ``matrices.xfm``, ``reference.nii.gz`` and ``mask_thick.nii.gz``.
``derivative/freesurfer_subjdir/<subject>/label/{lh,rh}.{aparc,aparc.a2009s}.annot``
    a *synthetic* parcellation of S1's surface (`synthetic_parcellation`), named after
    FreeSurfer's Desikan-Killiany (``aparc``) and Destrieux (``aparc.a2009s``) labels.
``derivative/freesurfer_subjdir/<subject>/surf/{lh,rh}.sphere.reg``
    a *synthetic* registration sphere (`synthetic_spheres`): S1's inflated surface pushed onto
    a sphere, for the group maps on fsaverage5.

The grid: S1's ``fullhead`` transform (2.24 x 2.24 x 4.13 mm voxels) coarsened by an integer
factor per axis, shifted by a seeded offset per subject. The coarsest factor whose pycortex
"thick" mask (voxels within 8 mm of the fiducial surface, `cortex.utils.get_vox_dist`) holds at
least ``n_voxels`` voxels is used, and the ``n_voxels`` voxels nearest the surface form the
subject's cortical mask: a few hundred voxels cover the whole cortex, so flatmaps have no
holes. The mask's voxels, in pycortex's (z, y, x) C order, are the response columns.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from .._pycortex import (
    SAMPLE_SUBJECT,
    SAMPLE_SURFACE_INFO,
    SUBJECT_FILES,
    pycortex_session,
    sample_filestore,
)
from .._utils import ConfigError, atomic_path
from ..rois import annotation_relpath
from ..surface.sphere import sphere_relpath
from .stories import seeded_rng

logger = logging.getLogger(__name__)

__all__ = [
    "TEMPLATE_TRANSFORM",
    "DemoCortex",
    "demo_cortices",
    "sample_curvature",
    "synthetic_parcellation",
    "write_annotation",
    "write_demo_subject",
]

#: S1's transform the demo grids are built from.
TEMPLATE_TRANSFORM = "fullhead"
#: pycortex's "thick" cortical mask: voxels whose centre is within 8 mm of the fiducial surface.
THICK_MM = 8.0
_MAX_FACTOR = 16

#: Synthetic Desikan-Killiany regions: seed position (posterior -> anterior, inferior ->
#: superior, medial -> lateral, each 0..1 of the hemisphere's extent). A vertex belongs to the
#: nearest seed (in mm), so the regions sit roughly where their names say.
DK_SEEDS: dict[str, tuple[float, float, float]] = {
    "frontalpole": (0.98, 0.45, 0.5),
    "rostralmiddlefrontal": (0.85, 0.65, 0.85),
    "caudalmiddlefrontal": (0.6, 0.8, 0.8),
    "superiorfrontal": (0.75, 0.9, 0.35),
    "parstriangularis": (0.78, 0.45, 1.0),
    "parsopercularis": (0.68, 0.5, 1.0),
    "parsorbitalis": (0.85, 0.35, 0.95),
    "lateralorbitofrontal": (0.8, 0.25, 0.75),
    "medialorbitofrontal": (0.85, 0.2, 0.2),
    "precentral": (0.5, 0.8, 0.9),
    "postcentral": (0.42, 0.8, 0.9),
    "paracentral": (0.47, 0.95, 0.05),
    "supramarginal": (0.38, 0.65, 1.0),
    "superiorparietal": (0.22, 0.85, 0.55),
    "inferiorparietal": (0.2, 0.65, 0.95),
    "superiortemporal": (0.55, 0.4, 1.0),
    "transversetemporal": (0.5, 0.5, 0.75),
    "middletemporal": (0.45, 0.25, 1.0),
    "inferiortemporal": (0.4, 0.1, 0.85),
    "insula": (0.62, 0.45, 0.55),
    "lateraloccipital": (0.05, 0.4, 0.85),
    "precuneus": (0.25, 0.7, 0.05),
    "posteriorcingulate": (0.45, 0.6, 0.05),
    "lingual": (0.1, 0.25, 0.1),
    "cuneus": (0.03, 0.45, 0.05),
    "fusiform": (0.3, 0.05, 0.45),
    "parahippocampal": (0.45, 0.1, 0.2),
}
#: Destrieux names of some synthetic regions; every other vertex is "Unknown" in aparc.a2009s.
DESTRIEUX_NAMES = {
    "inferiorparietal": "G_pariet_inf-Angular",
    "supramarginal": "G_pariet_inf-Supramar",
    "precuneus": "G_precuneus",
    "superiortemporal": "G_temp_sup-Lateral",
    "transversetemporal": "G_temp_sup-G_T_transv",
}


@dataclass(frozen=True)
class DemoCortex:
    """A demo subject's functional grid on S1.

    Attributes
    ----------
    mask : bool array of shape (nz, ny, nx)
        The cortical mask in pycortex's (z, y, x) orientation; ``n_voxels`` voxels.
    reference : float32 array of shape (nz, ny, nx)
        S1's functional reference, smoothed and resampled onto the grid.
    affine : array of shape (4, 4)
        Voxel (x, y, z) -> scanner mm of the grid.
    matrices : str
        pycortex's ``matrices.xfm`` of the grid (JSON text, ``coord`` and ``magnet``).
    factor : tuple of int
        Coarsening of S1's ``fullhead`` grid per axis (x, y, z).
    """

    mask: np.ndarray
    reference: np.ndarray
    affine: np.ndarray
    matrices: str
    factor: tuple[int, int, int]


def demo_cortices(subjects: Sequence[str], n_voxels: int, seed: int) -> dict[str, DemoCortex]:
    """Functional grids of the demo subjects on pycortex's sample subject S1.

    Parameters
    ----------
    subjects : sequence of str
    n_voxels : int
        Voxels of each subject's cortical mask.
    seed : int
        Seed of the per-subject grid offsets.

    Returns
    -------
    dict of str to DemoCortex

    Raises
    ------
    ConfigError
        When S1 has fewer than ``n_voxels`` cortical voxels even on its own grid.
    """
    filestore = sample_filestore()
    out = {}
    with pycortex_session(filestore, [SAMPLE_SUBJECT]) as cortex:
        fine = cortex.db.get_xfm(SAMPLE_SUBJECT, TEMPLATE_TRANSFORM)
        fine_ref = nib.load(
            filestore / SAMPLE_SUBJECT / "transforms" / TEMPLATE_TRANSFORM / "reference.nii.gz"
        )
        for subject in subjects:
            shift = seeded_rng(seed, "anatomy", subject).uniform(size=3)
            out[subject] = _subject_cortex(cortex, fine, fine_ref, subject, shift, n_voxels)
    return out


def _subject_cortex(cortex, fine, fine_ref, subject: str, shift, n_voxels: int) -> DemoCortex:
    """The coarsest grid with ``n_voxels`` thick-mask voxels, searched from a guess."""
    grids: dict[int, tuple] = {}

    def count(f: int) -> int:
        if f not in grids:
            grids[f] = _grid(cortex, fine, fine_ref, f, shift, subject)
        return int((grids[f][0] < THICK_MM).sum())

    factor = int(np.clip(round(8 * (300 / n_voxels) ** (1 / 3)), 1, _MAX_FACTOR))
    if count(factor) >= n_voxels:
        while factor < _MAX_FACTOR and count(factor + 1) >= n_voxels:
            factor += 1
    else:
        while factor > 1 and count(factor) < n_voxels:
            factor -= 1
        if count(factor) < n_voxels:
            raise ConfigError(
                f"synthetic.n_voxels = {n_voxels}: expected at most {count(1)}, the cortical "
                f"voxels of pycortex's {SAMPLE_SUBJECT} on its own grid."
            )
    dist, reference, affine, matrices, factors = grids[factor]
    # the n_voxels voxels nearest the surface: pycortex's thick mask, trimmed to size
    order = np.argsort(dist.ravel(), kind="stable")[:n_voxels]
    mask = np.zeros(dist.size, dtype=bool)
    mask[order] = True
    logger.info(
        "%s: %d voxels on a %s grid (S1 %s coarsened %s), at most %.1f mm from the surface",
        subject,
        n_voxels,
        "x".join(map(str, dist.shape[::-1])),
        TEMPLATE_TRANSFORM,
        factors,
        float(dist.ravel()[order].max()),
    )
    return DemoCortex(
        mask=mask.reshape(dist.shape),
        reference=reference,
        affine=affine,
        matrices=matrices,
        factor=factors,
    )


def _grid(cortex, fine, fine_ref, f: int, shift: np.ndarray, subject: str) -> tuple:
    """Distances to the surface, reference, affine and xfm of S1's grid coarsened by ``f``."""
    zooms = np.asarray(fine_ref.header.get_zooms()[:3], dtype=float)
    # near-isotropic coarse voxels: fewer steps along the thick axis
    factors = np.maximum(1, np.round(f * zooms[0] / zooms)).astype(int)
    offset = np.floor(shift * factors)
    fine_shape = np.asarray(fine_ref.shape[:3])
    shape = np.ceil((fine_shape - offset) / factors).astype(int)
    # coarse index i' covers fine indices offset + f i' ... offset + f i' + f - 1
    to_fine = np.eye(4)
    to_fine[:3, :3] = np.diag(factors)
    to_fine[:3, 3] = offset + (factors - 1) / 2
    affine = fine_ref.affine @ to_fine
    coord = np.linalg.inv(to_fine) @ np.asarray(fine.xfm)
    fine_data = np.asanyarray(fine_ref.dataobj, dtype=np.float32)
    smooth = ndimage.gaussian_filter(fine_data, sigma=factors / 2)
    centres = np.stack(
        np.meshgrid(
            *(
                offset[i] + factors[i] * np.arange(shape[i]) + (factors[i] - 1) / 2
                for i in range(3)
            ),
            indexing="ij",
        )
    )
    reference_xyz = ndimage.map_coordinates(smooth, centres, order=1, mode="nearest")
    name = f"{subject}_grid{f}"
    with tempfile.TemporaryDirectory() as tmp:
        ref_path = Path(tmp) / "reference.nii.gz"
        nib.save(nib.Nifti1Image(reference_xyz.astype(np.float32), affine), ref_path)
        cortex.db.save_xfm(SAMPLE_SUBJECT, name, coord, xfmtype="coord", reference=str(ref_path))
    dist, _ = cortex.utils.get_vox_dist(SAMPLE_SUBJECT, name)  # (z, y, x)
    matrices = (
        Path(cortex.db.filestore) / SAMPLE_SUBJECT / "transforms" / name / "matrices.xfm"
    ).read_text()
    reference = np.ascontiguousarray(reference_xyz.T.astype(np.float32))
    return dist, reference, affine, matrices, tuple(int(v) for v in factors)


def write_demo_subject(
    root: str | os.PathLike,
    subject: str,
    cortex: DemoCortex,
    *,
    curvature: str | os.PathLike,
    parcellation: tuple[tuple[np.ndarray, np.ndarray], list[str]],
) -> dict[str, str]:
    """Write a demo subject's pycortex folder (but the masks) and parcellations.

    The generator writes ``mask_thick.nii.gz`` and ``reference.nii.gz`` from ``cortex`` itself,
    as it does for its synthetic anatomy.

    Parameters
    ----------
    root : path-like
        Dataset root (holds ``derivative/``).
    subject : str
    cortex : DemoCortex
        From `demo_cortices`.
    curvature : path-like
        S1's ``curvature.npz`` (from `sample_curvature`).
    parcellation : ((lh, rh), names)
        From `synthetic_parcellation`.

    Returns
    -------
    dict of str to str
        ``matrices`` and the annotation files (``lh.aparc``, ``rh.aparc.a2009s``, ...).
    """
    root = Path(root)
    folder = root / "derivative" / "pycortex-db" / subject
    template = sample_filestore() / SAMPLE_SUBJECT
    for relpath in SUBJECT_FILES:
        with atomic_path(folder / relpath) as tmp:
            shutil.copyfile(template / relpath, tmp)
    with atomic_path(folder / "surface-info" / "curvature.npz", suffix=".npz") as tmp:
        shutil.copyfile(curvature, tmp)
    # pycortex ships S1's bumpy flatmap (the WebGL viewer's flat surface shading): copied, the
    # viewer does not compute it again for each demo subject
    for relpath in SAMPLE_SURFACE_INFO:
        with atomic_path(folder / relpath) as tmp:
            shutil.copyfile(template / relpath, tmp)
    xfm = folder / "transforms" / f"{subject}_auto"
    with atomic_path(xfm / "matrices.xfm") as tmp:
        tmp.write_text(cortex.matrices)
    paths = {"matrices": str(xfm / "matrices.xfm")}
    for hemi, coords, faces in synthetic_spheres():
        path = root / sphere_relpath(subject, hemi)
        with atomic_path(path) as tmp:
            nib.freesurfer.write_geometry(
                str(tmp), coords, faces, create_stamp="fmriscaling demo: synthetic sphere.reg"
            )
        paths[f"{hemi}.sphere.reg"] = str(path)
    (lh, rh), names = parcellation
    atlases = {"aparc": (names, lh, rh), "aparc.a2009s": _destrieux(names, lh, rh)}
    for atlas, (atlas_names, *hemis) in atlases.items():
        for hemi, labels in zip(("lh", "rh"), hemis, strict=True):
            path = root / annotation_relpath(subject, hemi, atlas)
            write_annotation(path, labels, atlas_names)
            paths[f"{hemi}.{atlas}"] = str(path)
    return paths


def synthetic_spheres() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """A stand-in for FreeSurfer's ``<hemi>.sphere.reg`` of S1: (hemi, coords, faces) per
    hemisphere.

    S1 ships no FreeSurfer directory, so no registration. Each vertex of S1's inflated surface
    is taken relative to the hemisphere's bounding-box centre, scaled by the box's half extent
    per axis (the inflated hemisphere, an elongated blob, becomes a round one) and pushed onto
    the sphere of radius 100. The axes keep their meaning (x left-right, y posterior-anterior,
    z inferior-superior), as on fsaverage's sphere, so lobes land roughly where fsaverage has
    them. Not a registration: it lets the demo run the group-map code offline.
    """
    out = []
    for hemi in ("lh", "rh"):
        path = sample_filestore() / SAMPLE_SUBJECT / "surfaces" / f"inflated_{hemi}.gii"
        image = nib.load(path)
        pts = np.asarray(image.darrays[0].data, dtype=np.float64)
        faces = np.asarray(image.darrays[1].data, dtype=np.int32)
        low, high = pts.min(axis=0), pts.max(axis=0)
        unit = (pts - (low + high) / 2) / ((high - low) / 2)
        unit /= np.linalg.norm(unit, axis=1, keepdims=True)
        out.append((hemi, 100.0 * unit, faces))
    return out


def sample_curvature(dest: str | os.PathLike) -> Path:
    """Compute S1's curvature with pycortex (as ``surface-info/curvature.npz``) into ``dest``."""
    with pycortex_session(sample_filestore(), [SAMPLE_SUBJECT]) as cortex:
        cortex.db.get_surfinfo(SAMPLE_SUBJECT, "curvature").data  # noqa: B018 (computes and saves)
        made = Path(cortex.db.filestore) / SAMPLE_SUBJECT / "surface-info" / "curvature.npz"
        with atomic_path(dest, suffix=".npz") as tmp:
            shutil.copyfile(made, tmp)
    return Path(dest)


def synthetic_parcellation() -> tuple[tuple[np.ndarray, np.ndarray], list[str]]:
    """A geometric stand-in for the Desikan-Killiany parcellation of S1's surface.

    Each vertex of S1's inflated surface gets the region of the nearest `DK_SEEDS` seed, the
    seeds placed within each hemisphere's bounding box (in mm; the inflated surface keeps
    the regions contiguous). Not anatomy: it puts labels
    with the usual names roughly where those regions lie, so the demo's ROI tables have rows.

    Returns
    -------
    (lh, rh) : int arrays of shape (n_vertices_lh,), (n_vertices_rh,)
        Index into ``names`` per vertex.
    names : list of str
        ``"unknown"`` first, then the regions of `DK_SEEDS`.
    """
    names = ["unknown", *DK_SEEDS]
    seeds = np.array(list(DK_SEEDS.values()))
    labels = []
    for hemi in ("lh", "rh"):
        pts = _inflated(hemi)
        low, high = pts.min(axis=0), pts.max(axis=0)
        # medial -> lateral runs towards -x on the left and +x on the right
        medial = high[0] if hemi == "lh" else low[0]
        lateral = low[0] if hemi == "lh" else high[0]
        seed_mm = np.column_stack(
            [
                medial + seeds[:, 2] * (lateral - medial),
                low[1] + seeds[:, 0] * (high[1] - low[1]),
                low[2] + seeds[:, 1] * (high[2] - low[2]),
            ]
        )
        from scipy.spatial import cKDTree

        _, nearest = cKDTree(seed_mm).query(pts)
        labels.append(nearest.astype(np.int32) + 1)
    return (labels[0], labels[1]), names


def _inflated(hemi: str) -> np.ndarray:
    """S1's inflated surface of one hemisphere, in mm."""
    path = sample_filestore() / SAMPLE_SUBJECT / "surfaces" / f"inflated_{hemi}.gii"
    return np.asarray(nib.load(path).darrays[0].data, dtype=np.float64)


def _destrieux(
    names: Sequence[str], lh: np.ndarray, rh: np.ndarray
) -> tuple[list[str], np.ndarray, np.ndarray]:
    out_names = ["Unknown", *DESTRIEUX_NAMES.values()]
    index = {name: out_names.index(DESTRIEUX_NAMES[name]) for name in DESTRIEUX_NAMES}
    lookup = np.array([index.get(name, 0) for name in names], dtype=np.int32)
    return out_names, lookup[lh], lookup[rh]


def write_annotation(path: str | os.PathLike, labels: np.ndarray, names: Sequence[str]) -> Path:
    """Write a FreeSurfer ``.annot`` (one label index per vertex), atomically.

    Parameters
    ----------
    path : path-like
    labels : int array of shape (n_vertices,)
        Index into ``names`` per vertex.
    names : sequence of str
        Label names; colours are derived from the index.

    Returns
    -------
    pathlib.Path
    """
    rng = np.random.default_rng(len(names))
    ctab = np.zeros((len(names), 5), dtype=np.int32)
    ctab[:, :3] = rng.integers(20, 236, size=(len(names), 3))
    with atomic_path(path, suffix=".annot") as tmp:
        nib.freesurfer.write_annot(str(tmp), np.asarray(labels, dtype=np.int32), ctab, list(names))
    return Path(path)
