"""Group maps on fsaverage5: the mean across subjects per vertex, and per ROI.

- A ``mean`` map: the mean of the subjects' finite values at each vertex, with the number of
  subjects contributing (a vertex one subject's mask misses is averaged over the others, and
  the count says so; a vertex no subject covers is NaN).
- A ``fraction`` map (significance): the fraction of the contributing subjects whose value is
  at least 0.5, i.e. where most of the vertex's cell was significant in that subject.
- Labels: per atlas, the most frequent label across subjects at each vertex (each subject's
  labels carried through its own registration, `SphereProjection.project_labels`).
- `group_roi_table`: per map, atlas label or configured ROI group: the vertices, the mean of
  the group map over them and the mean number of subjects behind a vertex.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .._utils import DataError
from .maps import MapSpec
from .project import SurfaceMaps
from .sphere import majority

logger = logging.getLogger(__name__)

__all__ = ["ALL_VERTICES", "group_labels", "group_maps", "group_roi_table"]

#: The ROI row over every vertex with a value.
ALL_VERTICES = "cortex"


def group_maps(subjects: Mapping[str, SurfaceMaps], specs: Sequence[MapSpec]) -> SurfaceMaps:
    """The group maps of ``specs`` from the subjects' maps (module docstring).

    Raises
    ------
    DataError
        When a subject lacks a map or the subjects' meshes differ.
    """
    if not subjects:
        raise DataError("no subject maps to average")
    sizes = {s: m.values.shape[1] for s, m in subjects.items()}
    if len(set(sizes.values())) != 1:
        raise DataError(
            f"the subjects' maps have different vertex counts: {sizes}; every maps.npz must be on "
            "fsaverage5 (rebuild the subjects' surface maps with this version)"
        )
    n = next(iter(sizes.values()))
    values = np.full((len(specs), n), np.nan)
    counts = np.zeros((len(specs), n), dtype=np.int64)
    for i, spec in enumerate(specs):
        stack = []
        for subject, maps in subjects.items():
            if spec.name not in maps.names:
                raise DataError(f"{subject} has no map {spec.name}; rebuild its surface maps")
            stack.append(maps[spec.name])
        stack = np.stack(stack)
        finite = np.isfinite(stack)
        counts[i] = finite.sum(axis=0)
        if spec.group == "fraction":
            stack = np.where(finite, (stack >= 0.5).astype(float), np.nan)
        total = np.where(finite, stack, 0.0).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            values[i] = np.where(counts[i] > 0, total / np.maximum(counts[i], 1), np.nan)
    return SurfaceMaps(
        names=[s.name for s in specs],
        values=values,
        labels=group_labels(subjects),
        counts=counts,
    )


def group_labels(subjects: Mapping[str, SurfaceMaps]) -> dict[str, np.ndarray]:
    """Per atlas every subject has, the most frequent label across subjects per vertex."""
    atlases = set.intersection(*(set(m.labels) for m in subjects.values()))
    out = {}
    for atlas in sorted(atlases):
        stack = np.stack([np.asarray(m.labels[atlas], dtype=str) for m in subjects.values()])
        names, codes = np.unique(stack, return_inverse=True)
        codes = codes.reshape(stack.shape)
        vertex = np.broadcast_to(np.arange(stack.shape[1]), stack.shape)
        labelled = names[codes] != ""
        out[atlas] = majority(vertex[labelled], codes[labelled], stack.shape[1], names)
    return out


def group_roi_table(
    group: SurfaceMaps,
    specs: Sequence[MapSpec],
    roi_groups: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
) -> pd.DataFrame:
    """Per map and ROI: vertices, mean group value, mean subjects per vertex.

    Parameters
    ----------
    group : SurfaceMaps
        From `group_maps` (with counts and labels).
    specs : sequence of MapSpec
    roi_groups : mapping, optional
        ROI name -> {atlas: [labels]} (config ``rois.groups``); atlases the group lacks are
        skipped.

    Returns
    -------
    DataFrame
        map, source, kind, roi, roi_source (``all`` | ``atlas:<atlas>`` | ``group``),
        n_vertices, mean, mean_n_subjects.
    """
    if group.counts is None:
        raise DataError("group maps without subject counts: build them with group_maps")
    regions: list[tuple[str, str, np.ndarray]] = [
        (ALL_VERTICES, "all", np.ones(group.values.shape[1], dtype=bool))
    ]
    for atlas, labels in sorted(group.labels.items()):
        for label in sorted(set(labels) - {""}):
            regions.append((label, f"atlas:{atlas}", labels == label))
    for name, members in (roi_groups or {}).items():
        masks = [
            np.isin(group.labels[atlas], list(labels))
            for atlas, labels in members.items()
            if atlas in group.labels
        ]
        if masks:
            regions.append((name, "group", np.logical_or.reduce(masks)))
    rows = []
    for i, spec in enumerate(specs):
        values, counts = group.values[i], group.counts[i]
        for roi, source, region in regions:
            has = region & np.isfinite(values)
            rows.append(
                {
                    "map": spec.name,
                    "source": spec.source,
                    "kind": spec.kind,
                    "roi": roi,
                    "roi_source": source,
                    "n_vertices": int(has.sum()),
                    "mean": float(values[has].mean()) if has.any() else np.nan,
                    "mean_n_subjects": float(counts[has].mean()) if has.any() else np.nan,
                }
            )
    return pd.DataFrame(rows)
