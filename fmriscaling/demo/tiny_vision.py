"""Tiny, randomly initialised vision models for tests and the demo workflow.

They have the architecture of the real families the vision track runs (CLIP vision towers,
DINOv2, ViT: patch tokens after a CLS token; ConvNeXt / ConvNeXt-V2: a CNN whose stages are
spatial maps) but a few thousand to a few hundred thousand parameters and 32 x 32 inputs, and
are saved like a downloaded snapshot (``config.json``, ``model.safetensors`` and the image
processor's ``preprocessor_config.json``), so the feature code runs on them unchanged and
offline.

Random models at the library's default initialisation have layers that barely differ (the
residual updates of a transformer block are ~2 % of the stream, a ConvNeXt block's layer scale
starts at 1e-6). The demo wants layers that a per-vertex selection can tell apart, so the
presets raise ``initializer_range`` / the layer scale; this changes nothing else.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from .._utils import provenance, write_json

logger = logging.getLogger(__name__)

__all__ = ["TINY_VISION_PRESETS", "VISION_ARCHS", "build_tiny_vision_model"]

VISION_ARCHS = ("clip", "dinov2", "vit", "convnext", "convnextv2")
_TRANSFORMER_ARCHS = ("clip", "dinov2", "vit")

#: demo sizes: two CLIP-like towers of increasing size (a family for the model-size fit) and
#: a ConvNeXt (a second family, with CNN stages as its layers); all 32 x 32 inputs
TINY_VISION_PRESETS: dict[str, dict[str, Any]] = {
    "clip-s": {"arch": "clip", "hidden_size": 24, "num_layers": 2, "num_heads": 2},
    "clip-m": {"arch": "clip", "hidden_size": 48, "num_layers": 3, "num_heads": 4},
    "convnext-s": {"arch": "convnext", "hidden_sizes": (16, 32, 48), "depths": (1, 1, 1)},
    "dinov2-s": {"arch": "dinov2", "hidden_size": 24, "num_layers": 2, "num_heads": 2},
    "vit-s": {"arch": "vit", "hidden_size": 24, "num_layers": 2, "num_heads": 2},
    "convnextv2-s": {"arch": "convnextv2", "hidden_sizes": (16, 32, 48), "depths": (1, 1, 1)},
}

# CLIP's normalisation constants (OpenAI), ImageNet's for the others, as the hub snapshots use
_CLIP_MEAN, _CLIP_STD = (0.4815, 0.4578, 0.4082), (0.2686, 0.2613, 0.2758)
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _model_and_processor(arch: str, image_size: int, patch_size: int, sizes: dict[str, Any]):
    """The transformers config, model class and PIL image processor of one tiny model."""
    import transformers as tf

    if arch in _TRANSFORMER_ARCHS:
        hidden, heads = int(sizes["hidden_size"]), int(sizes["num_heads"])
        if hidden % heads:
            raise ValueError(f"hidden_size ({hidden}) must be divisible by num_heads ({heads})")
        common = {
            "hidden_size": hidden,
            "intermediate_size": int(sizes.get("intermediate_size") or 2 * hidden),
            "num_hidden_layers": int(sizes["num_layers"]),
            "num_attention_heads": heads,
            "image_size": image_size,
            "patch_size": patch_size,
            "num_channels": 3,
        }
    else:
        hidden_sizes = [int(h) for h in sizes["hidden_sizes"]]
        depths = [int(d) for d in sizes["depths"]]
        if len(hidden_sizes) != len(depths):
            raise ValueError(f"hidden_sizes {hidden_sizes} and depths {depths} differ in length")
        common = {
            "num_channels": 3,
            "patch_size": patch_size,
            "hidden_sizes": hidden_sizes,
            "depths": depths,
            "num_stages": len(depths),
            "image_size": image_size,
        }
    # bicubic resize of the shortest edge, then the normalisation of the family's hub snapshots
    resize = {"size": {"shortest_edge": image_size}, "resample": 3}
    crop = {"crop_size": {"height": image_size, "width": image_size}}
    if arch == "clip":
        # CLIP's init scales with initializer_factor; 4 makes each block move the stream
        config = tf.CLIPVisionConfig(**common, initializer_factor=4.0)
        model_cls = tf.CLIPVisionModel
        processor = tf.CLIPImageProcessorPil(
            **resize, **crop, image_mean=list(_CLIP_MEAN), image_std=list(_CLIP_STD)
        )
    elif arch in ("dinov2", "vit"):
        cls_config = tf.Dinov2Config if arch == "dinov2" else tf.ViTConfig
        config = cls_config(**common, initializer_range=0.2)
        model_cls = tf.Dinov2Model if arch == "dinov2" else tf.ViTModel
        processor = tf.BitImageProcessorPil(
            **resize, **crop, image_mean=list(_IMAGENET_MEAN), image_std=list(_IMAGENET_STD)
        )
    else:
        cls_config = tf.ConvNextConfig if arch == "convnext" else tf.ConvNextV2Config
        extra = {"layer_scale_init_value": 1.0} if arch == "convnext" else {}
        config = cls_config(**common, initializer_range=0.2, **extra)
        model_cls = tf.ConvNextModel if arch == "convnext" else tf.ConvNextV2Model
        # crop_pct 1: resize to the input size, no crop (ConvNeXt's processor has no crop_size)
        processor = tf.ConvNextImageProcessorPil(
            **resize, crop_pct=1.0, image_mean=list(_IMAGENET_MEAN), image_std=list(_IMAGENET_STD)
        )
    return config, model_cls, processor


def build_tiny_vision_model(
    out_dir: str | os.PathLike,
    *,
    arch: str = "clip",
    image_size: int = 32,
    patch_size: int = 4,
    seed: int = 0,
    **sizes: Any,
) -> dict[str, Any]:
    """Build a randomly initialised vision model and save it as a local snapshot.

    Parameters
    ----------
    out_dir : path-like
        Directory to write (``config.json``, ``model.safetensors``,
        ``preprocessor_config.json``, ``provenance.json``).
    arch : {"clip", "dinov2", "vit", "convnext", "convnextv2"}
        Model family (``CLIPVisionModel``, ``Dinov2Model``, ``ViTModel``, ``ConvNextModel``,
        ``ConvNextV2Model``).
    image_size : int
        Input side in pixels (the image processor resizes to it).
    patch_size : int
        Patch side of the transformers, stem stride of the ConvNeXts.
    seed : int
        Seed of the random initialisation.
    **sizes
        Transformers: ``hidden_size``, ``num_layers``, ``num_heads`` (and optionally
        ``intermediate_size``, default ``2 * hidden_size``). ConvNeXts: ``hidden_sizes`` and
        ``depths`` (one per stage).

    Returns
    -------
    info : dict
        ``model_dir``, ``arch``, ``model_class``, ``n_params``, ``n_layers`` (transformer blocks
        or CNN stages: the model has ``n_layers + 1`` feature layers, 0 = embeddings) and the
        sizes used.
    """
    import torch

    if arch not in VISION_ARCHS:
        raise ValueError(f"arch must be one of {VISION_ARCHS}, got {arch!r}")
    if image_size % patch_size:
        raise ValueError(f"image_size ({image_size}) must be a multiple of patch_size")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config, model_cls, processor = _model_and_processor(arch, image_size, patch_size, sizes)
    torch.manual_seed(seed)
    model = model_cls(config)
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)

    n_layers = config.num_hidden_layers if arch in _TRANSFORMER_ARCHS else config.num_stages
    sizes_used = {k: list(v) if isinstance(v, tuple) else v for k, v in sizes.items()}
    info = {
        "model_dir": str(out_dir),
        "arch": arch,
        "model_class": type(model).__name__,
        "n_params": int(n_params),
        "n_layers": int(n_layers),
        "image_size": image_size,
        "patch_size": patch_size,
        "seed": seed,
        **sizes_used,
    }
    write_json(
        out_dir / "provenance.json",
        provenance(
            {k: v for k, v in info.items() if k != "model_dir"},
            model_id=f"tiny-{arch}-l{n_layers}-{n_params}p",
            revision=None,
            n_params=int(n_params),
            source="fmriscaling.demo.tiny_vision.build_tiny_vision_model (random init)",
        ),
    )
    logger.info("built tiny %s vision model (%d parameters) at %s", arch, n_params, out_dir)
    return info
