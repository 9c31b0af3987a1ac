"""Regions of interest of every cortical voxel, from the subject's own anatomy (pycortex).

A voxel of the cortical mask (``transforms/<xfm>/mask_thick.nii.gz``) is labelled through
pycortex's own volume-to-surface assignment for that transform: `cortex.utils.get_vox_dist`
gives, per voxel of the transform's reference grid, the nearest vertex of the fiducial surface
(the same assignment pycortex uses to build its "thick" mask and, in
``cortex.utils.get_roi_masks(..., gm_sampler="thick")``, its ROI masks). The voxel takes that
vertex's labels:

- anatomical: FreeSurfer annotations of the subject's surfaces
  (``label/{lh,rh}.<atlas>.annot``, e.g. ``aparc`` and ``aparc.a2009s``), whose vertices are in
  the order of pycortex's surfaces (left hemisphere first);
- functional: the ROI shapes of the subject's ``overlays.svg`` (``cortex.db.get_overlay``),
  when pycortex can read them.

ROIs are groups of atlas labels (``{"auditory": {"aparc": ["superiortemporal",
"transversetemporal"]}}``) plus every functional ROI. No coordinate maths is done here.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._pycortex import pycortex_session
from ._utils import DataError, atomic_path, write_provenance
from .responses import load_mask

logger = logging.getLogger(__name__)

__all__ = [
    "VoxelLabels",
    "annotation_relpath",
    "label_voxels",
    "load_voxel_labels",
    "read_annotation",
    "save_voxel_labels",
]

HEMISPHERES = ("lh", "rh")


def annotation_relpath(subject: str, hemi: str, atlas: str) -> str:
    """Path of a FreeSurfer annotation in the ds003020 layout.

    Parameters
    ----------
    subject : str
    hemi : {"lh", "rh"}
    atlas : str
        ``aparc``, ``aparc.a2009s``, ...

    Returns
    -------
    str
        ``derivative/freesurfer_subjdir/<subject>/label/<hemi>.<atlas>.annot``.
    """
    if hemi not in HEMISPHERES:
        raise ValueError(f"hemi must be 'lh' or 'rh', got {hemi!r}")
    return f"derivative/freesurfer_subjdir/{subject}/label/{hemi}.{atlas}.annot"


def read_annotation(
    lh: str | os.PathLike, rh: str | os.PathLike, n_vertices: tuple[int, int]
) -> np.ndarray:
    """Label name per vertex of both hemispheres, left first (pycortex's vertex order).

    Parameters
    ----------
    lh, rh : path-like
        FreeSurfer ``.annot`` files.
    n_vertices : (int, int)
        Vertices of the subject's left and right surfaces.

    Returns
    -------
    names : str array of shape (n_lh + n_rh,)
        ``""`` where a vertex has no label.

    Raises
    ------
    DataError
        When a file is missing or its vertex count differs from the surface's.
    """
    import nibabel as nib

    out = []
    for path, n in zip((lh, rh), n_vertices, strict=True):
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path} does not exist: the FreeSurfer annotation is needed for ROIs")
        labels, _, names = nib.freesurfer.read_annot(str(path))
        if labels.shape != (n,):
            raise DataError(
                f"{path} labels {labels.shape[0]} vertices, but the pycortex surface has {n}; "
                "the annotation and the surfaces must come from the same FreeSurfer subject"
            )
        names = np.array([""] + [n.decode() if isinstance(n, bytes) else str(n) for n in names])
        out.append(names[labels + 1])  # -1 (no label) -> ""
    return np.concatenate(out)


@dataclass(frozen=True)
class VoxelLabels:
    """Labels of the voxels of a cortical mask.

    Attributes
    ----------
    subject : str
    vertex : int array of shape (n_voxels,)
        Nearest fiducial vertex (left hemisphere first), pycortex's assignment.
    distance_mm : float array of shape (n_voxels,)
        Distance from the voxel centre to that vertex.
    hemisphere : str array of shape (n_voxels,)
        ``"lh"`` or ``"rh"``.
    atlas_labels : dict of str to str array of shape (n_voxels,)
        Per atlas, the label of each voxel (``""`` for none).
    roi_names : list of str
    roi_sources : list of str
        ``"anatomical"`` (a group of atlas labels) or ``"functional"`` (overlays.svg), per ROI.
    membership : bool array of shape (n_rois, n_voxels)
    """

    subject: str
    vertex: np.ndarray
    distance_mm: np.ndarray
    hemisphere: np.ndarray
    atlas_labels: dict[str, np.ndarray]
    roi_names: list[str]
    roi_sources: list[str]
    membership: np.ndarray

    @property
    def n_voxels(self) -> int:
        """Voxels of the mask."""
        return int(self.vertex.size)


def label_voxels(
    db_dir: str | os.PathLike,
    subject: str,
    mask: str | os.PathLike,
    *,
    xfmname: str,
    annotations: Mapping[str, Sequence[str | os.PathLike]],
    groups: Mapping[str, Mapping[str, Sequence[str]]],
    functional: bool = True,
) -> VoxelLabels:
    """Label every voxel of a cortical mask through pycortex's voxel-to-vertex assignment.

    Parameters
    ----------
    db_dir : path-like
        pycortex filestore holding ``<subject>/`` (surfaces, transforms, overlays.svg).
    subject : str
    mask : path-like
        The cortical mask whose voxels, in pycortex's (z, y, x) order, are the response columns.
    xfmname : str
        The transform of the mask (ds003020: ``<subject>_auto``).
    annotations : mapping of str to (path, path)
        Atlas name -> its (lh, rh) ``.annot`` files.
    groups : mapping of str to mapping of str to sequence of str
        Anatomical ROIs: name -> {atlas: labels}; a voxel with any of the labels is in it.
    functional : bool
        Add the ROIs of ``overlays.svg`` (skipped, with a log line, when pycortex cannot
        read them).

    Returns
    -------
    VoxelLabels

    Raises
    ------
    DataError
        When the mask and the transform's grid differ, an annotation is missing or does not
        fit the surfaces, or a group names an atlas without annotations.
    """
    mask_zyx, n_voxels = load_mask(mask)
    for roi, spec in groups.items():
        missing = sorted(set(spec) - set(annotations))
        if missing:
            raise DataError(
                f"ROI {roi!r} uses atlas(es) {missing}, but no annotation files were given "
                f"for them (have {sorted(annotations)})"
            )
    with pycortex_session(db_dir, [subject]) as cortex:
        distance, nearest = cortex.utils.get_vox_dist(subject, xfmname)  # (z, y, x)
        if distance.shape != mask_zyx.shape:
            raise DataError(
                f"{mask}: mask of shape {mask_zyx.shape} (z, y, x), but transform {xfmname} "
                f"of {subject} in {db_dir} has a reference grid of shape {distance.shape}"
            )
        (lh, _), (rh, _) = cortex.db.get_surf(subject, "fiducial")
        n_hemi = (len(lh), len(rh))
        functional_rois = _overlay_rois(cortex, subject) if functional else {}
    vertex = np.asarray(nearest[mask_zyx], dtype=np.int64)
    hemisphere = np.where(vertex < n_hemi[0], "lh", "rh")
    atlas_labels = {
        atlas: read_annotation(*files, n_vertices=n_hemi)[vertex]
        for atlas, files in annotations.items()
    }
    names, sources, rows = [], [], []
    for roi, spec in groups.items():
        inside = np.zeros(n_voxels, dtype=bool)
        for atlas, labels in spec.items():
            inside |= np.isin(atlas_labels[atlas], list(labels))
        names.append(roi)
        sources.append("anatomical")
        rows.append(inside)
    for roi, verts in functional_rois.items():
        if roi in groups:
            logger.warning("functional ROI %s has the name of an anatomical one; skipped", roi)
            continue
        names.append(roi)
        sources.append("functional")
        rows.append(np.isin(vertex, verts))
    membership = np.array(rows, dtype=bool).reshape(len(rows), n_voxels)
    for roi, inside in zip(names, membership, strict=True):
        logger.info("%s: ROI %s has %d of %d voxels", subject, roi, int(inside.sum()), n_voxels)
    return VoxelLabels(
        subject=subject,
        vertex=vertex,
        distance_mm=np.asarray(distance[mask_zyx], dtype=np.float64),
        hemisphere=hemisphere,
        atlas_labels=atlas_labels,
        roi_names=names,
        roi_sources=sources,
        membership=membership,
    )


def _overlay_rois(cortex, subject: str) -> dict[str, np.ndarray]:
    """Vertices of each ROI shape of the subject's overlays.svg (flatmap vertices only)."""
    try:
        # pycortex warns about every empty layer; the empty ROIs are logged once below
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            overlay = cortex.db.get_overlay(subject)
            rois = {name: overlay.rois.get_mask(name) for name in overlay.rois.shapes}
        on_flatmap = np.unique(cortex.db.get_surf(subject, "flat", merge=True)[1])
        rois = {name: np.intersect1d(verts, on_flatmap) for name, verts in rois.items()}
    except Exception as exc:  # pycortex raises many kinds for an unreadable overlay
        logger.warning(
            "%s: no functional ROIs, pycortex could not read overlays.svg: %s", subject, exc
        )
        return {}
    empty = sorted(name for name, verts in rois.items() if verts.size == 0)
    if empty:
        logger.info("%s: overlays.svg ROIs without shapes, skipped: %s", subject, ", ".join(empty))
    return {name: verts for name, verts in sorted(rois.items()) if verts.size}


def save_voxel_labels(
    labels: VoxelLabels, path: str | os.PathLike, params: Mapping | None = None
) -> Path:
    """Write `VoxelLabels` as an npz (no pickles), atomically, with provenance beside it.

    Parameters
    ----------
    labels : VoxelLabels
    path : path-like
    params : mapping, optional
        Recorded in the provenance sidecar.

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    atlases = sorted(labels.atlas_labels)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(
            tmp,
            subject=np.array(labels.subject),
            vertex=labels.vertex,
            distance_mm=labels.distance_mm,
            hemisphere=labels.hemisphere.astype("U2"),
            atlases=np.array(atlases, dtype="U"),
            **{f"atlas_{i}": labels.atlas_labels[a].astype("U") for i, a in enumerate(atlases)},
            roi_names=np.array(labels.roi_names, dtype="U"),
            roi_sources=np.array(labels.roi_sources, dtype="U"),
            membership=labels.membership,
        )
    write_provenance(path, params, subject=labels.subject, n_rois=len(labels.roi_names))
    return path


def load_voxel_labels(path: str | os.PathLike) -> VoxelLabels:
    """Read what `save_voxel_labels` wrote.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    VoxelLabels
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist; build it with the roi_labels rule")
    with np.load(path, allow_pickle=False) as f:
        atlases = [str(a) for a in f["atlases"]]
        n_rois = f["roi_names"].size
        return VoxelLabels(
            subject=str(f["subject"]),
            vertex=f["vertex"],
            distance_mm=f["distance_mm"],
            hemisphere=f["hemisphere"],
            atlas_labels={a: f[f"atlas_{i}"] for i, a in enumerate(atlases)},
            roi_names=[str(n) for n in f["roi_names"]],
            roi_sources=[str(s) for s in f["roi_sources"]],
            membership=f["membership"].reshape(n_rois, -1),
        )


def roi_voxel_sets(labels: VoxelLabels) -> list[tuple[str, str, np.ndarray]]:
    """The subject's ROIs as (name, source, bool array of shape (n_voxels,)) voxel sets."""
    return [
        (str(name), str(source), np.asarray(inside, dtype=bool))
        for name, source, inside in zip(
            labels.roi_names, labels.roi_sources, labels.membership, strict=True
        )
    ]
