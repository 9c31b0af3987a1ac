"""Vision models as layer-wise spatial feature maps: transformers snapshots and timm towers.

- transformers snapshots (`load_vision_model`): CLIP / SigLIP vision towers (a full CLIP
  snapshot loads its vision tower), DINOv2 (with or without registers), ViT, ConvNeXt,
  ConvNeXt-V2, and any model whose ``output_hidden_states`` are token sequences on a patch
  grid or NCHW maps. Images are prepared by the snapshot's own image processor with its PIL
  backend, so nothing imports torchvision (which does not import beside a CPU build of torch
  from PyPI).
- timm image towers, only where timm is importable (a GPU machine's environment, which has
  torchvision): the paper's EVA-02-CLIP repositories ``timm/eva02_*_clip_224.<tag>`` are
  OpenCLIP snapshots (``open_clip_config.json`` names the timm tower, whose checkpoint filter
  reads the OpenCLIP weights), native timm repositories have a ``config.json`` with an
  ``architecture``. Block outputs come from timm's ``forward_intermediates`` in NCHW (prefix
  tokens dropped), layer 0 is the patch embedding, images go through timm's eval transform.
  Written for timm >= 1.0 and not run here (no timm in the CPU environment).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._utils import DataError
from ..models import pick_device, pick_dtype, require_model_dir, snapshot_record

logger = logging.getLogger(__name__)

__all__ = ["VisionModel", "load_vision_model", "token_maps"]

# transformers model types whose snapshot holds a whole text-image model: use its vision tower
_VISION_TOWERS = {
    "clip": "CLIPVisionModel",
    "siglip": "SiglipVisionModel",
    "siglip2": "Siglip2VisionModel",
}


def token_maps(hidden: Any, grid: tuple[int, int]) -> Any:
    """Patch tokens of a transformer layer as a spatial map, prefix tokens dropped.

    Parameters
    ----------
    hidden : tensor of shape (n_images, n_tokens, n_channels)
        One layer's hidden states: ``n_prefix`` CLS / register tokens, then the patch tokens
        in row-major order of the patch grid.
    grid : (int, int)
        Patch grid (rows, columns); ``n_prefix = n_tokens - rows * columns``.

    Returns
    -------
    maps : tensor of shape (n_images, n_channels, rows, columns)

    Raises
    ------
    DataError
        When the layer has fewer tokens than the grid has patches.
    """
    n_images, n_tokens, n_channels = hidden.shape
    rows, cols = grid
    n_prefix = n_tokens - rows * cols
    if n_prefix < 0:
        raise DataError(
            f"a layer has {n_tokens} tokens, fewer than the {rows} x {cols} patch grid of the "
            "input; the model's patch size or the image size does not match its config"
        )
    patches = hidden[:, n_prefix:, :]
    return patches.reshape(n_images, rows, cols, n_channels).permute(0, 3, 1, 2)


@dataclass
class VisionModel:
    """A loaded vision model: images in, one spatial map per layer out.

    Attributes
    ----------
    model : torch.nn.Module
    model_dir : Path
    backend : {"transformers", "timm"}
    device : str
    dtype : torch.dtype
    n_layers : int
        Transformer blocks or CNN stages; ``n_layers + 1`` maps per image (0 = embeddings).
    n_params : int
        Parameters of the loaded network (the vision tower of a text-image snapshot).
    preprocess : callable (list of PIL images) -> array of shape (n, 3, H, W)
        The snapshot's own resize, crop and normalisation.
    layer_maps : callable (tensor of shape (n, 3, H, W)) -> list of tensors (n, C, h, w)
        Every layer's spatial map, layer 0 first.
    snapshot_provenance : dict
        Model id, revision, commit recorded beside the snapshot.
    """

    model: Any
    model_dir: Path
    backend: str
    device: str
    dtype: Any
    n_layers: int
    n_params: int
    preprocess: Callable[[list[Any]], np.ndarray]
    layer_maps: Callable[[Any], list[Any]]
    snapshot_provenance: dict[str, Any] = field(default_factory=dict)


def load_vision_model(
    model_dir: str | os.PathLike,
    *,
    device: str = "auto",
    dtype: str = "auto",
    model_name: str | None = None,
) -> VisionModel:
    """Load a local vision-model snapshot for feature extraction (offline).

    Parameters
    ----------
    model_dir : path-like
        Snapshot: transformers (``config.json``, weights, ``preprocessor_config.json``), or
        OpenCLIP / timm (``open_clip_config.json`` or a timm ``config.json``, weights).
    device, dtype : str
        See `fmriscaling.models.pick_device` and `fmriscaling.models.pick_dtype` (bfloat16 on
        a GPU that has it).
    model_name : str, optional
        Name used in error messages.

    Raises
    ------
    DataError
        The snapshot is missing, is a timm snapshot without timm installed, or has no image
        processor.
    """
    model_dir = Path(model_dir)
    device = pick_device(device)
    torch_dtype = pick_dtype(dtype, device)
    timm_source = _timm_source(model_dir)
    if timm_source is not None:
        loaded = _load_timm(model_dir, *timm_source, device, torch_dtype)
    else:
        require_model_dir(model_dir, model_name)
        loaded = _load_transformers(model_dir, device, torch_dtype)
    logger.info(
        "loaded %s (%s): %d layers, %d parameters, %s on %s",
        model_dir,
        loaded.backend,
        loaded.n_layers,
        loaded.n_params,
        torch_dtype,
        device,
    )
    return loaded


def _pil_image_processor(model_dir: Path):
    """The snapshot's image processor with its PIL backend (never torchvision)."""
    import transformers
    from transformers import AutoImageProcessor

    major = int(transformers.__version__.split(".")[0])
    # transformers 5 picks torchvision when importable unless told; 4.x's slow ones are PIL
    backend = {"backend": "pil"} if major >= 5 else {"use_fast": False}
    try:
        return AutoImageProcessor.from_pretrained(model_dir, local_files_only=True, **backend)
    except (OSError, ValueError) as err:
        raise DataError(
            f"no image processor (preprocessor_config.json) in {model_dir}: {err}. Download "
            "the whole snapshot (rule download_model) or add the processor of its hub repo."
        ) from err


