"""Stacked regression (Lin, Naselaris, Kay & Wehbe): per voxel, the best convex mix of members.

Each member (a model's layer, fitted by `fmriscaling.encoding.oof.fit_stack_member`) has
out-of-fold predictions ``ŷ_k`` of the training TRs and test predictions of its refit. Per voxel,
with residuals ``e_k = y − ŷ_k`` on the held-out TRs,

    R_ij = mean_t e_i(t) e_j(t),     α = argmin αᵀRα  subject to  α ≥ 0, Σα = 1,

and the stacked test prediction is ``Σ_k α_k ŷ_k(test)``. `stack_regression` streams voxel blocks
through this: for each block it reads every member's OOF predictions of those voxels only (never
a whole member), forms ``R`` on the backend from ``mean_t ŷ_i ŷ_j`` and the members' stored
``target_cross``/``target_power`` (see `fmriscaling.encoding.oof`), solves every voxel's weights
at once (`fmriscaling.encoding.simplex.solve_simplex_qp_on`, on the GPU backend when there
is one, else on numpy: `solver_backend`), and scores the stacked test prediction. Memory: one
block of all members, sized from free memory (``block_voxels="auto"``).

Per voxel it reports the weights, the test r of the stack and of each member, the stack's gain
over the member that cross-validation picks for that voxel (the lowest OOF error ``R_kk``; chosen
on training data, like the stack), and the stack's CC_norm with the subject's noise ceiling.
`stacking_tables` summarises voxel sets (all voxels, and each label of a voxel labelling such as
the demo's ground-truth groups, and the subjects' ROIs) into the tidy ``stacking.csv`` /
``stacking_members.csv``. The module (~600 lines) holds the streamed job and the summaries of
its one output format, which change together.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._utils import DataError, atomic_path, write_provenance
from ..stats import r2_columns
from .backend import _free_memory_bytes, _PeakMemory, using_backend
from .noise_ceiling import load_noise_ceiling, normalized_correlation, summarize_normalized
from .oof import MemberPredictions
from .ridge import pearson_columns
from .significance import device_for, n_permutations_of, significance_of
from .simplex import solve_simplex_qp_on, solver_backend

logger = logging.getLogger(__name__)

__all__ = [
    "STACKING_COLUMNS",
    "STACKING_MEMBER_COLUMNS",
    "mean_or_nan",
    "read_voxel_groups",
    "read_voxel_labels",
    "residual_cross_products",
    "speech_weights",
    "stack_predictions",
    "stack_regression",
    "stacking_tables",
    "summarize_stack",
    "voxel_groups",
]

#: Columns of ``stacking.csv``: one row per subject x stack x voxel group.
STACKING_COLUMNS: tuple[str, ...] = (
    "subject",
    "stack",
    "group",
    "group_source",
    "n_members",
    "n_voxels",
    "mean_r_stack",
    "mean_cc_norm_stack",
    "fraction_significant_stack",
    "best_member",
    "mean_r_best_member",
    "mean_gain",
    "gain_over_best_member",
    "frac_improved",
    "weight_speech",
    "weight_text",
    "n_voxels_no_ceiling",
    "n_solver_fallback",
)
#: Columns of ``stacking_members.csv``: one row per subject x stack x voxel group x member.
STACKING_MEMBER_COLUMNS: tuple[str, ...] = (
    "subject",
    "stack",
    "group",
    "group_source",
    "member",
    "model",
    "kind",
    "layer",
    "layer_choice",
    "mean_r",
    "mean_weight",
    "frac_largest_weight",
)
# a block of every member's OOF predictions may use at most this much memory
_MAX_BLOCK_BYTES = 2 * 2**30


def residual_cross_products(
    oof_preds: Sequence[np.ndarray], Y: np.ndarray, rows: np.ndarray | None = None
) -> np.ndarray:
    """``R_ij = mean_t (y − ŷ_i)(y − ŷ_j)`` per voxel, from predictions held in memory.

    The direct formula (the streamed `stack_regression` gets ``R`` another way, from the member
    files); float64.

    Parameters
    ----------
    oof_preds : sequence of k arrays of shape (n_trs, n_voxels)
    Y : array of shape (n_trs, n_voxels)
    rows : bool array of shape (n_trs,), optional
        TRs to average over (default all).

    Returns
    -------
    R : array of shape (n_voxels, k, k)
    """
    rows = slice(None) if rows is None else np.asarray(rows, dtype=bool)
    y = np.asarray(Y, dtype=np.float64)[rows]
    E = np.stack([y - np.asarray(p, dtype=np.float64)[rows] for p in oof_preds])
    return np.einsum("itv,jtv->vij", E, E) / y.shape[0]


def stack_predictions(
    oof_preds: Sequence[np.ndarray],
    Y: np.ndarray,
    test_preds: Sequence[np.ndarray],
    Y_test: np.ndarray,
    *,
    rows: np.ndarray | None = None,
    backend: str = "auto",
    tol: float = 1e-9,
) -> dict[str, np.ndarray]:
    """Stacked regression of predictions held in memory (all voxels in one solve).

    The in-memory counterpart of `stack_regression`, for tests and small problems.

    Parameters
    ----------
    oof_preds : sequence of k arrays of shape (n_trs, n_voxels)
        Members' out-of-fold predictions of ``Y``.
    Y : array of shape (n_trs, n_voxels)
    test_preds : sequence of k arrays of shape (n_test, n_voxels)
    Y_test : array of shape (n_test, n_voxels)
    rows : bool array of shape (n_trs,), optional
        Held-out TRs (default all).
    backend : str, default "auto"
    tol : float, default 1e-9
        Certification threshold of the solver.

    Returns
    -------
    scores : dict
        ``weights`` (k, n_voxels), ``stack_r`` (n_voxels,), ``member_r`` (k, n_voxels),
        ``objective`` (n_voxels,) = ``αᵀRα``.
    """
    from .simplex import solve_simplex_qp

    R = residual_cross_products(oof_preds, Y, rows)
    result = solve_simplex_qp(R, backend=backend, tol=tol)
    weights = result.weights.T
    stacked = np.einsum("ktv,kv->tv", np.stack(test_preds).astype(np.float64), weights)
    y_test = np.asarray(Y_test, dtype=np.float64)
    member_r = np.stack([_corr(np.asarray(p, dtype=np.float64), y_test) for p in test_preds])
    return {
        "weights": weights,
        "stack_r": _corr(stacked, y_test),
        "member_r": member_r,
        "objective": result.objective,
    }


def _corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r per column (0 where a column is constant), as the ridge fit scores."""
    import himalaya.backend.numpy as numpy_backend  # the module only: the global stays as it is

    return pearson_columns(numpy_backend, a, b)


