"""Plan before you spend: jobs per rule, device-hours and disk of a study, before submitting it.

    make plan CONFIG=config/lebel2023.yaml
    snakemake -n --forceall --configfile config/lebel2023.yaml 2>&1 \\
        | python -m fmriscaling.plan --configfile config/config.yaml config/lebel2023.yaml

The job list is Snakemake's own dry run (`parse_dry_run`: every job with its rule, wildcards,
inputs and resources), so the plan counts exactly the jobs a run would submit. Each job is
priced by the cost model of `fmriscaling.cost`:

- its rule's fixed overhead (`JOB_OVERHEAD_S`: start-up, imports, small I/O, measured on the
  demo), plus
- flops / device rate: ridge GEMMs and eigendecompositions (`cost.ridge_flops` at the fit's
  TRs, features and voxels), LM forward passes over the dynamic-context windows
  (`features.lm.window_schedule`), speech windows (`features.speech.window_bounds`), plus
- bytes read / read rate (responses, features, model weights).

GPU jobs (``gpu=1`` in the dry run's resources) are priced on `cost.GPU_ASSUMED` (an
assumption: no GPU has been measured), the others on `cost.CPU_REFERENCE` (measured), download
jobs at `DOWNLOAD_RATE` on the login node. Sizes come from the data when it is there
(respdict.json, response files, word tables, model snapshots) and from documented assumptions
when it is not; the output lists every assumption it used.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from . import cost
from .config import validate_config

logger = logging.getLogger(__name__)

#: CPU seconds per job besides the work the cost model counts, measured on the demo (2 cores,
#: median cpu_time of results/benchmarks/<rule>/*.tsv): Python start-up and imports (torch,
#: transformers, matplotlib, nilearn), tokenizer training, small files.
JOB_OVERHEAD_S: dict[str, float] = {
    "generate_demo_dataset": 5.0,
    "build_tiny_model": 6.5,
    "story_timing": 0.5,
    "extract_text_features": 8.0,
    "extract_speech_features": 8.0,
    "fit_encoding": 3.9,
    "fit_encoding_subset": 3.9,
    "noise_ceiling": 0.1,
    "encoding_table": 0.3,
    "scaling_figures": 2.5,
    "brain_map": 3.9,
}
#: extra seconds of a GPU job: CUDA context, cuBLAS/cuSOLVER handles (assumed)
GPU_STARTUP_S = 10.0
#: bytes/s of a download from OpenNeuro's bucket or the Hub (assumed)
DOWNLOAD_RATE = 50e6
#: words per second of narrated story (the demo's TextGrids have 2.7; assumed for ds003020)
WORDS_PER_SECOND = 2.7
#: sub-word tokens per word of a byte-level BPE on narrative English (assumed)
TOKENS_PER_WORD = 1.3
#: response rows per story before respdict.json is downloaded: ds003020's 84 training stories
#: of UTS01-03 hold ~27,000 TRs (assumed)
ASSUMED_STORY_TRS = 321
#: cortical voxels per subject before the responses are downloaded (UTS01-03: 81k-95k; assumed)
ASSUMED_VOXELS = 95_000
#: per-voxel float32 arrays in scores.npz: test r, best alpha, CV score
SCORE_ARRAYS = 3
#: bytes of a table or figure (they are small)
SMALL_FILE_BYTES = 1e6

_BLOCK = re.compile(r"^\s*(local)?rule (\w+):\s*$")
_FIELD = re.compile(r"^\s+(\w+): (.*)$")


@dataclass
class PlannedJob:
    """One job of a dry run."""

    rule: str
    local: bool = False
    wildcards: dict[str, str] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    resources: dict[str, str] = field(default_factory=dict)

    @property
    def gpu(self) -> bool:
        return self.resources.get("gpu", "0") not in ("0", "")


def _pairs(text: str) -> dict[str, str]:
    out = {}
    for item in text.split(", "):
        key, sep, value = item.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def parse_dry_run(text: str) -> list[PlannedJob]:
    """Every job of a ``snakemake -n`` printout (its stdout and stderr), grouped jobs included.

    Raises
    ------
    ValueError
        When the printout has no job and does not say there is nothing to do, or when the
        jobs found disagree with its "Job stats" table (a format this parser does not know).
    """
    jobs: list[PlannedJob] = []
    current: PlannedJob | None = None
    for line in text.splitlines():
        if m := _BLOCK.match(line):
            current = PlannedJob(rule=m.group(2), local=bool(m.group(1)))
            jobs.append(current)
            continue
        if current is None:
            continue
        if m := _FIELD.match(line):
            key, value = m.groups()
            if key == "wildcards":
                current.wildcards = _pairs(value)
            elif key == "input":
                current.inputs = [p.strip() for p in value.split(", ") if p.strip()]
            elif key == "resources":
                current.resources = _pairs(value)
        elif not line.startswith(" "):
            current = None
    stats = job_stats(text)
    if not jobs and "Nothing to be done" not in text:
        raise ValueError(f"no job in this dry run; its end:\n{text[-2000:]}")
    counts = defaultdict(int)
    for job in jobs:
        counts[job.rule] += 1
    if stats and stats != dict(counts):
        raise ValueError(f"parsed jobs {dict(counts)} differ from the Job stats table {stats}")
    return jobs


def job_stats(text: str) -> dict[str, int]:
    """Rule -> job count of the first "Job stats" table of a dry run ({} if none)."""
    if "Job stats:" not in text:
        return {}
    table = text.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    counts = {}
    for line in table.splitlines()[3:]:
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            counts[parts[0]] = int(parts[1])
    return counts


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
        from .download.manifest import RESPDICT

        path = self.data / RESPDICT
        if path.is_file():
            return {k: int(v) for k, v in json.loads(path.read_text()).items()}
        return None

    def _read_manifest(self) -> dict[str, int]:
        if self.config["dataset"]["source"] != "openneuro":
            return {}
        from .download.manifest import read_manifest

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
        from .stimuli import response_rows

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
        hidden = hf.get("hidden_size") or hf.get("d_model") or hf.get("n_embd")
        n_params = spec.get("n_params") or record.get("n_params")
        if "build" in source and (hidden is None or n_params is None):
            preset = _tiny_preset(spec["kind"], source["build"].get("preset", ""))
            hidden = hidden or preset.get("hidden_size", 32)
            n_params = n_params or 12 * hidden**2 * n_layers
            self.assume("tiny models not built yet: 12 d² parameters per layer")
        if n_params is None:
            raise ValueError(f"model {name!r} has no n_params in the config")
        if hidden is None:
            encoder_params = n_params / 2 if arch == "whisper" else n_params
            hidden = 64 * max(1, round(math.sqrt(encoder_params / (12 * n_layers)) / 64))
            self.assume(
                "hub models not downloaded yet: hidden size sqrt(n_params / (12 layers)), "
                "rounded to 64"
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
    """A tiny model's preset (its width), wherever the demo package keeps it."""
    import importlib

    names = (
        ("TINY_SPEECH_PRESETS", "tiny_speech")
        if kind == "speech"
        else ("TINY_LM_PRESETS", "tiny_models")
    )
    for module in (f"fmriscaling.demo.{names[1]}", f"fmriscaling.{names[1]}"):
        try:
            return dict(getattr(importlib.import_module(module), names[0]).get(preset, {}))
        except (ImportError, AttributeError):
            continue
    return {}


