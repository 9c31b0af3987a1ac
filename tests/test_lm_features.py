"""LM features: the dynamic window against the per-word reference, alignment, window start, I/O."""

from __future__ import annotations

import dataclasses
import json

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from fmriscaling._utils import DataError
from fmriscaling.demo.tiny_lm import build_tiny_causal_lm
from fmriscaling.features.context import context_starts, window_schedule
from fmriscaling.features.io import (
    FeatureWriter,
    check_layer_padding,
    layer_path,
    list_stories,
    read_layer,
)
from fmriscaling.features.lm import (
    extract_lm_features,
    extract_text_model,
    lm_features_and_stats,
    load_causal_lm,
    naive_lm_features,
    resolve_window_start,
)
from fmriscaling.interpolation import downsample_story
from fmriscaling.stimuli import write_table

VOCAB = (
    "the a of and to in story brain scaling model's 1999 naïve "
    "unbelievably extraordinary, counterintuitive. psychophysiological"
).split()
TEXTS = [" ".join(VOCAB[:8])] * 3  # long words are left out, so they split into many tokens
N_LAYERS = 2
MAX_WORDS, RESET_WORDS = 12, 6
#: OPT and LLaMA(-2) with GPT-2-style tokenizers; Qwen2.5 and Llama-3 with their own
ARCHS = ("opt", "llama", "qwen2", "llama3")


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    dirs = {}
    for arch in ARCHS:
        out = tmp_path_factory.mktemp(arch)
        build_tiny_causal_lm(
            out, arch=arch, hidden_size=16, num_layers=N_LAYERS, num_heads=2, texts=TEXTS
        )
        dirs[arch] = out
    return dirs


@pytest.fixture(scope="module")
def lms(model_dirs):
    return {arch: load_causal_lm(d, device="cpu") for arch, d in model_dirs.items()}


@pytest.fixture
def words():
    rng = np.random.default_rng(1)
    out = [str(w) for w in rng.choice(VOCAB, size=41)]
    out[0] = ""  # an empty first word gets zeros
    out[17] = ""  # and one in the middle gets its predecessor's feature
    out[30] = "psychophysiological"
    return out


def test_schedule_matches_word_by_word_policy():
    for n in (0, 1, 11, 12, 13, 40, 97):
        for max_words, reset_words in ((12, 6), (12, 12), (12, 1), (5, 3), (512, 256)):
            starts = context_starts(n, max_words, reset_words)
            windows = window_schedule(n, max_words, reset_words)
            served = np.concatenate([np.arange(f, s) for _, f, s in windows] or [[]])
            np.testing.assert_array_equal(served, np.arange(n))
            for start, first, stop in windows:
                assert np.all(starts[first:stop] == start)
                assert stop - start <= max_words
            # contexts never exceed max_words; after a reset they hold reset_words words
            sizes = np.arange(n) - starts + 1
            assert sizes.max(initial=0) <= max_words
            resets = np.flatnonzero(np.diff(starts)) + 1
            assert np.all(sizes[resets] == reset_words)


@pytest.mark.parametrize("arch", ARCHS)
def test_dynamic_equals_naive(lms, words, arch):
    lm = lms[arch]
    dyn, stats = lm_features_and_stats(
        lm, words, max_words=MAX_WORDS, reset_words=RESET_WORDS, batch_size=4
    )
    ref, ref_stats = lm_features_and_stats(
        lm, words, naive=True, max_words=MAX_WORDS, reset_words=RESET_WORDS, batch_size=1
    )
    assert dyn.shape == (N_LAYERS + 1, len(words), 16) and dyn.dtype == np.float32
    np.testing.assert_allclose(dyn, ref, rtol=1e-5, atol=1e-5)
    # several resets happened: one pass per window, one per word for the reference
    n_real = sum(bool(w) for w in words)
    assert stats.n_passes == len(window_schedule(n_real, MAX_WORDS, RESET_WORDS)) >= 5
    assert ref_stats.n_passes == n_real
    assert stats.n_tokens_processed < ref_stats.n_tokens_processed
    # some words split into several tokens
    assert stats.n_story_tokens > n_real + 10
    # empty words: zeros first, else a copy of the previous word
    assert np.all(dyn[:, 0] == 0)
    np.testing.assert_array_equal(dyn[:, 17], dyn[:, 16])
    # the test has teeth: without resets, late words' features differ
    no_reset = extract_lm_features(lm, words, max_words=100, reset_words=50)
    np.testing.assert_allclose(no_reset[:, : MAX_WORDS + 1], dyn[:, : MAX_WORDS + 1], atol=1e-5)
    assert np.abs(no_reset[-1, -1] - dyn[-1, -1]).max() > 1e-3


