"""Speech-model features: causal windows, frame geometry, batching, wav reading, end to end."""

from __future__ import annotations

import functools
import json
import os

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from scipy.io import wavfile
from transformers import AutoFeatureExtractor, AutoModel

from fmriscaling._utils import DataError
from fmriscaling.demo.tiny_speech import TINY_SPEECH_PRESETS, build_tiny_speech_model
from fmriscaling.features.audio import (
    conv_last_frame,
    read_wav,
    whisper_last_frame,
    window_bounds,
)
from fmriscaling.features.lm import extract_text_model
from fmriscaling.features.speech import (
    extract_speech_features,
    extract_speech_model,
    load_speech_model,
)
from fmriscaling.stimuli import write_table

SR = 16000
WINDOW_S = 2.0
STRIDE_S = 0.5
DURATION_S = 6.0
N_LAYERS = 2
W2V_ARCHS = ("hubert", "wavlm", "wav2vec2")
ARCHS = (*W2V_ARCHS, "whisper")


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("speech_models")
    dirs = {}
    for arch in ARCHS:
        build_tiny_speech_model(root / arch, arch=arch, num_layers=N_LAYERS, seed=1)
        dirs[arch] = root / arch
    return dirs


@pytest.fixture(scope="module")
def models(model_dirs):
    return {
        arch: load_speech_model(d, device="cpu", dtype="float32") for arch, d in model_dirs.items()
    }


@pytest.fixture(scope="module")
def audio():
    # band-limited-ish noise with a slow envelope, so windows differ from each other
    rng = np.random.default_rng(0)
    n = int(DURATION_S * SR)
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 0.3 * np.arange(n) / SR)
    return (0.1 * envelope * rng.standard_normal(n)).astype(np.float32)


@pytest.fixture(scope="module")
def features(models, audio):
    return {
        arch: extract_speech_features(m, audio, window_s=WINDOW_S, stride_s=STRIDE_S, batch_size=8)
        for arch, m in models.items()
    }


@functools.cache
def _load_direct(model_dir):
    model = AutoModel.from_pretrained(model_dir, local_files_only=True, dtype=torch.float32)
    model.eval()
    return model, AutoFeatureExtractor.from_pretrained(model_dir, local_files_only=True)


def _direct_hidden_states(model_dir, segment):
    """All hidden states of ``segment`` by a plain transformers forward pass: (L, T, D)."""
    model, fe = _load_direct(str(model_dir))
    inputs = fe(segment, sampling_rate=SR, return_tensors="pt")
    with torch.no_grad():
        if model.config.model_type == "whisper":
            out = model.encoder(inputs["input_features"], output_hidden_states=True)
        else:
            out = model(inputs["input_values"], output_hidden_states=True)
    return torch.stack(out.hidden_states)[:, 0].numpy()


# ----------------------------------------------------------------------------- geometry


def test_window_bounds_grid():
    starts, ends = window_bounds(int(6.3 * SR), sample_rate=SR, window_s=2.0, stride_s=0.5)
    np.testing.assert_array_equal(ends, np.arange(1, 13) * 8000)
    np.testing.assert_array_equal(starts, np.maximum(0, ends - 32000))
    with pytest.raises(ValueError, match="whole number of samples"):
        window_bounds(SR, sample_rate=SR, window_s=2.0, stride_s=1e-5)
    with pytest.raises(ValueError, match="at least stride_s"):
        window_bounds(SR, sample_rate=SR, window_s=0.1, stride_s=0.5)


@pytest.mark.parametrize("n_samples", [400, 401, 719, 720, 8000, 16000, 32000, 257600])
def test_conv_last_frame_matches_transformers(models, n_samples):
    model = models["hubert"].model
    expected = int(model._get_feat_extract_output_lengths(torch.tensor(n_samples))) - 1
    config = model.config
    assert conv_last_frame(n_samples, config.conv_kernel, config.conv_stride) == expected
    # 320 samples per frame, 400-sample receptive field
    assert expected == (n_samples - 400) // 320


def test_conv_last_frame_too_short():
    with pytest.raises(ValueError, match="receptive field"):
        conv_last_frame(399, (10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2))


