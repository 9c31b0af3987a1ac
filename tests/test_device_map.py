"""Big-model loading: a device map over CPU and disk gives the single-device features."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from test_lm_features import TEXTS, VOCAB, _write_story_tables

from fmriscaling._utils import DataError
from fmriscaling.demo.tiny_lm import build_tiny_causal_lm
from fmriscaling.features.io import read_layer
from fmriscaling.features.lm import (
    extract_lm_features,
    extract_text_model,
    gpu_max_memory,
    load_causal_lm,
)
from fmriscaling.sizing import usable_gpu_bytes

N_LAYERS = 4
#: the decoder of each architecture, and its modules besides the layers
DECODER = {
    "opt": ("model.decoder", ["embed_positions", "final_layer_norm"]),
    "llama": ("model", ["rotary_emb", "norm"]),
}
KW = {"max_words": 12, "reset_words": 6, "batch_size": 4}


def _split_map(arch: str) -> dict[str, str]:
    """Layers 0 and 2 and the norms on the CPU; the embeddings, the LM head and layers 1 and 3
    on disk (the input embeddings too: their weights stay on the meta device)."""
    decoder, others = DECODER[arch]
    device_map = {f"{decoder}.{name}": "cpu" for name in others}
    device_map[f"{decoder}.embed_tokens"] = "disk"
    device_map["lm_head"] = "disk"  # OPT ties it to the embeddings
    for layer in range(N_LAYERS):
        device_map[f"{decoder}.layers.{layer}"] = "disk" if layer % 2 else "cpu"
    return device_map


def _as_pytorch_bin(model_dir):
    """Re-save a snapshot's weights as pytorch_model.bin (as older hub repos ship them)."""
    from safetensors.torch import load_file

    weights = load_file(model_dir / "model.safetensors")
    (model_dir / "model.safetensors").unlink()
    torch.save(weights, model_dir / "pytorch_model.bin")


@pytest.fixture(scope="module", params=["opt", "llama"])
def arch(request):
    return request.param


@pytest.fixture(scope="module")
def model_dir(arch, tmp_path_factory):
    out = tmp_path_factory.mktemp(arch)
    build_tiny_causal_lm(
        out, arch=arch, hidden_size=16, num_layers=N_LAYERS, num_heads=2, texts=TEXTS
    )
    return out


@pytest.fixture
def words():
    rng = np.random.default_rng(2)
    out = [str(w) for w in rng.choice(VOCAB, size=30)]
    out[5] = ""
    return out


@pytest.mark.parametrize("weights", ["safetensors", "bin"])
def test_cpu_and_disk_offload_equal_the_single_device_pass(
    arch, model_dir, words, weights, tmp_path
):
    """Every layer's features equal the plain CPU pass's.

    Tolerance: both passes run the same float32 CPU kernels on the same batches; offloading
    only changes where the weights wait between forward calls, so the features agree to
    rounding: 1e-6 absolute and relative, ~10 float32 ulps at the features' unit scale. They
    come out bit-identical here; the margin covers BLAS blocking, which may differ between
    a module's weights in place and the same weights loaded from disk at each call."""
    if weights == "bin":
        snapshot = tmp_path / "snapshot"
        snapshot.mkdir()
        for path in model_dir.iterdir():
            (snapshot / path.name).write_bytes(path.read_bytes())
        _as_pytorch_bin(snapshot)
    else:
        snapshot = model_dir
    single = extract_lm_features(load_causal_lm(snapshot, device="cpu"), words, **KW)
    offload = tmp_path / "offload"
    lm = load_causal_lm(snapshot, device="cpu", device_map=_split_map(arch), offload_folder=offload)
    assert lm.device == "cpu"
    # the disk layers' weights are not in memory: the forward pass reads them from disk
    decoder = lm.model.get_decoder()
    for layer, module in enumerate(decoder.layers):
        on_meta = {p.device.type == "meta" for p in module.parameters()}
        assert on_meta == {layer % 2 == 1}, layer
    assert lm.model.get_input_embeddings().weight.device.type == "meta"
    n_disk = len(lm.model.hf_device_map) - sum(d == "cpu" for d in lm.model.hf_device_map.values())
    assert lm.device_map == {"cpu": len(lm.model.hf_device_map) - n_disk, "disk": n_disk}
    written = sorted(p.name for p in offload.iterdir())
    if weights == "bin":
        # a .bin snapshot cannot be read in place: the disk modules' weights were re-saved
        assert lm.offload == {
            "folder": str(offload),
            "files_written": len(written),
            "read_from": "offload_folder",
        }
        assert any(".layers.1." in name for name in written)
        assert any(".layers.3." in name for name in written)
        assert not any(".layers.0." in name or ".layers.2." in name for name in written)
    else:
        # safetensors are memory-mapped from the snapshot itself: nothing is copied
        assert written == [] and lm.offload["read_from"] == "snapshot"
    feats = extract_lm_features(lm, words, **KW)
    assert feats.shape == single.shape == (N_LAYERS + 1, len(words), 16)
    for layer in range(N_LAYERS + 1):
        np.testing.assert_allclose(feats[layer], single[layer], rtol=1e-6, atol=1e-6)
    # the test has teeth: the layers differ from each other
    assert np.abs(single[-1] - single[1]).max() > 1e-2