@pytest.mark.parametrize("arch", ARCHS)
def test_padding_does_not_change_features(lms, words, arch):
    kw = {"max_words": MAX_WORDS, "reset_words": RESET_WORDS}
    one = extract_lm_features(lms[arch], words, batch_size=1, **kw)
    four = extract_lm_features(lms[arch], words, batch_size=4, **kw)
    np.testing.assert_allclose(four, one, rtol=1e-5, atol=1e-6)
    # the naive contexts differ in length, so batching them pads a lot
    naive4 = naive_lm_features(lms[arch], words, batch_size=4, **kw)
    np.testing.assert_allclose(naive4, one, rtol=1e-5, atol=1e-5)


def test_bos_and_last_subword_token(lms):
    lm = lms["opt"]
    seen = []
    hook = lm.model.base_model.register_forward_pre_hook(
        lambda _m, _a, kw: seen.append(kw["input_ids"].clone()), with_kwargs=True
    )
    ws = ["the", "psychophysiological", "brain", "", "1999"]
    try:
        feats = extract_lm_features(lm, ws, max_words=3, reset_words=2, layers=[0, 2])
    finally:
        hook.remove()
    assert seen and all(torch.all(ids[:, 0] == lm.tokenizer.bos_token_id) for ids in seen)
    assert feats.shape == (2, 5, 16)
    # independent check: word 1 seen with context "the psychophysiological", last token
    ids = lm.tokenizer("the psychophysiological", add_special_tokens=False)["input_ids"]
    assert len(lm.tokenizer("psychophysiological", add_special_tokens=False)["input_ids"]) > 2
    with torch.inference_mode():
        out = lm.model(
            input_ids=torch.tensor([[lm.tokenizer.bos_token_id, *ids]]), output_hidden_states=True
        )
    assert len(out.hidden_states) == N_LAYERS + 1
    np.testing.assert_allclose(feats[1, 1], out.hidden_states[2][0, -1].numpy(), atol=1e-5)
    np.testing.assert_allclose(feats[0, 1], out.hidden_states[0][0, -1].numpy(), atol=1e-6)
    # word 4 ("1999") is past a reset (max 3, reset 2): its context is "brain 1999"
    ids = lm.tokenizer("brain 1999", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        out = lm.model(
            input_ids=torch.tensor([[lm.tokenizer.bos_token_id, *ids]]), output_hidden_states=True
        )
    np.testing.assert_allclose(feats[1, 4], out.hidden_states[2][0, -1].numpy(), atol=1e-5)


def test_missing_model_dir(tmp_path):
    with pytest.raises(DataError, match="download_model"):
        extract_lm_features(tmp_path / "nope", ["a"], device="cpu")


def test_context_longer_than_model(tmp_path):
    build_tiny_causal_lm(
        tmp_path, hidden_size=16, num_layers=1, num_heads=2, texts=TEXTS, max_positions=16
    )
    with pytest.raises(DataError, match="exceeds the model's 16 positions"):
        extract_lm_features(tmp_path, ["psychophysiological"] * 6, device="cpu")


# ---------------------------------------------------------------------------- I/O


def test_feature_writer_streams_float32(tmp_path, rng):
    feats = {s: rng.standard_normal((3, n, 4)) for s, n in (("b_story", 7), ("a_story", 5))}
    with FeatureWriter(tmp_path, n_layers=2, model_name="tiny") as writer:
        for story, f in feats.items():
            writer.write_story(story, f)
        assert not layer_path(tmp_path, 0).exists()  # nothing final before close
    for layer in range(3):
        path = layer_path(tmp_path, layer)
        assert list_stories(path) == ["a_story", "b_story"]
        with h5py.File(path) as f:
            assert f["a_story"].dtype == np.float32 and f["a_story"].shape == (5, 4)
            assert f.attrs["model_name"] == "tiny" and f.attrs["layer"] == layer
        np.testing.assert_array_equal(
            read_layer(path, "b_story"), feats["b_story"][layer].astype(np.float32)
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"layer-{k}.h5" for k in range(3)]
    with pytest.raises(DataError, match="no story 'c_story'"):
        read_layer(layer_path(tmp_path, 0), "c_story")


def test_feature_writer_leaves_nothing_on_error(tmp_path, rng):
    with pytest.raises(RuntimeError, match="boom"), FeatureWriter(tmp_path, 2, "tiny") as writer:
        writer.write_story("s1", rng.standard_normal((3, 4, 2)))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match=r"expected features of shape \(3, n_trs"):
        FeatureWriter(tmp_path, 2, "tiny").write_story("s", np.zeros((2, 4, 2)))