@pytest.mark.parametrize(
    "n_samples", [1, 159, 160, 161, 319, 320, 321, 8000, 16001, 159999, 160000]
)
def test_whisper_last_frame_matches_attention_mask_convolution(model_dirs, n_samples):
    """Independent route (the reference code's): push the feature extractor's mel attention
    mask through the encoder convs with all-ones kernels and take the last non-zero output."""
    fe = AutoFeatureExtractor.from_pretrained(model_dirs["whisper"], local_files_only=True)
    inputs = fe(
        np.zeros(n_samples, np.float32),
        sampling_rate=SR,
        return_attention_mask=True,
        return_tensors="pt",
    )
    mask = inputs["attention_mask"].float()[:, None, :]
    mask = torch.nn.functional.conv1d(mask, torch.ones(1, 1, 3), stride=1, padding=1)
    mask = torch.nn.functional.conv1d(mask, torch.ones(1, 1, 3), stride=2, padding=1)
    expected = int(mask[0, 0].nonzero().max())
    assert whisper_last_frame(n_samples, n_mel_frames=fe.nb_max_frames) == expected


def test_whisper_last_frame_real_chunk():
    # 30 s chunk, 1500 encoder frames: 16.1 s of audio reaches frame 805
    assert whisper_last_frame(257600) == 805
    assert whisper_last_frame(480000) == 1499
    with pytest.raises(ValueError, match="exceed"):
        whisper_last_frame(480001)


# ----------------------------------------------------------------------------- features


@pytest.mark.parametrize("arch", ARCHS)
def test_shapes_and_times(features, arch):
    feats, times = features[arch]
    assert feats.dtype == np.float32
    assert feats.shape == (N_LAYERS + 1, 12, 32)
    np.testing.assert_allclose(times, STRIDE_S * np.arange(1, 13))
    assert np.isfinite(feats).all()
    # windows differ, so features must too
    assert np.abs(np.diff(feats[-1], axis=0)).max() > 1e-3


@pytest.mark.parametrize("arch", ARCHS)
def test_causal(models, audio, features, arch):
    feats, times = features[arch]
    t_cut = 3.0
    changed = audio.copy()
    rng = np.random.default_rng(1)
    cut = int(t_cut * SR)
    changed[cut:] += 0.3 * rng.standard_normal(changed.size - cut).astype(np.float32)
    feats2, times2 = extract_speech_features(
        models[arch], changed, window_s=WINDOW_S, stride_s=STRIDE_S, batch_size=8
    )
    np.testing.assert_array_equal(times2, times)
    before = times <= t_cut
    np.testing.assert_allclose(feats2[:, before], feats[:, before], atol=1e-5, rtol=0)
    assert np.abs(feats2[:, ~before] - feats[:, ~before]).max() > 1e-3


@pytest.mark.parametrize("arch", W2V_ARCHS)
def test_feature_is_last_frame_of_direct_forward(model_dirs, audio, features, arch):
    feats, times = features[arch]
    for i in (0, 2, 3, 7, 11):  # windows of 0.5, 1.5 s (start of story), then full 2.0 s
        end = round(float(times[i]) * SR)
        segment = audio[max(0, end - int(WINDOW_S * SR)) : end]
        direct = _direct_hidden_states(model_dirs[arch], segment)
        np.testing.assert_allclose(feats[:, i], direct[:, -1], atol=1e-5, rtol=1e-5)
        # not the frame before: the check can fail
        assert np.abs(feats[:, i] - direct[:, -2]).max() > 1e-4


def test_whisper_feature_is_computed_frame_of_padded_segment(model_dirs, audio, features):
    feats, times = features["whisper"]
    frames = []
    for i in (0, 1, 2, 3, 6, 11):
        end = round(float(times[i]) * SR)
        segment = audio[max(0, end - int(WINDOW_S * SR)) : end]
        direct = _direct_hidden_states(model_dirs["whisper"], segment)
        assert direct.shape[1] == 500  # padded to the 10 s chunk
        frame = whisper_last_frame(segment.size, n_mel_frames=1000)
        frames.append(frame)
        np.testing.assert_allclose(feats[:, i], direct[:, frame], atol=1e-5, rtol=1e-5)
        assert np.abs(feats[:, i] - direct[:, frame - 1]).max() > 1e-4
    # 0.5, 1.0, 1.5 s of audio: 20 ms frames move with the length, then stay at 2.0 s
    assert frames == [25, 50, 75, 100, 100, 100]


def test_whisper_window_longer_than_chunk(models, audio):
    with pytest.raises(ValueError, match="exceeds the Whisper chunk"):
        extract_speech_features(models["whisper"], audio, window_s=10.5, stride_s=0.5)