def _load_transformers(model_dir: Path, device: str, torch_dtype: Any) -> VisionModel:
    import torch
    import transformers
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
    tower = _VISION_TOWERS.get(config.model_type)
    model_cls = getattr(transformers, tower) if tower else AutoModel
    model = model_cls.from_pretrained(model_dir, local_files_only=True, dtype=torch_dtype)
    model.to(device)
    model.eval()
    vision_config = getattr(model.config, "vision_config", model.config)
    patch = getattr(vision_config, "patch_size", None)
    processor = _pil_image_processor(model_dir)

    def preprocess(images: list[Any]) -> np.ndarray:
        out = processor(images=images, return_tensors="np")
        return np.asarray(out["pixel_values"], dtype=np.float32)

    def layer_maps(pixels: Any) -> list[Any]:
        with torch.inference_mode():
            hidden = model(pixel_values=pixels, output_hidden_states=True).hidden_states
        if hidden[0].ndim == 4:  # CNN: (n, C, h, w) per stage already
            return list(hidden)
        if patch is None:
            raise DataError(f"{model_dir}: a token model without a patch_size in its config")
        ph, pw = (patch, patch) if isinstance(patch, int) else tuple(patch)
        grid = (pixels.shape[-2] // ph, pixels.shape[-1] // pw)
        return [token_maps(h, grid) for h in hidden]

    n_layers = _count_layers(model.config)
    return VisionModel(
        model=model,
        model_dir=model_dir,
        backend="transformers",
        device=device,
        dtype=torch_dtype,
        n_layers=n_layers,
        n_params=int(sum(p.numel() for p in model.parameters())),
        preprocess=preprocess,
        layer_maps=layer_maps,
        snapshot_provenance=snapshot_record(model_dir),
    )


def _count_layers(config: Any) -> int:
    """Transformer blocks or CNN stages of a transformers config (its vision part)."""
    config = getattr(config, "vision_config", config)
    for key in ("num_hidden_layers", "num_stages"):
        value = getattr(config, key, None)
        if value:
            return int(value)
    depths = getattr(config, "depths", None)
    if depths:
        return len(depths)
    raise DataError(f"cannot tell the number of layers of a {config.model_type!r} config")


def _timm_source(model_dir: Path) -> tuple[str, Path] | None:
    """(timm architecture, weights file) of a timm or OpenCLIP snapshot, None for transformers.

    The EVA-02-CLIP repositories ``timm/eva02_*_clip_224.<tag>`` are OpenCLIP snapshots
    (``open_clip_config.json`` names the timm image tower; timm reads the OpenCLIP weights);
    native timm repositories have a ``config.json`` with an ``architecture``.
    """
    open_clip = model_dir / "open_clip_config.json"
    config = model_dir / "config.json"
    if open_clip.is_file():
        vision = json.loads(open_clip.read_text()).get("model_cfg", {}).get("vision_cfg", {})
        arch = vision.get("timm_model_name")
        names = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
        if not arch:
            raise DataError(
                f"{open_clip}: an OpenCLIP snapshot without a timm image tower "
                "(model_cfg.vision_cfg.timm_model_name); only timm towers are supported"
            )
    elif config.is_file() and "architecture" in (record := json.loads(config.read_text())):
        arch = record["architecture"]
        names = ("model.safetensors", "pytorch_model.bin")
    else:
        return None
    weights = next((model_dir / n for n in names if (model_dir / n).is_file()), None)
    if weights is None:
        raise DataError(f"{model_dir}: no weights file ({' or '.join(names)}); re-download it")
    return arch, weights


def _load_timm(model_dir: Path, arch: str, weights: Path, device: str, torch_dtype: Any):
    """The image tower of a timm / OpenCLIP snapshot, where timm is importable."""
    try:
        import timm
        from timm.data import create_transform, resolve_data_config
    except ImportError as err:
        raise DataError(
            f"{model_dir} is a timm snapshot ({arch}), but timm is not "
            f"importable here ({err}). Run this model where timm and torchvision are installed "
            "(a GPU machine's environment: pip install timm); the CPU environment of this "
            "workflow runs the transformers families only."
        ) from err
    import torch

    # timm's checkpoint filter maps OpenCLIP's visual.trunk.* weights onto the tower
    model = timm.create_model(arch, pretrained=True, pretrained_cfg_overlay={"file": str(weights)})
    model.to(device=device, dtype=torch_dtype)
    model.eval()
    transform = create_transform(**resolve_data_config({}, model=model))
    embeddings: list[Any] = []
    # layer 0: the patch embedding, caught on its way into the blocks
    model.patch_embed.register_forward_hook(lambda _m, _i, out: embeddings.append(out))

    def preprocess(images: list[Any]) -> np.ndarray:
        return np.stack([transform(image).numpy() for image in images]).astype(np.float32)

    def layer_maps(pixels: Any) -> list[Any]:
        embeddings.clear()
        with torch.inference_mode():
            blocks = model.forward_intermediates(
                pixels, indices=len(model.blocks), output_fmt="NCHW", intermediates_only=True
            )
        first, n_channels = embeddings[0], blocks[0].shape[1]
        if first.ndim == 3:  # (n, tokens, C) on the patch grid
            first = token_maps(first, tuple(blocks[0].shape[-2:]))
        elif first.shape[1] != n_channels:  # NHWC
            first = first.permute(0, 3, 1, 2)
        return [first, *blocks]

    return VisionModel(
        model=model,
        model_dir=model_dir,
        backend="timm",
        device=device,
        dtype=torch_dtype,
        n_layers=len(model.blocks),
        n_params=int(sum(p.numel() for p in model.parameters())),
        preprocess=preprocess,
        layer_maps=layer_maps,
        snapshot_provenance=snapshot_record(model_dir),
    )