# ----------------------------------------------------------------------------------- costs


@dataclass
class JobCost:
    seconds: float
    disk_bytes: float
    where: str  # "GPU", "CPU" or "login"


def _stem(path: str) -> str:
    return path.rsplit("/", 1)[-1].split(".")[0]


class CostModel:
    """Seconds and bytes of each planned job (see the module docstring)."""

    def __init__(
        self,
        facts: StudyFacts,
        cpu: cost.Device = cost.CPU_REFERENCE,
        gpu: cost.Device = cost.GPU_ASSUMED,
    ) -> None:
        self.facts = facts
        self.config = facts.config
        self.cpu, self.gpu = cpu, gpu

    def __call__(self, job: PlannedJob) -> JobCost:
        if job.rule in ("all", "download_dataset"):
            return JobCost(0.0, 0.0, "login")
        if job.rule == "download_ds003020_file":
            size = self.facts.manifest_bytes(job.wildcards.get("path", ""))
            return JobCost(size / DOWNLOAD_RATE, size, "login")
        if job.rule == "download_model":
            model = self.facts.model(job.wildcards["model"])
            size = model.n_params * cost.SNAPSHOT_BYTES_PER_PARAM
            return JobCost(size / DOWNLOAD_RATE, size, "login")
        device = self.gpu if job.gpu else self.cpu
        seconds = JOB_OVERHEAD_S.get(job.rule, 1.0) + (GPU_STARTUP_S if job.gpu else 0.0)
        work, disk = self._work(job, device)
        return JobCost(
            seconds + work, disk, "GPU" if job.gpu else ("login" if job.local else "CPU")
        )

    def _work(self, job: PlannedJob, device: cost.Device) -> tuple[float, float]:
        rule = job.rule
        if rule in ("fit_encoding", "fit_encoding_subset"):
            return self._fit(job, device)
        if rule in ("extract_text_features", "extract_speech_features"):
            return self._extract(job, device)
        if rule == "noise_ceiling":
            read = sum(self.facts.file_bytes(p, 0) for p in job.inputs)
            return read / device.read, 4.0 * 4 * self.facts.n_voxels(
                job.wildcards.get("subject", ""), job.inputs
            )
        if rule == "generate_demo_dataset":
            return 0.0, self._demo_bytes()
        if rule in ("encoding_table", "scaling_figures", "brain_map"):
            read = sum(self.facts.file_bytes(p, 0) for p in job.inputs if p.endswith(".npz"))
            return read / device.read, SMALL_FILE_BYTES
        return 0.0, SMALL_FILE_BYTES if rule == "story_timing" else 0.0

    def _fit(self, job: PlannedJob, device: cost.Device) -> tuple[float, float]:
        enc = self.config["encoding"]
        test = self.config["dataset"]["test_story"]
        responses = [p for p in job.inputs if p.endswith(".hf5")]
        stories = [_stem(p) for p in responses]
        train = [s for s in stories if s != test]
        n = sum(self.facts.story_rows(s) for s in train)
        n_test = max(1, self.facts.story_rows(test) - enc["test_extra_trim"])
        v = self.facts.n_voxels(job.wildcards["subject"], responses)
        model = self.facts.model(job.wildcards["model"])
        p = len(enc["delays"]) * model.hidden_size
        n_folds = enc["n_folds"] if enc["cv"] == "stories" else enc["bootstrap"]["n_boots"]
        m = n // 5 if enc["cv"] == "bootstrap" else n // n_folds  # bootstrap holds out a fifth
        flops = cost.ridge_flops(
            n, p, v, n_test, [(n - m, m)] * n_folds, enc["alphas"]["num"], enc["solver"]
        )
        read = sum(
            self.facts.file_bytes(r, 4.0 * self.facts.story_rows(_stem(r)) * v) for r in responses
        )
        read += 4.0 * (n + n_test) * model.hidden_size  # one layer's features
        seconds = flops.gemm / device.gemm + flops.eigh / device.eigh + read / device.read
        disk = 4.0 * v * SCORE_ARRAYS + 2e3
        if enc["save_weights"]:
            disk += 4.0 * p * v
        if enc["save_predictions"]:
            disk += 4.0 * v * (2 * n_test + n)
        return seconds, disk

    def _extract(self, job: PlannedJob, device: cost.Device) -> tuple[float, float]:
        from .features.lm import window_schedule
        from .features.speech import window_bounds

        model = self.facts.model(job.wildcards["model"])
        stories = sorted({_stem(p) for p in job.inputs if p.endswith((".tsv", ".wav"))})
        feats = self.config["features"]
        flops = 0.0
        for story in stories:
            if model.kind == "text":
                ctx = feats["text"]
                n_words = self.facts.story_words(story)
                words = sum(
                    stop - start
                    for start, _, stop in window_schedule(
                        n_words, ctx["max_words"], ctx["reset_words"]
                    )
                )
                flops += cost.lm_flops(model.n_params, words * TOKENS_PER_WORD)
            else:
                sp = feats["speech"]
                rate = 16000
                n_samples = int(self.facts.audio_seconds(story) * rate)
                starts, ends = window_bounds(
                    n_samples, sample_rate=rate, window_s=sp["window_s"], stride_s=sp["stride_s"]
                )
                # most windows have the full length: price each length once
                lengths, counts = np.unique(ends - starts, return_counts=True)
                flops += sum(
                    int(count)
                    * cost.speech_window_flops(
                        model.arch,
                        n_params=model.n_params,
                        hidden_size=model.hidden_size,
                        window_samples=int(length),
                        conv_dim=model.conv_dim,
                        chunk_frames=model.chunk_frames,
                    )
                    for length, count in zip(lengths, counts, strict=True)
                )
        weights = model.n_params * cost.SNAPSHOT_BYTES_PER_PARAM
        rows = sum(self.facts.story_rows(s) for s in stories)
        disk = 4.0 * rows * model.hidden_size * (model.n_layers + 1)
        return flops / device.forward + weights / device.read, disk

    def _demo_bytes(self) -> float:
        syn = self.config["synthetic"]
        stories = syn["n_train_stories"]
        rows = stories * (sum(syn["story_n_trs"]) / 2 - 20) + (syn["test_n_trs"] - 20) * (
            1 + syn["n_repeats"]
        )
        audio = (stories + 1) * self.facts.audio_seconds(self.config["dataset"]["test_story"])
        return (
            4.0 * rows * syn["n_voxels"] * len(self.config["dataset"]["subjects"])
            + 2 * 16000 * audio
        )