@pytest.mark.parametrize("arch", ARCHS)
def test_batch_size_invariance(models, audio, features, arch):
    feats8, _ = features[arch]
    feats1, _ = extract_speech_features(
        models[arch], audio, window_s=WINDOW_S, stride_s=STRIDE_S, batch_size=1
    )
    np.testing.assert_allclose(feats1, feats8, atol=1e-5, rtol=1e-5)


def test_padding_would_change_wav2vec2_features(model_dirs, audio):
    """Why windows of unequal length are never batched: zero padding changes the states."""
    segment = audio[:8000]
    plain = _direct_hidden_states(model_dirs["hubert"], segment)
    padded = _direct_hidden_states(
        model_dirs["hubert"], np.concatenate([segment, np.zeros(8000, np.float32)])
    )
    last = plain.shape[1] - 1
    assert np.abs(plain[:, last] - padded[:, last]).max() > 1e-3


def test_sample_rate_mismatch(models, audio):
    with pytest.raises(ValueError, match="expects 16000 Hz"):
        extract_speech_features(models["hubert"], audio, sample_rate=8000)


def test_audio_shorter_than_stride(models):
    with pytest.raises(DataError, match="shorter than one stride"):
        extract_speech_features(
            models["hubert"], np.zeros(100, np.float32), window_s=2.0, stride_s=0.5
        )


def test_tiny_presets_build_and_load(tmp_path):
    for name, preset in TINY_SPEECH_PRESETS.items():
        info = build_tiny_speech_model(tmp_path / name, **preset)
        assert info["n_params"] > 0
        model = load_speech_model(tmp_path / name, device="cpu")
        assert model.n_layers == preset["num_layers"]
        assert model.n_params == info["n_params"]
    assert {p["arch"] for p in TINY_SPEECH_PRESETS.values()} == {"whisper", "hubert"}


# ----------------------------------------------------------------------------- wav I/O


def test_read_wav_int16_stereo_resampled(tmp_path):
    rate = 8000
    t = np.arange(rate) / rate
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([tone, tone], axis=1)
    wavfile.write(tmp_path / "a.wav", rate, (stereo * 32767).astype(np.int16))
    audio = read_wav(tmp_path / "a.wav", sample_rate=SR)
    assert audio.dtype == np.float32
    assert audio.shape == (SR,)
    expected = 0.5 * np.sin(2 * np.pi * 440 * np.arange(SR) / SR)
    # away from the edges of the polyphase filter
    np.testing.assert_allclose(audio[1000:-1000], expected[1000:-1000], atol=2e-3)


def test_read_wav_float_native_rate(tmp_path, rng):
    data = rng.uniform(-1, 1, 1600).astype(np.float32)
    wavfile.write(tmp_path / "f.wav", SR, data)
    np.testing.assert_array_equal(read_wav(tmp_path / "f.wav"), data)


def test_read_wav_errors(tmp_path):
    pointer = tmp_path / "story.wav"
    pointer.write_text("/annex/objects/MD5E-s1234--0123456789abcdef0123456789abcdef.wav\n")
    with pytest.raises(DataError, match="git-annex pointer"):
        read_wav(pointer)
    link = tmp_path / "linked.wav"
    os.symlink("../.git/annex/objects/Xx/Yy/MD5E-s1--abc.wav/MD5E-s1--abc.wav", link)
    with pytest.raises(DataError, match="git-annex symlink"):
        read_wav(link)
    with pytest.raises(DataError, match="does not exist"):
        read_wav(tmp_path / "missing.wav")
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio, just some text long enough\n" * 40)
    with pytest.raises(DataError, match="not RIFF/WAVE"):
        read_wav(text)


