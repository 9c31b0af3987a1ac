"""Shared pytest fixtures: a seeded rng, the Agg backend, and the gpu marker."""

from __future__ import annotations

import os

import h5py
import matplotlib
import numpy as np
import pytest

from fmriscaling._utils import limit_threads

matplotlib.use("Agg")
# one thread for the computations of a test worker's own process: the suite runs a worker more
# than the cores beside the demo's jobs, and oversubscribed OpenMP threads spin (CPU time for
# nothing); workflow jobs set their own threads (`fmriscaling._utils.limit_threads`)
limit_threads(1)
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


# the modules that take minutes of wall-clock time, started first: with one test file per
# worker (make test: pytest-xdist, --dist loadfile, collection order kept) the SLURM module's
# waits for its status polls overlap the demo's computing and the unit tests fill in around them
LONG_MODULES = ("test_slurm.py", "test_workflow.py")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.path.name not in LONG_MODULES)  # stable: the rest in order
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


DELAYS = (1, 2, 3, 4)
STORY_TRS = {"alpha": 120, "beta": 100, "gamma": 110, "delta": 90, "test": 160}


@pytest.fixture
def encoding_dataset(tmp_path, rng):
    """Factory of small encoding datasets in the workflow's file layout.

    ``encoding_dataset(subjects=("S1", "S2"))`` writes one layer file (one float32 dataset per
    story of `STORY_TRS`, 6 features) and, per subject, one float64 response file per story
    (``data``: 6 voxels driven by the delayed, z-scored features, the test story's first 40 TRs
    trimmed as the fit trims them, plus 4 noise voxels), each subject with its own weights and
    noise. Returns the layer file and {subject: {story: response file}}.
    """

    def make(subjects=("S1",), n_features=6, n_signal=6, n_noise=4):
        from fmriscaling.encoding.design import delay_matrix, zscore

        feature_file = tmp_path / "features" / "layer-3.h5"
        feature_file.parent.mkdir(exist_ok=True)
        features = {s: rng.standard_normal((n, n_features)) for s, n in STORY_TRS.items()}
        with h5py.File(feature_file, "w") as f:
            for story, x in features.items():
                f[story] = x.astype(np.float32)
        files = {}
        for subject in subjects:
            weights = rng.standard_normal((n_features * len(DELAYS), n_signal))
            files[subject] = {}
            for story, x in features.items():
                n, trim = x.shape[0], 40 if story == "test" else 0
                signal = np.zeros((n, n_signal))
                # the response sees the stimulus design exactly as build_design makes it
                x32 = x.astype(np.float32)[trim:].astype(np.float64)
                signal[trim:] = delay_matrix(zscore(x32), DELAYS) @ weights
                signal /= signal[trim:].std(axis=0)
                noise = rng.standard_normal((n, n_noise))
                y = np.concatenate([signal + 0.3 * rng.standard_normal(signal.shape), noise], 1)
                path = tmp_path / "responses" / subject / f"{story}.hf5"
                path.parent.mkdir(parents=True, exist_ok=True)
                with h5py.File(path, "w") as g:
                    g["data"] = y
                files[subject][story] = path
        return feature_file, files

    return make
