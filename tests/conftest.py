"""Shared pytest fixtures: a seeded rng, the Agg backend, and the gpu marker."""

from __future__ import annotations

import os

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
# no test may reach the network: transformers / huggingface_hub stay offline
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if _cuda_available():
        return
    skip_gpu = pytest.mark.skip(reason="no CUDA device visible")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


# a small demo dataset on pycortex's sample subject S1 (surfaces, transform, annotations)
CORTEX_DEMO = {
    "subjects": ("UTS01",),
    "n_train_stories": 2,
    "n_voxels": 300,
    "n_latent": 4,
    "story_n_trs": (60, 70),
    "test_n_trs": 90,
    "seed": 0,
    "cortex": "S1",
}


@pytest.fixture(scope="session")
def cortex_dataset(tmp_path_factory):
    """(root, summary) of a one-subject demo dataset laid on S1 (shared by the session)."""
    from fmriscaling.demo.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("cortex") / "ds"
    return root, generate_dataset(root, **CORTEX_DEMO)
