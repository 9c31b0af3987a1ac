"""Group maps on fsaverage5's inflated surface: a figure per map (nilearn, matplotlib) and an
interactive page per map (nilearn's ``view_surf``, self-contained: its JavaScript is embedded,
so the page works with no network).

The figure shows both hemispheres, lateral and medial, over fsaverage5's sulcal depth; vertices
without a value (no subject covers them) are left grey. A difference map (``vmin`` None, the
gain from the smallest to the largest model) gets a colour range symmetric around zero.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from .._utils import DataError, atomic_path
from ..figures._base import save_figure_files
from .maps import MapSpec
from .project import SurfaceMaps
from .sphere import HEMIS, fsaverage_mesh

logger = logging.getLogger(__name__)

__all__ = ["VIEWS", "colour_range", "draw_group_maps", "plot_group_map", "surface_page"]

#: The panels of a group figure: (hemisphere, view), left to right.
VIEWS = (("lh", "lateral"), ("lh", "medial"), ("rh", "medial"), ("rh", "lateral"))
_NILEARN_HEMI = {"lh": "left", "rh": "right"}


def colour_range(values: np.ndarray, spec: MapSpec) -> tuple[float, float]:
    """(vmin, vmax) of a map: the spec's, else from the data (99th percentile; symmetric
    around 0 for a difference map)."""
    finite = np.abs(values[np.isfinite(values)])
    top = float(np.percentile(finite, 99)) if finite.size else 1.0
    top = top if top > 0 else 1.0
    if spec.vmin is None:
        return -top, top
    return float(spec.vmin), float(spec.vmax) if spec.vmax is not None else max(
        top, spec.vmin + 1e-6
    )


def plot_group_map(
    group: SurfaceMaps,
    spec: MapSpec,
    paths: Sequence[str | os.PathLike],
    *,
    title: str,
    mesh: dict | None = None,
    dpi: int = 100,
) -> list[Path]:
    """One group map on the inflated fsaverage5 surface, four views (`VIEWS`).

    Parameters
    ----------
    group : SurfaceMaps
    spec : MapSpec
    paths : sequence of path-like
        The figure's files, one per format.
    title : str
    mesh : dict, optional
        `fmriscaling.surface.sphere.fsaverage_mesh` (loaded once for many maps).
    dpi : int

    Returns
    -------
    list of pathlib.Path
    """
    from nilearn import plotting

    mesh = mesh or fsaverage_mesh()
    values = group[spec.name]
    if not np.isfinite(values).any():
        raise DataError(f"group map {spec.name} has no finite value: nothing to draw")
    vmin, vmax = colour_range(values, spec)
    fig = Figure(figsize=(14, 3.6))
    axes = [fig.add_axes((i * 0.235, 0.08, 0.235, 0.8), projection="3d") for i in range(len(VIEWS))]
    try:
        for ax, (hemi, view) in zip(axes, VIEWS, strict=True):
            surface = mesh[hemi]
            plotting.plot_surf_stat_map(
                (surface["inflated"], surface["faces"]),
                group.hemisphere(spec.name, hemi),
                hemi=_NILEARN_HEMI[hemi],
                view=view,
                bg_map=surface["sulcal"],
                axes=ax,
                figure=fig,
                colorbar=False,
                cmap=spec.cmap,
                vmin=vmin,
                vmax=vmax,
                symmetric_cbar=False,
                engine="matplotlib",
            )
            ax.set_title(f"{hemi} {view}", fontsize="small")
        cax = fig.add_axes((0.955, 0.15, 0.012, 0.65))
        bar = fig.colorbar(ScalarMappable(Normalize(vmin, vmax), spec.cmap), cax=cax)
        bar.set_label(spec.label, fontsize="small")
        fig.suptitle(title, fontsize="medium")
    except BaseException:
        plt.close(fig)
        raise
    # 100 dpi: 1,400 px wide, a fifth of the time of the other figures' 200 dpi
    return save_figure_files(fig, paths, dpi=dpi)


def surface_page(
    group: SurfaceMaps,
    spec: MapSpec,
    path: str | os.PathLike,
    *,
    title: str,
    mesh: dict | None = None,
) -> Path:
    """A self-contained interactive page of one group map (nilearn ``view_surf``), both
    hemispheres on the inflated fsaverage5 surface; written atomically."""
    from nilearn import plotting
    from nilearn.surface import InMemoryMesh, PolyMesh, SurfaceImage

    mesh = mesh or fsaverage_mesh()
    values = group[spec.name]
    if not np.isfinite(values).any():
        raise DataError(f"group map {spec.name} has no finite value: nothing to draw")
    vmin, vmax = colour_range(values, spec)
    inflated = PolyMesh(
        **{_NILEARN_HEMI[h]: InMemoryMesh(mesh[h]["inflated"], mesh[h]["faces"]) for h in HEMIS}
    )
    data = SurfaceImage(
        inflated,
        {_NILEARN_HEMI[h]: group.hemisphere(spec.name, h).astype(np.float32) for h in HEMIS},
    )
    sulcal = SurfaceImage(inflated, {_NILEARN_HEMI[h]: mesh[h]["sulcal"] for h in HEMIS})
    view = plotting.view_surf(
        surf_mesh=inflated,
        surf_map=data,
        bg_map=sulcal,
        hemi="both",
        cmap=spec.cmap,
        vmin=vmin,
        vmax=vmax,
        symmetric_cmap=spec.vmin is None,
        title=title,
        title_fontsize=14,
    )
    with atomic_path(path, suffix=".html") as tmp:
        view.save_as_html(str(tmp))
    return Path(path)


def draw_group_maps(
    maps: str | os.PathLike,
    specs,
    *,
    figures: Mapping[str, Sequence[str | os.PathLike]],
    pages: Mapping[str, str | os.PathLike] | None = None,
    dataset: str,
    n_subjects: int,
) -> list[Path]:
    """Every group map of a track: its figure (``figures[name]``, one file per format) and,
    for the maps in ``pages``, its interactive page.

    Parameters
    ----------
    maps : path-like
        The group's ``maps.npz`` (`fmriscaling.surface.jobs.group_job`).
    specs : sequence of MapSpec (or their dicts)
    figures : mapping of str to sequence of path-like
        Map name -> its figure files.
    pages : mapping of str to path-like, optional
        Map name -> its page.
    dataset : str
    n_subjects : int

    Returns
    -------
    list of pathlib.Path
        Every file written.
    """
    from .jobs import as_specs
    from .project import load_surface_maps

    specs = as_specs(specs)
    pages = dict(pages or {})
    unknown = set(pages) - {s.name for s in specs}
    if unknown:
        raise DataError(f"pages of unknown maps: {sorted(unknown)}")
    group = load_surface_maps(maps)
    mesh = fsaverage_mesh()
    written: list[Path] = []
    for i, spec in enumerate(specs):
        counts = group.counts[group.names.index(spec.name)] if group.counts is not None else None
        covered = int((counts > 0).sum()) if counts is not None else 0
        title = (
            f"{dataset}: {spec.label}, mean of {n_subjects} subjects "
            f"({covered} of {len(counts) if counts is not None else 0} fsaverage5 vertices)"
        )
        logger.info("[%d/%d] %s", i + 1, len(specs), spec.name)
        written += plot_group_map(group, spec, figures[spec.name], title=title, mesh=mesh)
        if spec.name in pages:
            written.append(surface_page(group, spec, pages[spec.name], title=title, mesh=mesh))
    return written