# ------------------------------------------------------------------------------------ table


@dataclass
class RuleRow:
    rule: str
    where: str
    jobs: int = 0
    seconds: float = 0.0
    disk_bytes: float = 0.0
    max_job_seconds: float = 0.0
    requested_minutes: float = 0.0  # the runtime resource of the longest job


def plan_table(jobs: Sequence[PlannedJob], model: CostModel) -> list[RuleRow]:
    """One row per rule, in the dry run's order, with its jobs priced by ``model``."""
    rows: dict[str, RuleRow] = {}
    for job in jobs:
        priced = model(job)
        row = rows.setdefault(job.rule, RuleRow(job.rule, priced.where))
        row.jobs += 1
        row.seconds += priced.seconds
        row.disk_bytes += priced.disk_bytes
        if priced.seconds >= row.max_job_seconds:
            row.max_job_seconds = priced.seconds
            row.requested_minutes = _minutes(job.resources.get("runtime"))
    return list(rows.values())


def _minutes(value: str | None) -> float:
    try:
        return float(value) if value is not None else float("nan")
    except ValueError:
        return float("nan")


def _duration(seconds: float) -> str:
    if seconds < 100:
        return f"{seconds:.1f} s"
    if seconds < 6000:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:,.1f} h"


def _gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:,.3f}" if nbytes < 1e9 else f"{nbytes / 1e9:,.1f}"


