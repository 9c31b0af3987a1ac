"""Plan before you spend: jobs per rule, device-hours and disk of a study, before submitting it.

    make plan CONFIG=config/lebel2023.yaml
    snakemake -n --forceall --configfile config/lebel2023.yaml 2>&1 \\
        | python -m fmriscaling.plan --configfile config/config.yaml config/lebel2023.yaml

The job list is Snakemake's own dry run (`fmriscaling.study.parse_dry_run`: every job with its rule, wildcards,
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
import logging
import math
import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import cost
from .study import PlannedJob, StudyFacts, load_config, parse_dry_run

logger = logging.getLogger(__name__)

#: CPU seconds per job besides the work the cost model counts, measured on the demo (2 cores, one
#: thread a job; median cpu_time of results/benchmarks/<rule>/*.tsv): Python start-up and imports
#: (torch, transformers, matplotlib, nilearn, pycortex), tokenizer training, small files.
JOB_OVERHEAD_S: dict[str, float] = {
    "generate_demo_dataset": 8.4,
    "generate_demo_vision_dataset": 4.9,
    "build_tiny_model": 4.0,
    "story_timing": 0.5,
    "extract_text_features": 5.4,
    "extract_speech_features": 14.7,
    "extract_vision_features": 4.5,
    "prepare_responses": 1.0,
    "fit_encoding": 2.5,
    "fit_encoding_subset": 2.4,
    "stack_member": 2.8,
    "stack_regression": 2.4,
    "select_vision": 2.4,
    "select_vision_sweep": 2.7,
    "noise_ceiling": 0.1,
    "bootstrap_means": 0.4,
    "encoding_table": 0.3,
    "roi_labels": 3.9,
    "roi_tables": 0.4,
    "scaling_figures": 4.0,
    "noise_ceiling_figure": 2.4,
    "stacking_figure": 2.3,
    "vision_figures": 3.4,
    "brain_map": 9.1,
}
#: extra seconds of a GPU job: CUDA context, cuBLAS/cuSOLVER handles (assumed)
GPU_STARTUP_S = 10.0
#: bytes/s of a download from OpenNeuro's bucket or the Hub (assumed)
DOWNLOAD_RATE = 50e6
#: sub-word tokens per word of a byte-level BPE on narrative English (assumed)
TOKENS_PER_WORD = 1.3
#: per-voxel float32 arrays in scores.npz: test r, best alpha, CV score
SCORE_ARRAYS = 3
#: bytes of a table or figure (they are small)
SMALL_FILE_BYTES = 1e6


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
        if rule.startswith(("fit_encoding", "fit_encoding_subset")):  # _2, _3: later groups
            return self._fit(job, device)
        if rule == "prepare_responses":
            return self._prepare(job, device)
        if rule == "stack_member":  # a member is its layer's fit, plus OOF predictions on disk
            seconds, _ = self._fit(job, device)
            return seconds, self._member_bytes(job)
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

    def see(self, jobs: Sequence[PlannedJob]) -> None:
        """Learn from the whole plan what a fit job's inputs do not say: the raw response files
        (so the stories and voxels) behind each subject's prepared responses."""
        self.raw_responses = {
            job.wildcards["subject"]: [p for p in job.inputs if p.endswith(".hf5")]
            for job in jobs
            if job.rule == "prepare_responses"
        }

    def _prepare(self, job: PlannedJob, device: cost.Device) -> tuple[float, float]:
        """Read every raw float64 response file of a subject, write them float32."""
        subject = job.wildcards["subject"]
        raw = [p for p in job.inputs if p.endswith(".hf5")]
        v = self.facts.n_voxels(subject, raw)
        rows = sum(self.facts.story_rows(_stem(p)) for p in raw)
        read = sum(self.facts.file_bytes(p, 8.0 * self.facts.story_rows(_stem(p)) * v) for p in raw)
        return read / device.read, 4.0 * rows * v

    def _member_bytes(self, job: PlannedJob) -> float:
        """A stack member's file: OOF predictions of the training TRs, test predictions."""
        subject, test = job.wildcards["subject"], self.config["dataset"]["test_story"]
        raw = getattr(self, "raw_responses", {}).get(subject, [])
        rows = sum(self.facts.story_rows(_stem(r)) for r in raw if _stem(r) != test)
        v = self.facts.n_voxels(subject, raw)
        oof = 2.0 if self.config["stacking"]["oof_dtype"] == "float16" else 4.0
        return oof * rows * v + 8.0 * self.facts.story_rows(test) * v

    def _fit(self, job: PlannedJob, device: cost.Device) -> tuple[float, float]:
        """One fit job: one design and its decompositions, every subject of its group's voxels."""
        enc = self.config["encoding"]
        test = self.config["dataset"]["test_story"]
        prepared = [p for p in job.inputs if p.endswith(".h5") and "/responses/" in p]
        raw = {_stem(p): getattr(self, "raw_responses", {}).get(_stem(p), []) for p in prepared}
        stories = sorted({_stem(r) for files in raw.values() for r in files})
        train = [s for s in stories if s != test]
        if not train:
            raise ValueError(
                f"{job.rule}: no prepare_responses jobs in the plan tell its subjects' stories; "
                "price the plan with CostModel.see(jobs) first (plan_table does)"
            )
        n = sum(self.facts.story_rows(s) for s in train)
        if "n" in job.wildcards:  # a data-size fit: n of the training stories
            n = round(n * int(job.wildcards["n"]) / len(train))
        n_test = max(1, self.facts.story_rows(test) - enc["test_extra_trim"])
        voxels = {subject: self.facts.n_voxels(subject, files) for subject, files in raw.items()}
        v = sum(voxels.values())
        model = self.facts.model(job.wildcards["model"])
        p = len(enc["delays"]) * model.hidden_size
        n_folds = enc["n_folds"] if enc["cv"] == "stories" else enc["bootstrap"]["n_boots"]
        m = n // 5 if enc["cv"] == "bootstrap" else n // n_folds  # bootstrap holds out a fifth
        flops = cost.ridge_flops(
            n, p, v, n_test, [(n - m, m)] * n_folds, enc["alphas"]["num"], enc["solver"]
        )
        read = 4.0 * (n + n_test) * v  # the prepared float32 responses
        read += 4.0 * (n + n_test) * model.hidden_size  # one layer's features
        seconds = flops.gemm / device.gemm + flops.eigh / device.eigh + read / device.read
        disk = 4.0 * v * SCORE_ARRAYS + 2e3 * len(voxels)
        if enc["save_weights"]:
            disk += 4.0 * p * v
        if enc["save_predictions"]:
            disk += 4.0 * v * (2 * n_test + n)
        return seconds, disk

    def _extract(self, job: PlannedJob, device: cost.Device) -> tuple[float, float]:
        from .features.audio import window_bounds
        from .features.context import window_schedule

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
    model.see(jobs)
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
