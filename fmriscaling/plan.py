"""Plan before you spend: jobs per rule, device-hours and disk of a study, before submitting it.

    make plan CONFIG=config/lebel2023.yaml
    python -m fmriscaling.plan --configfile config/config.yaml config/lebel2023.yaml

The job list is the study's own (`fmriscaling.workflow.Study.jobs`: every job of the default
target with its rule, wildcards, inputs and the facts its price needs), the same list of jobs
Snakemake builds from the rules (``tests/test_study.py`` holds the two together). It reads no
data, so a study is planned before its download. Each job is priced by the cost model of
`fmriscaling.cost`:

- its rule's fixed overhead (`JOB_OVERHEAD_S`: start-up, imports, small I/O, measured on the
  demo), plus
- flops / device rate: ridge GEMMs and eigendecompositions (`cost.ridge_flops` at the fit's
  TRs, features and voxels; for the vision selection, every (layer, pooling) candidate at its
  images and vertices), LM forward passes over the dynamic-context windows
  (`features.context.window_schedule`), speech windows (`features.audio.window_bounds`),
  vision forward passes per image, plus
- bytes read / read rate (responses, features, model weights).

Every rule of ``rules/*.smk`` has a price (`CostModel.pricers`, and `UNPRICED_RULES` that do
no work; a test fails for a rule without one). GPU jobs (``compute.gpu``) are priced on `cost.GPU_ASSUMED` (an assumption: no GPU has
been measured), the others on `cost.CPU_REFERENCE` (measured), download jobs at
`DOWNLOAD_RATE` on the login node. Sizes come from the data when it is there (respdict.json,
response files, word tables, model snapshots, the vision data) and from documented assumptions
when it is not; the output lists every assumption it used.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import cost
from .workflow import Job, Study, StudyFacts, load_config
from .workflow.facts import TOKENS_PER_WORD

logger = logging.getLogger(__name__)

#: CPU seconds per job besides the work the cost model counts, measured on the demo (2 cores, one
#: thread a job; median cpu_time of results/benchmarks/<rule>/*.tsv, the wall time where that
#: rounds to 0, 2026-12-06 for the rules added with the vision track): Python start-up and imports
#: (torch, transformers, matplotlib, nilearn, pycortex), tokenizer training, small files.
JOB_OVERHEAD_S: dict[str, float] = {
    "generate_demo_dataset": 8.4,
    "generate_demo_vision_dataset": 4.9,
    "build_tiny_models": 8.0,
    "story_timing": 0.5,
    "extract_text_features": 5.4,
    "extract_speech_features": 14.7,
    "extract_vision_features": 4.5,
    "prepare_responses": 1.0,
    "fit_encoding": 2.5,
    "fit_encoding_subset": 2.4,
    "fit_encoding_width": 2.5,
    "stack_member": 2.8,
    "stack_regression": 2.4,
    "stacking_table": 0.5,
    "fit_partition": 3.0,
    "partition_table": 0.5,
    "partition_figure": 2.4,
    "partition_map": 9.1,
    "select_vision": 2.4,
    "select_vision_sweep": 2.7,
    "noise_ceiling": 0.1,
    "vision_noise_ceiling": 0.3,
    "vision_ensemble": 0.3,
    "vision_table": 0.5,
    "bootstrap_means": 0.4,
    "scaling_table": 0.5,
    "encoding_table": 0.3,
    "roi_labels": 3.9,
    "roi_tables": 0.4,
    "scaling_figures": 4.0,
    "noise_ceiling_figure": 2.4,
    "stacking_figure": 2.3,
    "vision_figures": 3.4,
    "brain_map": 9.1,
    "cost_table": 0.5,
    "cost_figure": 2.4,
    "surface_maps": 3.0,
    "vision_surface_maps": 0.9,
    "group_maps": 1.0,
    "vision_group_maps": 1.0,
    "group_figures": 4.0,
    "vision_group_figures": 4.0,
    "subject_viewer": 3.0,
}
#: seconds per subject vertex of mapping a subject's maps to fsaverage5 (pycortex's mapper, the
#: two k-d trees on the sphere: 3.4 s a job on the demo's S1, 304,380 vertices, 0.4 s of it
#: beyond the job's start-up), and of building its WebGL viewer (pycortex's surface pack:
#: equivolume areas, the bumpy flatmap, the compressed mesh: 38.9 s for S1 in one process; the
#: demo ships S1's bumpy flatmap and takes 26-27 s), 2-core Intel Xeon, 2026-12-06
#: (benchmarks/RESULTS.md)
SURFACE_S_PER_VERTEX = 1.5e-6
VIEWER_S_PER_VERTEX = 1.2e-4
#: seconds to draw one group map (four views, 100 dpi) and to write its nilearn page
GROUP_FIGURE_S = 1.1
GROUP_PAGE_S = 0.1
#: bytes of one map on fsaverage5: two GIFTIs (gzipped base64 float32, ~22 kB each) and its
#: share of maps.npz; a group figure; a nilearn page (its JavaScript embedded)
SURFACE_MAP_BYTES = 75e3
GROUP_FIGURE_BYTES = 160e3
GROUP_PAGE_BYTES = 2.8e6
#: a WebGL viewer: pycortex's JavaScript (fixed) and its compressed mesh (per vertex)
VIEWER_FIXED_BYTES = 3.9e6
VIEWER_BYTES_PER_VERTEX = 23.5
#: extra seconds of a GPU job: CUDA context, cuBLAS/cuSOLVER handles (assumed)
GPU_STARTUP_S = 10.0
#: bytes/s of a download from OpenNeuro's bucket or the Hub (assumed)
DOWNLOAD_RATE = 50e6
#: per-voxel float32 arrays in scores.npz: test r, best alpha, CV score
SCORE_ARRAYS = 3
#: bytes of a table or figure (they are small)
SMALL_FILE_BYTES = 1e6
#: tokens (patches) per image of a vision model's forward pass: 224 px in 14-16 px patches (assumed)
TOKENS_PER_IMAGE = 256
#: spatial positions of a layer's map before pooling, for the vision features' width (assumed)
VISION_SPATIAL = 16 * 16


#: rules priced apart: downloads (by their bytes) and the targets that run nothing
UNPRICED_RULES = frozenset({"all", "download_dataset", "download_ds003020_file", "download_model"})

# ----------------------------------------------------------------------------------- costs


@dataclass
class JobCost:
    seconds: float
    disk_bytes: float
    where: str  # "GPU", "CPU" or "login"
    n_gpus: int = 0  # GPUs held for ``seconds`` (an extraction job across several: all of them)

    @property
    def gpu_seconds(self) -> float:
        return self.seconds * self.n_gpus


class CostModel:
    """Seconds and bytes of each job of a study (see the module docstring)."""

    def __init__(
        self,
        study: Study,
        facts: StudyFacts,
        cpu: cost.Device = cost.CPU_REFERENCE,
        gpu: cost.Device = cost.GPU_ASSUMED,
    ) -> None:
        self.study = study
        self.facts = facts
        self.config = study.config
        self.cpu, self.gpu = cpu, gpu
        # rule -> (seconds of work, bytes written) on a device; fit groups after the first
        # (fit_encoding_2, ...) are priced as the first
        self.pricers: dict[str, Callable[[Job, cost.Device], tuple[float, float]]] = {
            "generate_demo_dataset": lambda job, device: (0.0, self._demo_bytes()),
            "generate_demo_vision_dataset": self._small,
            "build_tiny_models": self._small,
            "story_timing": self._small,
            "extract_text_features": self._extract,
            "extract_speech_features": self._extract,
            "extract_vision_features": self._extract_vision,
            "prepare_responses": self._prepare,
            "noise_ceiling": self._noise_ceiling,
            "fit_encoding": self._fit,
            "fit_encoding_subset": self._fit,
            "fit_encoding_width": self._fit,
            "stack_member": self._member,
            "stack_regression": self._stack,
            "stacking_table": self._small,
            "fit_partition": self._partition,
            "partition_table": self._reads_scores,
            "partition_figure": self._small,
            "partition_map": self._small,
            "select_vision": self._select_vision,
            "select_vision_sweep": self._select_vision,
            "vision_noise_ceiling": self._vision_small,
            "vision_ensemble": self._vision_small,
            "vision_table": self._reads_scores,
            "vision_figures": self._small,
            "encoding_table": self._reads_scores,
            "bootstrap_means": self._reads_scores,
            "scaling_table": self._small,
            "roi_labels": self._small,
            "roi_tables": self._reads_scores,
            "scaling_figures": self._small,
            "noise_ceiling_figure": self._small,
            "stacking_figure": self._small,
            "brain_map": self._small,
            "cost_table": self._small,
            "cost_figure": self._small,
            "surface_maps": self._surface_maps,
            "vision_surface_maps": self._surface_maps,
            "group_maps": self._group_maps,
            "vision_group_maps": self._group_maps,
            "group_figures": self._group_figures,
            "vision_group_figures": self._group_figures,
            "subject_viewer": self._viewer,
        }

    def rule_of(self, job: Job) -> str:
        """The priced rule of a job (later fit groups share the first group's price)."""
        base = job.rule.rsplit("_", 1)[0] if job.rule[-1].isdigit() else job.rule
        return base if base in self.pricers else job.rule

    def __call__(self, job: Job) -> JobCost:
        if job.rule in ("all", "download_dataset"):  # targets: no work of their own
            return JobCost(0.0, 0.0, "login")
        if job.rule == "download_ds003020_file":
            size = float(job.params["bytes"])
            return JobCost(size / DOWNLOAD_RATE, size, "login")
        if job.rule == "download_model":
            model = self.facts.model(job.params["model"])
            size = model.n_params * cost.SNAPSHOT_BYTES_PER_PARAM
            return JobCost(size / DOWNLOAD_RATE, size, "login")
        rule = self.rule_of(job)
        if rule not in self.pricers:
            raise KeyError(f"no price for rule {job.rule!r}: add it to CostModel.pricers")
        device = self.gpu if job.gpu else self.cpu
        seconds = JOB_OVERHEAD_S.get(rule, 1.0) + (GPU_STARTUP_S if job.gpu else 0.0)
        work, disk = self.pricers[rule](job, device)
        # a model across N GPUs runs its layers one GPU after the other: the job takes the
        # time of one device's flops and holds all N for it
        return JobCost(
            seconds + work,
            disk,
            "GPU" if job.gpu else ("login" if job.local else "CPU"),
            max(job.n_gpus, 1) if job.gpu else 0,
        )

    # ---- small jobs

    def _small(self, job: Job, device: cost.Device) -> tuple[float, float]:
        return 0.0, SMALL_FILE_BYTES * len(job.outputs)

    def _reads_scores(self, job: Job, device: cost.Device) -> tuple[float, float]:
        read = sum(self.facts.file_bytes(p, 0) for p in job.inputs if p.endswith(".npz"))
        return read / device.read, SMALL_FILE_BYTES * len(job.outputs)

    # ---- group maps and viewers

    def _surface_maps(self, job: Job, device: cost.Device) -> tuple[float, float]:
        """A subject's maps to fsaverage5: mapper and sphere search over its vertices (none for
        the vision track, whose vertices are fsaverage's)."""
        maps = job.params["n_maps"]
        if job.params["track"] == "vision":
            return 0.0, SURFACE_MAP_BYTES * maps
        vertices = self.facts.n_vertices(job.params["subject"])
        return SURFACE_S_PER_VERTEX * vertices, SURFACE_MAP_BYTES * maps

    def _group_maps(self, job: Job, device: cost.Device) -> tuple[float, float]:
        return 0.0, 1.5 * SURFACE_MAP_BYTES * job.params["n_maps"] + SMALL_FILE_BYTES

    def _group_figures(self, job: Job, device: cost.Device) -> tuple[float, float]:
        maps, pages = job.params["n_maps"], job.params["n_pages"]
        seconds = maps * GROUP_FIGURE_S + pages * GROUP_PAGE_S
        return seconds, maps * GROUP_FIGURE_BYTES + pages * GROUP_PAGE_BYTES

    def _viewer(self, job: Job, device: cost.Device) -> tuple[float, float]:
        vertices = self.facts.n_vertices(job.params["subject"])
        return (
            VIEWER_S_PER_VERTEX * vertices,
            VIEWER_FIXED_BYTES + VIEWER_BYTES_PER_VERTEX * vertices,
        )

    # ---- language track

    def _voxels(self, subject: str) -> int:
        return self.facts.n_voxels(subject, self.study.prepared_responses(subject))

    def _noise_ceiling(self, job: Job, device: cost.Device) -> tuple[float, float]:
        read = sum(self.facts.file_bytes(p, 0) for p in job.inputs)
        return read / device.read, 4.0 * 4 * self._voxels(job.params["subject"])

    def _prepare(self, job: Job, device: cost.Device) -> tuple[float, float]:
        """Read every raw float64 response file of a subject, write them float32."""
        subject, stories = job.params["subject"], job.params["stories"]
        v = self._voxels(subject)
        rows = sum(self.facts.story_rows(s) for s in stories)
        read = sum(
            self.facts.file_bytes(p, 8.0 * self.facts.story_rows(s) * v)
            for p, s in zip(job.inputs, stories, strict=True)
        )
        return read / device.read, 4.0 * rows * v

    def _member(self, job: Job, device: cost.Device) -> tuple[float, float]:
        """A member is its layer's fit, plus OOF predictions of the training TRs on disk."""
        seconds, _ = self._fit(job, device)
        subject = job.params["subjects"][0]
        rows = sum(self.facts.story_rows(s) for s in job.params["train_stories"])
        v = self._voxels(subject)
        oof = 2.0 if self.config["stacking"]["oof_dtype"] == "float16" else 4.0
        test = self.facts.story_rows(self.study.test_story)
        return seconds, oof * rows * v + 8.0 * test * v

    def _stack(self, job: Job, device: cost.Device) -> tuple[float, float]:
        """Read every member's OOF predictions, solve a small QP per voxel."""
        read = sum(self.facts.file_bytes(p, 0) for p in job.inputs)
        return read / device.read, 4.0 * SCORE_ARRAYS * self._voxels(job.params["subject"])

    def _partition(self, job: Job, device: cost.Device) -> tuple[float, float]:
        """The banded-ridge fit of every subset of bands (`cost.banded_ridge_flops`; single
        bands without a band-weight search), the bands' layers read, the permutation test."""
        from itertools import combinations

        enc, opts = self.config["encoding"], self.config["partitioning"]
        subject, bands = job.params["subject"], job.params["bands"]
        n = sum(self.facts.story_rows(s) for s in job.params["train_stories"])
        n_test = max(1, self.facts.story_rows(self.study.test_story) - enc["test_extra_trim"])
        v = self._voxels(subject)
        widths = [len(enc["delays"]) * self.facts.model(b["model"]).hidden_size for b in bands]
        n_folds = enc["n_folds"] if enc["cv"] == "stories" else enc["bootstrap"]["n_boots"]
        m = n // 5 if enc["cv"] == "bootstrap" else n // n_folds
        n_iter = max(opts["n_iter"], len(bands) + 1)
        seconds = 0.0
        for size in range(1, len(bands) + 1):  # every subset, single bands included
            for subset in combinations(widths, size):
                flops = cost.banded_ridge_flops(
                    n,
                    subset,
                    v,
                    n_test,
                    [(n - m, m)] * n_folds,
                    enc["alphas"]["num"],
                    n_iter if size > 1 else 1,
                    opts["solver"],
                )
                seconds += flops.gemm / device.gemm + flops.eigh / device.eigh
        read = 4.0 * (n + n_test) * (v + sum(widths) / len(enc["delays"]))
        seconds += read / device.read + self._permutation_flops(n_test, v) / device.gemm
        n_subsets = 2 ** len(bands) - 1
        return seconds, 4.0 * v * (2 * n_subsets + 3 * len(bands) + 7)

    def _fit(self, job: Job, device: cost.Device) -> tuple[float, float]:
        """One fit job: one design and its decompositions, every subject of its group's voxels
        (a fixed-width fit: its layer projected to ``width`` columns first)."""
        enc = self.config["encoding"]
        train = job.params["train_stories"]
        n = sum(self.facts.story_rows(s) for s in train)
        n_test = max(1, self.facts.story_rows(self.study.test_story) - enc["test_extra_trim"])
        voxels = {s: self._voxels(s) for s in job.params["subjects"]}
        v = sum(voxels.values())
        model = self.facts.model(job.params["model"])
        width = job.params.get("width")
        columns = model.hidden_size if width is None else min(int(width), model.hidden_size)
        p = len(enc["delays"]) * columns
        n_folds = enc["n_folds"] if enc["cv"] == "stories" else enc["bootstrap"]["n_boots"]
        m = n // 5 if enc["cv"] == "bootstrap" else n // n_folds  # bootstrap holds out a fifth
        flops = cost.ridge_flops(
            n, p, v, n_test, [(n - m, m)] * n_folds, enc["alphas"]["num"], enc["solver"]
        )
        read = 4.0 * (n + n_test) * v  # the prepared float32 responses
        read += 4.0 * (n + n_test) * model.hidden_size  # one layer's features
        seconds = flops.gemm / device.gemm + flops.eigh / device.eigh + read / device.read
        seconds += self._permutation_flops(n_test, v) / device.gemm
        if width is not None:  # the projection (PCA: covariance, then its eigh; both on CPU)
            h = model.hidden_size
            seconds += 2.0 * (n + n_test) * h * columns / self.cpu.gemm
            if self.config["features"]["fixed_dim_method"] == "pca":
                seconds += 2.0 * n * h * h / self.cpu.gemm + 9.0 * h**3 / self.cpu.eigh
        disk = 4.0 * v * SCORE_ARRAYS + 2e3 * len(voxels)
        if self.config["statistics"]["n_permutations"] > 0:
            disk += 9.0 * v  # p and q (float32) and the significance flag of every voxel
        if enc["save_weights"]:
            disk += 4.0 * p * v
        if enc["save_predictions"]:
            disk += 4.0 * v * (2 * n_test + n)
        return seconds, disk

    def _permutation_flops(self, n_test: int, v: int) -> float:
        """The block permutation test of a fit's voxels (`fmriscaling.encoding.significance`):
        the table of block products, then one matrix product over every permutation."""
        stats = self.config["statistics"]
        n_perm, block = stats["n_permutations"], stats["block_trs"]
        if n_perm <= 0:
            return 0.0
        n_blocks = max(n_test // block, 2)
        return 2.0 * v * n_blocks * n_blocks * (block + n_perm)

    def _extract(self, job: Job, device: cost.Device) -> tuple[float, float]:
        from .features.audio import window_bounds
        from .features.context import window_schedule

        model = self.facts.model(job.params["model"])
        stories = job.params["stories"]
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

    # ---- vision track

    def _pooled_widths(self, model: str) -> list[int]:
        """Features of each (layer, k) candidate: k x k positions of the layer's channels."""
        facts = self.facts.model(model)
        pooling = self.config["vision"]["pooling"]
        return [k * k * facts.hidden_size for _ in range(facts.n_layers) for k in pooling]

    def _extract_vision(self, job: Job, device: cost.Device) -> tuple[float, float]:
        """A forward pass per image (`TOKENS_PER_IMAGE` tokens), every layer pooled and saved."""
        model = self.facts.model(job.params["model"])
        n_images = job.params["n_images"]
        flops = cost.lm_flops(model.n_params, n_images * TOKENS_PER_IMAGE)
        weights = model.n_params * cost.SNAPSHOT_BYTES_PER_PARAM
        read = n_images * 3 * 224 * 224  # decoded images
        disk = 4.0 * n_images * sum(self._pooled_widths(job.params["model"]))
        return flops / device.forward + (weights + read) / device.read, disk

    def _select_vision(self, job: Job, device: cost.Device) -> tuple[float, float]:
        """Every (layer, k) candidate: a cross-validated ridge on the training images, scored
        on every vertex; then the refit of each vertex's choice (one per training-set size)."""
        sel, split = self.config["vision"]["selection"], self.config["vision"]["split"]
        v = job.params["n_vertices"]
        widths = self._pooled_widths(job.params["model"])
        seconds = 0.0
        for n in job.params["sizes"]:
            n_test = max(1, round(n * split["test_fraction"]))
            m = n // sel["n_folds"]
            for p in widths:
                flops = cost.ridge_flops(
                    n, p, v, n_test, [(n - m, m)] * sel["n_folds"], sel["alphas"]["num"], "auto"
                )
                seconds += flops.gemm / device.gemm + flops.eigh / device.eigh
            seconds += 4.0 * n * sum(widths) / device.read  # every candidate's features
        disk = 2 * len(job.params["sizes"]) * 4.0 * v * (SCORE_ARRAYS + 2)
        return seconds, disk

    def _vision_small(self, job: Job, device: cost.Device) -> tuple[float, float]:
        read = sum(self.facts.file_bytes(p, 0) for p in job.inputs)
        return read / device.read, 4.0 * SCORE_ARRAYS * job.params["n_vertices"]


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
    gpu_seconds: float = 0.0  # seconds x GPUs held
    max_gpus: int = 0  # the most GPUs one of its jobs asks for


def plan_table(jobs: Sequence[Job], model: CostModel) -> list[RuleRow]:
    """One row per rule, in the jobs' order, with its jobs priced by ``model``."""
    rows: dict[str, RuleRow] = {}
    for job in jobs:
        priced = model(job)
        row = rows.setdefault(job.rule, RuleRow(job.rule, priced.where))
        row.jobs += 1
        row.seconds += priced.seconds
        row.disk_bytes += priced.disk_bytes
        row.gpu_seconds += priced.gpu_seconds
        row.max_gpus = max(row.max_gpus, priced.n_gpus)
        if priced.seconds >= row.max_job_seconds:
            row.max_job_seconds = priced.seconds
            row.requested_minutes = float("nan") if job.runtime is None else job.runtime
    return list(rows.values())


def _duration(seconds: float) -> str:
    if seconds < 100:
        return f"{seconds:.1f} s"
    if seconds < 6000:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:,.1f} h"


def _gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:,.3f}" if nbytes < 1e9 else f"{nbytes / 1e9:,.1f}"