def _write_story_tables(tmp_path, story, words, n_trs=20, trim=(3, 2)):
    times = np.linspace(0.5, 2.0 * (n_trs - 4), len(words))
    words_path, trs_path = tmp_path / f"{story}.words.tsv", tmp_path / f"{story}.trs.tsv"
    write_table(
        pd.DataFrame({"word": words, "start": times - 0.1, "end": times + 0.1, "time": times}),
        words_path,
    )
    rows = np.full(n_trs, -1)
    rows[trim[0] : n_trs - trim[1]] = np.arange(n_trs - sum(trim))
    write_table(
        pd.DataFrame(
            {
                "tr_index": np.arange(n_trs),
                "time": np.arange(n_trs) * 2.0 - 9.0,
                "response_row": rows,
            }
        ),
        trs_path,
    )
    return words_path, trs_path, times


def test_extract_text_model_end_to_end(tmp_path, model_dirs, words):
    tables = {s: _write_story_tables(tmp_path, s, words[k:]) for k, s in enumerate(("s1", "s2"))}
    out_dir = tmp_path / "features"
    kw = {"max_words": MAX_WORDS, "reset_words": RESET_WORDS}
    paths = extract_text_model(
        model_dirs["opt"],
        {s: t[0] for s, t in tables.items()},
        {s: t[1] for s, t in tables.items()},
        out_dir,
        model_name="tiny-opt",
        batch_size=4,
        device="cpu",
        dtype="auto",
        lanczos_window=3,
        lanczos_normalize=False,
        expected_n_layers=N_LAYERS,
        params={"max_words": MAX_WORDS},
        **kw,
    )
    assert [p.name for p in paths] == [f"layer-{k}.h5" for k in range(N_LAYERS + 1)]
    word_feats = extract_lm_features(model_dirs["opt"], words[1:], device="cpu", **kw)
    expected = downsample_story(
        word_feats, tables["s2"][2], np.arange(20) * 2.0 - 9.0, slice(3, 18)
    )
    for layer, path in enumerate(paths):
        got = read_layer(path, "s2")
        assert got.shape == (15, 16) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected[layer], rtol=1e-4, atol=1e-5)
    record = json.loads((out_dir / "provenance.json").read_text())
    assert record["n_params"] > 0 and record["model_id"].startswith("tiny-opt")
    assert record["dtype"] == "float32" and record["device"] == "cpu"
    assert record["window_start"] == {
        "policy": "auto",
        "token_id": 0,
        "token": "<s>",
        "source": "tokenizer.bos_token",
    }
    assert record["device_map"] is None and record["offload"] is None


