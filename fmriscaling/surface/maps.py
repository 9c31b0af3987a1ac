"""Which maps go to fsaverage, and each subject's values of them.

The maps of a track are named ``<source>.<kind>``: the source is a model family (its largest
and smallest run models), a stack, or ``noise_ceiling``. Per family:

===============  ==========================================================================
kind             per voxel (language) or vertex (vision)
===============  ==========================================================================
``test_r``       test r of the family's largest run model at its CV-best layer
``cc_norm``      that r over the noise ceiling (language; ``r / max(CC_max, floor)``)
``score``        the challenge's noise-normalised score, 100 min(1, r+^2 / NC) (vision)
``depth``        relative depth (layer / n_layers) of the layer with the best CV score,
                 per voxel (language) or the per-vertex selected layer (vision)
``gain``         test r of the largest minus that of the smallest run model: where scaling
                 helps (families with two or more run models)
``significant``  1 where the largest model's test r is significant (FDR), else 0; the group
                 map is the fraction of subjects significant (language, with the permutation
                 test on)
===============  ==========================================================================

plus ``noise_ceiling.cc_max`` (language, CC_max without the floor; vision, NC / 100) and
``<stack>.speech_weight`` (language stacks with a speech member: the weight on speech).

"Largest" and "smallest" are by parameter count (the tables' ``n_params``), chosen when the
maps are made; the CV-best layer is the tables' (`best_layers.csv`).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .._utils import DataError

logger = logging.getLogger(__name__)

__all__ = [
    "MapSpec",
    "family_extremes",
    "language_map_specs",
    "language_voxel_maps",
    "vision_map_specs",
    "vision_vertex_maps",
]


@dataclass(frozen=True)
class MapSpec:
    """One map of a track.

    Attributes
    ----------
    name : str
        ``<source>.<kind>``; file names use it as is.
    source, kind : str
    label : str
        Colour bar label.
    cmap : str
    vmin, vmax : float or None
        Colour range (None: symmetric around 0 from the data, for differences).
    group : {"mean", "fraction"}
        Across subjects: the mean, or the fraction of subjects where the subject's value is
        at least 0.5 (a significance map).
    """

    name: str
    source: str
    kind: str
    label: str
    cmap: str
    vmin: float | None
    vmax: float | None
    group: str = "mean"


_STYLE = {
    "test_r": ("test r", "inferno", 0.0, None),
    "cc_norm": ("CC_norm", "viridis", 0.0, 1.0),
    "score": ("noise-normalised score (%)", "viridis", 0.0, 100.0),
    "depth": ("relative depth of the CV-best layer", "cividis", 0.0, 1.0),
    "gain": ("gain in test r, largest - smallest model", "RdBu_r", None, None),
    "significant": ("fraction of subjects significant", "Greens", 0.0, 1.0),
    "cc_max": ("noise ceiling CC_max", "magma", 0.0, 1.0),
    "speech_weight": ("stacking weight on speech", "RdBu_r", 0.0, 1.0),
}


def _spec(source: str, kind: str, what: str) -> MapSpec:
    label, cmap, vmin, vmax = _STYLE[kind]
    return MapSpec(
        name=f"{source}.{kind}",
        source=source,
        kind=kind,
        label=f"{what}: {label}" if what else label,
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        group="fraction" if kind == "significant" else "mean",
    )


def language_map_specs(
    families: Mapping[str, Sequence[str]],
    speech_stacks: Sequence[str] = (),
    *,
    significance: bool = True,
) -> list[MapSpec]:
    """The language track's maps.

    Parameters
    ----------
    families : mapping of str to sequence of str
        Family -> its run models (config order).
    speech_stacks : sequence of str
        Stacks with at least one speech member.
    significance : bool
        Whether the fits carry a permutation test (``statistics.n_permutations > 0``).

    Returns
    -------
    list of MapSpec
    """
    specs = [_spec("noise_ceiling", "cc_max", "")]
    for family, models in families.items():
        kinds = ["test_r", "cc_norm", "depth"]
        if len(models) > 1:
            kinds.append("gain")
        if significance:
            kinds.append("significant")
        specs += [_spec(family, kind, f"{family} (largest)") for kind in kinds]
    specs += [_spec(stack, "speech_weight", f"stack {stack}") for stack in speech_stacks]
    return specs


def vision_map_specs(
    families: Mapping[str, Sequence[str]], *, noise_ceiling: bool
) -> list[MapSpec]:
    """The vision track's maps (`language_map_specs`; ``score`` instead of ``cc_norm``, no
    significance or stacks)."""
    specs = [_spec("noise_ceiling", "cc_max", "")] if noise_ceiling else []
    for family, models in families.items():
        kinds = ["test_r", *(["score"] if noise_ceiling else []), "depth"]
        if len(models) > 1:
            kinds.append("gain")
        specs += [_spec(family, kind, f"{family} (largest)") for kind in kinds]
    if noise_ceiling:
        specs[0] = MapSpec(**{**specs[0].__dict__, "label": "noise ceiling NC / 100"})
    return specs


def family_extremes(table: pd.DataFrame, subject: str, family: str) -> tuple[pd.Series, pd.Series]:
    """(largest, smallest) run model of a family for a subject: rows of a table with one row
    per (subject, model) and columns ``family``, ``n_params``.

    Raises
    ------
    DataError
        When the subject has no row of the family or a row lacks its parameter count.
    """
    rows = table[(table["subject"] == subject) & (table["family"] == family)]
    if rows.empty:
        raise DataError(
            f"the fits table (best_layers.csv / encoding.csv) has no row of family {family} for "
            f"subject {subject}: the table is older than the config's run_models; rebuild it"
        )
    if rows["n_params"].isna().any():
        missing = sorted(rows.loc[rows["n_params"].isna(), "model"])
        raise DataError(
            f"{subject}: no parameter count for {', '.join(missing)}; the largest model of "
            f"family {family} cannot be chosen (set n_params in the model registry)"
        )
    rows = rows.sort_values(["n_params", "model"], kind="stable")
    return rows.iloc[-1], rows.iloc[0]


def _load(path: str | os.PathLike, keys: Sequence[str]) -> dict[str, np.ndarray]:
    path = Path(path)
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in keys if k not in data.files]
        if missing:
            raise DataError(f"{path} lacks {', '.join(missing)}; rebuild it with this version")
        return {k: np.asarray(data[k]) for k in keys}


def language_voxel_maps(
    specs: Sequence[MapSpec],
    subject: str,
    *,
    best_layers: pd.DataFrame,
    scores: Mapping[tuple[str, int], str | os.PathLike],
    cc_max: np.ndarray,
    floor: float | None,
    stacks: Mapping[str, str | os.PathLike] | None = None,
) -> dict[str, np.ndarray]:
    """One subject's value per voxel of every map of `language_map_specs`.

    Parameters
    ----------
    specs : sequence of MapSpec
    subject : str
    best_layers : DataFrame
        One row per (subject, model): ``family``, ``n_params``, ``layer`` (the CV-best),
        ``n_layers``.
    scores : mapping of (model, layer) to path-like
        The subject's full-training-set ``scores.npz`` of every layer of the run models.
    cc_max : array of shape (n_voxels,)
        The noise ceiling without the floor (NaN where there is none).
    floor : float or None
        CC_max floor of CC_norm.
    stacks : mapping of str to path-like, optional
        Stack -> its ``scores.npz``.

    Returns
    -------
    dict of str to float64 array of shape (n_voxels,)
    """
    from ..encoding.noise_ceiling import normalized_correlation

    cc_max = np.asarray(cc_max, dtype=np.float64)
    out: dict[str, np.ndarray] = {}

    @functools.cache  # a fit serves several maps (r, CC_norm, gain): read it once
    def fit(model: str, layer: int, keys=("test_r",)) -> dict[str, np.ndarray]:
        if (model, layer) not in scores:
            raise DataError(
                f"{subject}: no scores of {model} layer {layer} among the rule's inputs (the "
                "fits table names a fit the inputs lack: rebuild the tables with this config)"
            )
        values = _load(scores[(model, layer)], keys)
        for key, array in values.items():
            if array.shape[-1] != cc_max.size:
                raise DataError(
                    f"{scores[(model, layer)]}: {key} covers {array.shape[-1]} voxels, the "
                    f"noise ceiling {cc_max.size}; both must come from the subject's mask"
                )
        return values

    for spec in specs:
        if spec.source == "noise_ceiling":
            out[spec.name] = cc_max.copy()
            continue
        if spec.kind == "speech_weight":
            path = (stacks or {}).get(spec.source)
            if path is None:
                raise DataError(f"{subject}: no scores of stack {spec.source} among the inputs")
            data = _load(path, ("weights", "kinds"))
            speech = data["kinds"].astype(str) == "speech"
            out[spec.name] = data["weights"][speech].sum(axis=0).astype(np.float64)
            continue
        largest, smallest = family_extremes(best_layers, subject, spec.source)
        model, layer = str(largest["model"]), int(largest["layer"])
        if spec.kind == "test_r":
            out[spec.name] = fit(model, layer)["test_r"].astype(np.float64)
        elif spec.kind == "cc_norm":
            r = fit(model, layer)["test_r"]
            out[spec.name] = normalized_correlation(r, cc_max, floor=floor)
        elif spec.kind == "significant":
            out[spec.name] = fit(model, layer, ("significant",))["significant"].astype(float)
        elif spec.kind == "gain":
            small = fit(str(smallest["model"]), int(smallest["layer"]))["test_r"]
            out[spec.name] = fit(model, layer)["test_r"].astype(np.float64) - small
        elif spec.kind == "depth":
            # every fitted layer of the model (the registry may list a subset): depth is the
            # CV-best one's layer / n_layers, as the tables' relative_depth
            n_layers = int(largest["n_layers"])
            layers = sorted(layer for (m, layer) in scores if m == model)
            if layer not in layers:
                raise DataError(
                    f"{subject}: the inputs hold layers {layers} of {model}, not its CV-best "
                    f"layer {layer} (best_layers.csv); rerun the tables and this rule together"
                )
            cv = np.stack([fit(model, k, ("cv_score",))["cv_score"] for k in layers])
            best = np.argmax(np.where(np.isfinite(cv), cv, -np.inf), axis=0)
            depth = np.asarray(layers, dtype=np.float64)[best] / n_layers
            depth[~np.isfinite(cv).any(axis=0)] = np.nan
            out[spec.name] = depth
        else:  # pragma: no cover - the specs come from language_map_specs
            raise DataError(f"map {spec.name}: unknown kind {spec.kind!r}")
    return out


def vision_vertex_maps(
    specs: Sequence[MapSpec],
    subject: str,
    *,
    encoding: pd.DataFrame,
    scores: Mapping[str, str | os.PathLike],
    n_layers: Mapping[str, int],
    noise_ceiling: np.ndarray | None,
) -> dict[str, np.ndarray]:
    """One subject's value per challenge vertex of every map of `vision_map_specs`.

    Parameters
    ----------
    specs : sequence of MapSpec
    subject : str
    encoding : DataFrame
        The vision encoding table (rows of full fits: ``full_train``, ``family``,
        ``n_params``).
    scores : mapping of str to path-like
        Model -> its selected full fit's ``scores.npz`` (``test_r``, ``layer``).
    n_layers : mapping of str to int
        Model -> its layer count (relative depth = layer / n_layers).
    noise_ceiling : array of shape (n_vertices,), optional
        The challenge noise ceiling NC (percent).

    Returns
    -------
    dict of str to float64 array of shape (n_vertices,)
    """
    from ..vision.scores import noise_normalized_score

    full = encoding[encoding["full_train"].astype(bool) & (encoding["family"] != "ensemble")]
    out: dict[str, np.ndarray] = {}

    @functools.cache  # a fit serves several maps (r, score, depth, gain): read it once
    def fit(model: str) -> dict[str, np.ndarray]:
        if model not in scores:
            raise DataError(f"{subject}: no selected fit of {model} among the inputs")
        return _load(scores[model], ("test_r", "layer"))

    for spec in specs:
        if spec.source == "noise_ceiling":
            out[spec.name] = np.asarray(noise_ceiling, dtype=np.float64) / 100.0
            continue
        largest, smallest = family_extremes(full, subject, spec.source)
        model = str(largest["model"])
        data = fit(model)
        r = data["test_r"].astype(np.float64)
        if spec.kind == "test_r":
            out[spec.name] = r
        elif spec.kind == "score":
            out[spec.name] = np.asarray(noise_normalized_score(r, noise_ceiling), dtype=float)
        elif spec.kind == "depth":
            out[spec.name] = data["layer"].astype(np.float64) / int(n_layers[model])
        elif spec.kind == "gain":
            out[spec.name] = r - fit(str(smallest["model"]))["test_r"]
        else:  # pragma: no cover - the specs come from vision_map_specs
            raise DataError(f"map {spec.name}: unknown kind {spec.kind!r}")
    return out
