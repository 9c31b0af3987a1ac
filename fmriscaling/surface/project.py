"""A subject's maps on fsaverage5: voxels -> subject vertices -> fsaverage5, and the files.

Language track (ds003020): a voxel value reaches the subject's cortical vertices through the
pycortex mapper of the subject's transform (``cortex.get_mapper``, the sampler the flatmaps use:
``nearest`` by default, configurable), then fsaverage5 through the registration sphere
(`fmriscaling.surface.sphere.SphereProjection`). Atlas labels (``label/<hemi>.<atlas>.annot``,
already per subject vertex) take the second step only.

Vision track (Algonauts 2023): the challenge vertices *are* fsaverage vertices, selected in
order by ``roi_masks/<hemi>.all-vertices_fsaverage_space.npy`` (a mask over fsaverage's
163,842 vertices per hemisphere). fsaverage5's 10,242 vertices are fsaverage's first 10,242
(icosahedral subdivision keeps the coarser vertices, at the same positions), so a challenge
vertex whose fsaverage index is below 10,242 *is* an fsaverage5 vertex: it is carried exactly,
and the other challenge vertices (~15 of 16) are not drawn (`fsaverage_to_fsaverage5`).

Files: ``maps.npz`` per subject (every map on fsaverage5, both hemispheres, and the labels),
and one GIFTI per map and hemisphere (``.func.gii``, nibabel), readable by any surface tool.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._utils import DataError, atomic_path
from .sphere import FSAVERAGE5_VERTICES, HEMIS, SphereProjection

logger = logging.getLogger(__name__)

__all__ = [
    "GIFTI_HEMI",
    "SurfaceMaps",
    "fsaverage_to_fsaverage5",
    "gifti_name",
    "labels_to_fsaverage5",
    "load_surface_maps",
    "project_subject",
    "read_func_gifti",
    "save_surface_maps",
    "voxel_vertex_matrix",
    "voxels_to_vertices",
    "write_func_gifti",
    "write_giftis",
]

#: BIDS hemisphere entity of each hemisphere.
GIFTI_HEMI = {"lh": "L", "rh": "R"}
_STRUCTURE = {"lh": "CortexLeft", "rh": "CortexRight"}
#: fsaverage (icosahedron order 7) vertices per hemisphere.
FSAVERAGE_VERTICES = 163842


def voxel_vertex_matrix(
    db_dir: str | os.PathLike,
    subject: str,
    xfmname: str,
    mask: str | os.PathLike,
    *,
    sampler: str = "nearest",
):
    """pycortex's voxel -> vertex weights restricted to the mask's voxels.

    Parameters
    ----------
    db_dir : path-like
        pycortex filestore holding ``<subject>/``.
    subject, xfmname : str
    mask : path-like
        The cortical mask of the values (its voxels, in pycortex's (z, y, x) C order, are the
        value columns).
    sampler : str
        pycortex mapper type: ``nearest``, ``line_nearest``, ``trilinear``, ...

    Returns
    -------
    scipy.sparse.csr_matrix of shape (n_vertices_lh + n_vertices_rh, n_voxels)
        Left hemisphere first (the order of pycortex's surfaces and the FreeSurfer files).
    dict of str to int
        Vertices per hemisphere.
    """
    import scipy.sparse as sp

    from .._pycortex import pycortex_session
    from ..responses import load_mask

    mask_zyx, n_voxels = load_mask(mask)
    columns = np.flatnonzero(mask_zyx.ravel())
    with pycortex_session(db_dir, [subject]) as cortex:
        mapper = cortex.get_mapper(subject, xfmname, sampler)
        parts = [sp.csr_matrix(m) for m in mapper.masks]
    for part in parts:
        if part.shape[1] != mask_zyx.size:
            raise DataError(
                f"{mask}: a volume of {mask_zyx.size} voxels, but pycortex's {sampler} mapper of "
                f"{subject}/{xfmname} samples {part.shape[1]}; the mask must be the transform's"
            )
    matrix = sp.vstack(parts).tocsc()[:, columns].tocsr()
    counts = {hemi: int(part.shape[0]) for hemi, part in zip(HEMIS, parts, strict=True)}
    logger.info(
        "%s: %d mask voxels -> %d + %d vertices (%s sampler); %d vertices sample a mask voxel",
        subject, n_voxels, counts["lh"], counts["rh"], sampler,
        int((np.asarray(matrix.sum(axis=1)).ravel() > 0).sum()),
    )  # fmt: skip
    return matrix, counts


def voxels_to_vertices(matrix, values: np.ndarray) -> np.ndarray:
    """Per vertex, the weighted mean of its mask voxels' finite values (NaN where none).

    Parameters
    ----------
    matrix : sparse matrix of shape (n_vertices, n_voxels)
        From `voxel_vertex_matrix`.
    values : array of shape (n_voxels,)

    Returns
    -------
    float64 array of shape (n_vertices,)
    """
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (matrix.shape[1],):
        raise DataError(f"{values.shape[0]} values for a mask of {matrix.shape[1]} voxels")
    finite = np.isfinite(values)
    total = matrix @ np.where(finite, values, 0.0)
    weight = matrix @ finite.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 0, total / np.where(weight > 0, weight, 1.0), np.nan)


def fsaverage_to_fsaverage5(
    values: np.ndarray, all_vertices: Mapping[str, np.ndarray] | Sequence[np.ndarray]
) -> tuple[np.ndarray, int]:
    """Challenge-vertex values on fsaverage5 (module docstring), both hemispheres.

    Parameters
    ----------
    values : array of shape (n_challenge_vertices,) or (n, n_challenge_vertices)
        Challenge-vertex values, hemispheres concatenated in the order of ``all_vertices``; a
        2-D array is several maps (rows).
    all_vertices : mapping of hemisphere to bool array of shape (163842,), or (lh, rh)
        The challenge's ``all-vertices_fsaverage_space`` masks, in the order the values'
        hemispheres are concatenated (``vision.dataset.hemispheres``); a hemisphere left out is
        NaN on fsaverage5.

    Returns
    -------
    float64 array of shape (2 x 10242,) (or (n, 2 x 10242)), left hemisphere first
        NaN where no challenge vertex sits.
    int
        Challenge vertices carried (the others are not fsaverage5 vertices).
    """
    if not isinstance(all_vertices, Mapping):
        all_vertices = dict(zip(HEMIS, all_vertices, strict=True))
    values = np.asarray(values)
    squeeze = values.ndim == 1
    values = np.atleast_2d(values).astype(np.float64)
    masks = {h: np.asarray(m).ravel() > 0 for h, m in all_vertices.items()}
    for hemi, mask in masks.items():
        if hemi not in HEMIS:
            raise DataError(f"unknown hemisphere {hemi!r}; expected lh or rh")
        if mask.size != FSAVERAGE_VERTICES:
            raise DataError(
                f"the {hemi} all-vertices mask has {mask.size} vertices: expected fsaverage's "
                f"{FSAVERAGE_VERTICES} (roi_masks/<hemi>.all-vertices_fsaverage_space.npy)"
            )
    sizes = {h: int(m.sum()) for h, m in masks.items()}
    if values.shape[1] != sum(sizes.values()):
        raise DataError(
            f"{values.shape[1]} vertex values, but the all-vertices masks select "
            f"{' + '.join(f'{n} ({h})' for h, n in sizes.items())}; the masks and the fits must "
            "be the same subject's, with the hemispheres in the same order"
        )
    out = np.full((values.shape[0], 2 * FSAVERAGE5_VERTICES), np.nan)
    start, carried = 0, 0
    for hemi, mask in masks.items():
        index = np.flatnonzero(mask)  # fsaverage index of each challenge vertex, in order
        keep = index < FSAVERAGE5_VERTICES
        offset = 0 if hemi == "lh" else FSAVERAGE5_VERTICES
        out[:, offset + index[keep]] = values[:, start : start + sizes[hemi]][:, keep]
        start += sizes[hemi]
        carried += int(keep.sum())
    return (out[0] if squeeze else out), carried


def labels_to_fsaverage5(
    labels: np.ndarray, all_vertices: Mapping[str, np.ndarray] | Sequence[np.ndarray]
) -> np.ndarray:
    """Challenge-vertex labels (str) on fsaverage5, as `fsaverage_to_fsaverage5` carries
    values; ``""`` where no challenge vertex sits."""
    labels = np.asarray(labels, dtype=str)
    codes_of, codes = np.unique(labels, return_inverse=True)
    carried, _ = fsaverage_to_fsaverage5(codes.astype(np.float64), all_vertices)
    out = np.full(carried.shape, "", dtype=codes_of.dtype if codes_of.size else "<U1")
    has = np.isfinite(carried)
    out[has] = codes_of[carried[has].astype(np.int64)]
    return out


@dataclass
class SurfaceMaps:
    """Maps and labels of one subject (or the group) on fsaverage5.

    Attributes
    ----------
    names : list of str
    values : float array of shape (n_maps, 2 x 10242)
        Left hemisphere first; NaN where there is no value.
    labels : dict of str to str array of shape (2 x 10242,)
        Atlas -> label per vertex (``""``: none).
    counts : int array of shape (n_maps, 2 x 10242), optional
        Group maps: subjects contributing per vertex.
    """

    names: list[str]
    values: np.ndarray
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    counts: np.ndarray | None = None

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.names:
            raise KeyError(f"no map {name!r}; maps: {', '.join(self.names)}")
        return self.values[self.names.index(name)]

    def hemisphere(self, name: str, hemi: str) -> np.ndarray:
        return _hemisphere(self[name], hemi)


def _hemisphere(values: np.ndarray, hemi: str) -> np.ndarray:
    """One hemisphere of an fsaverage5 array of both (left first)."""
    half = values.shape[-1] // 2
    return values[..., :half] if hemi == "lh" else values[..., half:]


def save_surface_maps(path: str | os.PathLike, maps: SurfaceMaps) -> Path:
    """Write `SurfaceMaps` as one ``.npz`` (atomically)."""
    arrays = {"names": np.asarray(maps.names, dtype=str), "values": maps.values.astype(np.float32)}
    arrays.update({f"label_{atlas}": np.asarray(v, dtype=str) for atlas, v in maps.labels.items()})
    if maps.counts is not None:
        arrays["counts"] = maps.counts.astype(np.int32)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)
    return Path(path)


def load_surface_maps(path: str | os.PathLike) -> SurfaceMaps:
    """Read a file of `save_surface_maps`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist; run the rule that writes the surface maps")
    with np.load(path, allow_pickle=False) as data:
        if "names" not in data.files or "values" not in data.files:
            raise DataError(f"{path} is not a surface-maps file (no names / values)")
        labels = {k[len("label_") :]: data[k] for k in data.files if k.startswith("label_")}
        return SurfaceMaps(
            names=[str(n) for n in data["names"]],
            values=data["values"].astype(np.float64),
            labels=labels,
            counts=data["counts"] if "counts" in data.files else None,
        )


def gifti_name(prefix: str, hemi: str, map_name: str, mesh: str = "fsaverage5") -> str:
    """``<prefix>_space-<mesh>_hemi-<L|R>_desc-<map>.func.gii`` (BIDS-like)."""
    return f"{prefix}_space-{mesh}_hemi-{GIFTI_HEMI[hemi]}_desc-{map_name}.func.gii"


def write_func_gifti(
    path: str | os.PathLike,
    values: np.ndarray,
    *,
    hemi: str,
    name: str,
    meta: Mapping[str, str] | None = None,
    counts: np.ndarray | None = None,
) -> Path:
    """One hemisphere's map as a GIFTI functional file (float32; a second array of subject
    counts for a group map), atomically."""
    import nibabel as nib

    image = nib.gifti.GiftiImage(
        meta=nib.gifti.GiftiMetaData({"AnatomicalStructurePrimary": _STRUCTURE[hemi]})
    )
    info = {"Name": name, **{str(k): str(v) for k, v in (meta or {}).items()}}
    image.add_gifti_data_array(
        nib.gifti.GiftiDataArray(
            np.asarray(values, dtype=np.float32),
            intent="NIFTI_INTENT_ESTIMATE",
            datatype="NIFTI_TYPE_FLOAT32",
            meta=nib.gifti.GiftiMetaData(info),
        )
    )
    if counts is not None:
        image.add_gifti_data_array(
            nib.gifti.GiftiDataArray(
                np.asarray(counts, dtype=np.float32),
                intent="NIFTI_INTENT_NONE",
                datatype="NIFTI_TYPE_FLOAT32",
                meta=nib.gifti.GiftiMetaData({"Name": f"{name} (subjects contributing)"}),
            )
        )
    with atomic_path(path, suffix=".func.gii") as tmp:
        nib.save(image, tmp)
    return Path(path)


def read_func_gifti(path: str | os.PathLike) -> np.ndarray:
    """The first data array of a GIFTI functional file."""
    import nibabel as nib

    return np.asarray(nib.load(os.fspath(path)).darrays[0].data)


def write_giftis(
    maps: SurfaceMaps, files: Mapping[str, Mapping[str, str | os.PathLike]], meta: Mapping
) -> None:
    """Every map of ``maps`` to its ``files[map][hemi]``."""
    for i, name in enumerate(maps.names):
        for hemi in HEMIS:
            counts = None if maps.counts is None else _hemisphere(maps.counts[i], hemi)
            write_func_gifti(
                files[name][hemi], maps.hemisphere(name, hemi), hemi=hemi, name=name,
                meta=meta, counts=counts,
            )  # fmt: skip


def project_subject(
    voxel_maps: Mapping[str, np.ndarray],
    projection: SphereProjection,
    matrix,
    vertex_labels: Mapping[str, np.ndarray] | None = None,
) -> SurfaceMaps:
    """Voxel maps and vertex labels of a subject on fsaverage5."""
    names = list(voxel_maps)
    values = np.stack(
        [projection.project(voxels_to_vertices(matrix, voxel_maps[n])) for n in names]
    ) if names else np.zeros((0, sum(projection.n_target.values())))  # fmt: skip
    labels = {a: projection.project_labels(v) for a, v in (vertex_labels or {}).items()}
    return SurfaceMaps(names=names, values=values, labels=labels)