def format_plan(rows: Sequence[RuleRow], facts: StudyFacts, title: str) -> str:
    """The plan as text: per-rule table, totals, devices and assumptions."""
    lines = [title, ""]
    head = f"{'rule':26s} {'jobs':>6s} {'where':>5s} {'time':>11s} {'longest job':>12s} {'asks':>8s} {'disk GB':>9s}"
    lines += [head, "-" * len(head)]
    flagged = []
    for r in rows:
        asks = "" if math.isnan(r.requested_minutes) else f"{r.requested_minutes:.0f} min"
        if not math.isnan(r.requested_minutes) and r.max_job_seconds > 60 * r.requested_minutes:
            flagged.append(r.rule)
            asks += "!"
        lines.append(
            f"{r.rule:26s} {r.jobs:6d} {r.where:>5s} {_duration(r.seconds):>11s} "
            f"{_duration(r.max_job_seconds):>12s} {asks:>8s} {_gb(r.disk_bytes):>9s}"
        )
    lines.append("-" * len(head))
    by_where = defaultdict(float)
    for r in rows:
        by_where[r.where] += r.seconds
    total_disk = sum(r.disk_bytes for r in rows)
    total = f"{'total':26s} {sum(r.jobs for r in rows):6d}"
    lines.append(f"{total:{len(head) - 10}s} {_gb(total_disk):>9s}")
    lines.append("")
    lines.append(f"GPU-hours: {by_where['GPU'] / 3600:,.1f}   on {cost.GPU_ASSUMED.name}")
    lines.append(f"CPU-hours: {by_where['CPU'] / 3600:,.2f}   on {cost.CPU_REFERENCE.name}")
    lines.append(
        f"login node (downloads at {DOWNLOAD_RATE / 1e6:.0f} MB/s, local rules): "
        f"{by_where['login'] / 3600:,.2f} h"
    )
    lines.append(f"disk: {total_disk / 1e9:,.1f} GB written under results/")
    if flagged:
        lines.append(
            f"! longest estimated job above its runtime request: {', '.join(flagged)} "
            "(raise compute.*_runtime, or expect retries)"
        )
    if facts.assumptions:
        lines.append("")
        lines.append("assumed (no file to measure yet):")
        lines += [f"  - {a}" for a in facts.assumptions]
    return "\n".join(lines)


