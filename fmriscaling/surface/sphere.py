"""Carrying per-vertex values from a subject's cortex to fsaverage, on the registration sphere.

FreeSurfer registers every subject's cortical sphere to the fsaverage atlas: a vertex of the
subject's ``surf/<hemi>.sphere.reg`` (radius 100, the vertex order of the subject's white and
pial surfaces, hence pycortex's) sits where fsaverage's own sphere has the matching anatomy.
On that common sphere the projection here is nearest-neighbour in both directions:

- every subject vertex belongs to the *cell* of the fsaverage vertex nearest to its registered
  position (the fsaverage vertex's Voronoi cell on the sphere);
- an fsaverage vertex takes the mean of the finite values in its cell. A subject mesh has ~15x
  more vertices than fsaverage5 (~135,000 against 10,242 per hemisphere), so a cell holds ~13
  vertices and the mean is an area average, where picking one vertex would alias;
- a cell that holds no subject vertex (a coarser subject mesh) takes the value of the subject
  vertex nearest to the fsaverage vertex, so no vertex is left out for want of a neighbour.

Labels (atlas parcels) take the most frequent label of the cell, ties to the first in sorted
order. Values that are NaN (vertices outside the functional mask) stay out of every mean, and a
cell with no finite value is NaN. This is ``mri_surf2surf``'s nearest-neighbour forward and
reverse mapping (``--mapmethod nnfr``) written with a k-d tree on the unit sphere.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from .._utils import DataError

logger = logging.getLogger(__name__)

__all__ = [
    "FSAVERAGE5_VERTICES",
    "HEMIS",
    "SphereProjection",
    "check_vertex_counts",
    "fsaverage_mesh",
    "read_sphere",
    "sphere_relpath",
    "surface_vertex_counts",
]

#: Hemispheres in the order every per-vertex array of both hemispheres uses (left first).
HEMIS = ("lh", "rh")
_NILEARN_HEMI = {"lh": "left", "rh": "right"}
#: fsaverage5 = icosahedron order 5.
FSAVERAGE5_VERTICES = 10242
# a registration sphere's radius; its vertices must lie on it to within this fraction
_SPHERE_TOLERANCE = 0.02


def sphere_relpath(subject: str, hemi: str) -> str:
    """``derivative/freesurfer_subjdir/<subject>/surf/<hemi>.sphere.reg`` (ds003020 layout)."""
    if hemi not in HEMIS:
        raise ValueError(f"hemi must be 'lh' or 'rh', got {hemi!r}")
    return f"derivative/freesurfer_subjdir/{subject}/surf/{hemi}.sphere.reg"


def read_sphere(path: str | os.PathLike) -> np.ndarray:
    """Vertex positions of a FreeSurfer sphere (``?h.sphere.reg``), as unit vectors.

    Parameters
    ----------
    path : path-like
        A FreeSurfer surface file (binary triangle format).

    Returns
    -------
    float64 array of shape (n_vertices, 3)
        Unit vectors from the sphere's centre.

    Raises
    ------
    DataError
        When the file is missing, is not a FreeSurfer surface, or its vertices do not lie on
        one sphere around the origin (e.g. ``lh.white`` given instead of ``lh.sphere.reg``).
    """
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path} does not exist: the subject's FreeSurfer registration sphere is needed for "
            "group maps (rule download_dataset fetches it from ds003020 when group_maps.enabled; "
            "the demo generator writes one; or set group_maps.enabled: false)"
        )
    try:
        coords, _ = nib.freesurfer.read_geometry(str(path))
    except Exception as exc:  # nibabel raises ValueError / struct errors on other formats
        raise DataError(
            f"{path} is not a FreeSurfer surface ({exc}); expected the binary triangle file "
            "surf/<hemi>.sphere.reg of the subject's FreeSurfer directory"
        ) from exc
    return _unit(np.asarray(coords, dtype=np.float64), path)


def _unit(coords: np.ndarray, where: object) -> np.ndarray:
    radius = np.linalg.norm(coords, axis=1)
    median = float(np.median(radius)) if radius.size else 0.0
    if median <= 0 or np.max(np.abs(radius / median - 1.0)) > _SPHERE_TOLERANCE:
        raise DataError(
            f"{where}: the vertices are not on a sphere around the origin (radius "
            f"{radius.min():.1f} .. {radius.max():.1f}); expected a registration sphere "
            "(surf/<hemi>.sphere.reg, radius 100), not a white, pial or inflated surface"
        )
    return coords / radius[:, None]


@functools.lru_cache(maxsize=1)
def fsaverage_mesh(mesh: str = "fsaverage5") -> dict[str, dict[str, np.ndarray]]:
    """nilearn's bundled fsaverage5: sphere, inflated surface, faces and sulcal depth.

    Read from the GIFTI files nilearn ships (``nilearn/datasets/data/fsaverage5/``, what its
    ``load_fsaverage`` reads) with nibabel: no network, and not the 3 s of importing
    ``nilearn.datasets`` (scikit-learn) in every job. Where that folder is missing (another
    nilearn layout), through ``nilearn.datasets.load_fsaverage``.

    Parameters
    ----------
    mesh : {"fsaverage5"}

    Returns
    -------
    dict
        Per hemisphere (``lh``, ``rh``): ``sphere`` (unit vectors), ``inflated`` (mm),
        ``faces`` (int), ``sulcal`` (sulcal depth, for shading). Cached: do not modify.
    """
    if mesh != "fsaverage5":
        raise DataError(
            f"mesh {mesh!r}: only fsaverage5 ships with nilearn (the others are downloaded at "
            "run time, which compute jobs must not do)"
        )
    folder = _nilearn_fsaverage5()
    out = {}
    for hemi in HEMIS:
        part = _NILEARN_HEMI[hemi]
        if folder is not None:
            sphere, _ = _gifti_mesh(folder / f"sphere_{part}.gii.gz")
            inflated, faces = _gifti_mesh(folder / f"infl_{part}.gii.gz")
            sulcal = _gifti_values(folder / f"sulc_{part}.gii.gz")
        else:  # pragma: no cover - nilearn's layout since 0.11
            from nilearn import datasets

            surfaces = datasets.load_fsaverage(mesh)
            data = datasets.load_fsaverage_data(mesh=mesh, data_type="sulcal")
            sphere = surfaces["sphere"].parts[part].coordinates
            inflated = surfaces["inflated"].parts[part].coordinates
            faces = surfaces["inflated"].parts[part].faces
            sulcal = data.data.parts[part]
        out[hemi] = {
            "sphere": _unit(np.asarray(sphere, dtype=np.float64), f"{mesh} sphere"),
            "inflated": np.asarray(inflated, dtype=np.float64),
            "faces": np.asarray(faces, dtype=np.int64),
            "sulcal": np.asarray(sulcal, dtype=np.float64).ravel(),
        }
        if out[hemi]["sphere"].shape[0] != FSAVERAGE5_VERTICES:
            raise DataError(f"nilearn's fsaverage5 has {out[hemi]['sphere'].shape[0]} vertices")
    return out


def _nilearn_fsaverage5() -> Path | None:
    from importlib.util import find_spec

    spec = find_spec("nilearn")  # locates the package without importing it
    if spec is None or spec.origin is None:
        raise DataError("nilearn is not installed: pip install 'nilearn>=0.11,<0.14'")
    folder = Path(spec.origin).parent / "datasets" / "data" / "fsaverage5"
    names = [f"{k}_{h}.gii.gz" for k in ("sphere", "infl", "sulc") for h in ("left", "right")]
    return folder if all((folder / n).is_file() for n in names) else None


def _gifti_mesh(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    image = nib.load(path)
    coords = image.get_arrays_from_intent("NIFTI_INTENT_POINTSET")[0].data
    faces = image.get_arrays_from_intent("NIFTI_INTENT_TRIANGLE")[0].data
    return coords, faces


def _gifti_values(path: Path) -> np.ndarray:
    import nibabel as nib

    return np.asarray(nib.load(path).darrays[0].data)


def surface_vertex_counts(db_dir: str | os.PathLike, subject: str) -> dict[str, int]:
    """Vertices per hemisphere of a subject's pycortex surfaces (``surfaces/pia_<hemi>.gii``).

    Raises
    ------
    DataError
        When a surface file is missing.
    """
    import nibabel as nib

    counts = {}
    for hemi in HEMIS:
        path = Path(db_dir) / subject / "surfaces" / f"pia_{hemi}.gii"
        if not path.is_file():
            raise DataError(f"{path} does not exist: the subject's pycortex surfaces are needed")
        counts[hemi] = int(nib.load(path).darrays[0].data.shape[0])
    return counts


def check_vertex_counts(
    surfaces: Mapping[str, int], spheres: Mapping[str, np.ndarray], sphere_files: Mapping
) -> None:
    """The registration spheres have the pycortex surfaces' vertex counts, hemisphere by
    hemisphere, or a `DataError` names both files' counts and the likely cause."""
    for hemi in HEMIS:
        n_surface, n_sphere = int(surfaces[hemi]), len(spheres[hemi])
        if n_surface != n_sphere:
            raise DataError(
                f"{sphere_files[hemi]} has {n_sphere} vertices but the subject's pycortex "
                f"{hemi} surface has {n_surface}: the registration sphere and the pycortex "
                "surfaces must come from the same FreeSurfer subject (same recon-all run); "
                "check derivative/freesurfer_subjdir/<subject> against pycortex-db/<subject>"
            )


