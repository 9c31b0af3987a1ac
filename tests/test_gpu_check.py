"""benchmarks/gpu_check.sh, dry-run on the CPU: every step runs shrunk and writes its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_check_dry_run_writes_every_step_s_json(tmp_path):
    out = tmp_path / "gpu_check"
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", str(out), "--dry-run"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dry_run"] is True
    steps = {s["step"]: s for s in summary["steps"]}
    assert list(steps) == ["env", "gpu_tests", "ridge", "permutation", "extract_7b"]
    failed = {name: (out / f"{name}.log").read_text()[-2000:]
              for name, s in steps.items() if s["status"] != "ok"}  # fmt: skip
    assert not failed
    assert json.loads((out / "env.json").read_text())["dry_run"] is True
    # the shrunk sizes, not the H100's
    ridge = json.loads((out / "ridge.json").read_text())
    assert ridge["size"]["n_train"] == 600 and "ours_story_folds_bfloat16" in ridge
    assert json.loads((out / "permutation.json").read_text())["n_voxels"] == 5000
    extract = json.loads((out / "extract_7b.json").read_text())
    assert extract["shape"] == "tiny" and extract["device"] == "cpu"
    # the offloaded half of the blocks gives the one-device features
    assert extract["offload_to"] == "disk" and extract["offload_layers"] == 2
    assert extract["offload_max_abs_diff"] < 1e-4 * extract["offload_max_abs_feature"]
    assert extract["sizing_weights_bytes"] == pytest.approx(4 * extract["n_params"])
    # the GPU tests ran as a suite and were skipped here (no CUDA device), not missing
    assert 'skipped="' in (out / "gpu_tests.xml").read_text()
    # one budget for all steps: once it is spent, the remaining steps are recorded as skipped
    small = tmp_path / "small"
    subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", str(small), "--dry-run"], cwd=ROOT,
        env=dict(env, GPU_CHECK_BUDGET="6"), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    statuses = [s["status"] for s in json.loads((small / "summary.json").read_text())["steps"]]
    assert statuses[-2:] == ["skipped", "skipped"]
    # an unknown option is refused before anything runs
    bad = subprocess.run(["bash", "benchmarks/gpu_check.sh", str(tmp_path / "x"), "--fast"],
                         cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2 and "expected --dry-run" in bad.stderr
    assert not (tmp_path / "x").exists()
