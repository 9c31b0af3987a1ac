"""Flop counts of the heavy jobs and the device rates that turn them into seconds.

The cost model behind ``make plan`` (`fmriscaling.plan`)::

    seconds = overhead of the rule + GEMM flops / GEMM rate + eigh flops / eigh rate
              + bytes read / read rate

- `ridge_flops` counts what `fmriscaling.encoding.ridge.fit_ridge_cv` runs, GEMM by GEMM
  (``tests/test_benchmarks.py`` checks it against torch's flop counter and the eigh calls).
- `lm_flops` and `speech_window_flops` count one forward pass: 2 flops per parameter and
  token (frame), plus the conv front end of speech models.
- `Device` holds the rates. `CPU_REFERENCE` is measured (``benchmarks/RESULTS.md`` and the demo's
  ``results/benchmarks``); `GPU_ASSUMED` is *assumed*, since no GPU has been measured yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: the conv front end of every released wav2vec2 / HuBERT / WavLM model (transformers' defaults)
WAV2VEC2_CONV_KERNEL = (10, 3, 3, 3, 3, 2, 2)
WAV2VEC2_CONV_STRIDE = (5, 2, 2, 2, 2, 2, 2)

#: bytes per parameter of a hub snapshot (float16 / bfloat16 weights)
SNAPSHOT_BYTES_PER_PARAM = 2


@dataclass(frozen=True)
class RidgeFlops:
    """Flops of one ridge fit: matrix products and symmetric eigendecompositions (9 r³ each)."""

    gemm: float
    eigh: float

    @property
    def total(self) -> float:
        return self.gemm + self.eigh


def ridge_flops(
    n: int,
    p: int,
    v: int,
    n_test: int,
    fold_sizes: Sequence[tuple[int, int]],
    n_alphas: int,
    solver: str = "auto",
) -> RidgeFlops:
    """Nominal flops of `fit_ridge_cv` as it runs (GEMM as 2mnk, eigh of r x r as 9 r³).

    Parameters
    ----------
    n, p, v : int
        Training TRs, features (delays x hidden size) and voxels.
    n_test : int
        Test TRs.
    fold_sizes : sequence of (n_train, n_val)
        TRs of each cross-validation fold.
    n_alphas : int
        Ridge penalties scored.
    solver : {"auto", "primal", "dual"}
        ``auto`` is dual (kernel) when ``n < p``, as in the fit.

    Returns
    -------
    RidgeFlops
        Counted the same for float32 and bfloat16 scoring (a bfloat16 rate is then a
        float32-equivalent rate). Elementwise work (sums of the predictions) is not counted.
    """
    dual = n < p if solver == "auto" else solver == "dual"
    r_full = n if dual else p
    gemm = 2 * n * n * p if dual else 2 * n * p * p
    eigh = 0
    if not dual:
        gemm += 2 * n * p * v  # XᵀY
    for n_tr, m in fold_sizes:
        r = n_tr if dual else p
        rows = n_tr if dual else p  # what Vᵀ projects: Y_train (dual) or XᵀY (primal)
        eigh += 9 * r**3
        gemm += 2 * m * r * (n_tr if dual else p)  # validation map
        if not dual:
            # training Gram and XᵀY: downdated by the validation rows when train and validation
            # cover every TR (story folds), else formed from the training rows
            rows_used = m if n_tr + m == n else n_tr
            gemm += 2 * rows_used * p * p + 2 * p * rows_used * v
        gemm += 2 * r * rows * v  # Z = Vᵀ Y_train
        gemm += 2 * n_alphas * m * r * v  # validation predictions of every alpha
    rows = n if dual else p
    eigh += 9 * r_full**3
    gemm += 2 * n_test * (n * p + n * r_full if dual else p * r_full)
    # test predictions: one map per alpha, or the projection of every voxel (cheaper one)
    grouped = 2 * n_alphas * n_test * r_full * rows + 2 * n_test * rows * v
    projected = 2 * r_full * rows * v + 2 * n_test * r_full * v
    return RidgeFlops(gemm=float(gemm + min(grouped, projected)), eigh=float(eigh))


def banded_ridge_flops(
    n: int,
    band_widths: Sequence[int],
    v: int,
    n_test: int,
    fold_sizes: Sequence[tuple[int, int]],
    n_alphas: int,
    n_iter: int,
    solver: str = "auto",
) -> RidgeFlops:
    """Nominal flops of one joint banded-ridge fit as himalaya's random search runs it
    (`fmriscaling.encoding.partition.fit_banded_ridge`): per band weighting and fold, a
    decomposition of the (weighted) training design, then per alpha the validation map and the
    predictions of every voxel; per band weighting, a refit on all training TRs (counted for
    every weighting, alpha and voxel: an upper bound, himalaya refits the voxels that improved,
    at the alphas they chose, but forms a batch's weights at each of those alphas).

    Parameters
    ----------
    n, v, n_test : int
        Training TRs, voxels, test TRs.
    band_widths : sequence of int
        Delayed features of each band.
    fold_sizes : sequence of (n_train, n_val)
    n_alphas, n_iter : int
        Alphas of the grid; band weightings tried.
    solver : {"auto", "primal", "dual"}
        ``auto``: primal when ``n >= Σ band_widths``.

    Returns
    -------
    RidgeFlops
        ``eigh`` counts the decompositions (SVD of n x p as 4np² + 9p³; eigh of r x r as 9r³).
    """
    p = int(sum(band_widths))
    dual = n < p if solver == "auto" else solver == "dual"
    gemm = eigh = 0.0
    for n_tr, m in fold_sizes:
        if dual:
            # eigh of the weighted training kernel, its validation rows onto the eigenvectors,
            # then per alpha the validation map and the predictions of every voxel
            eigh += 9.0 * n_tr**3
            gemm += 2.0 * m * n_tr * n_tr
            gemm += n_alphas * (2.0 * m * n_tr * n_tr + 2.0 * m * n_tr * v)
        else:
            eigh += 4.0 * n_tr * p * p + 9.0 * p**3
            gemm += n_alphas * (2.0 * p * p * n_tr + 2.0 * m * p * n_tr + 2.0 * m * n_tr * v)
    # the refit on all training TRs: per alpha some voxel chose, its map, then the weights of
    # every voxel of the batch (himalaya forms them all and keeps each voxel's own alpha)
    if dual:
        eigh += 9.0 * n**3
        gemm += n_alphas * (2.0 * n**3 + 2.0 * n * n * v)
    else:
        eigh += 4.0 * n * p * p + 9.0 * p**3
        gemm += n_alphas * (2.0 * p * p * n + 2.0 * p * n * v)
    gemm *= n_iter
    eigh *= n_iter
    if dual:
        gemm += 2.0 * n * n * p + 2.0 * n_test * n * p  # the linear kernels, once
        gemm += len(band_widths) * 2.0 * n_test * n * v  # each band's test predictions
    else:
        gemm += 2.0 * n_test * p * v  # the test predictions
    return RidgeFlops(gemm=float(gemm), eigh=float(eigh))


def lm_flops(n_params: float, n_tokens: float) -> float:
    """Forward-pass flops of a causal LM over ``n_tokens``: 2 per parameter and token
    (attention over the context adds ~1 % at 512 words and is left out)."""
    return 2.0 * n_params * n_tokens


def wav2vec2_frontend_flops(n_samples: int, conv_dim: int) -> float:
    """Flops of the standard wav2vec2 / HuBERT / WavLM conv front end (7 layers, 320 samples
    per frame) with ``conv_dim`` channels over ``n_samples`` of audio."""
    flops, length, channels_in = 0.0, n_samples, 1
    for kernel, stride in zip(WAV2VEC2_CONV_KERNEL, WAV2VEC2_CONV_STRIDE, strict=True):
        length = (length - kernel) // stride + 1
        if length < 1:
            return flops
        flops += 2.0 * length * kernel * channels_in * conv_dim
        channels_in = conv_dim
    return flops


def speech_window_flops(
    arch: str,
    *,
    n_params: float,
    hidden_size: int,
    window_samples: int,
    conv_dim: int = 512,
    chunk_frames: int = 1500,
    n_mels: int = 80,
) -> float:
    """Flops of one causal window of a speech model.

    wav2vec2 family: conv front end + 2 flops per parameter and 20 ms frame of the window.
    Whisper: the encoder (taken as half of ``n_params``, encoder + decoder) always runs on the
    padded chunk of ``chunk_frames`` frames (1500 = 30 s for the released models), plus its
    two convs over the log-mel frames (two per encoder frame).
    """
    if arch == "whisper":
        convs = 2.0 * (2 * chunk_frames) * 3 * n_mels * hidden_size
        convs += 2.0 * chunk_frames * 3 * hidden_size * hidden_size
        return convs + 2.0 * (n_params / 2) * chunk_frames
    frames = max(1, (window_samples - 400) // 320 + 1)
    return wav2vec2_frontend_flops(window_samples, conv_dim) + 2.0 * n_params * frames


@dataclass(frozen=True)
class Device:
    """Rates of one device, in flop/s (float32-equivalent) and bytes/s.

    ``gemm`` is what a ridge fit's matrix products reach; ``forward`` what a model's forward
    pass reaches; ``eigh`` counts 9 r³ per eigendecomposition; ``read`` is the file system.
    """

    name: str
    gemm: float
    eigh: float
    forward: float
    read: float
    measured: bool


#: The 2-core Sapphire Rapids machine of ``benchmarks/RESULTS.md``: ridge at 307 GFLOP/s
#: float32 (3000 x 4096 x 20000); its eigh share at 279 GFLOP/s (3.1 s for 5 x 2400² +
#: 3000²); the demo's tiny models run their forward passes at ~8 GFLOP/s (small matrices).
CPU_REFERENCE = Device(
    name="CPU, 2 cores (measured: benchmarks/RESULTS.md, the demo's benchmarks)",
    gemm=3.07e11,
    eigh=2.79e11,
    forward=8e9,
    read=5e8,
    measured=True,
)

#: One H100-class GPU, *assumed*: ~400 TFLOP/s of dense bf16 in the ridge GEMMs and ~30 % of
#: peak (300 TFLOP/s) in batched forward passes; cuSOLVER syevd at ~5 TFLOP/s (so the 5 + 1
#: eigh of a full-size fit take ~2 min, as RESULTS.md estimates); 1 GB/s from the file system.
GPU_ASSUMED = Device(
    name="one H100-class GPU (assumed, not measured)",
    gemm=4e14,
    eigh=5e12,
    forward=3e14,
    read=1e9,
    measured=False,
)