# ------------------------------------------------------------------------ measured times


def measured_seconds(benchmarks: str | Path, column: str = "s") -> dict[str, tuple[int, float]]:
    """Rule -> (jobs, summed seconds) of the benchmark TSVs of a run
    (``results/benchmarks/<rule>/...tsv``, Snakemake's ``s`` = wall-clock column)."""
    import pandas as pd

    out: dict[str, tuple[int, float]] = {}
    root = Path(benchmarks)
    for rule_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(rule_dir.rglob("*.tsv"))
        if files:
            total = sum(float(pd.read_csv(f, sep="\t")[column].iloc[-1]) for f in files)
            out[rule_dir.name] = (len(files), total)
    return out


def format_comparison(
    rows: Sequence[RuleRow],
    wall: Mapping[str, tuple[int, float]],
    cpu: Mapping[str, tuple[int, float]] | None = None,
) -> str:
    """Estimated against measured seconds per rule: wall-clock (``s``) and, when given, CPU
    time (``cpu_time``: the fairer measure on a shared machine, where waiting inflates wall)."""
    cpu = cpu or {}
    head = f"{'rule':26s} {'jobs':>5s} {'estimated':>10s} {'wall':>9s} {'ratio':>6s}"
    head += f" {'cpu':>9s} {'ratio':>6s}" if cpu else ""
    lines = ["", "estimate / measured (results/benchmarks):", head]
    totals = [0.0, 0.0, 0.0]
    for r in rows:
        if r.rule not in wall or r.where not in ("CPU", "GPU"):
            continue
        n, seconds = wall[r.rule]
        totals[0] += r.seconds
        totals[1] += seconds
        line = f"{r.rule:26s} {n:5d} {r.seconds:9.1f}s {seconds:8.1f}s {r.seconds / seconds:6.2f}"
        if r.rule in cpu:
            totals[2] += cpu[r.rule][1]
            line += f" {cpu[r.rule][1]:8.1f}s {r.seconds / max(cpu[r.rule][1], 1e-9):6.2f}"
        lines.append(line)
    if totals[1]:
        line = f"{'total':26s} {'':5s} {totals[0]:9.1f}s {totals[1]:8.1f}s {totals[0] / totals[1]:6.2f}"
        if totals[2]:
            line += f" {totals[2]:8.1f}s {totals[0] / totals[2]:6.2f}"
        lines.append(line)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fmriscaling.plan",
        description="Jobs, device-hours and disk of a study, from a Snakemake dry run.",
    )
    parser.add_argument(
        "--configfile", nargs="+", required=True, help="config/config.yaml, then the overlays"
    )
    parser.add_argument(
        "--dry-run", default="-", help="output of `snakemake -n` (stdout and stderr); - = stdin"
    )
    parser.add_argument("--root", default=".", help="the workflow's directory (results/ under it)")
    parser.add_argument(
        "--benchmarks", help="a run's results/benchmarks: compare the estimate with its times"
    )
    args = parser.parse_args(argv)
    text = sys.stdin.read() if args.dry_run == "-" else Path(args.dry_run).read_text()
    config = load_config(args.configfile)
    jobs = parse_dry_run(text)
    facts = StudyFacts(config, args.root)
    rows = plan_table(jobs, CostModel(facts))
    title = (
        f"Plan of {' + '.join(args.configfile)}: dataset {config['dataset']['name']}, "
        f"{len(config['dataset']['subjects'])} subject(s), {len(config['run_models'])} model(s)"
    )
    print(format_plan(rows, facts, title))
    if args.benchmarks:
        print(
            format_comparison(
                rows,
                measured_seconds(args.benchmarks),
                measured_seconds(args.benchmarks, column="cpu_time"),
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
