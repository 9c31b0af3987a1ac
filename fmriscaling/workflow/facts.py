"""The sizes of a study before it runs: what the plan prices its jobs by.

`load_config` merges and validates config overlays as Snakemake does; `StudyFacts` holds the
sizes the cost model of `fmriscaling.plan` prices jobs by (TRs per story, voxels, words, model
widths), read from the data where it is there and otherwise from the documented assumptions
below, each listed in the plan's output; `published_algonauts_counts` gives the vision study's
sizes before its data are on disk.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..config import validate_config

logger = logging.getLogger(__name__)

#: words per second of narrated story (the demo's TextGrids have 2.7; assumed for ds003020)
WORDS_PER_SECOND = 2.7
#: sub-word tokens per word of a byte-level BPE on narrative English (assumed)
TOKENS_PER_WORD = 1.3
#: response rows per story before respdict.json is downloaded: ds003020's 84 training stories
#: of UTS01-03 hold ~27,000 TRs (assumed)
ASSUMED_STORY_TRS = 321
#: cortical voxels per subject before the responses are downloaded (UTS01-03: 81k-95k; assumed)
ASSUMED_VOXELS = 95_000
#: published parameter counts of the vision towers whose config leaves n_params to the snapshot
#: (assumed until the snapshot is downloaded; the tables use the snapshot's own count)
PUBLISHED_VISION_PARAMS = {
    "timm/eva02_base_patch16_clip_224.merged2b_s8b_b131k": 86e6,
    "timm/eva02_large_patch14_clip_224.merged2b_s4b_b131k": 304e6,
    "timm/eva02_enormous_patch14_clip_224.laion2b_s4b_b115k": 4.35e9,
    "facebook/dinov2-small": 22e6,
    "facebook/dinov2-base": 86e6,
    "facebook/dinov2-large": 304e6,
    "facebook/dinov2-giant": 1.14e9,
    "openai/clip-vit-base-patch16": 86e6,
    "openai/clip-vit-large-patch14": 304e6,
    "facebook/convnextv2-tiny-22k-224": 28.6e6,
    "facebook/convnextv2-base-22k-224": 88.7e6,
    "facebook/convnextv2-large-22k-224": 198e6,
}
#: Algonauts 2023 (NSD) per subject: training images, test images (METHODS.md), and challenge
#: vertices per hemisphere (nsdgeneral + RSC on fsaverage, as the challenge's data describe them)
ALGONAUTS_PUBLISHED = {
    "subj01": (9841, 159, 19004, 20544),
    "subj02": (9841, 159, 19004, 20544),
    "subj03": (9082, 293, 19004, 20544),
    "subj04": (8779, 395, 19004, 20544),
    "subj05": (9841, 159, 19004, 20544),
    "subj06": (9082, 293, 18978, 20220),
    "subj07": (9841, 159, 19004, 20544),
    "subj08": (8779, 395, 18981, 20530),
}


def published_algonauts_counts(subjects: Sequence[str]) -> dict[str, dict[str, int]]:
    """`check_algonauts_dir`'s counts as the challenge published them, for a plan made before
    the data are on disk.

    Raises
    ------
    ConfigError
        For a subject the challenge does not have.
    """
    from .._utils import ConfigError

    unknown = [s for s in subjects if s not in ALGONAUTS_PUBLISHED]
    if unknown:
        raise ConfigError(
            f"config key 'vision.dataset.subjects' lists {unknown}; the Algonauts 2023 data "
            f"have {sorted(ALGONAUTS_PUBLISHED)}"
        )
    return {
        s: dict(zip(("n_train", "n_test_images", "lh", "rh"), ALGONAUTS_PUBLISHED[s], strict=True))
        for s in subjects
    }


# ---------------------------------------------------------------------------------- facts


def merge_configs(*configs: Mapping[str, Any]) -> dict[str, Any]:
    """Later configs over earlier ones, as Snakemake merges --configfile overlays: mappings
    merge key by key, everything else (lists included) is replaced."""

    def merge(base: dict, over: Mapping) -> dict:
        for key, value in over.items():
            if isinstance(value, Mapping) and isinstance(base.get(key), dict):
                merge(base[key], value)
            else:
                base[key] = json.loads(json.dumps(value))
        return base

    out: dict[str, Any] = {}
    for config in configs:
        merge(out, config)
    return out


def load_config(paths: Sequence[str | Path]) -> dict[str, Any]:
    """The validated configuration of ``paths`` merged in order (defaults filled in)."""
    return validate_config(merge_configs(*(yaml.safe_load(Path(p).read_text()) for p in paths)))


@dataclass
class ModelFacts:
    kind: str
    arch: str
    n_params: float
    hidden_size: int
    n_layers: int
    conv_dim: int = 512
    chunk_frames: int = 1500


#: vertices of pycortex's sample subject S1 (152,893 + 151,487), the demo's surfaces
S1_VERTICES = 304380
#: cortical vertices of a subject whose curv files are not listed (ds003020: 268,809-373,857)
ASSUMED_VERTICES = 300000
#: bytes before the values of a FreeSurfer curv file: magic (3), vertices, faces, values per
#: vertex (3 x int32)
CURV_HEADER_BYTES = 15


def curv_vertices(size: int) -> int:
    """Vertices of a FreeSurfer ``?h.curv`` file of ``size`` bytes (one float32 each)."""
    return (int(size) - CURV_HEADER_BYTES) // 4


class StudyFacts:
    """Sizes of the study's data and models: measured from files under ``root`` when they
    exist, assumed otherwise (each assumption is recorded once in ``assumptions``)."""

    def __init__(self, config: Mapping[str, Any], root: str | Path = ".") -> None:
        self.config = config
        self.root = Path(root)
        self.dataset = config["dataset"]["name"]
        self.data = self.root / "results" / "data" / self.dataset
        self.assumptions: list[str] = []
        self._respdict = self._read_respdict()
        self._manifest = self._read_manifest()
        self._models: dict[str, ModelFacts] = {}
        self._voxels: dict[str, int] = {}
        self._rows: dict[str, int] = {}
        self._bytes: dict[str, float] = {}

    def assume(self, text: str) -> None:
        if text not in self.assumptions:
            self.assumptions.append(text)

    def _read_respdict(self) -> dict[str, int] | None:
        from ..download.manifest import RESPDICT

        path = self.data / RESPDICT
        if path.is_file():
            return {k: int(v) for k, v in json.loads(path.read_text()).items()}
        return None

    def _read_manifest(self) -> dict[str, int]:
        if self.config["dataset"]["source"] != "openneuro":
            return {}
        from ..download.manifest import read_manifest

        path = Path(self.config["download"]["manifest"])
        path = path if path.is_absolute() else self.root / path
        table = read_manifest(path)
        return dict(zip(table["path"], table["size"].astype(int), strict=True))

    # ---- stories

    def story_n_trs(self, story: str) -> int:
        """``respdict[story]``: the story's TRs before trimming."""
        if self._respdict is not None and story in self._respdict:
            return self._respdict[story]
        syn = self.config["synthetic"]
        if self.config["dataset"]["source"] == "synthetic":
            if story == self.config["dataset"]["test_story"]:
                return int(syn["test_n_trs"])
            self.assume("demo stories: the mean of synthetic.story_n_trs")
            return round(sum(syn["story_n_trs"]) / 2)
        self.assume(
            f"{ASSUMED_STORY_TRS} TRs per story (respdict.json not downloaded yet; "
            "ds003020's 84 training stories hold ~27,000)"
        )
        trims = self.config["stimuli"]
        return ASSUMED_STORY_TRS + trims["trim_start"] + trims["trim_end"] + 5

    def story_rows(self, story: str) -> int:
        """Response rows of a story (trimmed as the response files are)."""
        if story not in self._rows:
            self._rows[story] = self._story_rows(story)
        return self._rows[story]

    def _story_rows(self, story: str) -> int:
        from ..stimuli import response_rows

        s = self.config["stimuli"]
        rows = response_rows(
            self.story_n_trs(story), trim_start=s["trim_start"], trim_end=s["trim_end"]
        )
        return rows.stop - rows.start

    def audio_seconds(self, story: str) -> float:
        s = self.config["stimuli"]
        return max(1.0, (self.story_n_trs(story) - 5) * s["tr"] - s["sound_onset"])

    def story_words(self, story: str) -> int:
        words = self.root / "results" / "stimuli" / self.dataset / f"{story}.words.tsv"
        if words.is_file():
            with words.open() as f:
                return max(0, sum(1 for _ in f) - 1)
        self.assume(f"{WORDS_PER_SECOND} words per second of story (word tables not made yet)")
        return round(self.audio_seconds(story) * WORDS_PER_SECOND)

    # ---- subjects and files

    def n_voxels(self, subject: str, response_files: Iterable[str] = ()) -> int:
        if subject not in self._voxels:
            self._voxels[subject] = self._count_voxels(response_files)
        return self._voxels[subject]

    def _count_voxels(self, response_files: Iterable[str]) -> int:
        for path in response_files:
            full = self.root / path
            if full.is_file():
                import h5py

                with h5py.File(full, "r") as f:
                    return int(f["data"].shape[1])
        if self.config["dataset"]["source"] == "synthetic":
            return int(self.config["synthetic"]["n_voxels"])
        self.assume(f"{ASSUMED_VOXELS:,} voxels per subject (responses not downloaded yet)")
        return ASSUMED_VOXELS

    def n_vertices(self, subject: str) -> int:
        """Cortical vertices of a subject, both hemispheres: FreeSurfer's ``surf/<hemi>.curv``
        size in the manifest (a 15-byte header, then one float32 per vertex), the demo's S1,
        else the assumed `ASSUMED_VERTICES`."""
        if self.config["dataset"]["source"] == "synthetic":
            return S1_VERTICES
        sizes = [
            self._manifest.get(f"derivative/freesurfer_subjdir/{subject}/surf/{hemi}.curv")
            for hemi in ("lh", "rh")
        ]
        if all(sizes):
            return sum(curv_vertices(size) for size in sizes)
        self.assume(f"{ASSUMED_VERTICES:,} cortical vertices per subject (no curv file listed)")
        return ASSUMED_VERTICES

    def file_bytes(self, path: str, estimate: float) -> float:
        """Size of a workflow file: on disk, else in the dataset manifest, else ``estimate``."""
        if path not in self._bytes:
            self._bytes[path] = self._file_bytes(path, estimate)
        return self._bytes[path]

    def _file_bytes(self, path: str, estimate: float) -> float:
        full = self.root / path
        if full.is_file():
            return float(full.stat().st_size)
        prefix = f"results/data/{self.dataset}/"
        if path.startswith(prefix) and path[len(prefix) :] in self._manifest:
            return float(self._manifest[path[len(prefix) :]])
        return float(estimate)

    def manifest_bytes(self, relpath: str) -> float:
        return float(self._manifest.get(relpath, 0))

    # ---- models

    def model(self, name: str) -> ModelFacts:
        if name not in self._models:
            self._models[name] = self._model(name)
        return self._models[name]

    def _model(self, name: str) -> ModelFacts:
        spec = self.config["models"][name]
        source = spec["source"]
        folder = Path(source["local"]) if "local" in source else Path("results/models") / name
        folder = folder if folder.is_absolute() else self.root / folder
        hf = _read_json(folder / "config.json")
        record = _read_json(folder / "provenance.json")
        arch = str(source.get("build", {}).get("arch") or hf.get("model_type") or "")
        if not arch:
            arch = _arch_from_name(name, spec["kind"])
        n_layers = int(spec["n_layers"])
        hidden = (
            hf.get("hidden_size")
            or hf.get("d_model")
            or hf.get("n_embd")
            or spec.get("hidden_size")
        )
        n_params = spec.get("n_params") or record.get("n_params")
        if "build" in source and (hidden is None or n_params is None):
            preset = _tiny_preset(spec["kind"], source["build"].get("preset", ""))
            hidden = hidden or preset.get("hidden_size", 32)
            n_params = n_params or 12 * hidden**2 * n_layers
            self.assume("tiny models not built yet: 12 d² parameters per layer")
        if n_params is None and source.get("hub") in PUBLISHED_VISION_PARAMS:
            n_params = PUBLISHED_VISION_PARAMS[source["hub"]]
            self.assume("vision models not downloaded yet: their published parameter counts")
        if n_params is None:
            raise ValueError(
                f"model {name!r} has no n_params in the config and no snapshot in {folder} to "
                "count them: set models.<name>.n_params, or download the model first"
            )
        if hidden is None:
            encoder_params = n_params / 2 if arch == "whisper" else n_params
            hidden = 64 * max(1, round(math.sqrt(encoder_params / (12 * n_layers)) / 64))
            self.assume(
                "hub models without hidden_size in the registry, not downloaded yet: hidden "
                "size sqrt(n_params / (12 layers)), rounded to 64"
            )
        conv = hf.get("conv_dim")
        return ModelFacts(
            kind=spec["kind"],
            arch=arch,
            n_params=float(n_params),
            hidden_size=int(hidden),
            n_layers=n_layers,
            conv_dim=int(conv[-1]) if isinstance(conv, list) else int(conv or 512),
            chunk_frames=int(hf.get("max_source_positions") or 1500),
        )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _arch_from_name(name: str, kind: str) -> str:
    for arch in ("whisper", "wavlm", "hubert", "wav2vec2", "llama", "opt", "pythia"):
        if arch in name.lower():
            return arch
    return "hubert" if kind == "speech" else "opt"


def _tiny_preset(kind: str, preset: str) -> dict[str, Any]:
    """A tiny demo model's preset (its width); imported only when a config builds one."""
    if kind == "speech":
        from ..demo.tiny_speech import TINY_SPEECH_PRESETS as presets
    else:
        from ..demo.tiny_lm import TINY_LM_PRESETS as presets
    return dict(presets.get(preset, {}))
