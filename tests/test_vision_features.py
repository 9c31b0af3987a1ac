"""Vision features: token maps and adaptive max pooling against direct computations, and the
extraction of every layer of tiny models built from configs, offline and without torchvision."""

from __future__ import annotations

import json
import math
import sys

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from fmriscaling import DataError
from fmriscaling.demo.tiny_vision import TINY_VISION_PRESETS, build_tiny_vision_model
from fmriscaling.vision.features import (
    adaptive_max_pool,
    extract_vision_model,
    pooled_name,
    read_pooled,
    written_pooling,
)
from fmriscaling.vision.models import load_vision_model, token_maps


def _direct_max_pool(maps: np.ndarray, k: int) -> np.ndarray:
    """Adaptive max pooling by its definition: cell i covers floor(iH/k) .. ceil((i+1)H/k) - 1."""
    n, c, h, w = maps.shape
    out = np.empty((n, c, k, k), dtype=maps.dtype)
    for i in range(k):
        r0, r1 = math.floor(i * h / k), math.ceil((i + 1) * h / k)
        for j in range(k):
            c0, c1 = math.floor(j * w / k), math.ceil((j + 1) * w / k)
            out[:, :, i, j] = maps[:, :, r0:r1, c0:c1].max(axis=(2, 3))
    return out.reshape(n, -1)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("shape", [(2, 3, 7, 5), (1, 4, 8, 8), (3, 2, 4, 6)])
def test_pooling_shapes_and_values_match_a_direct_computation(rng, shape, k):
    maps = rng.standard_normal(shape).astype(np.float32)
    pooled = adaptive_max_pool(torch.from_numpy(maps), k).numpy()
    assert pooled.shape == (shape[0], shape[1] * k * k)
    np.testing.assert_array_equal(pooled, _direct_max_pool(maps, k))


def test_pooled_features_are_channel_major(rng):
    maps = rng.standard_normal((1, 3, 4, 4)).astype(np.float32)
    pooled = adaptive_max_pool(torch.from_numpy(maps), 2).numpy()[0]
    # feature c * 4 + i * 2 + j = channel c, cell (i, j)
    assert pooled[1 * 4 + 1 * 2 + 0] == maps[0, 1, 2:4, 0:2].max()
    assert adaptive_max_pool(torch.from_numpy(maps), 1).numpy()[0, 2] == maps[0, 2].max()