def test_extract_text_model_records_the_device_map(arch, model_dir, words, tmp_path):
    words_path, trs_path, _ = _write_story_tables(tmp_path, "s1", words)
    out = tmp_path / "features"
    kw = {"model_name": f"tiny-{arch}", "device": "cpu", "lanczos_window": 3, **KW}
    extract_text_model(
        model_dir,
        {"s1": words_path},
        {"s1": trs_path},
        out,
        device_map=_split_map(arch),
        offload_folder=tmp_path / "offload",
        **kw,
    )
    record = json.loads((out / "provenance.json").read_text())
    assert record["device_map"]["disk"] == N_LAYERS // 2 + 2  # odd layers, embeddings, head
    assert record["offload"]["read_from"] == "snapshot"
    assert record["max_memory"] is None
    # the same job on one device writes the same features
    extract_text_model(model_dir, {"s1": words_path}, {"s1": trs_path}, tmp_path / "one", **kw)
    for layer in range(N_LAYERS + 1):
        np.testing.assert_allclose(
            read_layer(out / f"layer-{layer}.h5", "s1"),
            read_layer(tmp_path / "one" / f"layer-{layer}.h5", "s1"),
            rtol=0,
            atol=1e-6,
        )


def test_an_inferred_map_that_leaves_max_memory_is_an_error(arch, model_dir):
    # a few KB of CPU for a ~70 KB model: accelerate would spill the rest to disk, silently
    with pytest.raises(DataError, match=r"does not fit max_memory .*on \['disk'\].*Fix:"):
        load_causal_lm(model_dir, device="cpu", device_map="auto", max_memory={"cpu": 8000})


def test_a_map_without_hooks_runs_where_its_weights_are(arch, model_dir, words):
    # one device for everything: accelerate adds no hooks, the weights say where inputs go
    lm = load_causal_lm(model_dir, device="cpu", device_map={"": "cpu"})
    assert (lm.device, lm.device_map, lm.offload) == ("cpu", {"cpu": 1}, None)
    single = load_causal_lm(model_dir, device="cpu")
    np.testing.assert_array_equal(
        extract_lm_features(lm, words, **KW), extract_lm_features(single, words, **KW)
    )


def test_device_map_arguments_are_checked(arch, model_dir):
    with pytest.raises(ValueError, match="pass an offload_folder"):
        load_causal_lm(model_dir, device="cpu", device_map=_split_map(arch))
    with pytest.raises(ValueError, match="need a device_map"):
        load_causal_lm(model_dir, device="cpu", max_memory={"cpu": "1GiB"})
    with pytest.raises(ValueError, match="device_map must be None, 'auto'"):
        load_causal_lm(model_dir, device="cpu", device_map="everywhere")


def test_gpu_max_memory_leaves_each_gpu_its_share_of_the_activations():
    got = gpu_max_memory(4, 80, activation_bytes=8e9)
    assert got == {i: int(80e9 * 0.9 - 2e9) for i in range(4)}
    assert got[0] == int(usable_gpu_bytes(80) - 8e9 / 4)
    with pytest.raises(DataError, match="leave no room for weights"):
        gpu_max_memory(1, 1, activation_bytes=2e9)


