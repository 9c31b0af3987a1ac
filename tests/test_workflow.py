"""The workflow through the Snakemake CLI: the demo end to end in a temporary directory, the real
study's plan without network, reruns, and config errors at start."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
WORKFLOW_PARTS = ("Snakefile", "rules", "config", "workflow_scripts", "envs")

pytestmark = pytest.mark.slow


def _copy_workflow(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for part in WORKFLOW_PARTS:
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, dest / part)
        else:
            shutil.copy2(src, dest / part)
    return dest


def _planned_jobs(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table of a dry run."""
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    counts = {}
    for line in table.splitlines()[3:]:
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            counts[parts[0]] = int(parts[1])
    return counts


def _snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", MPLBACKEND="Agg")
    cmd = [SNAKEMAKE, "--cores", "2", "--workflow-profile", "config/profiles/default", *args]
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-5000:]}\n"
            f"{proc.stderr[-10000:]}"
        )
    return proc


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """The demo, run once for this module exactly as `make demo` runs it."""
    workdir = _copy_workflow(tmp_path_factory.mktemp("demo"))
    _snakemake(workdir)
    return workdir


def test_demo_makes_every_final_target(demo):
    tables = demo / "results" / "tables" / "demo"
    figures = demo / "results" / "figures" / "demo"
    for name in ("encoding", "best_layers", "scaling"):
        assert (tables / f"{name}.csv").is_file()
        assert (tables / f"{name}.md").is_file()
    for name in ("model_size_scaling", "data_scaling", "layer_profiles"):
        for fmt in ("png", "pdf"):
            assert (figures / f"{name}.{fmt}").stat().st_size > 1000
    for subject in ("UTS01", "UTS02"):
        png = figures / f"{subject}_best_model_map.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_table_has_one_row_per_fit(demo):
    table = pd.read_csv(demo / "results" / "tables" / "demo" / "encoding.csv")
    layers = {"tiny-opt-xs": 3, "tiny-opt-s": 4, "tiny-opt-m": 5, "tiny-hubert": 3,
              "tiny-whisper": 3}  # fmt: skip
    full = table[table["full_train"]]
    assert len(full) == 2 * sum(layers.values())
    assert full.groupby("model")["layer"].nunique().to_dict() == layers
    sub = table[~table["full_train"]]
    # 4 log-spaced story counts from 2 to 12 (12 itself is the full fit), 3 seeds, 2 subjects
    expected = np.rint(np.geomspace(2, 12, 4)).astype(int)[:-1].tolist()
    assert sorted(sub["n_train_stories"].unique()) == expected == [2, 4, 7]
    assert len(sub) == 2 * 3 * 3
    assert (sub["layer"] == 2).all() and (sub["model"] == "tiny-opt-m").all()
    assert np.isfinite(table["mean_r"]).all()
    assert (table["n_voxels"] == 300).all()
    assert set(table["backend"]) <= {"numpy", "torch"}
    # the n_params of the tiny models come from their snapshots and grow with the preset
    sizes = full.groupby("model")["n_params"].first()
    assert sizes["tiny-opt-xs"] < sizes["tiny-opt-s"] < sizes["tiny-opt-m"]


def test_demo_features_match_response_rows(demo):
    respdict = json.loads((demo / "results/data/demo/derivative/respdict.json").read_text())
    for model, n_layers in (("tiny-opt-m", 4), ("tiny-whisper", 2)):
        folder = demo / "results" / "features" / "demo" / model
        assert sorted(p.name for p in folder.glob("layer-*.h5")) == sorted(
            f"layer-{i}.h5" for i in range(n_layers + 1)
        )
        with h5py.File(folder / "layer-1.h5", "r") as f:
            assert set(f) == set(respdict)
            for story, n in respdict.items():
                assert f[story].shape[0] == n - 20
                assert f[story].dtype == np.float32
        record = json.loads((folder / "provenance.json").read_text())
        assert record["params"]["model_name"] == model


def test_demo_recovers_known_signal(demo):
    """Voxels the ground truth says are predictable are predicted better than null voxels."""
    truth = np.load(demo / "results/data/demo/ground_truth/UTS01.npz", allow_pickle=False)
    ceiling = np.load(demo / "results/noise_ceiling/demo/UTS01.npz", allow_pickle=False)
    # estimated CC_max follows the analytic one
    valid = ceiling["valid"]
    est = ceiling["cc_max"][valid]
    assert np.corrcoef(est, truth["cc_max"][valid])[0, 1] > 0.8
    scores = np.load(
        demo / "results/encoding/demo/UTS01/tiny-opt-m/layer-2/scores.npz", allow_pickle=False
    )
    r = scores["test_r"]
    snr = truth["cc_max"]
    high, low = r[snr > np.quantile(snr, 0.75)], r[snr < np.quantile(snr, 0.25)]
    assert high.mean() > low.mean() + 0.05


