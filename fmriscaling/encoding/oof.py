"""Out-of-fold predictions of the members of a stack, stored voxel-chunked in HDF5.

A stack member is one feature space (a model's layer). `fit_stack_member` fits it exactly as the
layer sweep does (the designs and folds of `fmriscaling.encoding.inputs.prepare_fit`, the
same alpha search of `fit_ridge_cv`, so the same per-voxel alphas) and keeps what stacking needs: the out-of-fold (OOF) predictions of the
training TRs, the test predictions of the refit on all training stories, and the test responses.
``layer="best"`` resolves to the model's CV-best layer of the sweep (`best_layer`, the choice of
``best_layers.csv``), never to a choice made on the test story.

Member file (`write_member_predictions`, read by `MemberPredictions`)::

    oof_pred      (n_train_trs, n_voxels)  float16 (or float32), chunks (n_train_trs, c)
    test_pred     (n_test_trs, n_voxels)   float32, chunks (n_test_trs, c')
    test_true     (n_test_trs, n_voxels)   float32, chunks (n_test_trs, c')
    oof_rows      (n_train_trs,) bool      TRs some fold held out (all of them with story folds)
    target_cross  (n_voxels,) float64      mean over oof_rows of y * oof_pred (as stored)
    target_power  (n_voxels,) float64      mean over oof_rows of y * y
    test_r, alpha, cv_score  (n_voxels,) float32   the refit's test r, the alphas, CV scores
    attrs: format, subject, model, layer, layer_choice, test_story, train_stories (JSON),
           story_lengths, cv, n_folds, oof_dtype, chunk_voxels, alpha_agreement,
           test_true_sha256

Each chunk holds every TR of a few voxels (~4 MiB), so a block of voxels is read as whole chunks
and a stacking job streams voxel blocks without ever loading a whole member. ``y`` never has to
be stored again: stacking needs the residual cross-products
``R_ij = mean_t (y − ŷ_i)(y − ŷ_j) = target_power − target_cross_i − target_cross_j + mean_t ŷ_i ŷ_j``,
and the last term comes from the stored predictions. ``target_cross`` is computed from the
predictions as stored (rounded to ``oof_dtype``), so ``R`` is exactly the residual cross-products
of the stored predictions.

Why float16 is enough: the predictions are z-scored-response-sized (|ŷ| ≲ 1); rounding to
float16 changes each by at most 2⁻¹¹ relative, independently over TRs, which moves ``R`` by
~1e-6 of its scale at thousands of TRs, far below the differences between members that set the
weights (measured in benchmarks/RESULTS.md, "Stacking"). float16 halves the disk and the reads
(one real-size member: 27,000 TRs x 95,000 voxels = 5 GB instead of 10 GB).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._utils import DataError, atomic_path, write_provenance

logger = logging.getLogger(__name__)

__all__ = [
    "OOF_DTYPES",
    "MemberPredictions",
    "best_layer",
    "fit_stack_member",
    "write_member_predictions",
]

OOF_DTYPES = ("float16", "float32")
MEMBER_FORMAT = 1
# bytes per HDF5 chunk: every TR of a few voxels
_CHUNK_BYTES = 4 * 2**20
# bytes of float32 converted per write block
_WRITE_BLOCK_BYTES = 256 * 2**20
_REBUILD = "Delete it and rerun its stack_member job."


def best_layer(fit_scores: Mapping[int, str | os.PathLike]) -> int:
    """The layer with the best mean CV score among a model's layer fits (never test r).

    The same choice as ``best_layers.csv`` (`fmriscaling.encoding.tables.best_layers`: the mean
    over voxels of each fit's ``cv_score``, ties to the lowest layer).

    Parameters
    ----------
    fit_scores : mapping layer -> path-like
        The ``scores.npz`` of each layer's fit (one subject, all training stories).

    Returns
    -------
    layer : int
    """
    import pandas as pd

    from .tables import _read_scores, best_layers

    if not fit_scores:
        raise DataError("no layer fits given to choose the best layer from; expected >= 1.")
    rows = [
        {"subject": "", "model": "", "layer": int(layer), "mean_cv_score": _read_scores(Path(p))[1]}
        for layer, p in sorted(fit_scores.items(), key=lambda item: int(item[0]))
    ]
    best = int(best_layers(pd.DataFrame(rows)).iloc[0]["layer"])
    logger.info(
        "best layer by mean CV score: %d (%s)",
        best,
        ", ".join(f"{r['layer']}: {r['mean_cv_score']:.4f}" for r in rows),
    )
    return best


# the ridge fit's settings a member uses (their defaults are EncodingSettings')
_MEMBER_SETTINGS = (
    "test_story",
    "delays",
    "alphas",
    "cv",
    "n_folds",
    "bootstrap",
    "test_extra_trim",
    "extra_trim_train",
    "backend",
    "solver",
    "n_targets_batch",
    "score_dtype",
    "seed",
)
_PREPARE_KEYS = (
    "delays",
    "alphas",
    "cv",
    "n_folds",
    "bootstrap",
    "seed",
    "test_extra_trim",
    "extra_trim_train",
)


def _member_settings(encoding: Mapping[str, Any]) -> dict[str, Any]:
    """``encoding`` with the ridge fit's defaults (`EncodingSettings`) filled in; unknown keys
    are an error."""
    import dataclasses

    from .fit import EncodingSettings

    unknown = sorted(set(encoding) - set(_MEMBER_SETTINGS))
    if unknown:
        raise TypeError(
            f"fit_stack_member got unknown fit settings {unknown}; expected some of "
            f"{list(_MEMBER_SETTINGS)} (the ridge fit's, see EncodingSettings)."
        )
    defaults = {f.name: f.default for f in dataclasses.fields(EncodingSettings)}
    settings = {key: defaults.get(key, dataclasses.MISSING) for key in _MEMBER_SETTINGS}
    settings.update(encoding)
    missing = [key for key, value in settings.items() if value is dataclasses.MISSING]
    if missing:
        raise TypeError(f"fit_stack_member needs the fit settings {missing}.")
    return settings


def fit_stack_member(
    *,
    feature_dir: str | os.PathLike,
    layer: int | str,
    layer_fits: Mapping[int, str | os.PathLike],
    response_files: Mapping[str, str | os.PathLike] | str | os.PathLike,
    train_stories: Sequence[str],
    oof_dtype: str = "float16",
    out_h5: str | os.PathLike,
    params: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
    **encoding: Any,
) -> dict[str, Any]:
    """Fit one stack member and write its out-of-fold and test predictions.

    Parameters
    ----------
    feature_dir : path-like
        The model's feature folder (``layer-{l}.h5`` per layer).
    layer : int or "best"
        The layer, or ``"best"``: `best_layer` of ``layer_fits``.
    layer_fits : mapping layer -> path-like
        ``scores.npz`` of the model's layer fits for this subject: every layer for ``"best"``;
        for a number, the fit of that layer if it exists (its alphas are compared with the
        member's: ``alpha_agreement``), else empty.
    response_files : mapping story -> path-like, or path-like
        Response file of each story (training and test), or the subject's prepared responses
        (`fmriscaling.encoding.prepared`), as the workflow's fits read them.
    train_stories : sequence of str
    oof_dtype : {"float16", "float32"}, default "float16"
        Storage precision of the OOF predictions (see the module docstring).
    out_h5 : path-like
        The member file (layout in the module docstring), written atomically, with a
        ``.provenance.json`` sidecar.
    params : mapping, optional
        Rule params stored in the provenance.
    meta : mapping, optional
        Labels (subject, model, ...) stored as attributes.
    **encoding
        The ridge fit's settings, as `fmriscaling.encoding.fit.fit_encoding` takes them and
        with its defaults: ``test_story`` and ``alphas`` (required), ``delays``, ``cv``,
        ``n_folds``, ``bootstrap``, ``test_extra_trim``, ``extra_trim_train``, ``backend``,
        ``solver``, ``n_targets_batch``, ``score_dtype``, ``seed``. The member is that fit
        (fast solver), plus its OOF predictions.

    Returns
    -------
    summary : dict
        layer, layer_choice, n_train_trs, n_test_trs, n_voxels, mean_test_r, alpha_agreement,
        backend, fit_seconds.

    Raises
    ------
    TypeError
        An unknown or missing fit setting.
    """
    from ..features.io import layer_path
    from .inputs import prepare_fit
    from .ridge import fit_ridge_cv

    if oof_dtype not in OOF_DTYPES:
        raise ValueError(f"oof_dtype={oof_dtype!r}: expected one of {OOF_DTYPES}.")
    fit = _member_settings(encoding)
    layer_fits = {int(k): v for k, v in layer_fits.items()}
    if layer == "best":
        chosen, choice = best_layer(layer_fits), "best"
    else:
        chosen, choice = int(layer), "fixed"
    train_stories = [str(s) for s in train_stories]
    feature_file = layer_path(feature_dir, chosen)
    prepared = prepare_fit(
        feature_file,
        response_files,
        train_stories,
        str(fit["test_story"]),
        **{key: fit[key] for key in _PREPARE_KEYS},
    )
    design = prepared.design
    result = fit_ridge_cv(
        design.X_train,
        design.Y_train,
        alphas=prepared.alphas,
        folds=prepared.folds,
        X_test=design.X_test,
        Y_test=design.Y_test,
        **{key: fit[key] for key in ("backend", "solver", "n_targets_batch", "score_dtype")},
        return_test_pred=True,
        return_oof_pred=True,
    )
    oof_rows = np.zeros(design.Y_train.shape[0], dtype=bool)
    for _, val in prepared.folds:
        oof_rows[val] = True

    agreement = float("nan")
    if chosen in layer_fits:
        with np.load(layer_fits[chosen]) as ref:
            agreement = float(np.mean(ref["alpha"] == result.alphas.astype(np.float32)))
        logger.info("alphas equal to the layer fit's for %.1f%% of voxels", 100 * agreement)
    attrs = {
        **{k: v for k, v in dict(meta or {}).items() if v is not None},
        "layer": chosen,
        "layer_choice": choice,
        "test_story": str(fit["test_story"]),
        "train_stories": json.dumps(train_stories),
        "story_lengths": np.asarray(design.story_lengths, dtype=np.int64),
        "cv": fit["cv"],
        "n_folds": len(prepared.folds),
        "alpha_agreement": agreement,
        "backend": result.backend,
        "score_dtype": result.score_dtype,
    }
    write_member_predictions(
        out_h5,
        oof_pred=result.oof_pred,
        oof_rows=oof_rows,
        Y_train=design.Y_train,
        test_pred=result.test_pred,
        Y_test=design.Y_test,
        per_voxel={"test_r": result.test_r, "alpha": result.alphas, "cv_score": result.cv_scores},
        oof_dtype=oof_dtype,
        attrs=attrs,
    )
    write_provenance(out_h5, params, feature_file=str(feature_file), layer=chosen)
    summary = {
        "layer": chosen,
        "layer_choice": choice,
        "n_train_trs": int(design.Y_train.shape[0]),
        "n_test_trs": int(design.Y_test.shape[0]),
        "n_voxels": int(design.Y_train.shape[1]),
        "mean_test_r": float(np.mean(result.test_r, dtype=np.float64)),
        "alpha_agreement": agreement,
        "backend": result.backend,
        "fit_seconds": float(result.fit_seconds),
    }
    logger.info(
        "wrote %s: layer %d (%s), mean test r %.4f, %s OOF predictions",
        out_h5,
        chosen,
        choice,
        summary["mean_test_r"],
        oof_dtype,
    )
    return summary


def _chunk_voxels(n_rows: int, itemsize: int, n_voxels: int) -> int:
    """Voxels per chunk: every row of ``c`` voxels in about `_CHUNK_BYTES`."""
    return int(np.clip(_CHUNK_BYTES // max(1, n_rows * itemsize), 1, max(1, n_voxels)))


def _blocks(n_voxels: int, width: int) -> list[slice]:
    return [slice(a, min(a + width, n_voxels)) for a in range(0, n_voxels, width)]


def write_member_predictions(
    path: str | os.PathLike,
    *,
    oof_pred: np.ndarray,
    oof_rows: np.ndarray,
    Y_train: np.ndarray,
    test_pred: np.ndarray,
    Y_test: np.ndarray,
    per_voxel: Mapping[str, np.ndarray] | None = None,
    oof_dtype: str = "float16",
    attrs: Mapping[str, Any] | None = None,
) -> Path:
    """Write a member file (layout in the module docstring), atomically.

    Parameters
    ----------
    path : path-like
    oof_pred : float array of shape (n_train_trs, n_voxels)
        OOF predictions; rows outside ``oof_rows`` are ignored (stored as 0). Modified in place
        there (set to 0), so that a real-size member needs no second copy.
    oof_rows : bool array of shape (n_train_trs,)
        TRs held out by some fold.
    Y_train : float array of shape (n_train_trs, n_voxels)
        The training responses the predictions are of.
    test_pred, Y_test : float arrays of shape (n_test_trs, n_voxels)
        Test predictions of the refit and the test responses.
    per_voxel : mapping name -> array of shape (n_voxels,), optional
        Stored as float32 datasets (e.g. ``test_r``, ``alpha``, ``cv_score``).
    oof_dtype : {"float16", "float32"}
    attrs : mapping, optional
        File attributes (``format``, ``oof_dtype``, ``chunk_voxels``, ``test_true_sha256`` are
        added).

    Returns
    -------
    path : Path
    """
    import h5py

    if oof_dtype not in OOF_DTYPES:
        raise ValueError(f"oof_dtype={oof_dtype!r}: expected one of {OOF_DTYPES}.")
    n_rows, n_voxels = Y_train.shape
    oof_rows = np.asarray(oof_rows, dtype=bool)
    if oof_pred.shape != (n_rows, n_voxels) or oof_rows.shape != (n_rows,):
        raise ValueError(
            f"oof_pred {oof_pred.shape} and oof_rows {oof_rows.shape} must match Y_train "
            f"{Y_train.shape}."
        )
    if test_pred.shape != Y_test.shape or Y_test.shape[1] != n_voxels:
        raise ValueError(f"test_pred {test_pred.shape} and Y_test {Y_test.shape} must match.")
    n_held = int(oof_rows.sum())
    if n_held == 0:
        raise DataError(f"{path}: no training TR was held out by any fold; check the CV folds.")
    oof_pred[~oof_rows] = 0.0
    dtype = np.dtype(oof_dtype)
    chunk = _chunk_voxels(n_rows, dtype.itemsize, n_voxels)
    test_chunk = _chunk_voxels(Y_test.shape[0], 4, n_voxels)
    test_true = np.ascontiguousarray(Y_test, dtype=np.float32)
    file_attrs = {
        **dict(attrs or {}),
        "format": MEMBER_FORMAT,
        "oof_dtype": oof_dtype,
        "chunk_voxels": chunk,
        "test_true_sha256": hashlib.sha256(test_true.tobytes()).hexdigest(),
    }
    path = Path(path)
    width = chunk * max(1, _WRITE_BLOCK_BYTES // (4 * n_rows * chunk))
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs.update(file_attrs)
        oof = f.create_dataset("oof_pred", (n_rows, n_voxels), dtype=dtype, chunks=(n_rows, chunk))
        cross = np.empty(n_voxels)
        power = np.empty(n_voxels)
        for cols in _blocks(n_voxels, width):
            stored = np.asarray(oof_pred[:, cols], dtype=dtype)
            oof[:, cols] = stored
            y = np.asarray(Y_train[oof_rows, cols], dtype=np.float64)
            cross[cols] = (y * stored[oof_rows]).sum(0) / n_held
            power[cols] = (y * y).sum(0) / n_held
        opts = {"chunks": (Y_test.shape[0], test_chunk)}
        f.create_dataset("test_pred", data=np.asarray(test_pred, dtype=np.float32), **opts)
        f.create_dataset("test_true", data=test_true, **opts)
        f.create_dataset("oof_rows", data=oof_rows)
        f.create_dataset("target_cross", data=cross)
        f.create_dataset("target_power", data=power)
        for name, values in dict(per_voxel or {}).items():
            f.create_dataset(name, data=np.asarray(values, dtype=np.float32))
    return path


class MemberPredictions:
    """Read access to a member file, a block of voxels at a time.

    Use as a context manager (``with MemberPredictions(path) as member: ...``).

    Parameters
    ----------
    path : path-like
        A file written by `write_member_predictions`.

    Attributes
    ----------
    path : Path
    attrs : dict
        The file attributes.
    n_train_trs, n_test_trs, n_voxels : int
    chunk_voxels : int
        Voxels per HDF5 chunk (read blocks are best a multiple of it).
    oof_rows : bool array of shape (n_train_trs,)
    target_cross, target_power : float64 arrays of shape (n_voxels,)
    """

    _DATASETS = ("oof_pred", "oof_rows", "test_pred", "test_true", "target_cross", "target_power")

    def __init__(self, path: str | os.PathLike):
        from .._hdf5 import open_hdf5

        self.path = Path(path)
        self._context = open_hdf5(self.path, kind="stack member file", fix=_REBUILD)
        self._file = self._context.__enter__()
        try:
            self._check()
        except BaseException:
            self.close()
            raise

    def _check(self) -> None:
        f = self._file
        self.attrs = {k: _plain(v) for k, v in f.attrs.items()}
        missing = [name for name in self._DATASETS if name not in f]
        if self.attrs.get("format") != MEMBER_FORMAT or missing:
            raise DataError(
                f"{self.path}: not a stack member file of format {MEMBER_FORMAT} (format "
                f"{self.attrs.get('format')!r}, missing {missing}). {_REBUILD}"
            )
        self.n_train_trs, self.n_voxels = (int(n) for n in f["oof_pred"].shape)
        self.n_test_trs = int(f["test_pred"].shape[0])
        self.chunk_voxels = int(self.attrs["chunk_voxels"])
        self.oof_rows = f["oof_rows"][()].astype(bool)
        self.target_cross = f["target_cross"][()].astype(np.float64)
        self.target_power = f["target_power"][()].astype(np.float64)
        shapes = {
            "oof_rows": (self.oof_rows.shape, (self.n_train_trs,)),
            "test_true": (f["test_true"].shape, (self.n_test_trs, self.n_voxels)),
            "target_cross": (self.target_cross.shape, (self.n_voxels,)),
            "target_power": (self.target_power.shape, (self.n_voxels,)),
        }
        for name, (shape, expected) in shapes.items():
            if tuple(shape) != expected:
                raise DataError(
                    f"{self.path}: dataset {name} has shape {tuple(shape)}, expected "
                    f"{expected}. {_REBUILD}"
                )

    def oof_block(self, cols: slice) -> np.ndarray:
        """OOF predictions of voxels ``cols``: float32 (n_train_trs, n_cols), 0 off ``oof_rows``."""
        return self._file["oof_pred"][:, cols].astype(np.float32)

    def test_block(self, cols: slice) -> tuple[np.ndarray, np.ndarray]:
        """Test predictions and test responses of voxels ``cols``: float32 (n_test_trs, n_cols)."""
        return self._file["test_pred"][:, cols], self._file["test_true"][:, cols]

    def per_voxel(self, name: str) -> np.ndarray:
        """A per-voxel dataset (``test_r``, ``alpha``, ``cv_score``), shape (n_voxels,)."""
        return self._file[name][()]

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._context is not None:
            self._context.__exit__(None, None, None)
            self._context = None

    def __enter__(self) -> MemberPredictions:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _plain(value: Any) -> Any:
    """An HDF5 attribute as a plain Python value (numbers, str, lists)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