def stack_regression(
    *,
    member_files: Sequence[str | os.PathLike],
    members: Sequence[Mapping[str, Any]],
    out_npz: str | os.PathLike,
    noise_ceiling: str | os.PathLike | None = None,
    floor: float | None = None,
    backend: str = "auto",
    block_voxels: int | str = "auto",
    tol: float = 1e-9,
    max_iter: int | None = None,
    calibrate: bool = True,
    statistics: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Stack the members of one stack for one subject, streaming voxel blocks from their files.

    Parameters
    ----------
    member_files : sequence of k path-likes
        Member files (`fmriscaling.encoding.oof.write_member_predictions`) of one subject.
    members : sequence of k mappings
        Labels of each member, stored in the scores: ``model``, ``kind``, and optionally
        ``layer_spec`` (the configured layer: a number or "best"); the resolved layer and the
        name ``<model>/layer-<layer>`` come from the member file.
    out_npz : path-like
        ``scores.npz``, written atomically, with a ``.provenance.json`` sidecar. Arrays:
        ``weights`` (k, n_voxels), ``stack_r`` (n_voxels,), ``member_r`` (k, n_voxels),
        ``stack_r2`` (n_voxels,) and ``member_r2`` (k, n_voxels) (test R², `r2_columns`),
        ``gain`` (n_voxels,) = ``stack_r`` − test r of the member with the lowest OOF error at
        that voxel (``cv_member``), ``cc_norm`` (n_voxels,; NaN without a ceiling),
        ``oof_mse`` (k, n_voxels) = ``R_kk``, ``stack_oof_mse`` (n_voxels,) = ``αᵀRα``,
        ``calibration`` (k, n_voxels) the members' gains (1 without ``calibrate``),
        ``solver_gap``, ``solver_iterations``, ``solver_fallback``, ``solver_degenerate``,
        ``solver_certified`` (n_voxels,), and the member labels ``members``, ``models``,
        ``kinds``, ``layers``, ``layer_choices`` (k,). With ``calibrate``, ``R`` and the
        OOF errors are those of the calibrated predictions.
    noise_ceiling : path-like, optional
        The subject's noise-ceiling npz; without it ``cc_norm`` is NaN.
    floor : float, optional
        Floor on CC_max when normalising.
    backend : str, default "auto"
        himalaya backend of the cross-products, the solve and the scores.
    block_voxels : int or "auto", default "auto"
        Voxels per streamed block; ``"auto"`` sizes it from free memory (at most 2 GiB of
        predictions), rounded to whole HDF5 chunks.
    tol, max_iter
        Solver settings (`fmriscaling.encoding.simplex.solve_simplex_qp_on`).
    calibrate : bool, default True
        Rescale each member's predictions, per voxel, by their least-squares gain on the OOF
        TRs, ``β_k = max(mean yŷ_k, 0) / mean ŷ_k²``, before forming ``R``; the stacked test
        prediction is then ``Σ α_k β_k ŷ_k``. The fits choose alphas by correlation, which
        leaves a member's scale arbitrary where its CV curve is flat (large alphas shrink the
        predictions, not their r), and stacking weighs squared errors. A member that
        anti-predicts a voxel out of fold gets ``β = 0`` there (it predicts nothing). False:
        the raw predictions, as Lin et al. stack them (their ridge picks alphas by R²).
    statistics : mapping, optional
        The config's ``statistics``: with ``n_permutations`` > 0, the stack's test r gets a
        block permutation p, a Benjamini-Hochberg q and a significance flag per voxel
        (``stack_p``, ``stack_q``, ``stack_significant``; `fmriscaling.encoding.significance`).
    params : mapping, optional
        Rule params stored in the provenance.
    meta : mapping, optional
        Labels (subject, stack) stored in the provenance.

    Returns
    -------
    summary : dict
        n_members, n_voxels, mean_r_stack, mean members' r, n_fallback, n_not_certified,
        n_degenerate, block_voxels, backend, seconds, peak_memory_bytes.

    Raises
    ------
    DataError
        Members fitted on different responses, stories or voxels, or a noise ceiling of
        another size.
    """
    start = time.perf_counter()
    if len(member_files) != len(members) or not member_files:
        raise ValueError(
            f"{len(member_files)} member files for {len(members)} member labels; expected one "
            "file per member, at least one."
        )
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(MemberPredictions(p)) for p in member_files]
        _check_members(files)
        first = files[0]
        n_voxels, n_rows = first.n_voxels, int(first.oof_rows.sum())
        ceiling = None if noise_ceiling is None else load_noise_ceiling(noise_ceiling)
        if ceiling is not None and ceiling.cc_max.shape != (n_voxels,):
            raise DataError(
                f"noise ceiling {noise_ceiling} has {ceiling.cc_max.size} voxels, the members "
                f"{n_voxels}; both must come from the same subject and mask. Rerun the "
                "out-of-date one."
            )
        k = len(files)
        names = [f"{m.attrs['model']}/layer-{m.attrs['layer']}" for m in files]
        cross = np.stack([m.target_cross for m in files])  # (k, n_voxels)
        power = first.target_power
        out = {
            "weights": np.empty((k, n_voxels), np.float32),
            "stack_r": np.empty(n_voxels, np.float32),
            "member_r": np.empty((k, n_voxels), np.float32),
            "stack_r2": np.empty(n_voxels, np.float32),
            "member_r2": np.empty((k, n_voxels), np.float32),
            "oof_mse": np.empty((k, n_voxels), np.float32),
            "stack_oof_mse": np.empty(n_voxels, np.float32),
            "solver_gap": np.empty(n_voxels, np.float32),
            "solver_iterations": np.empty(n_voxels, np.int32),
            "solver_fallback": np.empty(n_voxels, bool),
            "solver_degenerate": np.empty(n_voxels, bool),
            "solver_certified": np.empty(n_voxels, bool),
            "calibration": np.ones((k, n_voxels), np.float32),
        }
        with using_backend(backend) as (bk, backend_name):
            peak = _PeakMemory(backend_name)
            solver_bk = solver_backend(bk)
            width = _block_width(block_voxels, files, backend_name)
            logger.info(
                "stacking %d members x %d voxels (%d held-out TRs) in blocks of %d voxels",
                k,
                n_voxels,
                n_rows,
                width,
            )
            held = first.oof_rows
            n_permutations = n_permutations_of(statistics)
            # the stacked test predictions, kept for the permutation test
            stacked_test = y_test_all = None
            for cols in (slice(a, min(a + width, n_voxels)) for a in range(0, n_voxels, width)):
                oof = np.empty((cols.stop - cols.start, k, n_rows), np.float32)
                for i, member in enumerate(files):
                    oof[:, i, :] = member.oof_block(cols)[held].T
                oof_dev = bk.asarray(oof)
                # mean_t ŷ_i ŷ_j, then R = mean y² − mean yŷ_i − mean yŷ_j + mean ŷ_iŷ_j
                pp = bk.to_numpy(bk.matmul(oof_dev, oof_dev.swapaxes(1, 2))).astype(np.float64)
                del oof_dev, oof
                pp /= n_rows
                c = cross[:, cols].T
                if calibrate:
                    gain = _calibration(pp, c)
                    pp *= gain[:, :, None] * gain[:, None, :]
                    c = c * gain
                    out["calibration"][:, cols] = gain.T
                R = pp - c[:, :, None] - c[:, None, :] + power[cols, None, None]
                solved = solve_simplex_qp_on(solver_bk, R, tol=tol, max_iter=max_iter)
                test = [member.test_block(cols) for member in files]
                y_test = bk.asarray(test[0][1])
                preds = bk.asarray(np.stack([t[0] for t in test]))  # (k, n_test, b)
                for i in range(k):
                    out["member_r"][i, cols] = bk.to_numpy(pearson_columns(bk, preds[i], y_test))
                mix = solved.weights.T * (gain.T if calibrate else 1.0)  # (k, b)
                stacked = (preds * bk.asarray(mix.astype(np.float32))[:, None, :]).sum(0)
                out["stack_r"][cols] = bk.to_numpy(pearson_columns(bk, stacked, y_test))
                # R² (the comparison with banded ridge, `fmriscaling.encoding.partition`)
                y_host = bk.to_numpy(y_test)
                out["stack_r2"][cols] = r2_columns(bk.to_numpy(stacked), y_host)
                for i, t in enumerate(test):
                    out["member_r2"][i, cols] = r2_columns(t[0], y_host)
                if n_permutations > 0:
                    if stacked_test is None:
                        stacked_test = np.empty((stacked.shape[0], n_voxels), np.float32)
                        y_test_all = np.empty((stacked.shape[0], n_voxels), np.float32)
                    stacked_test[:, cols] = bk.to_numpy(stacked)
                    y_test_all[:, cols] = bk.to_numpy(y_test)
                out["weights"][:, cols] = solved.weights.T
                out["oof_mse"][:, cols] = np.diagonal(R, axis1=1, axis2=2).T
                out["stack_oof_mse"][cols] = solved.objective
                out["solver_gap"][cols] = solved.gap
                out["solver_iterations"][cols] = solved.n_iter
                out["solver_fallback"][cols] = solved.fallback
                out["solver_degenerate"][cols] = solved.degenerate
                out["solver_certified"][cols] = solved.certified
            peak_bytes = peak.peak()

    cv_member = np.argmin(out["oof_mse"], axis=0)
    out["cv_member"] = cv_member.astype(np.int32)
    out["gain"] = out["stack_r"] - out["member_r"][cv_member, np.arange(n_voxels)]
    out["cc_norm"] = np.full(n_voxels, np.nan, np.float32)
    if ceiling is not None:
        cc_norm = normalized_correlation(out["stack_r"], ceiling.cc_max, floor=floor)
        out["cc_norm"] = cc_norm.astype(np.float32)
    significance = {}
    if stacked_test is not None:
        significance = significance_of(
            stacked_test,
            y_test_all,
            statistics,
            device=device_for(backend_name),
            what=f"{out_npz} (stack)",
        )
        renamed = {"test_p": "stack_p", "test_q": "stack_q", "significant": "stack_significant"}
        out.update({new: significance.pop(old) for old, new in renamed.items()})
    labels = {
        "members": np.array(names),
        "models": np.array([str(m.attrs["model"]) for m in files]),
        "kinds": np.array([str(spec.get("kind", "")) for spec in members]),
        "layers": np.array([int(m.attrs["layer"]) for m in files], dtype=np.int64),
        "layer_choices": np.array([str(spec.get("layer_spec", "")) for spec in members]),
    }
    out_npz = Path(out_npz)
    with atomic_path(out_npz, suffix=".npz") as tmp:
        np.savez(tmp, **out, **labels)
    summary = {
        **dict(meta or {}),
        "members": names,
        "n_members": k,
        "n_voxels": n_voxels,
        "n_heldout_trs": n_rows,
        "mean_r_stack": float(np.mean(out["stack_r"], dtype=np.float64)),
        "mean_r_members": [float(v) for v in out["member_r"].mean(1, dtype=np.float64)],
        "n_fallback": int(out["solver_fallback"].sum()),
        "n_not_certified": int((~out["solver_certified"]).sum()),
        "n_degenerate": int(out["solver_degenerate"].sum()),
        "block_voxels": int(width),
        "backend": backend_name,
        "seconds": time.perf_counter() - start,
        "peak_memory_bytes": int(peak_bytes),
        **significance,
    }
    write_provenance(out_npz, params, summary=summary, member_files=[str(p) for p in member_files])
    logger.info(
        "wrote %s: mean r stack %.4f vs members %s; %d fallback, %d not certified, %.1f s",
        out_npz,
        summary["mean_r_stack"],
        ", ".join(f"{r:.4f}" for r in summary["mean_r_members"]),
        summary["n_fallback"],
        summary["n_not_certified"],
        summary["seconds"],
    )
    return summary


def _calibration(pp: np.ndarray, cross: np.ndarray) -> np.ndarray:
    """Per voxel and member, the least-squares gain of the OOF prediction: (b, k).

    ``β_k = max(mean yŷ_k, 0) / mean ŷ_k²`` (0 for a constant prediction).
    """
    power = np.diagonal(pp, axis1=1, axis2=2)
    return np.where(power > 0, np.maximum(cross, 0) / np.where(power > 0, power, 1), 0.0)


def _check_members(files: Sequence[MemberPredictions]) -> None:
    """Every member must predict the same voxels of the same responses on the same TRs."""
    first = files[0]
    for other in files[1:]:
        problems = []
        for name in ("n_train_trs", "n_test_trs", "n_voxels"):
            if getattr(other, name) != getattr(first, name):
                problems.append(f"{name} {getattr(other, name)} vs {getattr(first, name)}")
        for key in ("subject", "test_story", "train_stories", "test_true_sha256"):
            if other.attrs.get(key) != first.attrs.get(key):
                problems.append(f"{key} differs")
        if not problems:
            if not np.array_equal(other.oof_rows, first.oof_rows):
                problems.append("the held-out TRs differ (other CV folds)")
            elif not np.allclose(other.target_power, first.target_power, rtol=1e-6, atol=1e-9):
                problems.append("the training responses differ")
        if problems:
            raise DataError(
                f"stack members {first.path} and {other.path} do not fit the same data: "
                f"{'; '.join(problems)}. Every member of a stack must be fitted on the same "
                "subject, stories and folds; rerun the out-of-date member."
            )


def _block_width(block_voxels: int | str, files: Sequence[MemberPredictions], backend: str) -> int:
    """Voxels per block: a multiple of the HDF5 chunk width that fits the memory budget."""
    first = files[0]
    chunk = max(m.chunk_voxels for m in files)
    if block_voxels != "auto":
        width = int(block_voxels)
        if width < 1:
            raise ValueError(f"block_voxels={block_voxels!r}: expected 'auto' or an int >= 1.")
        return min(width, first.n_voxels)
    # host copy + device copy of every member's block, plus the test predictions
    per_voxel = 8 * len(files) * (first.n_train_trs + 2 * first.n_test_trs)
    budget = min(_MAX_BLOCK_BYTES, _free_memory_bytes(backend))
    width = max(chunk, (budget // per_voxel) // chunk * chunk)
    return int(min(width, first.n_voxels))


# ------------------------------------------------------------------------------------ tables


def read_voxel_labels(path: str | os.PathLike, key: str) -> np.ndarray:
    """One label per voxel from an npz (e.g. the demo's ground truth ``voxel_group``).

    Parameters
    ----------
    path : path-like
        An ``.npz`` holding ``key``.
    key : str

    Returns
    -------
    labels : str array of shape (n_voxels,)
    """
    with np.load(path, allow_pickle=False) as data:
        if key not in data.files:
            raise DataError(f"{path} has no {key!r} array (has {data.files}); expected labels.")
        return data[key].astype(str)


def mean_or_nan(values: np.ndarray) -> float:
    """Mean in float64; NaN for no values (an empty voxel set), without numpy's warning."""
    return float(np.mean(values, dtype=np.float64)) if values.size else float("nan")


def summarize_stack(
    scores: Mapping[str, np.ndarray], voxels: np.ndarray
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Summary of a stack's scores over one set of voxels.

    Parameters
    ----------
    scores : mapping
        The arrays of a stack's ``scores.npz`` (`stack_regression`).
    voxels : bool array of shape (n_voxels,)
        The voxels to summarise (all, a group, a ROI).

    Returns
    -------
    row : dict
        The `STACKING_COLUMNS` values but subject, stack and group.
    member_rows : list of dict
        Per member, the `STACKING_MEMBER_COLUMNS` values but subject, stack and group.
    """
    voxels = np.asarray(voxels, dtype=bool)
    weights = scores["weights"][:, voxels].astype(np.float64)
    member_r = scores["member_r"][:, voxels].astype(np.float64)
    n = int(voxels.sum())
    mean_member_r = member_r.mean(1) if n else np.full(len(member_r), np.nan)
    best = int(np.argmax(mean_member_r)) if n else 0
    cc_norm = scores["cc_norm"][voxels]
    mean_cc, _, n_no_ceiling = summarize_normalized(cc_norm, np.isfinite(cc_norm))
    kinds = scores["kinds"].astype(str)
    mean_weight = weights.mean(1) if n else np.full(len(weights), np.nan)
    largest = np.argmax(weights, axis=0) if n else np.zeros(0, int)

    def kind_weight(kind: str) -> float:
        return float(mean_weight[kinds == kind].sum()) if n else float("nan")

    row = {
        "n_members": len(weights),
        "n_voxels": n,
        "mean_r_stack": mean_or_nan(scores["stack_r"][voxels]),
        "mean_cc_norm_stack": mean_cc,
        # of the set's voxels, FDR-controlled over the subject's (NaN: no permutation test)
        "fraction_significant_stack": (
            mean_or_nan(scores["stack_significant"][voxels].astype(np.float64))
            if "stack_significant" in scores
            else float("nan")
        ),
        "best_member": str(scores["members"][best]) if n else None,  # none in an empty set
        "mean_r_best_member": float(mean_member_r[best]),
        "mean_gain": mean_or_nan(scores["gain"][voxels]),
        # the stack against the member best on average in this set (chosen per set, not per
        # voxel, so that test-story noise does not favour the members)
        "gain_over_best_member": mean_or_nan(scores["stack_r"][voxels])
        - float(mean_member_r[best]),
        "frac_improved": float(np.mean(scores["gain"][voxels] > 0)) if n else float("nan"),
        "weight_speech": kind_weight("speech"),
        "weight_text": kind_weight("text"),
        "n_voxels_no_ceiling": n_no_ceiling,
        "n_solver_fallback": int(scores["solver_fallback"][voxels].sum()),
    }
    member_rows = [
        {
            "member": str(scores["members"][i]),
            "model": str(scores["models"][i]),
            "kind": str(kinds[i]),
            "layer": int(scores["layers"][i]),
            "layer_choice": str(scores["layer_choices"][i]),
            "mean_r": float(mean_member_r[i]),
            "mean_weight": float(mean_weight[i]),
            "frac_largest_weight": float(np.mean(largest == i)) if n else float("nan"),
        }
        for i in range(len(weights))
    ]
    return row, member_rows


def _check_voxels(path: Path, subject: str, n_voxels: int, values: np.ndarray, what: str) -> None:
    if values.shape != (n_voxels,):
        raise DataError(
            f"{path}: {n_voxels} voxels but {values.size} {what} for {subject}; both must "
            "come from the same subject and mask."
        )


def voxel_groups(
    path: str | os.PathLike,
    subject: str,
    n_voxels: int,
    voxel_labels: Mapping[str, np.ndarray] | None = None,
    voxel_sets: Mapping[str, Sequence[tuple[str, str, np.ndarray]]] | None = None,
) -> list[tuple[str, str, np.ndarray]]:
    """The voxel groups a subject's tables summarise: (group, source, bool mask) of all voxels
    (``"all"``), of each label of ``voxel_labels`` (source ``"label"``) and of each set of
    ``voxel_sets``; a `DataError` naming ``path`` when their voxel counts differ from it."""
    path = Path(path)
    groups = [("all", "all", np.ones(n_voxels, dtype=bool))]
    labels = (voxel_labels or {}).get(subject)
    if labels is not None:
        _check_voxels(path, subject, n_voxels, labels, "voxel labels")
        groups += [(str(g), "label", labels == g) for g in sorted(set(labels.tolist()))]
    for name, source, inside in (voxel_sets or {}).get(subject, []):
        inside = np.asarray(inside, dtype=bool)
        _check_voxels(path, subject, n_voxels, inside, f"voxels of set {name!r}")
        groups.append((str(name), str(source), inside))
    return groups


def read_voxel_groups(
    subjects: Sequence[str],
    ground_truth: str | os.PathLike | None = None,
    rois: Sequence[str | os.PathLike] = (),
) -> tuple[dict[str, np.ndarray] | None, dict[str, Any] | None]:
    """The ``voxel_labels`` and ``voxel_sets`` of `voxel_groups` from the workflow's files: the
    demo's ground-truth folder (``<subject>.npz``, ``voxel_group``) and the subjects' ROI labels
    (``results/rois/<dataset>/<subject>.npz``); None for what is not given."""
    from ..rois import load_voxel_labels, roi_voxel_sets

    labels = sets = None
    if ground_truth is not None:
        truth = Path(ground_truth)
        labels = {s: read_voxel_labels(truth / f"{s}.npz", "voxel_group") for s in subjects}
    if rois:
        sets = {Path(f).stem: roi_voxel_sets(load_voxel_labels(f)) for f in rois}
    return labels, sets


def stacking_tables(
    entries: Sequence[Mapping[str, Any]],
    voxel_labels: Mapping[str, np.ndarray] | None = None,
    voxel_sets: Mapping[str, Sequence[tuple[str, str, np.ndarray]]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tidy stacking tables: one row per subject x stack x voxel group (and x member).

    Every stack is summarised over all its voxels (group ``"all"``), over the voxels of each
    label of ``voxel_labels`` (one label per voxel), and over each voxel set of ``voxel_sets``
    (sets may overlap, as ROIs do): `summarize_stack` once per set.

    Parameters
    ----------
    entries : sequence of mapping
        ``subject``, ``stack`` and ``path`` (the stack's ``scores.npz``) per stack.
    voxel_labels : mapping subject -> str array of shape (n_voxels,), optional
        A label per voxel (the demo's ground-truth ``voxel_group``); ``group_source`` "label".
    voxel_sets : mapping subject -> sequence of (name, source, bool array of shape (n_voxels,))
        Named voxel sets, e.g. the subject's ROIs (source "anatomical" or "functional").

    Returns
    -------
    stacking : DataFrame
        `STACKING_COLUMNS`.
    members : DataFrame
        `STACKING_MEMBER_COLUMNS`.
    """
    rows, member_rows = [], []
    for entry in entries:
        path = Path(entry["path"])
        if not path.is_file():
            raise DataError(f"{path} does not exist; run the stack_regression rule for it.")
        with np.load(path, allow_pickle=False) as data:
            scores = {name: data[name] for name in data.files}
        groups = voxel_groups(
            path, entry["subject"], scores["stack_r"].size, voxel_labels, voxel_sets
        )
        for group, source, voxels in groups:
            keys = {
                "subject": entry["subject"],
                "stack": entry["stack"],
                "group": group,
                "group_source": source,
            }
            row, per_member = summarize_stack(scores, voxels)
            rows.append({**keys, **row})
            member_rows += [{**keys, **m} for m in per_member]
    stacking = pd.DataFrame(rows, columns=list(STACKING_COLUMNS))
    members = pd.DataFrame(member_rows, columns=list(STACKING_MEMBER_COLUMNS))
    logger.info("stacking tables: %d rows, %d member rows", len(stacking), len(members))
    return stacking, members


def speech_weights(score_files: Sequence[str | os.PathLike]) -> dict[str, np.ndarray]:
    """Per stack, each voxel's total weight on its speech members (1 - that on text members).

    Parameters
    ----------
    score_files : sequence of path-like
        Stacks' ``scores.npz`` (`stack_regression`) of one subject.

    Returns
    -------
    dict of str to array of shape (n_voxels,)
        ``"<stack>: speech"`` -> weight, one entry per stack (for maps beside the best model's).
    """
    out = {}
    for path in score_files:
        with np.load(path, allow_pickle=False) as data:
            speech = data["kinds"].astype(str) == "speech"
            out[f"{Path(path).parent.name}: speech"] = data["weights"][speech].sum(axis=0)
    return out
