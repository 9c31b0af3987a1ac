"""Speech-model features (HuBERT, WavLM, wav2vec 2.0, Whisper encoder) from story audio.

Causal sliding window (Antonello, Vaidya & Huth 2023): every ``stride_s`` seconds, the model
sees the audio of the last ``window_s`` seconds (less at the start of a story) and the feature
at the window's end time ``t`` is the hidden state, in every layer, of the last output frame
that the window's audio reaches. The feature at ``t`` therefore depends on audio before ``t``
only.

The audio and the frame geometry of the windows live in `fmriscaling.features.audio`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .._utils import DataError, check_data_file, provenance
from ..models import pick_device, pick_dtype, require_model_dir, snapshot_record
from .audio import (
    SPEECH_SAMPLE_RATE,
    conv_last_frame,
    read_wav,
    whisper_last_frame,
    window_bounds,
)
from .extract import RunRecord, extract_model

logger = logging.getLogger(__name__)

# seconds between progress messages
_LOG_EVERY_S = 30.0


# --------------------------------------------------------------------------------- model


@dataclass
class SpeechModel:
    """A loaded speech model with what the feature extraction needs to know about it.

    Attributes
    ----------
    model : torch.nn.Module
        The model (wav2vec2 family) or the Whisper encoder alone.
    feature_extractor : transformers feature extractor
    family : {"wav2vec2", "whisper"}
    n_layers : int
        Transformer layers (blocks); ``n_layers + 1`` hidden states per frame, layer 0 being
        the conv/embedding output.
    hidden_size : int
    sample_rate : int
    n_params : int
        Parameters of the whole checkpoint (Whisper: encoder + decoder).
    n_params_used : int
        Parameters of the module that runs (Whisper: the encoder).
    """

    model: Any
    feature_extractor: Any
    family: str
    device: str
    dtype: Any
    n_layers: int
    hidden_size: int
    sample_rate: int
    n_params: int
    n_params_used: int
    model_dir: Path
    snapshot_provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def max_window_samples(self) -> int | None:
        """Longest window the model accepts (Whisper: its chunk), None when unbounded."""
        if self.family == "whisper":
            return int(self.feature_extractor.n_samples)
        return None

    def last_frame(self, n_samples: int) -> int:
        """Index of the output frame whose hidden state is the feature of a window."""
        if self.family == "whisper":
            enc = self.model
            convs = tuple(
                (conv.kernel_size[0], conv.stride[0], conv.padding[0])
                for conv in (enc.conv1, enc.conv2)
            )
            return whisper_last_frame(
                n_samples,
                hop_length=self.feature_extractor.hop_length,
                n_mel_frames=self.feature_extractor.nb_max_frames,
                convs=convs,
            )
        config = self.model.config
        return conv_last_frame(n_samples, config.conv_kernel, config.conv_stride)

    def last_frame_states(self, windows: list[np.ndarray], frames: np.ndarray) -> np.ndarray:
        """Hidden states of frame ``frames[i]`` of window ``i``, in every layer.

        Parameters
        ----------
        windows : list of arrays of shape (n_samples_i,)
            Audio; wav2vec2-family windows must all have the same length.
        frames : array of shape (n_windows,), int

        Returns
        -------
        states : array of shape (n_layers + 1, n_windows, hidden_size), float32
        """
        import torch

        if self.family == "whisper":
            # the log-mel STFT of 30 s per window is a large share of the time: do it on the GPU
            fe_device = self.device if self.device.startswith("cuda") else "cpu"
            inputs = self.feature_extractor(
                windows, sampling_rate=self.sample_rate, return_tensors="pt", device=fe_device
            )
            kwargs = {"input_features": inputs["input_features"].to(self.device, self.dtype)}
        else:
            if len({len(w) for w in windows}) != 1:
                raise ValueError("wav2vec2-family windows in one batch must have equal length")
            inputs = self.feature_extractor(
                windows, sampling_rate=self.sample_rate, return_tensors="pt", padding=False
            )
            kwargs = {"input_values": inputs["input_values"].to(self.device, self.dtype)}
            if "attention_mask" in inputs:
                kwargs["attention_mask"] = inputs["attention_mask"].to(self.device)
        with torch.inference_mode():
            hidden = self.model(**kwargs, output_hidden_states=True).hidden_states
        if len(hidden) != self.n_layers + 1:
            raise RuntimeError(
                f"model returned {len(hidden)} hidden states, not {self.n_layers + 1}"
            )
        n_frames = hidden[0].shape[1]
        if int(np.max(frames)) >= n_frames:
            raise RuntimeError(f"frame {int(np.max(frames))} beyond the {n_frames} output frames")
        rows = torch.arange(len(windows), device=hidden[0].device)
        idx = torch.as_tensor(np.asarray(frames), dtype=torch.long, device=hidden[0].device)
        states = torch.stack([h[rows, idx] for h in hidden])
        return states.float().cpu().numpy()


def load_speech_model(
    model_dir: str | os.PathLike,
    *,
    device: str = "auto",
    dtype: str = "auto",
    model_name: str | None = None,
) -> SpeechModel:
    """Load a local speech-model snapshot for feature extraction (offline).

    Parameters
    ----------
    model_dir : path-like
        Directory with ``config.json``, weights and the feature extractor's
        ``preprocessor_config.json``.
    device, dtype : str
        See `pick_device` and `pick_dtype`.
    model_name : str, optional
        Name used in error messages.
    """
    from transformers import AutoFeatureExtractor, AutoModel

    model_dir = require_model_dir(model_dir, model_name)
    device = pick_device(device)
    torch_dtype = pick_dtype(dtype, device)
    try:
        feature_extractor = AutoFeatureExtractor.from_pretrained(model_dir, local_files_only=True)
    except (OSError, ValueError) as err:
        raise DataError(
            f"no feature extractor (preprocessor_config.json) in {model_dir}: {err}"
        ) from err
    model = AutoModel.from_pretrained(model_dir, local_files_only=True, dtype=torch_dtype)
    n_params = sum(p.numel() for p in model.parameters())
    config = model.config
    if config.model_type == "whisper":
        family = "whisper"
        # the decoder is never run: keep the encoder only
        model = model.get_encoder()
        n_layers = config.encoder_layers
        hidden_size = config.d_model
        expected = config.max_source_positions * 2 * feature_extractor.hop_length
        if feature_extractor.n_samples != expected:
            raise DataError(
                f"{model_dir}: the feature extractor pads to {feature_extractor.n_samples} "
                f"samples but the encoder expects {expected} ({config.max_source_positions} "
                "frames of 20 ms)"
            )
    elif hasattr(config, "conv_kernel") and hasattr(config, "conv_stride"):
        family = "wav2vec2"
        n_layers = config.num_hidden_layers
        hidden_size = config.hidden_size
    else:
        raise DataError(
            f"{model_dir} holds a {config.model_type!r} model; speech features support the "
            "wav2vec2 family (wav2vec2, HuBERT, WavLM, data2vec-audio) and Whisper"
        )
    model.to(device)
    model.eval()
    return SpeechModel(
        model=model,
        feature_extractor=feature_extractor,
        family=family,
        device=device,
        dtype=torch_dtype,
        n_layers=int(n_layers),
        hidden_size=int(hidden_size),
        sample_rate=int(feature_extractor.sampling_rate),
        n_params=int(n_params),
        n_params_used=int(sum(p.numel() for p in model.parameters())),
        model_dir=model_dir,
        snapshot_provenance=snapshot_record(model_dir),
    )


# ------------------------------------------------------------------------------ extraction


def _batches(lengths: np.ndarray, batch_size: int, same_length: bool) -> list[np.ndarray]:
    """Consecutive window indices in batches of at most ``batch_size`` (equal length if asked)."""
    batches: list[np.ndarray] = []
    start = 0
    n = len(lengths)
    while start < n:
        stop = min(start + batch_size, n)
        if same_length:
            differ = np.flatnonzero(lengths[start:stop] != lengths[start])
            if differ.size:
                stop = start + int(differ[0])
        batches.append(np.arange(start, stop))
        start = stop
    return batches


def extract_speech_features(
    model_dir: str | os.PathLike | SpeechModel,
    audio: np.ndarray,
    *,
    sample_rate: int = SPEECH_SAMPLE_RATE,
    window_s: float = 16.1,
    stride_s: float = 0.1,
    batch_size: int = 16,
    device: str = "auto",
    dtype: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Causal sliding-window features of every layer of a speech model.

    For ``t = stride_s, 2 stride_s, ...`` up to the end of the audio, the model runs on
    ``audio[max(0, t - window_s) : t]`` and the feature at ``t`` is the hidden state of the last
    output frame that this audio reaches (see the module docstring), so it sees audio up to
    ``t`` only.

    Parameters
    ----------
    model_dir : path-like or SpeechModel
        Local snapshot, or a model already loaded with `load_speech_model`.
    audio : array of shape (n_samples,)
        Mono audio at ``sample_rate`` (the model's rate), starting at sound onset.
    sample_rate : int
        Rate of ``audio`` in Hz; must equal the feature extractor's.
    window_s : float
        Window length in seconds (16.1 in the paper: 16 s context + the 0.1 s chunk). For
        Whisper at most the feature extractor's chunk (30 s).
    stride_s : float
        Time between features in seconds.
    batch_size : int
        Windows per forward pass.
    device, dtype : str
        Used when ``model_dir`` is a path (see `pick_device`, `pick_dtype`).

    Returns
    -------
    feats : array of shape (n_layers + 1, n_times, hidden_size), float32
        Layer 0 is the conv/embedding output, layers 1..n_layers the transformer layers.
    times : array of shape (n_times,), float64
        Window end times in seconds from the start of ``audio``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    model = (
        model_dir
        if isinstance(model_dir, SpeechModel)
        else load_speech_model(model_dir, device=device, dtype=dtype)
    )
    if sample_rate != model.sample_rate:
        raise ValueError(
            f"audio at {sample_rate} Hz but the model expects {model.sample_rate} Hz; "
            f"read it with read_wav(path, sample_rate={model.sample_rate})"
        )
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono, of shape (n_samples,), got {audio.shape}")

    starts, ends = window_bounds(
        audio.size, sample_rate=sample_rate, window_s=window_s, stride_s=stride_s
    )
    if ends.size == 0:
        raise DataError(
            f"audio of {audio.size / sample_rate:.3f} s is shorter than one stride ({stride_s} s)"
        )
    max_len = model.max_window_samples
    # checked on window_s, not on this audio: a setting that fails on long stories fails now
    if max_len is not None and round(window_s * sample_rate) > max_len:
        raise ValueError(
            f"window_s={window_s} s exceeds the Whisper chunk of {max_len / sample_rate} s "
            f"({model.model_dir}); use window_s <= {max_len / sample_rate}"
        )
    lengths = ends - starts
    frames = np.array([model.last_frame(int(n)) for n in lengths], dtype=np.int64)
    # wav2vec2-family models run unmasked: padding would change the states, so batch equal lengths
    batches = _batches(lengths, batch_size, same_length=model.family != "whisper")

    n_times = ends.size
    feats = np.empty((model.n_layers + 1, n_times, model.hidden_size), dtype=np.float32)
    t_start = last_log = time.perf_counter()
    for batch in batches:
        windows = [audio[starts[i] : ends[i]] for i in batch]
        feats[:, batch] = model.last_frame_states(windows, frames[batch])
        now = time.perf_counter()
        if now - last_log > _LOG_EVERY_S:
            done = int(batch[-1]) + 1
            logger.info("%d/%d windows (%.1f windows/s)", done, n_times, done / (now - t_start))
            last_log = now
    elapsed = time.perf_counter() - t_start
    logger.info(
        "%d windows in %.1f s (%.1f windows/s, %d batches) on %s",
        n_times,
        elapsed,
        n_times / max(elapsed, 1e-9),
        len(batches),
        model.device,
    )
    return feats, ends / float(sample_rate)


class _StoryCost(NamedTuple):
    """What one story cost, handed from `story_features` to `story_written`."""

    started: float  # perf_counter after the audio was read
    duration_s: float
    n_windows: int


@dataclass
class _SpeechExtraction:
    """The speech-model part of `fmriscaling.features.extract.extract_model`."""

    model: SpeechModel
    model_name: str
    window: dict[str, Any]  # window_s, stride_s, batch_size
    stories: dict[str, dict[str, Any]] = field(default_factory=dict)

    def read_input(self, story: str, path: str | os.PathLike) -> Path:
        """Check the story's wav file (read only when its turn comes: audio is large)."""
        return check_data_file(path, kind=f"wav audio file of story {story!r}")

    def story_features(
        self, story: str, wav_path: Path, tr_times: np.ndarray, rows: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, _StoryCost]:
        audio = read_wav(wav_path, sample_rate=self.model.sample_rate)
        started = time.perf_counter()
        feats, times = extract_speech_features(
            self.model, audio, sample_rate=self.model.sample_rate, **self.window
        )
        duration_s = audio.size / self.model.sample_rate
        # a few TRs after the sound ends are normal; many more mean mismatched files
        if tr_times[rows].max() > duration_s + 10.0:
            logger.warning(
                "%s: kept TRs reach %.1f s but the audio ends at %.1f s",
                story,
                tr_times[rows].max(),
                duration_s,
            )
        return feats, times, _StoryCost(started, duration_s, int(times.size))

    def story_written(self, story: str, stats: _StoryCost, n_rows: int, progress: str) -> None:
        elapsed = time.perf_counter() - stats.started
        self.stories[story] = {
            "duration_s": stats.duration_s,
            "n_windows": stats.n_windows,
            "n_rows": int(n_rows),
            "seconds": round(elapsed, 3),
            "windows_per_s": round(stats.n_windows / max(elapsed, 1e-9), 2),
        }
        logger.info(
            "%s %s: %d windows -> %d TRs in %.1f s (%.1f windows/s)",
            progress,
            story,
            stats.n_windows,
            n_rows,
            elapsed,
            stats.n_windows / max(elapsed, 1e-9),
        )

    def provenance_record(self, run: RunRecord) -> dict[str, Any]:
        model = self.model
        settings = {
            **self.window,
            "lanczos_window": run.lanczos_window,
            "lanczos_normalize": run.lanczos_normalize,
            "sample_rate": model.sample_rate,
        }
        return provenance(
            dict(run.params) if run.params is not None else settings,
            model_name=self.model_name,
            model_dir=str(model.model_dir),
            **model.snapshot_provenance,
            family=model.family,
            n_layers=model.n_layers,
            hidden_size=model.hidden_size,
            n_params=model.n_params,
            n_params_used=model.n_params_used,
            dtype=str(model.dtype).removeprefix("torch."),
            device=model.device,
            settings=settings,
            stories=self.stories,
            seconds=round(run.seconds, 3),
        )