def test_demo_is_complete_and_a_deleted_target_is_rebuilt_alone(demo):
    dry = _snakemake(demo, "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr
    target = demo / "results/encoding/demo/UTS02/tiny-opt-s/layer-1/scores.npz"
    other = demo / "results/encoding/demo/UTS01/tiny-opt-s/layer-1/scores.npz"
    before, other_before = np.load(target)["test_r"], np.load(other)["test_r"]
    target.unlink()
    rel = str(target.relative_to(demo))
    jobs = _planned_jobs(_snakemake(demo, rel, "-n", "--quiet", "rules"))
    assert jobs == {"fit_encoding": 1}
    _snakemake(demo, rel)
    np.testing.assert_allclose(np.load(target)["test_r"], before, rtol=1e-5, atol=1e-6)
    # the job fits both subjects (they share their training stories) and rewrites UTS01's too
    np.testing.assert_array_equal(np.load(other)["test_r"], other_before)
    summary = json.loads(target.with_suffix(".json").read_text())
    assert summary["shared_with"] == ["UTS01"]


def test_changed_param_reruns_exactly_the_affected_jobs(demo, tmp_path):
    overlay = tmp_path / "delays.yaml"
    overlay.write_text("encoding:\n  delays: [1, 2, 3]\n")
    jobs = _planned_jobs(_snakemake(demo, "-n", "--configfile", str(overlay)))
    # every fit and what is drawn from the fits; nothing upstream of the design matrices. One
    # job per (model, layer[, subset]) fits both subjects: they share their training stories
    assert jobs["fit_encoding"] == 18
    assert jobs["fit_encoding_subset"] == 3 * 3
    assert set(jobs) == {
        "fit_encoding",
        "fit_encoding_subset",
        "encoding_table",
        "scaling_figures",
        "brain_map",
        "all",
    }


@pytest.fixture
def demo_copy(demo, tmp_path) -> Path:
    """A copy of the finished demo (modification times kept) that a test may change."""
    return Path(shutil.copytree(demo, tmp_path / "demo", symlinks=True))


def test_changed_trim_or_raw_file_rebuilds_the_prepared_responses(demo_copy, tmp_path):
    overlay = tmp_path / "trim.yaml"
    overlay.write_text("encoding:\n  test_extra_trim: 30\n")
    jobs = _planned_jobs(_snakemake(demo_copy, "-n", "--configfile", str(overlay)))
    assert jobs["prepare_responses"] == 2 and jobs["noise_ceiling"] == 2
    assert jobs["fit_encoding"] == 18 and jobs["fit_encoding_subset"] == 9
    # (earlier tests may have left the table outdated: compare plans, not "nothing to do")
    planned = _planned_jobs(_snakemake(demo_copy, "-n"))
    raw = demo_copy / "results/data/demo/derivative/preprocessed_data/UTS02/synthstory03.hf5"
    os.utime(raw)  # touched, same bytes: Snakemake 9 compares input checksums, so does the fit
    assert _planned_jobs(_snakemake(demo_copy, "-n")) == planned
    with h5py.File(raw, "r+") as f:  # a changed raw file
        f["data"][0, 0] += 1.0
    jobs = _planned_jobs(_snakemake(demo_copy, "-n"))
    # that subject's prepared responses, then every fit of its group; no ceiling, no features
    assert jobs["prepare_responses"] == 1
    assert jobs["fit_encoding"] == 18 and jobs["fit_encoding_subset"] == 9
    assert "noise_ceiling" not in jobs and "extract_text_features" not in jobs


def test_corrupt_prepared_responses_are_refused_then_rebuilt(demo_copy):
    planned = _planned_jobs(_snakemake(demo_copy, "-n"))
    prepared = demo_copy / "results/responses/demo/UTS01.h5"
    stat = prepared.stat()
    with h5py.File(prepared, "r") as f:
        offset = f["stories"]["synthstory02"].id.get_chunk_info(0).byte_offset
    with open(prepared, "r+b") as f:  # one damaged byte; size and mtime as they were
        f.seek(offset + 8)
        byte = f.read(1)
        f.seek(offset + 8)
        f.write(bytes([byte[0] ^ 0x55]))
    os.utime(prepared, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert _planned_jobs(_snakemake(demo_copy, "-n")) == planned  # Snakemake cannot tell
    target = demo_copy / "results/encoding/demo/UTS01/tiny-opt-xs/layer-0/scores.npz"
    before = np.load(target)["test_r"]
    target.unlink()
    rel = str(target.relative_to(demo_copy))
    failed = _snakemake(demo_copy, rel, check=False)
    assert failed.returncode != 0
    log = demo_copy / "results/logs/fit_encoding/demo/UTS01+UTS02/tiny-opt-xs/layer-0.log"
    assert "the file is corrupt" in log.read_text() and "has been removed" in log.read_text()
    assert not prepared.exists()
    jobs = _planned_jobs(_snakemake(demo_copy, rel, "-n", "--quiet", "rules"))
    assert jobs == {"prepare_responses": 1, "fit_encoding": 1}
    _snakemake(demo_copy, rel)
    np.testing.assert_array_equal(np.load(target)["test_r"], before)


def test_provenance_beside_scores(demo):
    scores = demo / "results/encoding/demo/UTS01/tiny-opt-xs/layer-0/scores.npz"
    record = json.loads(scores.with_name("scores.npz.provenance.json").read_text())
    assert record["params"]["delays"] == [1, 2, 3, 4]
    assert len(record["config_hash"]) == 16
    assert record["versions"]["himalaya"]


def test_unknown_config_key_fails_at_start_naming_it(tmp_path):
    workdir = _copy_workflow(tmp_path / "wf")
    overlay = tmp_path / "bad.yaml"
    overlay.write_text("encoding:\n  delayz: [1, 2]\n")
    proc = _snakemake(workdir, "-n", "--configfile", str(overlay), check=False)
    assert proc.returncode != 0
    assert "unknown config key(s) 'delayz' under 'encoding'" in proc.stdout + proc.stderr


def _imported_modules(proc: subprocess.CompletedProcess) -> set[str]:
    """Every module a process imported, from the table of ``PYTHONPROFILEIMPORTTIME=1``."""
    # rows look like "import time:  self [us] |  cumulative |   package.module"
    rows = [line for line in proc.stderr.splitlines() if line.startswith("import time:")]
    return {row.rsplit("|", 1)[1].strip() for row in rows[1:]}


@pytest.mark.parametrize(
    ("configfile", "demo_dataset"),
    [("config/lebel2023.yaml", False), ("config/config.yaml", True)],
)
def test_parsing_the_workflow_never_imports_the_demo_generator(
    tmp_path, monkeypatch, configfile, demo_dataset
):
    """The real study's plan needs nothing from fmriscaling.demo; the demo's plan, only the names."""
    workdir = _copy_workflow(tmp_path / "wf")
    # Python logs every first import of the snakemake process (rules and input functions too)
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")
    imported = _imported_modules(_snakemake(workdir, "-n", "--configfile", configfile))
    # the log is live: it saw the workflow's own imports
    assert {"fmriscaling.config", "fmriscaling.encoding.subsample"} <= imported
    assert "fmriscaling.demo.synthetic" not in imported
    assert "fmriscaling.demo.stories" not in imported
    assert ("fmriscaling.demo.names" in imported) is demo_dataset


def test_real_study_plans_downloads_and_timing_offline(tmp_path):
    workdir = _copy_workflow(tmp_path / "wf")
    targets = [
        "download_dataset",
        "results/stimuli/lebel2023/souls.trs.tsv",
        "results/stimuli/lebel2023/wheretheressmoke.words.tsv",
    ]
    proc = _snakemake(
        workdir, *targets, "-n", "--configfile", "config/lebel2023.yaml", "--quiet", "rules"
    )
    jobs = _planned_jobs(proc)
    assert jobs["story_timing"] == 2
    # UTS01-03: respdict, TextGrids and wavs of every story, responses, pycortex masks
    assert jobs["download_ds003020_file"] > 400
    proc = _snakemake(
        workdir, "-n", "--configfile", "config/lebel2023.yaml", "-p",
        "results/data/lebel2023/derivative/preprocessed_data/UTS03/souls.hf5",
    )  # fmt: skip
    plan = proc.stdout + proc.stderr
    assert "results/data/lebel2023/derivative/preprocessed_data/UTS03/souls.hf5" in plan
    assert "download_ds003020_file" in plan


def test_real_study_fits_each_layer_once_for_the_three_subjects(tmp_path):
    """UTS01-03 share their 84 training stories: one fit job per (model, layer) serves all three,
    from their prepared responses; asking for one subject's scores plans that job."""
    import yaml

    from fmriscaling.config import model_layers

    workdir = _copy_workflow(tmp_path / "wf")
    real = yaml.safe_load((ROOT / "config/lebel2023.yaml").read_text())
    n_layers = sum(len(model_layers(real["models"][m])) for m in real["run_models"])
    lebel = ("--configfile", "config/lebel2023.yaml", "--quiet", "rules")
    jobs = _planned_jobs(_snakemake(workdir, "-n", *lebel))
    assert jobs["prepare_responses"] == 3
    assert jobs["fit_encoding"] == n_layers == 660
    assert jobs["fit_encoding_subset"] == 7 * 5  # story counts below all 84, 5 seeds
    target = "results/encoding/lebel2023/UTS02/opt-125m/layer-9/scores.npz"
    jobs = _planned_jobs(_snakemake(workdir, "-n", target, *lebel))
    assert jobs["prepare_responses"] == 3 and jobs["fit_encoding"] == 1