def format_plan(rows: Sequence[RuleRow], assumptions: Sequence[str], title: str) -> str:
    """The plan as text: per-rule table, totals, devices and assumptions."""
    lines = [title, ""]
    head = (
        f"{'rule':26s} {'jobs':>6s} {'where':>5s} {'GPUs':>4s} {'time':>11s} {'longest job':>12s}"
        f" {'asks':>8s} {'disk GB':>9s}"
    )
    lines += [head, "-" * len(head)]
    flagged = []
    for r in rows:
        asks = "" if math.isnan(r.requested_minutes) else f"{r.requested_minutes:.0f} min"
        if not math.isnan(r.requested_minutes) and r.max_job_seconds > 60 * r.requested_minutes:
            flagged.append(r.rule)
            asks += "!"
        gpus = str(r.max_gpus) if r.max_gpus else ""
        lines.append(
            f"{r.rule:26s} {r.jobs:6d} {r.where:>5s} {gpus:>4s} {_duration(r.seconds):>11s} "
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
    gpu_hours = sum(r.gpu_seconds for r in rows) / 3600
    lines.append(
        f"GPU-hours: {gpu_hours:,.1f} (GPUs held x hours; {by_where['GPU'] / 3600:,.1f} h of GPU "
        f"jobs)   on {cost.GPU_ASSUMED.name}"
    )
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
    if assumptions:
        lines.append("")
        lines.append("assumed (no file to measure yet):")
        lines += [f"  - {a}" for a in assumptions]
    return "\n".join(lines)


def format_sizing(study: Study) -> str:
    """Each run model's extraction job: its weights, activations and the GPUs it asks for
    (`fmriscaling.sizing`), or the host memory it needs on a CPU; "" when no model is sized."""
    from .sizing import GB

    compute = study.config["compute"]
    sized = [(m, study.extraction_sizing(m)) for m in study.run_models]
    if not any(sizing for _, sizing in sized):
        return ""
    where = (
        f"GPUs of {compute['gpu_mem_gb']:g} GB, at most {compute['max_gpus_per_job']} a job"
        if compute["gpu"]
        else f"CPU, {compute['extract_mem_mb']:,} MB a job"
    )
    head = (
        f"{'model':22s} {'params':>8s} {'dtype B':>7s} {'weights GB':>10s} {'activ. GB':>9s}"
        f" {'host GB':>8s} {'GPUs':>4s}"
    )
    lines = ["", f"extraction jobs ({where}):", head, "-" * len(head)]
    for model, sizing in sized:
        if sizing is None:
            lines.append(f"{model:22s} {'(no n_params in the registry: not sized)':>50s}")
            continue
        gpus = str(sizing.n_gpus) if sizing.on_gpu else "-"
        lines.append(
            f"{model:22s} {sizing.n_params / 1e9:7.2f}B {sizing.bytes_per_value:7d} "
            f"{sizing.weights_bytes / GB:10.1f} {sizing.activation_bytes / GB:9.1f} "
            f"{sizing.host_bytes / GB:8.1f} {gpus:>4s}"
        )
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
            # Snakemake samples CPU time: a sub-second job can read 0
            ratio = f"{r.seconds / cpu[r.rule][1]:6.2f}" if cpu[r.rule][1] >= 0.05 else f"{'-':>6s}"
            line += f" {cpu[r.rule][1]:8.1f}s {ratio}"
        lines.append(line)
    if totals[1]:
        line = f"{'total':26s} {'':5s} {totals[0]:9.1f}s {totals[1]:8.1f}s {totals[0] / totals[1]:6.2f}"
        if totals[2]:
            line += f" {totals[2]:8.1f}s {totals[0] / totals[2]:6.2f}"
        lines.append(line)
    return "\n".join(lines)


def plan_study(
    configfiles: Sequence[str | Path], root: str | Path = "."
) -> tuple[list[RuleRow], list[str], Study]:
    """Price every job of the study of ``configfiles`` (merged in order) under ``root``:
    rows per rule, the assumptions used, and the study."""
    study = Study(load_config(configfiles), root, check_data=False)
    facts = StudyFacts(study.config, root)
    rows = plan_table(study.jobs(), CostModel(study, facts))
    return rows, [*facts.assumptions, *study.assumptions], study


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fmriscaling.plan",
        description="Jobs, device-hours and disk of a study, before it runs.",
    )
    parser.add_argument(
        "--configfile", nargs="+", required=True, help="config/config.yaml, then the overlays"
    )
    parser.add_argument("--root", default=".", help="the workflow's directory (results/ under it)")
    parser.add_argument(
        "--benchmarks", help="a run's results/benchmarks: compare the estimate with its times"
    )
    args = parser.parse_args(argv)
    rows, assumptions, study = plan_study(args.configfile, args.root)
    tracks = []
    if study.run_models:
        tracks.append(
            f"dataset {study.dataset}, {len(study.subjects)} subject(s), "
            f"{len(study.run_models)} model(s)"
        )
    if study.vision_enabled:
        tracks.append(
            f"vision dataset {study.vision_dataset}, {len(study.vision_subjects)} subject(s), "
            f"{len(study.vision_run_models)} model(s)"
        )
    title = f"Plan of {' + '.join(map(str, args.configfile))}: {'; '.join(tracks)}"
    print(format_plan(rows, assumptions, title))
    sizing = format_sizing(study)
    if sizing:
        print(sizing)
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
