"""Model registry helpers: where a model's snapshot lives and how to load it offline."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from ._utils import DataError, provenance_path

logger = logging.getLogger(__name__)

#: Provenance record that rule download_model writes inside a snapshot folder.
SNAPSHOT_RECORD = "fmriscaling_snapshot.json"


def require_model_dir(model_dir: str | os.PathLike, model_name: str | None = None) -> Path:
    """Return ``model_dir`` if it holds a loadable snapshot, else raise a `DataError`.

    A snapshot is loadable offline when it has a ``config.json``. The error says which
    Snakemake target creates it, so a compute node that cannot reach the hub never tries to.
    """
    model_dir = Path(model_dir)
    name = model_name or model_dir.name
    if not (model_dir / "config.json").is_file():
        raise DataError(
            f"model {name!r} is not available at {model_dir} (no config.json there). "
            f"Fetch it first with `snakemake {model_dir}` (rule download_model, which needs "
            "network access and, for gated models, HF_TOKEN), or point the model's "
            "`source: {local: ...}` in the config at an existing snapshot."
        )
    return model_dir


def pick_device(device: str = "auto") -> str:
    """``"cuda"`` when ``device`` is auto and a GPU is visible, else ``"cpu"`` (logged)."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    logger.info("running models on %s", device)
    return device


def pick_dtype(dtype: str, device: str):
    """Torch dtype for ``dtype`` in {auto, float32, float16, bfloat16}.

    ``auto`` is bfloat16 on a GPU that supports it (float16 otherwise) and float32 on CPU.
    """
    import torch

    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    try:
        return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[
            dtype
        ]
    except KeyError:
        raise ValueError(
            f"dtype must be auto, float32, float16 or bfloat16, got {dtype!r}"
        ) from None


def snapshot_record(model_dir: str | os.PathLike) -> dict[str, Any]:
    """Model id, revision and commit recorded beside a snapshot, for feature provenance.

    Looks, in order, at the record of rule download_model, a tiny model's ``provenance.json``
    and a sidecar beside the folder. All values are None when none exists.
    """
    model_dir = Path(model_dir)
    for path in (
        model_dir / SNAPSHOT_RECORD,
        model_dir / "provenance.json",
        provenance_path(model_dir),
    ):
        if not path.is_file():
            continue
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            logger.warning("ignoring unreadable snapshot provenance %s: %s", path, err)
            continue
        return {
            "model_id": record.get("model_id", record.get("repo_id")),
            "revision": record.get("revision"),
            "commit": record.get("commit"),
            "snapshot_provenance": str(path),
        }
    return {"model_id": None, "revision": None, "commit": None, "snapshot_provenance": None}