# ----------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("arch", ["hubert", "whisper"])
def test_extract_speech_model_end_to_end(tmp_path, model_dirs, audio, features, arch):
    wavs, trs_tables, n_rows = {}, {}, {}
    for k, story in enumerate(["alpha", "beta"]):
        n = audio.size - k * SR  # 6 s and 5 s
        wavfile.write(tmp_path / f"{story}.wav", SR, audio[:n])
        wavs[story] = tmp_path / f"{story}.wav"
        tr_times = 1.0 * np.arange(int(n / SR)) + 0.5  # TR = 1 s, midpoints
        response_row = np.full(tr_times.size, -1)
        response_row[1:-1] = np.arange(tr_times.size - 2)
        write_table(
            pd.DataFrame(
                {
                    "tr_index": np.arange(tr_times.size),
                    "time": tr_times,
                    "response_row": response_row,
                }
            ),
            tmp_path / f"{story}.trs.tsv",
        )
        trs_tables[story] = tmp_path / f"{story}.trs.tsv"
        n_rows[story] = tr_times.size - 2

    out_dir = tmp_path / "features"
    paths = extract_speech_model(
        model_dirs[arch],
        wavs,
        trs_tables,
        out_dir,
        model_name=f"tiny-{arch}",
        window_s=WINDOW_S,
        stride_s=STRIDE_S,
        batch_size=4,
        device="cpu",
        dtype="float32",
        lanczos_window=3,
        lanczos_normalize=False,
        expected_n_layers=N_LAYERS,
    )
    assert paths == [out_dir / f"layer-{layer}.h5" for layer in range(N_LAYERS + 1)]
    for path in paths:
        with h5py.File(path, "r") as f:
            assert sorted(f.keys()) == ["alpha", "beta"]
            for story, rows in n_rows.items():
                assert f[story].shape == (rows, 32)
                assert f[story].dtype == np.float32
    record = json.loads((out_dir / "provenance.json").read_text())
    assert record["model_id"] == f"tiny-{arch}-h32-l{N_LAYERS}"
    assert record["n_layers"] == N_LAYERS
    assert record["settings"]["window_s"] == WINDOW_S
    assert record["stories"]["beta"]["n_windows"] == 10

    # the written rows are the Lanczos-downsampled window features of the kept TRs
    from fmriscaling.interpolation import lanczos_interp

    feats, times = features[arch]  # story alpha is the full audio
    expected = lanczos_interp(feats[1], times, 1.0 * np.arange(6) + 0.5, window=3)[1:-1]
    with h5py.File(out_dir / "layer-1.h5", "r") as f:
        np.testing.assert_allclose(f["alpha"][()], expected, atol=1e-4, rtol=1e-4)


def test_extract_speech_model_layer_mismatch(tmp_path, model_dirs, audio):
    wavfile.write(tmp_path / "s.wav", SR, audio)
    with pytest.raises(DataError, match="n_layers: 24"):
        extract_speech_model(
            model_dirs["hubert"],
            {"s": tmp_path / "s.wav"},
            {"s": tmp_path / "s.trs.tsv"},
            tmp_path / "out",
            model_name="tiny",
            expected_n_layers=24,
            device="cpu",
        )


def test_extract_speech_model_checks_inputs_first(tmp_path, model_dirs, audio):
    wavfile.write(tmp_path / "s.wav", SR, audio)
    with pytest.raises(DataError, match="does not exist"):
        extract_speech_model(
            model_dirs["hubert"],
            {"s": tmp_path / "s.wav"},
            {"s": tmp_path / "missing.trs.tsv"},
            tmp_path / "out",
            model_name="tiny",
            device="cpu",
        )
    with pytest.raises(DataError, match="not both"):
        extract_speech_model(
            model_dirs["hubert"], {"s": tmp_path / "s.wav"}, {}, tmp_path / "out", model_name="x"
        )
    assert not (tmp_path / "out").exists()


def test_speech_and_text_refuse_mismatched_stories_with_one_message(tmp_path, audio):
    """Both kinds go through one driver: same checks, same words, before any model loads."""
    wavfile.write(tmp_path / "a.wav", SR, audio)
    never_loaded = tmp_path / "no-model-here"
    kw = {"model_name": "tiny", "device": "cpu"}
    messages = {}
    for kind, extract, inputs in (
        ("a wav file", extract_speech_model, {"a": tmp_path / "a.wav", "b": tmp_path / "a.wav"}),
        ("a words table", extract_text_model, {"a": tmp_path / "a.tsv", "b": tmp_path / "b.tsv"}),
    ):
        with pytest.raises(DataError) as err:
            extract(never_loaded, inputs, {"a": tmp_path / "a.trs.tsv"}, tmp_path / "out", **kw)
        messages[kind] = str(err.value)
        with pytest.raises(DataError, match="no stories given for model 'tiny'"):
            extract(never_loaded, {}, {}, tmp_path / "out", **kw)
    assert messages["a wav file"] == (
        "stories ['b'] have a wav file or a TR table but not both; every story needs both "
        "(check the dataset's story list and the stimulus timing outputs)"
    )
    assert messages["a words table"] == messages["a wav file"].replace(
        "a wav file", "a words table"
    )
    assert not (tmp_path / "out").exists()