def test_a_job_with_several_gpus_loads_across_them(arch, model_dir, monkeypatch):
    """The placement of an n_gpus > 1 job: device_map auto, each GPU its gpu_max_memory."""
    from fmriscaling.features import lm as lm_module
    from fmriscaling.sizing import extraction_sizing

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    placement = lm_module._multi_gpu_placement(
        model_dir, model_name="tiny", n_gpus=2, gpu_mem_gb=40, dtype="auto", max_words=512,
        batch_size=8,
    )  # fmt: skip
    spec = {"kind": "text", "n_params": 1, "n_layers": N_LAYERS, "hidden_size": 16}
    features = {"dtype": "auto", "text": {"max_words": 512, "batch_size": 8}}
    activations = extraction_sizing("tiny", spec, features, {"gpu": True, "gpu_mem_gb": 40})
    assert placement == {
        "device_map": "auto",
        "max_memory": gpu_max_memory(2, 40, activations.activation_bytes),
    }
    # written out: 8 windows of 769 tokens, every layer's 16-wide states (+ the working set:
    # 6 x 16 feed-forward, one head of 769^2 scores), bfloat16; half of it kept free per GPU
    tokens, nbytes = 769, 2
    act = 8 * tokens * 16 * (N_LAYERS + 1) * nbytes + 8 * tokens * 16 * 6 * nbytes
    act += 8 * 1 * tokens**2 * nbytes
    assert placement["max_memory"] == {0: int(0.9 * 40e9 - act / 2), 1: int(0.9 * 40e9 - act / 2)}


@pytest.mark.skipif(torch.cuda.device_count() > 1, reason="this machine has the GPUs")
def test_several_gpus_asked_for_but_not_visible(model_dir, tmp_path, words):
    words_path, trs_path, _ = _write_story_tables(tmp_path, "s1", words)
    with pytest.raises(DataError, match=r"needs 2 GPUs .* but its extraction job sees"):
        extract_text_model(
            model_dir,
            {"s1": words_path},
            {"s1": trs_path},
            tmp_path / "out",
            model_name="tiny",
            n_gpus=2,
        )


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 1, reason="needs a GPU")
def test_gpu_cpu_and_disk_split_equals_the_cpu_pass(arch, model_dir, words, tmp_path):
    """The input embeddings on the GPU, layers spread over the GPU, the CPU and disk."""
    decoder, others = DECODER[arch]
    device_map = {f"{decoder}.{name}": 0 for name in others}
    device_map.update({f"{decoder}.embed_tokens": 0, "lm_head": 0})
    for layer, where in zip(range(N_LAYERS), (0, "cpu", "disk", 0), strict=True):
        device_map[f"{decoder}.layers.{layer}"] = where
    lm = load_causal_lm(
        model_dir,
        device="cuda",
        dtype="float32",
        device_map=device_map,
        offload_folder=tmp_path / "offload",
    )
    assert lm.device == "cuda:0"
    cpu = extract_lm_features(load_causal_lm(model_dir, device="cpu"), words, **KW)
    gpu = extract_lm_features(lm, words, **KW)
    # float32 on two kinds of device: TF32 off by default for matmuls in torch
    np.testing.assert_allclose(gpu, cpu, atol=1e-4 * max(1.0, float(np.abs(cpu).max())))


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_gpus_from_the_job_resource(model_dir, words, tmp_path):
    words_path, trs_path, _ = _write_story_tables(tmp_path, "s1", words)
    out = tmp_path / "out"
    extract_text_model(
        model_dir,
        {"s1": words_path},
        {"s1": trs_path},
        out,
        model_name="tiny",
        n_gpus=2,
        gpu_mem_gb=float(os.environ.get("FMRISCALING_GPU_MEM_GB", 80)),
        dtype="float32",
        **KW,
    )
    record = json.loads((out / "provenance.json").read_text())
    assert set(record["max_memory"]) == {"0", "1"}
    assert set(record["device_map"]) <= {"cuda:0", "cuda:1"}
    # the layer files equal a one-device pass on the CPU, in the same float32
    cpu_out = tmp_path / "cpu"
    extract_text_model(
        model_dir, {"s1": words_path}, {"s1": trs_path}, cpu_out, model_name="tiny",
        device="cpu", dtype="float32", **KW,
    )  # fmt: skip
    for layer in range(N_LAYERS + 1):
        a, b = (read_layer(d / f"layer-{layer}.h5", "s1") for d in (out, cpu_out))
        np.testing.assert_allclose(a, b, atol=1e-4 * max(1.0, float(np.abs(b).max())))
