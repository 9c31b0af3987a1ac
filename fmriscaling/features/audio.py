"""Story audio and the frame geometry of causal speech-model windows.

Every ``stride_s`` seconds a speech model sees the last ``window_s`` seconds of audio; these
helpers read the audio, place the windows and find, for a window of ``n`` samples, the output
frame whose hidden state is the feature at the window's end.

Frame geometry
--------------
- wav2vec2 family: the conv front end has no padding, so a window of ``n`` samples gives
  ``L(n)`` frames with ``L <- (L - kernel) // stride + 1`` over the conv layers (320 samples
  per frame, 400-sample receptive field for the standard front end); the feature is frame
  ``L(n) - 1``, the last complete one. Windows of different lengths are never batched together:
  these models run without attention masks and their group norm spans the whole input, so
  padding would change the result.
- Whisper: the feature extractor zero-pads every window to its chunk (30 s for the released
  models) and the encoder always returns ``max_source_positions`` frames (20 ms each). Log-mel
  frame ``j`` is centred on sample ``j * hop_length``, so real audio reaches mel frames
  ``j < ceil(n / hop_length)``; the chosen encoder frame is the last one whose receptive field
  through the two convs (kernel 3, strides 1 and 2, padding 1) contains such a mel frame (the
  reference code gets the same index by convolving the feature extractor's attention mask).
"""

from __future__ import annotations

import logging
import os

import numpy as np

from .._utils import DataError, check_data_file

logger = logging.getLogger(__name__)

SPEECH_SAMPLE_RATE = 16000


# ----------------------------------------------------------------------------------------- I/O


def read_wav(path: str | os.PathLike, sample_rate: int = SPEECH_SAMPLE_RATE) -> np.ndarray:
    """Read a wav file as mono float32 at ``sample_rate``.

    Integer PCM is scaled to [-1, 1), channels are averaged, and other rates are resampled
    with a polyphase filter (`scipy.signal.resample_poly`).

    Parameters
    ----------
    path : path-like
        A RIFF/WAVE file.
    sample_rate : int
        Rate of the returned signal in Hz.

    Returns
    -------
    audio : array of shape (n_samples,), float32

    Raises
    ------
    DataError
        When the file is missing, is a git-annex or git-lfs pointer whose content was never
        fetched, or is not a readable wav file.
    """
    from scipy.io import wavfile
    from scipy.signal import resample_poly

    path = check_data_file(path, kind="wav audio file")
    with open(path, "rb") as f:
        head = f.read(1024)
    if not (head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE"):
        if b"annex/objects" in head or b"git-lfs" in head:
            raise DataError(
                f"{path}: expected a wav audio file, found a git-annex/git-lfs pointer "
                f"({head[:80]!r}); fetch its content first (`datalad get` / `git annex get` / "
                "`git lfs pull`)."
            )
        raise DataError(
            f"{path}: expected a wav audio file, but it is not RIFF/WAVE (starts with "
            f"{head[:12]!r}); convert it to .wav first."
        )
    try:
        rate, data = wavfile.read(path)
    except (ValueError, OSError) as err:
        raise DataError(f"cannot read wav file {path}: {err}") from err

    if np.issubdtype(data.dtype, np.integer):
        if data.dtype == np.uint8:
            audio = (data.astype(np.float32) - 128.0) / 128.0
        else:
            audio = data.astype(np.float32) / float(-np.iinfo(data.dtype).min)
    else:
        audio = data.astype(np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if audio.size == 0:
        raise DataError(f"audio file {path} has no samples")
    if rate != sample_rate:
        g = np.gcd(int(rate), int(sample_rate))
        audio = resample_poly(audio, sample_rate // g, rate // g).astype(np.float32)
        logger.info("resampled %s from %d Hz to %d Hz", path.name, rate, sample_rate)
    return np.ascontiguousarray(audio, dtype=np.float32)


# -------------------------------------------------------------------------------- geometry


def _to_samples(seconds: float, sample_rate: int, name: str) -> int:
    n = round(seconds * sample_rate)
    if n <= 0 or abs(n - seconds * sample_rate) > 1e-6:
        raise ValueError(
            f"{name}={seconds} s must be a positive whole number of samples at {sample_rate} Hz"
        )
    return n


def window_bounds(
    n_samples: int, *, sample_rate: int, window_s: float, stride_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Sample bounds of the causal windows over ``n_samples`` of audio.

    Window ``i`` ends at ``(i + 1) * stride`` (exclusive) for every end up to the last sample,
    and starts ``window_s`` earlier (at 0 near the start of the audio).

    Returns
    -------
    starts, ends : arrays of shape (n_windows,), int64
        ``audio[starts[i]:ends[i]]`` is window ``i``; its time is ``ends[i] / sample_rate``.
    """
    stride = _to_samples(stride_s, sample_rate, "stride_s")
    window = _to_samples(window_s, sample_rate, "window_s")
    if window < stride:
        raise ValueError(f"window_s ({window_s}) must be at least stride_s ({stride_s})")
    ends = stride * np.arange(1, n_samples // stride + 1, dtype=np.int64)
    starts = np.maximum(0, ends - window)
    return starts, ends


def conv_last_frame(n_samples: int, conv_kernel, conv_stride) -> int:
    """Index of the last output frame of an unpadded conv stack over ``n_samples`` inputs.

    ``L <- (L - kernel) // stride + 1`` per layer (wav2vec2 family: 320 samples per frame,
    receptive field 400 samples); the last frame is ``L - 1``.

    Raises
    ------
    ValueError
        When the input is shorter than the receptive field (no complete frame).
    """
    n = int(n_samples)
    for kernel, stride in zip(conv_kernel, conv_stride, strict=True):
        n = (n - int(kernel)) // int(stride) + 1
    if n < 1:
        raise ValueError(
            f"{n_samples} samples is shorter than the receptive field of the conv front end "
            "(400 samples for wav2vec2-family models); use a longer stride_s"
        )
    return n - 1


def whisper_last_frame(
    n_samples: int,
    *,
    hop_length: int = 160,
    n_mel_frames: int = 3000,
    convs: tuple[tuple[int, int, int], ...] = ((3, 1, 1), (3, 2, 1)),
) -> int:
    """Index of the last Whisper encoder frame that ``n_samples`` of real audio reach.

    Mel frame ``j`` is centred on sample ``j * hop_length``, so real audio covers mel frames
    ``0 .. ceil(n_samples / hop_length) - 1``. Output ``o`` of a conv with
    ``(kernel, stride, padding)`` reads inputs ``o * stride - padding .. + kernel - 1``; the
    last output touching real input is ``(last_in + padding) // stride``.

    Parameters
    ----------
    n_samples : int
        Length of the real (unpadded) audio; at most the chunk, ``n_mel_frames * hop_length``.
    hop_length : int
        Mel hop in samples (160 = 10 ms at 16 kHz).
    n_mel_frames : int
        Mel frames in the padded chunk (3000 for 30 s).
    convs : tuple of (kernel, stride, padding)
        The encoder's conv layers.

    Returns
    -------
    frame : int
        Encoder frame index (20 ms frames for the released models).
    """
    if n_samples < 1:
        raise ValueError("n_samples must be positive")
    if n_samples > n_mel_frames * hop_length:
        raise ValueError(
            f"{n_samples} samples exceed the Whisper chunk of {n_mel_frames * hop_length}"
        )
    last = -(-int(n_samples) // hop_length) - 1
    n_out = n_mel_frames
    for kernel, stride, padding in convs:
        n_out = (n_out + 2 * padding - kernel) // stride + 1
        last = min((last + padding) // stride, n_out - 1)
    return last