@dataclass(frozen=True)
class _HemiMap:
    cell: np.ndarray  # (n_source,) nearest target vertex of each source vertex
    fill: np.ndarray  # (n_target,) nearest source vertex of each target vertex
    n_target: int


class SphereProjection:
    """Subject vertices -> fsaverage vertices on the registration sphere (module docstring).

    Parameters
    ----------
    source : mapping of hemisphere to array of shape (n_source, 3)
        The subject's registered sphere positions (``read_sphere``), ``lh`` and ``rh``.
    target : mapping of hemisphere to array of shape (n_target, 3)
        fsaverage's sphere (``fsaverage_mesh()[hemi]["sphere"]``).

    Attributes
    ----------
    n_source, n_target : dict of str to int
        Vertices per hemisphere.
    empty_cells : dict of str to int
        fsaverage vertices whose cell holds no subject vertex (filled from the nearest one).
    """

    def __init__(self, source: Mapping[str, np.ndarray], target: Mapping[str, np.ndarray]):
        self._maps: dict[str, _HemiMap] = {}
        self.n_source: dict[str, int] = {}
        self.n_target: dict[str, int] = {}
        self.empty_cells: dict[str, int] = {}
        for hemi in HEMIS:
            src = _unit(np.asarray(source[hemi], dtype=np.float64), f"{hemi} source sphere")
            tgt = _unit(np.asarray(target[hemi], dtype=np.float64), f"{hemi} target sphere")
            _, cell = cKDTree(tgt).query(src)
            _, fill = cKDTree(src).query(tgt)
            self._maps[hemi] = _HemiMap(cell.astype(np.int64), fill.astype(np.int64), len(tgt))
            self.n_source[hemi], self.n_target[hemi] = len(src), len(tgt)
            self.empty_cells[hemi] = int(len(tgt) - np.unique(cell).size)

    def _split(self, values: np.ndarray, n: Mapping[str, int], what: str) -> dict[str, np.ndarray]:
        total = sum(n[h] for h in HEMIS)
        if values.shape[0] != total:
            raise DataError(
                f"{what}: {values.shape[0]} values, expected {total} "
                f"({' + '.join(str(n[h]) for h in HEMIS)} vertices, left hemisphere first)"
            )
        return {"lh": values[: n["lh"]], "rh": values[n["lh"] :]}

    def project(self, values: np.ndarray) -> np.ndarray:
        """Mean of the finite values in each fsaverage vertex's cell (module docstring).

        Parameters
        ----------
        values : array of shape (n_source_lh + n_source_rh,)
            One value per subject vertex, left hemisphere first; NaN where there is none.

        Returns
        -------
        float64 array of shape (n_target_lh + n_target_rh,)
            NaN where the cell (or, for an empty cell, the nearest subject vertex) has no
            finite value.
        """
        values = np.asarray(values, dtype=np.float64)
        out = []
        for hemi, part in self._split(values, self.n_source, "project").items():
            m = self._maps[hemi]
            finite = np.isfinite(part)
            total = np.bincount(m.cell[finite], weights=part[finite], minlength=m.n_target)
            count = np.bincount(m.cell[finite], minlength=m.n_target)
            members = np.bincount(m.cell, minlength=m.n_target)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
            empty = members == 0
            mean[empty] = part[m.fill[empty]]
            out.append(mean)
        return np.concatenate(out)

    def project_labels(self, labels: Sequence[str] | np.ndarray) -> np.ndarray:
        """The most frequent label in each fsaverage vertex's cell ('' counts as no label).

        Parameters
        ----------
        labels : str array of shape (n_source_lh + n_source_rh,)

        Returns
        -------
        str array of shape (n_target_lh + n_target_rh,)
            ``""`` where the cell holds no labelled vertex.
        """
        labels = np.asarray(labels, dtype=str)
        out = []
        for hemi, part in self._split(labels, self.n_source, "project_labels").items():
            m = self._maps[hemi]
            names, codes = np.unique(part, return_inverse=True)
            cell = m.cell.copy()
            empty = np.bincount(cell, minlength=m.n_target) == 0
            # an empty cell votes with its nearest subject vertex
            cell = np.concatenate([cell, np.flatnonzero(empty)])
            codes = np.concatenate([codes, codes[m.fill[empty]]])
            labelled = names[codes] != ""
            out.append(majority(cell[labelled], codes[labelled], m.n_target, names))
        return np.concatenate(out)


def majority(groups: np.ndarray, codes: np.ndarray, n_groups: int, names: np.ndarray) -> np.ndarray:
    """Most frequent code per group (ties: the lowest code), as names; '' for an empty group."""
    out = np.full(n_groups, "", dtype=names.dtype if names.size else "<U1")
    if groups.size == 0:
        return out
    counts = np.zeros((n_groups, len(names)), dtype=np.int64)
    np.add.at(counts, (groups, codes), 1)
    has = counts.sum(axis=1) > 0
    out[has] = names[np.argmax(counts[has], axis=1)]
    return out