@pytest.mark.parametrize("n_prefix", [1, 5])  # CLS; CLS + 4 registers (DINOv2 with registers)
def test_token_maps_drop_prefix_tokens_and_keep_the_patch_grid(rng, n_prefix):
    rows, cols, channels = 3, 4, 5
    hidden = rng.standard_normal((2, n_prefix + rows * cols, channels)).astype(np.float32)
    maps = token_maps(torch.from_numpy(hidden), (rows, cols)).numpy()
    assert maps.shape == (2, channels, rows, cols)
    for r in range(rows):
        for c in range(cols):
            np.testing.assert_array_equal(maps[:, :, r, c], hidden[:, n_prefix + r * cols + c])
    with pytest.raises(DataError, match="fewer than the 5 x 5 patch grid"):
        token_maps(torch.from_numpy(hidden), (5, 5))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(7):
        path = folder / f"train-{i + 1:04d}_nsd-{i:05d}.png"
        Image.fromarray(rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.mark.parametrize(
    ("preset", "n_layers", "sides"),
    [
        ("clip-s", 2, [8, 8, 8]),
        ("dinov2-s", 2, [8, 8, 8]),
        ("vit-s", 2, [8, 8, 8]),
        ("convnext-s", 3, [8, 8, 4, 2]),
        ("convnextv2-s", 3, [8, 8, 4, 2]),
    ],
)
def test_every_layer_is_extracted_and_pooled(tmp_path, images, preset, n_layers, sides):
    model_dir = tmp_path / preset
    info = build_tiny_vision_model(model_dir, **TINY_VISION_PRESETS[preset])
    assert info["n_layers"] == n_layers
    out = tmp_path / "features"
    sets = {"subj01_train": images[:5], "subj01_test": images[5:]}
    paths = extract_vision_model(
        model_dir, sets, out, model_name=preset, pooling=[1, 2, 4, 8], batch_size=2, device="cpu"
    )
    assert [p.name for p in paths] == [f"layer-{i}.h5" for i in range(n_layers + 1)]
    written = written_pooling(out)
    assert written == {
        layer: [k for k in (1, 2, 4, 8) if k <= side] for layer, side in enumerate(sides)
    }
    # features equal the model's own maps, pooled directly, whatever the batch size
    model = load_vision_model(model_dir, device="cpu", dtype="float32")
    pixels = torch.from_numpy(model.preprocess([Image.open(p).convert("RGB") for p in images[:5]]))
    assert pixels.shape == (5, 3, 32, 32)
    maps = model.layer_maps(pixels)
    for layer, ks in written.items():
        with h5py.File(paths[layer]) as f:
            assert set(f) == {pooled_name(s, k) for s in sets for k in ks}
        for k in ks:
            feats = read_pooled(out, layer, "subj01_train", k)
            channels = maps[layer].shape[1]
            assert feats.shape == (5, channels * k * k) and feats.dtype == np.float32
            direct = _direct_max_pool(maps[layer].numpy(), k)
            # float32 convolutions round differently by batch size (oneDNN picks its kernel
            # by shape): equal to float32 precision of the map's largest value
            scale = max(1.0, float(np.abs(direct).max()))
            np.testing.assert_allclose(feats, direct, rtol=1e-5, atol=1e-6 * scale)
        assert read_pooled(out, layer, "subj01_test", 1).shape[0] == 2
    record = json.loads((out / "provenance.json").read_text())
    assert record["n_params"] == info["n_params"] and record["n_layers"] == n_layers
    assert record["image_sets"]["subj01_train"]["n_images"] == 5
    assert record["image_sets"]["subj01_train"]["first"] == images[0].name
    assert record["device"] == "cpu" and record["dtype"] == "float32"
    # nothing on this path needs torchvision (it does not import beside a CPU torch build)
    assert "torchvision" not in sys.modules


def test_wrong_layer_count_and_empty_sets_fail_before_writing(tmp_path, images):
    model_dir = tmp_path / "clip"
    build_tiny_vision_model(model_dir, **TINY_VISION_PRESETS["clip-s"])
    with pytest.raises(DataError, match="has 2 layers but the config expects 5"):
        extract_vision_model(
            model_dir, {"s_train": images}, tmp_path / "out", model_name="m", expected_n_layers=5
        )
    with pytest.raises(DataError, match="has no images"):
        extract_vision_model(model_dir, {"s_train": []}, tmp_path / "out", model_name="m")
    assert not (tmp_path / "out" / "layer-0.h5").exists()


def test_a_missing_snapshot_names_the_rule_that_fetches_it(tmp_path):
    with pytest.raises(
        DataError, match=r"no config.json there.*Fetch it first with .snakemake .*download_model"
    ):
        load_vision_model(tmp_path / "absent", device="cpu")


@pytest.mark.skipif("timm" in sys.modules or __import__("importlib").util.find_spec("timm"),
                    reason="timm is installed here")  # fmt: skip
def test_an_openclip_snapshot_without_timm_says_where_it_runs(tmp_path):
    (tmp_path / "open_clip_config.json").write_text(
        json.dumps(
            {"model_cfg": {"vision_cfg": {"timm_model_name": "eva02_base_patch16_clip_224"}}}
        )
    )
    (tmp_path / "open_clip_pytorch_model.bin").write_bytes(b"weights")
    with pytest.raises(DataError, match=r"eva02_base_patch16_clip_224.*timm is not importable"):
        load_vision_model(tmp_path, device="cpu")