def test_extract_text_model_errors(tmp_path, model_dirs, words):
    good = _write_story_tables(tmp_path, "good", words)
    empty = _write_story_tables(tmp_path, "silent", ["", ""])
    kw = {"model_name": "tiny-opt", "device": "cpu"}
    with pytest.raises(DataError, match=r"story 'silent' has no words in .*silent\.words\.tsv"):
        extract_text_model(
            model_dirs["opt"],
            {"good": good[0], "silent": empty[0]},
            {"good": good[1], "silent": empty[1]},
            tmp_path / "out",
            **kw,
        )
    assert not any((tmp_path / "out").glob("layer-*.h5"))
    with pytest.raises(DataError, match="has 2 layers but the config expects 12"):
        extract_text_model(
            model_dirs["opt"],
            {"good": good[0]},
            {"good": good[1]},
            tmp_path / "out",
            expected_n_layers=12,
            **kw,
        )


def test_extract_text_model_checks_inputs_first(tmp_path, model_dirs, words):
    """A bad file of the last story fails before the first story runs, as for speech."""
    first = _write_story_tables(tmp_path, "first", words)
    last = _write_story_tables(tmp_path, "last", words)
    kw = {"model_name": "tiny-opt", "device": "cpu", "max_words": MAX_WORDS}
    with pytest.raises(DataError, match=r"last\.trs\.tsv.*does not exist"):
        extract_text_model(
            model_dirs["opt"],
            {"first": first[0], "last": last[0]},
            {"first": first[1], "last": tmp_path / "last.trs.tsv.missing"},
            tmp_path / "out",
            **kw,
        )
    # the writer never started: no directory, no temporary layer files
    assert not (tmp_path / "out").exists()


def test_model_without_bos(tmp_path):
    build_tiny_causal_lm(tmp_path, hidden_size=16, num_layers=1, num_heads=2, texts=TEXTS)
    for name, key in (("tokenizer_config.json", "bos_token"), ("config.json", "bos_token_id")):
        cfg = json.loads((tmp_path / name).read_text())
        cfg[key] = None
        (tmp_path / name).write_text(json.dumps(cfg))
    # auto falls back to the document separator: the tokenizer's EOS
    start = load_causal_lm(tmp_path, device="cpu").window_start
    assert (start.token, start.source) == ("</s>", "tokenizer.eos_token")
    with pytest.raises(DataError, match=r"defines no BOS token.*window_start.*eos, none"):
        load_causal_lm(tmp_path, device="cpu", window_start="bos", model_name="tiny")
    assert load_causal_lm(tmp_path, device="cpu", window_start=1).window_start.token_id == 1
    with pytest.raises(DataError, match="token id 100000 is outside"):
        load_causal_lm(tmp_path, device="cpu", window_start=100000)
    with pytest.raises(ValueError, match="window_start must be one of"):
        load_causal_lm(tmp_path, device="cpu", window_start="first")


def _start_of_every_pass(lm, words, **kw):
    """The features of ``words`` and the input ids of every forward call."""
    seen = []
    hook = lm.model.base_model.register_forward_pre_hook(
        lambda _m, _a, kwargs: seen.append(kwargs["input_ids"].clone()), with_kwargs=True
    )
    try:
        feats = extract_lm_features(lm, words, **kw)
    finally:
        hook.remove()
    return feats, seen


