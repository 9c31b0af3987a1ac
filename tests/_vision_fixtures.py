"""Shared builders of the vision tests: a tiny CLIP-like model, a small synthetic dataset in
the Algonauts layout driven by it, and its extracted features."""

from __future__ import annotations

from pathlib import Path

from fmriscaling.demo.tiny_vision import TINY_VISION_PRESETS, build_tiny_vision_model
from fmriscaling.demo.vision import generate_vision_dataset
from fmriscaling.vision.dataset import list_images, relpath
from fmriscaling.vision.features import extract_vision_model

SUBJECT = "subj01"
HEMIS = ("lh", "rh")
TRUTH = {"early": {"layer": 1, "pool": 4}, "higher": {"layer": 3, "pool": 1}}


def build_dataset(root: Path, *, n_train_images: int = 160, n_vertices: int = 60) -> dict:
    """A tiny-clip-m snapshot, a one-subject dataset driven by it, and its pooled features."""
    model = root / "tiny-clip-m"
    build_tiny_vision_model(model, **TINY_VISION_PRESETS["clip-m"])
    data = root / "data"
    generate_vision_dataset(
        data,
        subjects=[SUBJECT],
        truth_model_dir=model,
        truth=TRUTH,
        n_train_images=n_train_images,
        n_test_images=4,
        n_vertices=n_vertices,
        ncsnr=(0.8, 2.0),
        seed=1,
    )
    features = root / "features"
    images = list_images(data / relpath("training_images", subject=SUBJECT))
    extract_vision_model(
        model, {f"{SUBJECT}_train": images}, features, model_name="tiny-clip-m", device="cpu"
    )
    return {
        "model": model,
        "data": data,
        "features": features,
        "fmri": {h: data / relpath("training_fmri", subject=SUBJECT, hemi=h) for h in HEMIS},
    }
