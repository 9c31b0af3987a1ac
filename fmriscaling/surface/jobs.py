"""What the workflow's surface rules call: one subject's maps on fsaverage5 (language, vision),
and the group maps with their ROI table."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._utils import DataError, write_provenance
from ..encoding.tables import write_table
from .group import group_maps, group_roi_table
from .maps import MapSpec, language_voxel_maps, vision_vertex_maps
from .project import (
    SurfaceMaps,
    fsaverage_to_fsaverage5,
    labels_to_fsaverage5,
    load_surface_maps,
    project_subject,
    save_surface_maps,
    voxel_vertex_matrix,
    write_giftis,
)
from .sphere import (
    HEMIS,
    SphereProjection,
    check_vertex_counts,
    fsaverage_mesh,
    read_sphere,
)

logger = logging.getLogger(__name__)

__all__ = ["as_specs", "group_job", "language_subject_job", "vision_subject_job"]


def as_specs(specs: Sequence[MapSpec | Mapping[str, Any]]) -> list[MapSpec]:
    """MapSpecs from themselves or from their dicts (a rule's params)."""
    return [s if isinstance(s, MapSpec) else MapSpec(**dict(s)) for s in specs]


def _gifti_files(names: Sequence[str], files: Sequence[str | os.PathLike]) -> dict:
    """``files`` (per map, lh then rh) as {map: {hemi: file}}."""
    files = list(files)
    if len(files) != 2 * len(names):
        raise DataError(
            f"{len(files)} GIFTI paths for {len(names)} maps x 2 hemispheres ({', '.join(names)}):"
            " the rule's outputs and its specs param disagree (Study.surface_giftis makes both)"
        )
    return {n: dict(zip(HEMIS, files[2 * i : 2 * i + 2], strict=True)) for i, n in enumerate(names)}


def language_subject_job(
    specs: Sequence[MapSpec | Mapping[str, Any]],
    subject: str,
    *,
    best_layers: str | os.PathLike,
    scores: Mapping[tuple[str, int], str | os.PathLike],
    ceiling: str | os.PathLike,
    floor: float | None,
    stacks: Mapping[str, str | os.PathLike],
    db_dir: str | os.PathLike,
    xfmname: str,
    mask: str | os.PathLike,
    spheres: Sequence[str | os.PathLike],
    annotations: Mapping[str, Sequence[str | os.PathLike]],
    sampler: str,
    out: str | os.PathLike,
    giftis: Sequence[str | os.PathLike],
    params: Mapping[str, Any] | None = None,
) -> SurfaceMaps:
    """A ds003020 subject's maps on fsaverage5 (`fmriscaling.surface.project`).

    Parameters
    ----------
    specs : sequence of MapSpec (or their dicts)
    subject : str
    best_layers : path-like
        ``best_layers.csv``.
    scores : mapping of (model, layer) to path-like
        The subject's full fits.
    ceiling : path-like
        The subject's noise-ceiling npz.
    floor : float or None
    stacks : mapping of str to path-like
        Stack -> scores of the stacks with speech-weight maps.
    db_dir, xfmname, mask
        pycortex filestore, the transform and its cortical mask.
    spheres : (lh, rh) path-like
        ``surf/<hemi>.sphere.reg``.
    annotations : mapping of str to (lh, rh) path-like
        Atlas -> its FreeSurfer annotations.
    sampler : str
        pycortex mapper type.
    out : path-like
        ``maps.npz``.
    giftis : sequence of path-like
        One per map and hemisphere (lh, rh), in the order of ``specs``.
    params : mapping, optional
        Recorded in the provenance.

    Returns
    -------
    SurfaceMaps
    """
    from ..encoding.noise_ceiling import load_noise_ceiling
    from ..rois import read_annotation
    from ..voxel_tables import unfloored_cc_max
    from .sphere import surface_vertex_counts

    specs = as_specs(specs)
    # the anatomy first: a sphere of another subject fails before any map is read
    surfaces = surface_vertex_counts(db_dir, subject)
    sphere_files = dict(zip(HEMIS, spheres, strict=True))
    source = {hemi: read_sphere(sphere_files[hemi]) for hemi in HEMIS}
    check_vertex_counts(surfaces, source, sphere_files)
    table = pd.read_csv(best_layers)
    cc_max = unfloored_cc_max(load_noise_ceiling(ceiling))
    voxel_maps = language_voxel_maps(
        specs, subject, best_layers=table, scores=scores, cc_max=cc_max, floor=floor,
        stacks=stacks,
    )  # fmt: skip
    mesh = fsaverage_mesh()
    projection = SphereProjection(source, {h: mesh[h]["sphere"] for h in HEMIS})
    logger.info(
        "%s: %d + %d vertices on fsaverage5's %d + %d (cells without a subject vertex, filled "
        "from the nearest: %d + %d)",
        subject, projection.n_source["lh"], projection.n_source["rh"],
        projection.n_target["lh"], projection.n_target["rh"],
        projection.empty_cells["lh"], projection.empty_cells["rh"],
    )  # fmt: skip
    matrix, counts = voxel_vertex_matrix(db_dir, subject, xfmname, mask, sampler=sampler)
    if counts != surfaces:
        raise DataError(
            f"pycortex's {sampler} mapper of {subject}/{xfmname} covers {counts} vertices, its "
            f"surfaces in {db_dir} {surfaces}: a mapper cached from other surfaces; remove the "
            "subject's cache/ folder"
        )
    n_vertices = (surfaces["lh"], surfaces["rh"])
    labels = {
        atlas: read_annotation(*files, n_vertices) for atlas, files in sorted(annotations.items())
    }
    maps = project_subject(voxel_maps, projection, matrix, labels)
    _write(maps, out, giftis, subject, params)
    return maps


def vision_subject_job(
    specs: Sequence[MapSpec | Mapping[str, Any]],
    subject: str,
    *,
    encoding: str | os.PathLike,
    scores: Mapping[str, str | os.PathLike],
    n_layers: Mapping[str, int],
    ceiling: str | os.PathLike | None,
    all_vertices: Sequence[str | os.PathLike],
    roi_files: Mapping[str, Sequence[str | os.PathLike]],
    hemispheres: Sequence[str] = HEMIS,
    out: str | os.PathLike,
    giftis: Sequence[str | os.PathLike],
    params: Mapping[str, Any] | None = None,
) -> SurfaceMaps:
    """An Algonauts subject's maps on fsaverage5 (challenge vertices carried exactly).

    Parameters
    ----------
    specs : sequence of MapSpec (or their dicts)
    subject : str
    encoding : path-like
        The vision track's ``encoding.csv``.
    scores : mapping of str to path-like
        Model -> its selected full fit (``scores.npz``).
    n_layers : mapping of str to int
    ceiling : path-like or None
        The subject's vision noise ceiling (npz).
    all_vertices : sequence of path-like
        ``roi_masks/<hemi>.all-vertices_fsaverage_space.npy``, one per hemisphere of
        ``hemispheres``.
    hemispheres : sequence of str
        The order in which the fits concatenate the hemispheres (``vision.dataset.hemispheres``).
    roi_files : mapping of str to sequence of path-like
        ROI class -> its masks (lh, rh) and mapping file (`VisionTrack.vision_roi_files`).
    out, giftis, params
        As `language_subject_job`.
    """
    from ..vision.dataset import read_roi_labels
    from ..vision.scores import load_vision_noise_ceiling

    specs = as_specs(specs)
    nc = load_vision_noise_ceiling(ceiling) if ceiling else None
    vertex_maps = vision_vertex_maps(
        specs, subject, encoding=pd.read_csv(encoding), scores=scores, n_layers=n_layers,
        noise_ceiling=nc,
    )  # fmt: skip
    masks = {}
    for hemi, path in zip(hemispheres, all_vertices, strict=True):
        path = Path(path)
        if not path.is_file():
            raise DataError(
                f"{path} does not exist: the challenge's fsaverage mask is needed for group maps "
                "(it is in the challenge archive's roi_masks/)"
            )
        masks[hemi] = np.load(path, allow_pickle=False).ravel() > 0
    _check_hemispheres(scores, masks)
    names = list(vertex_maps)
    try:
        values, carried = fsaverage_to_fsaverage5(np.stack([vertex_maps[n] for n in names]), masks)
    except DataError as exc:
        raise DataError(f"{subject} ({', '.join(map(str, all_vertices))}): {exc}") from None
    n_vertices = sum(int(m.sum()) for m in masks.values())
    logger.info(
        "%s: %d of %d challenge vertices are fsaverage5 vertices (the rest lie between them)",
        subject, carried, n_vertices,
    )  # fmt: skip
    labels = {}
    for roi_class, files in sorted(roi_files.items()):
        codes, mapping = read_roi_labels(files[:-1], files[-1], roi_class=roi_class)
        named = np.array([mapping.get(int(c), "") if c else "" for c in codes], dtype=str)
        labels[roi_class] = labels_to_fsaverage5(named, masks)
    maps = SurfaceMaps(names=names, values=values, labels=labels)
    _write(maps, out, giftis, subject, params)
    return maps


def _check_hemispheres(scores: Mapping[str, str | os.PathLike], masks: Mapping) -> None:
    """The fits' own record of their hemispheres (``hemispheres``, ``hemisphere_sizes``) is the
    masks' order and counts, or a `DataError` names the file."""
    ours = [str(h) for h in masks]
    counts = [int(m.sum()) for m in masks.values()]
    for path in scores.values():
        with np.load(path, allow_pickle=False) as data:
            if "hemispheres" not in data.files or "hemisphere_sizes" not in data.files:
                continue
            theirs = [str(h) for h in data["hemispheres"]]
            sizes = [int(n) for n in data["hemisphere_sizes"]]
        if theirs != ours or sizes != counts:
            raise DataError(
                f"{path} holds hemispheres {theirs} of {sizes} vertices, but the all-vertices "
                f"masks give {ours} of {counts}: refit with the current "
                "vision.dataset.hemispheres, or fix the masks"
            )


def _write(maps, out, giftis, subject, params) -> None:
    files = _gifti_files(maps.names, giftis)
    meta = {"subject": subject, "space": "fsaverage5"}
    write_giftis(maps, files, meta)
    save_surface_maps(out, maps)
    write_provenance(out, params, subject=subject, maps=maps.names)


def group_job(
    specs: Sequence[MapSpec | Mapping[str, Any]],
    subject_files: Mapping[str, str | os.PathLike],
    *,
    out: str | os.PathLike,
    giftis: Sequence[str | os.PathLike],
    table: str | os.PathLike,
    roi_groups: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
    params: Mapping[str, Any] | None = None,
) -> SurfaceMaps:
    """The group maps (`fmriscaling.surface.group`), their GIFTIs and ``group_rois.csv``.

    Parameters
    ----------
    specs : sequence of MapSpec (or their dicts)
    subject_files : mapping of str to path-like
        Subject -> its ``maps.npz``.
    out : path-like
        The group's ``maps.npz`` (with subject counts).
    giftis : sequence of path-like
        Per map, lh then rh: the mean, and the subject count as a second array.
    table : path-like
        ``group_rois.csv`` (and ``.md``).
    roi_groups : mapping, optional
        Config ``rois.groups``.
    params : mapping, optional
    """
    specs = as_specs(specs)
    subjects = {s: load_surface_maps(p) for s, p in subject_files.items()}
    group = group_maps(subjects, specs)
    for spec, counts in zip(specs, group.counts, strict=True):
        logger.info(
            "%s: %d vertices with a value; %d with all %d subjects",
            spec.name, int((counts > 0).sum()), int((counts == len(subjects)).sum()),
            len(subjects),
        )  # fmt: skip
    files = _gifti_files(group.names, giftis)
    write_giftis(group, files, {"subjects": ",".join(subjects), "space": "fsaverage5"})
    save_surface_maps(out, group)
    write_provenance(out, params, subjects=list(subjects), maps=group.names)
    rois = group_roi_table(group, specs, roi_groups)
    rois.insert(0, "n_subjects", len(subjects))
    write_table(rois, table)
    write_provenance(table, params, subjects=list(subjects))
    return group