def test_qwen_windows_start_with_its_document_separator(lms):
    """Qwen2.5 has no BOS: each window starts with <|endoftext|> (its config's bos_token_id)."""
    lm = lms["qwen2"]
    assert lm.tokenizer.bos_token is None and lm.tokenizer.bos_token_id is None
    eot = lm.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert lm.model.config.bos_token_id == eot == lm.tokenizer.eos_token_id
    assert dataclasses.asdict(lm.window_start) == {
        "policy": "auto",
        "token_id": eot,
        "token": "<|endoftext|>",
        "source": "config.bos_token_id",
    }
    ws = ["the", "brain", "1999", "naïve"]
    feats, seen = _start_of_every_pass(lm, ws, max_words=3, reset_words=2)
    assert sum(len(ids) for ids in seen) >= 2 and all(torch.all(ids[:, 0] == eot) for ids in seen)
    # word 3 is past a reset: [<|endoftext|>] + tokens("1999 naïve"), read at its last token
    ids = lm.tokenizer("1999 naïve", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        out = lm.model(input_ids=torch.tensor([[eot, *ids]]), output_hidden_states=True)
    np.testing.assert_allclose(feats[-1, 3], out.hidden_states[-1][0, -1].numpy(), atol=1e-5)
    # Llama-3 has a BOS of its own
    start = lms["llama3"].window_start
    assert (start.token, start.source) == ("<|begin_of_text|>", "tokenizer.bos_token")


@pytest.mark.parametrize("arch", ["opt", "qwen2"])
def test_window_start_none_and_eos(lms, model_dirs, arch):
    lm = lms[arch]
    ws = ["the", "brain", "1999"]
    bare = dataclasses.replace(
        lm, window_start=resolve_window_start(lm.tokenizer, lm.model.config, "none")
    )
    feats, seen = _start_of_every_pass(bare, ws, max_words=12, reset_words=6)
    ids = lm.tokenizer("the brain 1999", add_special_tokens=False)["input_ids"]
    assert seen[0][0].tolist() == ids  # nothing before the words
    with torch.inference_mode():
        out = lm.model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    n_the = len(lm.tokenizer("the", add_special_tokens=False)["input_ids"])
    np.testing.assert_allclose(feats[-1, 2], out.hidden_states[-1][0, -1].numpy(), atol=1e-5)
    np.testing.assert_allclose(feats[-1, 0], out.hidden_states[-1][0, n_the - 1].numpy(), atol=1e-5)
    # the start token changes every feature: the test has teeth
    assert np.abs(extract_lm_features(lm, ws)[-1] - feats[-1]).max() > 1e-3
    eos = load_causal_lm(model_dirs[arch], device="cpu", window_start="eos").window_start
    assert (eos.token_id, eos.source) == (lm.tokenizer.eos_token_id, "tokenizer.eos_token")


def _tokenizer_merging_across_spaces():
    """A byte-level BPE without a regex pre-tokeniser and with a merge across the space: "eĠb"."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate([*alphabet, "eĠ", "eĠb"])}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[("e", "Ġ"), ("eĠ", "b")]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def test_token_across_a_word_boundary_is_an_error(lms):
    merging = _tokenizer_merging_across_spaces()
    ids = merging("the brain", add_special_tokens=False)["input_ids"]
    assert merging.convert_ids_to_tokens(ids) == ["t", "h", "eĠb", "r", "a", "i", "n"]
    lm = dataclasses.replace(lms["opt"], tokenizer=merging, model_name="tiny-merging")
    with pytest.raises(
        DataError,
        match=r"model 'tiny-merging'.*merges across the space between words 0 and 1 "
        r"\('the' and 'brain'",
    ):
        extract_lm_features(lm, ["the", "brain"])


class _Llama3OffsetBug:
    """A tokenizer whose end offsets are ``(start, start)``, as Llama-3's were in tokenizers
    < 0.20.1 (huggingface/tokenizers#1553); its start offsets stay right."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)

    def __call__(self, text, **kwargs):
        enc = self._tokenizer(text, **kwargs)
        if "offset_mapping" in enc:
            enc["offset_mapping"] = [(a, a) for a, _ in enc["offset_mapping"]]
        return enc


def test_alignment_uses_only_the_start_offsets(lms, words):
    lm = lms["llama3"]
    buggy = dataclasses.replace(lm, tokenizer=_Llama3OffsetBug(lm.tokenizer))
    kw = {"max_words": MAX_WORDS, "reset_words": RESET_WORDS, "batch_size": 4}
    np.testing.assert_array_equal(
        extract_lm_features(buggy, words, **kw), extract_lm_features(lm, words, **kw)
    )


def test_offsets_that_go_backwards_are_an_error(lms):
    class Backwards(_Llama3OffsetBug):
        def __call__(self, text, **kwargs):
            enc = self._tokenizer(text, **kwargs)
            enc["offset_mapping"] = enc["offset_mapping"][::-1]
            return enc

    lm = dataclasses.replace(lms["opt"], tokenizer=Backwards(lms["opt"].tokenizer))
    with pytest.raises(DataError, match="offsets that are not increasing"):
        extract_lm_features(lm, ["the", "brain"])


def test_progress_reports_every_word(lms, words):
    calls = []
    extract_lm_features(
        lms["opt"],
        words,
        max_words=MAX_WORDS,
        reset_words=RESET_WORDS,
        batch_size=2,
        progress=lambda done, total: calls.append((done, total)),
    )
    n_real = sum(bool(w) for w in words)
    assert calls[-1] == (n_real, n_real)
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_gpu_matches_cpu(model_dirs, lms, words, dtype):
    kw = {"max_words": MAX_WORDS, "reset_words": RESET_WORDS, "batch_size": 4}
    cpu = extract_lm_features(lms["llama"], words, **kw)
    gpu = extract_lm_features(model_dirs["llama"], words, device="cuda", dtype=dtype, **kw)
    assert gpu.dtype == np.float32 and gpu.shape == cpu.shape
    tol = 1e-4 if dtype == "float32" else 0.1
    np.testing.assert_allclose(gpu, cpu, atol=tol * max(1.0, float(np.abs(cpu).max())))


# ---------------------------------------------------------------- layers of different widths

#: an OPT-350m-like model: a 32-wide decoder between 16-wide projections
WIDE, PROJ = 32, 16


@pytest.fixture(scope="module")
def projected_lm(tmp_path_factory):
    out = tmp_path_factory.mktemp("opt-projected")
    build_tiny_causal_lm(
        out,
        arch="opt",
        hidden_size=WIDE,
        word_embed_proj_dim=PROJ,
        num_layers=N_LAYERS,
        num_heads=2,
        texts=TEXTS,
    )
    return load_causal_lm(out, device="cpu")


def test_a_projected_last_layer_is_measured_at_load(projected_lm, words):
    lm = projected_lm
    widths = (WIDE,) * N_LAYERS + (PROJ,)
    assert lm.layer_widths == widths and lm.hidden_size == WIDE
    # independently: the causal LM itself over one window, [BOS] + its first 5 real words
    real = [w for w in words if w][:5]
    ids = lm.tokenizer(" ".join(real), add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        direct = lm.model(input_ids=torch.tensor([[0, *ids]]), output_hidden_states=True)
    assert tuple(h.shape[-1] for h in direct.hidden_states) == widths
    feats = extract_lm_features(lm, real, max_words=MAX_WORDS, reset_words=RESET_WORDS)
    for layer, width in enumerate(widths):
        np.testing.assert_allclose(
            feats[layer, -1, :width], direct.hidden_states[layer][0, -1], rtol=1e-5, atol=1e-5
        )
    with pytest.raises(ValueError, match="word_embed_proj_dim is an OPT option"):
        build_tiny_causal_lm(
            "unused", arch="llama", hidden_size=16, num_layers=1, num_heads=2, texts=TEXTS,
            word_embed_proj_dim=8,
        )  # fmt: skip


def test_layers_of_different_widths_dynamic_equals_naive(projected_lm, words):
    lm = projected_lm
    kw = {"max_words": MAX_WORDS, "reset_words": RESET_WORDS}
    dyn, _ = lm_features_and_stats(lm, words, batch_size=4, **kw)
    ref, _ = lm_features_and_stats(lm, words, naive=True, batch_size=1, **kw)
    assert dyn.shape == ref.shape == (N_LAYERS + 1, len(words), WIDE)
    for layer, width in enumerate(lm.layer_widths):
        # each layer's own columns match, with no NaN; the columns past its width are NaN
        np.testing.assert_allclose(dyn[layer, :, :width], ref[layer, :, :width], atol=1e-5)
        assert not np.isnan(dyn[layer, :, :width]).any()
        assert np.isnan(dyn[layer, :, width:]).all() and np.isnan(ref[layer, :, width:]).all()
    # empty words: zeros first (padding still NaN), else the previous word's feature
    assert np.all(dyn[-1, 0, :PROJ] == 0) and np.all(dyn[0, 0] == 0)
    np.testing.assert_array_equal(dyn[:, 17], dyn[:, 16])
    # a selection of layers is as wide as its widest
    last = extract_lm_features(lm, words, layers=[N_LAYERS], batch_size=4, **kw)
    np.testing.assert_array_equal(last, dyn[-1:, :, :PROJ])
    # a forward call whose widths differ from the ones measured at load is an error
    wrong = dataclasses.replace(lm, layer_widths=(WIDE,) * (N_LAYERS + 1))
    with pytest.raises(DataError, match=r"widths 32 \(layers 0-1\), 16 \(layer 2\), not the"):
        extract_lm_features(wrong, words, **kw)


def test_extract_text_model_writes_each_layer_at_its_width(tmp_path, projected_lm, words):
    lm = projected_lm
    words_path, trs_path, times = _write_story_tables(tmp_path, "s1", words)
    kw = {"max_words": MAX_WORDS, "reset_words": RESET_WORDS}
    paths = extract_text_model(
        lm.model_dir,
        {"s1": words_path},
        {"s1": trs_path},
        tmp_path / "features",
        model_name="tiny-opt-projected",
        device="cpu",
        batch_size=4,
        **kw,
    )
    word_feats = extract_lm_features(lm, words, **kw)
    tr_times = np.arange(20) * 2.0 - 9.0
    for layer, (path, width) in enumerate(zip(paths, lm.layer_widths, strict=True)):
        got = read_layer(path, "s1")
        assert got.shape == (15, width) and not np.isnan(got).any()
        expected = downsample_story(word_feats[[layer], :, :width], times, tr_times, slice(3, 18))
        np.testing.assert_allclose(got, expected[0], rtol=1e-4, atol=1e-5)
    assert [read_layer(p, "s1").shape[1] for p in paths] == [WIDE] * N_LAYERS + [PROJ]
    record = json.loads((tmp_path / "features" / "provenance.json").read_text())
    assert record["layer_widths"] == [WIDE] * N_LAYERS + [PROJ] and record["hidden_size"] == WIDE


def test_layer_padding_is_checked(tmp_path):
    feats = np.full((2, 4, 3), np.nan, dtype=np.float32)
    feats[0], feats[1, :, :2] = 1.0, 2.0
    check_layer_padding(feats, [3, 2])
    padding_used = feats.copy()
    padding_used[1, 0, 2] = 0.0
    with pytest.raises(DataError, match="layer 1 has values past its width 2"):
        check_layer_padding(padding_used, [3, 2])
    nan_feature = feats.copy()
    nan_feature[1, 3, 1] = np.nan
    with pytest.raises(DataError, match=r"layer 1 \(2 wide\) has NaN features"):
        check_layer_padding(nan_feature, [3, 2])
    with pytest.raises(ValueError, match=r"expected features of shape \(2, n_times, 2\)"):
        check_layer_padding(feats, [2, 2])
    # the writer keeps each layer's own columns and refuses to keep a NaN
    with FeatureWriter(tmp_path, 1, "tiny", layer_widths=[3, 2]) as writer:
        writer.write_story("s", feats)
        with pytest.raises(DataError, match=r"layers \[1\] have NaN within their widths"):
            writer.write_story("t", nan_feature)
        with pytest.raises(ValueError, match="features are 2 wide, expected"):
            writer.write_story("u", feats[:, :, :2])
    np.testing.assert_array_equal(read_layer(layer_path(tmp_path, 0), "s"), feats[0])
    np.testing.assert_array_equal(read_layer(layer_path(tmp_path, 1), "s"), feats[1, :, :2])
    assert list_stories(layer_path(tmp_path, 1)) == ["s"]
    with pytest.raises(ValueError, match="layer_widths must be n_layers \\+ 1 = 2"):
        FeatureWriter(tmp_path / "x", 1, "tiny", layer_widths=[3])
