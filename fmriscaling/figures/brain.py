"""Brain maps: pycortex flatmaps of per-voxel values, nilearn slices as the fallback.

A flatmap needs the subject's pycortex database (surfaces, the transform of the responses'
mask, ``overlays.svg``). pycortex draws through a private shadow of that folder
(`fmriscaling._pycortex.pycortex_session`), so its caches never land in the dataset. ROI
outlines (``overlays.svg``) need Inkscape; without it the maps are drawn without outlines
and the log says so. A dataset without pycortex surfaces gets nilearn's axial slices of the
same values over the transform's reference volume, with a log line saying so.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from .._pycortex import has_surfaces, inkscape_available, pycortex_session
from .._utils import DataError
from ..responses import load_mask
from ._base import get_ax, saving

if TYPE_CHECKING:
    import nibabel as nib
    from matplotlib.axes import Axes

logger = logging.getLogger(__name__)

__all__ = [
    "MAP_STYLES",
    "MapPanel",
    "draw_brain_maps",
    "draw_map_panels",
    "plot_brain_map",
    "plot_flatmap",
    "resolve_rois",
    "subject_map_values",
    "unmask_values",
]

#: Colour map and range of each map of the per-subject figure (None: from the data).
#: opacity of a voxel the permutation test did not find significant, in the r and CC_norm maps
NOT_SIGNIFICANT_OPACITY = 0.3

MAP_STYLES: dict[str, dict[str, Any]] = {
    "test_r": {"label": "test r", "cmap": "inferno", "vmin": 0.0, "vmax": None},
    "cc_norm": {"label": "CC_norm", "cmap": "viridis", "vmin": 0.0, "vmax": 1.0},
    "cc_max": {"label": "CC_max (noise ceiling)", "cmap": "magma", "vmin": 0.0, "vmax": 1.0},
    "weight": {"label": "stacking weight", "cmap": "RdBu_r", "vmin": 0.0, "vmax": 1.0},
}


def resolve_rois(with_rois: bool | str) -> bool:
    """``"auto"`` -> whether Inkscape is there (pycortex needs it to draw ROI outlines)."""
    if with_rois == "auto":
        available = inkscape_available()
        if not available:
            logger.info(
                "Inkscape not found: flatmaps are drawn without ROI outlines "
                "(install it, e.g. apt-get install inkscape, to get them)"
            )
        return available
    return bool(with_rois)


def plot_flatmap(
    values: Any,
    *,
    db_dir: str | os.PathLike,
    subject: str,
    xfmname: str,
    mask: str | os.PathLike,
    ax: Axes | None = None,
    cmap: str = "inferno",
    vmin: float | None = None,
    vmax: float | None = None,
    label: str | None = None,
    with_rois: bool | str = "auto",
    with_curvature: bool | str = "auto",
    height: int = 1024,
    pixelwise: bool = True,
    roi_layer: dict | None = None,
    opacity: Any = None,
) -> Axes:
    """A pycortex flatmap of one value per mask voxel.

    Parameters
    ----------
    values : array of shape (n_voxels,)
        One value per voxel of ``mask``, in pycortex's (z, y, x) C order (the response
        columns); NaN voxels are left transparent.
    db_dir : path-like
        pycortex filestore holding ``<subject>/``.
    subject : str
    xfmname : str
        The transform of ``mask`` (ds003020: ``<subject>_auto``).
    mask : path-like
        The cortical mask of the values.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; defaults to the current Axes.
    cmap : str
    vmin, vmax : float, optional
        Colour range; by default the 1st and 99th percentiles of the finite values.
    label : str, optional
        Label of the horizontal colour bar under the map (none when None).
    with_rois : bool or "auto"
        Outline the ROIs of ``overlays.svg`` (needs Inkscape; ``"auto"``: when installed).
    with_curvature : bool or "auto"
        Grey curvature underneath (``"auto"``: when the database has
        ``surface-info/curvature.npz``, so nothing is computed into it).
    height : int
        Pixel height of pycortex's flatmap image.
    pixelwise : bool
        pycortex's pixel-wise sampling through the cortical sheet (slower to cache, smoother);
        False maps each pixel to its nearest vertex's voxel.
    roi_layer : dict, optional
        Shared by the maps of one figure: the ROI outlines Inkscape rasterised for the first
        map are kept in it and drawn again on the others (one Inkscape call per figure).
    opacity : array of shape (n_voxels,), optional
        Per-voxel opacity in [0, 1] (e.g. non-significant voxels dimmed): the colours are
        computed here and drawn as a pycortex ``VolumeRGB`` with that alpha, over the
        curvature.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn into; its first image is the data.

    Raises
    ------
    DataError
        When the database lacks the subject's surfaces or ``values`` does not fit the mask.
    """
    if not has_surfaces(db_dir, subject):
        raise DataError(f"{Path(db_dir) / subject}: no pycortex surfaces, cannot draw a flatmap")
    mask_zyx, n_voxels = load_mask(mask)
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (n_voxels,):
        raise DataError(f"{len(values)} values for a mask of {n_voxels} voxels ({mask})")
    finite = values[np.isfinite(values)]
    low, high = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
    vmin = float(low) if vmin is None else vmin
    vmax = float(high) if vmax is None or vmax <= vmin else vmax
    volume = np.full(mask_zyx.shape, np.nan)
    volume[mask_zyx] = values
    curvature = (Path(db_dir) / subject / "surface-info" / "curvature.npz").is_file()
    ax = get_ax(ax)
    rois = resolve_rois(with_rois)
    reuse = rois and roi_layer is not None and "image" in roi_layer
    with pycortex_session(db_dir, [subject]) as cortex:
        if opacity is None:
            data = cortex.Volume(volume, subject, xfmname, cmap=cmap, vmin=vmin, vmax=vmax)
        else:
            data = _rgba_volume(
                cortex, values, opacity, mask_zyx, subject, xfmname, cmap, vmin, vmax
            )
        cortex.quickflat.make_figure(
            data,
            fig=ax,
            with_rois=rois and not reuse,
            with_labels=True,
            with_curvature=curvature if with_curvature == "auto" else bool(with_curvature),
            with_colorbar=False,
            height=height,
            pixelwise=pixelwise,
            nanmean=True,
            linewidth=max(1, height // 400),
            # pycortex sizes labels in the rasterised overlay: scale them with its height
            labelsize=f"{max(10, height // 32)}pt",
        )
    if reuse:
        image = roi_layer["image"]
        ax.imshow(
            image.get_array(), extent=image.get_extent(), aspect="equal", zorder=image.get_zorder(),
            interpolation=image.get_interpolation(), label="rois",
        )  # fmt: skip
    elif rois and roi_layer is not None:
        roi_layer["image"] = next(im for im in ax.images if im.get_label() == "rois")
    if label is not None:
        mappable = ScalarMappable(Normalize(vmin, vmax), cmap)
        bar = ax.figure.colorbar(
            mappable, ax=ax, orientation="horizontal", fraction=0.05, pad=0.02, shrink=0.4
        )
        bar.set_label(label, fontsize="small")
    return ax


def _rgba_volume(cortex, values, opacity, mask_zyx, subject, xfmname, cmap, vmin, vmax):
    """A pycortex ``VolumeRGB`` of ``values`` coloured by ``cmap`` with per-voxel opacity
    (NaN values transparent)."""
    from matplotlib import colormaps

    opacity = np.asarray(opacity, dtype=np.float64)
    if opacity.shape != values.shape:
        raise DataError(f"{opacity.size} opacities for {values.size} voxels")
    rgba = colormaps[cmap](Normalize(vmin, vmax, clip=True)(np.nan_to_num(values)))
    alpha = np.where(np.isfinite(values), np.clip(opacity, 0.0, 1.0), 0.0)

    def channel(column: np.ndarray, dtype=np.uint8, scale: float = 255.0) -> np.ndarray:
        volume = np.zeros(mask_zyx.shape, dtype)
        volume[mask_zyx] = np.round(column * scale) if dtype == np.uint8 else column
        return volume

    red, green, blue = (
        cortex.Volume(channel(rgba[:, i]), subject, xfmname, vmin=0, vmax=255) for i in range(3)
    )
    alpha_volume = cortex.Volume(
        channel(alpha, np.float32, 1.0), subject, xfmname, vmin=0.0, vmax=1.0
    )
    return cortex.VolumeRGB(red, green, blue, subject, xfmname, alpha=alpha_volume)


def subject_map_values(voxels: pd.DataFrame, weights: Mapping[str, np.ndarray] | None):
    """(column or ``weight:<member>``, values in voxel order, style) of each map of a subject:
    the best model's test r, CC_norm and CC_max, then each stack's weights (the flatmap figure's
    panels and the WebGL viewer's layers)."""
    order = voxels.sort_values("voxel")
    panels = [
        (name, order[name].to_numpy(dtype=float), MAP_STYLES[name])
        for name in ("test_r", "cc_norm", "cc_max")
    ]
    for member, values in (weights or {}).items():
        stack, _, kind = member.partition(": ")
        label = f"stack {stack}: weight on {kind}" if kind else f"stacking weight of {member}"
        style = dict(MAP_STYLES["weight"], label=label)
        panels.append((f"weight:{member}", np.asarray(values, dtype=float), style))
    return panels


def draw_brain_maps(
    voxels: pd.DataFrame,
    paths: Sequence[str | os.PathLike],
    *,
    subject: str,
    db_dir: str | os.PathLike,
    mask: str | os.PathLike,
    reference: str | os.PathLike,
    xfmname: str,
    stacking_weights: Mapping[str, np.ndarray] | None = None,
    with_rois: bool | str = "auto",
    height: int = 1024,
    pixelwise: bool = True,
) -> list[Path]:
    """The per-subject map figure: test r, CC_norm and CC_max of the best model (+ weights).

    Flatmaps when the subject has pycortex surfaces in ``db_dir``; axial nilearn slices over
    ``reference`` otherwise (logged).

    Parameters
    ----------
    voxels : DataFrame
        The voxel table (`fmriscaling.voxel_tables.voxel_table`) of one subject.
    paths : sequence of path-like
        The figure's files, one per format.
    subject : str
    db_dir : path-like
        pycortex filestore (may lack the subject: then slices).
    mask, reference : path-like
        The cortical mask of the voxels and the transform's reference volume.
    xfmname : str
    stacking_weights : mapping of str to array of shape (n_voxels,), optional
        ``"<stack>: <kind>"`` (`fmriscaling.encoding.stacking.speech_weights`) -> the stack's
        weight on that kind of member per voxel, one more panel each.
    with_rois, height, pixelwise
        See `plot_flatmap`.

    Returns
    -------
    list of pathlib.Path
    """
    voxels = voxels[voxels["subject"] == subject]
    if voxels.empty:
        raise DataError(f"the voxel table has no rows for subject {subject}")
    model, layer = voxels["model"].iloc[0], int(voxels["layer"].iloc[0])
    # the best model's maps dim the voxels its permutation test did not find (FDR-controlled)
    opacity = None
    if "significant" in voxels:
        significant = voxels.sort_values("voxel")["significant"].to_numpy(dtype=bool)
        opacity = np.where(significant, 1.0, NOT_SIGNIFICANT_OPACITY)
        logger.info(
            "%s: %d of %d voxels significant; the others are dimmed in the r and CC_norm maps",
            subject,
            int(significant.sum()),
            significant.size,
        )
    panels = []
    for name, values, style in subject_map_values(voxels, stacking_weights):
        if name.startswith("weight:"):  # a stack's map, not the best model's
            title = f"{subject} {style['label']}"
        else:
            title = f"{subject} {style['label']}: {model} layer {layer} (best by CV)"
        dim = opacity if name in ("test_r", "cc_norm") else None
        if dim is not None:
            title += "; not significant: dimmed"
        panels.append(MapPanel(title, values, **style, opacity=dim))
    return draw_map_panels(
        panels, paths, subject=subject, db_dir=db_dir, mask=mask, reference=reference,
        xfmname=xfmname, with_rois=with_rois, height=height, pixelwise=pixelwise,
    )  # fmt: skip


@dataclass
class MapPanel:
    """One map of a subject figure: a value per voxel and how to colour it.

    Attributes
    ----------
    title : str
    values : array of shape (n_voxels,)
    label : str
        The colour bar's label.
    cmap : str
    vmin, vmax : float or None
    opacity : array of shape (n_voxels,), optional
        Per-voxel opacity (flatmaps only; e.g. non-significant voxels dimmed).
    """

    title: str
    values: np.ndarray
    label: str
    cmap: str
    vmin: float | None
    vmax: float | None
    opacity: np.ndarray | None = None


def draw_map_panels(
    panels: Sequence[MapPanel],
    paths: Sequence[str | os.PathLike],
    *,
    subject: str,
    db_dir: str | os.PathLike,
    mask: str | os.PathLike,
    reference: str | os.PathLike,
    xfmname: str,
    with_rois: bool | str = "auto",
    height: int = 1024,
    pixelwise: bool = True,
) -> list[Path]:
    """A figure of one subject's maps, one panel each: flatmaps when the subject has pycortex
    surfaces in ``db_dir`` (one pycortex session for all), else nilearn's axial slices over
    ``reference`` (logged). Parameters as `draw_brain_maps`."""
    if not panels:
        raise DataError(f"no maps to draw for subject {subject}")
    flat = has_surfaces(db_dir, subject)
    if not flat:
        logger.info(
            "%s: no pycortex surfaces in %s; drawing nilearn slices instead of flatmaps",
            subject,
            Path(db_dir) / subject,
        )
    ncols = 2 if len(panels) > 3 else 1
    nrows = -(-len(panels) // ncols)
    width, row_height = (7.0, 4.2) if flat else (12.0, 3.2)
    fig = Figure(
        figsize=(width * ncols, row_height * nrows), layout="constrained" if flat else None
    )
    flatmap = dict(db_dir=db_dir, subject=subject, xfmname=xfmname, mask=mask, height=height)
    flatmap.update(pixelwise=pixelwise, with_rois=resolve_rois(with_rois) if flat else False)
    flatmap.update(roi_layer={})
    # one pycortex session for every panel: its flatmap cache is computed once
    session = pycortex_session(db_dir, [subject]) if flat else contextlib.nullcontext()
    with saving(fig, paths) as written, session:
        for i, panel in enumerate(panels):
            colours = dict(cmap=panel.cmap, vmin=panel.vmin, vmax=panel.vmax)
            if flat:
                ax = fig.add_subplot(nrows, ncols, i + 1)
                plot_flatmap(
                    panel.values, ax=ax, label=panel.label, opacity=panel.opacity, **colours,
                    **flatmap,
                )  # fmt: skip
                ax.set_title(panel.title, fontsize="medium")
                continue
            row, col = divmod(i, ncols)
            ax = fig.add_axes((col / ncols, 1 - (row + 1) / nrows, 1 / ncols, 1 / nrows))
            # voxels without a value (e.g. no ceiling) are drawn blank
            plot_brain_map(
                np.nan_to_num(panel.values, nan=0.0), mask, reference, order="F", axes=ax,
                figure=fig, title=panel.title, cmap=panel.cmap, vmax=panel.vmax,
            )  # fmt: skip
    return written


# --------------------------------------------------------------------------------------------
# brain maps
# --------------------------------------------------------------------------------------------
def unmask_values(values: Any, mask_img: Any, *, order: Literal["C", "F"] = "C") -> nib.Nifti1Image:
    """Put one value per masked voxel back into the mask's volume.

    Convention: ``values[i]`` belongs to the i-th nonzero voxel of the mask array as nibabel
    loads it, shape (x, y, z), counted in ``order``. ``order="C"`` (last axis fastest) is
    nilearn's and numpy's ``volume[mask]`` convention. pycortex, and with it the response files
    of ds003020, index the *transposed* mask, shape (z, y, x), in C order (x fastest): for those
    vectors pass ``order="F"``.

    Parameters
    ----------
    values : array of shape (n_voxels,)
        One value per nonzero mask voxel.
    mask_img : nibabel image or path
        3-D mask; nonzero voxels are in the mask.
    order : {"C", "F"}
        Order in which the voxels of ``values`` walk the mask array (see above).

    Returns
    -------
    nibabel.Nifti1Image
        float32 volume of the mask's shape and affine, 0 outside the mask.

    Raises
    ------
    ValueError
        When ``values`` does not hold one value per mask voxel or ``order`` is unknown.
    """
    from nilearn import image

    if order not in ("C", "F"):
        raise ValueError(f"order must be 'C' or 'F', got {order!r}")
    mask_img = image.load_img(mask_img)
    mask = np.asanyarray(mask_img.dataobj)
    if mask.ndim != 3:
        raise ValueError(f"the mask must be 3-D, got shape {mask.shape}")
    mask = mask != 0
    values = np.asarray(values, dtype=np.float32)
    n_in_mask = int(mask.sum())
    if values.shape != (n_in_mask,):
        raise ValueError(
            f"values has shape {values.shape} but the mask has {n_in_mask} voxels; "
            f"expected shape ({n_in_mask},)"
        )
    flat = np.zeros(mask.size, dtype=np.float32)
    flat[np.flatnonzero(mask.ravel(order=order))] = values
    volume = flat.reshape(mask.shape, order=order)
    return image.new_img_like(mask_img, volume, affine=mask_img.affine, copy_header=True)


def plot_brain_map(
    values: Any,
    mask_img: Any,
    reference_img: Any,
    *,
    title: str | None = None,
    vmax: float | None = None,
    order: Literal["C", "F"] = "C",
    axes: Axes | None = None,
    figure: Figure | None = None,
    cut_coords: int | Sequence[float] | None = None,
    **kwargs: Any,
) -> Any:
    """Axial slices of a per-voxel map over the subject's reference volume.

    Parameters
    ----------
    values : array of shape (n_voxels,)
        One value per mask voxel, in the order described in :func:`unmask_values`.
    mask_img : nibabel image or path
        The cortical mask the values were taken from.
    reference_img : nibabel image or path
        Anatomical/functional reference drawn underneath.
    title : str, optional
        Title of the display.
    vmax : float, optional
        Upper end of the colour scale (symmetric around 0 by nilearn's default).
    order : {"C", "F"}
        Voxel order of ``values``; ``"F"`` for pycortex / ds003020 response vectors.
    axes : matplotlib.axes.Axes, optional
        Axes to draw into.
    figure : matplotlib.figure.Figure, optional
        Figure to draw into.
    cut_coords : int or sequence of float, optional
        Number or positions of axial cuts; defaults to up to 7 cuts, fewer for small volumes.
    **kwargs
        Passed to :func:`nilearn.plotting.plot_stat_map` (``cmap``, ``threshold``...).

    Returns
    -------
    nilearn.plotting.displays.ZSlicer
        The display object; save with ``display.savefig`` or through its figure.
    """
    from nilearn import plotting

    img = unmask_values(values, mask_img, order=order)
    if cut_coords is None:
        cut_coords = min(7, img.shape[2])
    return plotting.plot_stat_map(
        img,
        bg_img=reference_img,
        display_mode="z",
        cut_coords=cut_coords,
        title=title,
        vmax=vmax,
        axes=axes,
        figure=figure,
        **kwargs,
    )