def extract_speech_model(
    model_dir: str | os.PathLike,
    wavs: Mapping[str, str | os.PathLike],
    trs_tables: Mapping[str, str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    model_name: str,
    window_s: float = 16.1,
    stride_s: float = 0.1,
    batch_size: int = 16,
    device: str = "auto",
    dtype: str = "auto",
    **options: Any,
) -> list[Path]:
    """Extract, downsample and save the features of every story for one speech model.

    `fmriscaling.features.extract.extract_model` with a speech model: every wav file and TR
    table is checked first, then per story (one at a time, so memory holds one story):
    sliding-window features (`extract_speech_features`) -> Lanczos interpolation to the TR
    times of the story's TR table (``time`` column, seconds from sound onset) -> the rows with
    ``response_row >= 0``, in the order of ``response_row`` -> one write per story to the
    layer files.

    Parameters
    ----------
    model_dir : path-like
        Local snapshot.
    wavs : mapping of story -> path
        Story audio, starting at sound onset.
    trs_tables : mapping of story -> path
        TR tables (see `fmriscaling.stimuli.read_trs`), same stories as ``wavs``.
    out_dir : path-like
        Output directory of the layer files (see `fmriscaling.features.io.FeatureWriter`) and
        ``provenance.json``.
    model_name : str
        Name of the model in the config.
    window_s, stride_s, batch_size, device, dtype
        See `extract_speech_features`.
    **options
        ``expected_n_layers``, ``lanczos_window``, ``lanczos_normalize``, ``params``: as in
        `fmriscaling.features.extract.extract_model` (without ``params``, the provenance
        stores the settings in their place).

    Returns
    -------
    paths : list of Path
        The layer files (``layer-0.h5`` .. ``layer-<n_layers>.h5``), layer 0 first; also
        writes ``out_dir/provenance.json``.
    """

    def load() -> _SpeechExtraction:
        model = load_speech_model(model_dir, device=device, dtype=dtype, model_name=model_name)
        logger.info(
            "%s: %s model, %d layers of size %d, %d parameters",
            model_name,
            model.family,
            model.n_layers,
            model.hidden_size,
            model.n_params,
        )
        window = {"window_s": window_s, "stride_s": stride_s, "batch_size": batch_size}
        return _SpeechExtraction(model, model_name, window)

    return extract_model(
        load, wavs, trs_tables, out_dir, input_name="a wav file", model_name=model_name, **options
    )
