"""The memory and GPUs of an extraction job (fmriscaling.sizing), the Study's pre-run check,
and the plan's GPU-hours x GPUs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from fmriscaling import sizing
from fmriscaling._utils import ConfigError
from fmriscaling.plan import CostModel, format_sizing, plan_table
from fmriscaling.sizing import check_extraction, extraction_sizing
from fmriscaling.workflow import Study, StudyFacts, load_config

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "config/config.yaml"
LEBEL = ROOT / "config/lebel2023.yaml"

FEATURES = {
    "dtype": "auto",
    "text": {"max_words": 512, "reset_words": 256, "batch_size": 8},
    "speech": {"window_s": 16.1, "stride_s": 0.1, "batch_size": 16},
}
COMPUTE = {"gpu": True, "gpu_mem_gb": 80, "max_gpus_per_job": 8, "extract_mem_mb": 160000}


def _llm(n_params: float, n_layers: int, hidden: int | None) -> dict:
    return {
        "kind": "text",
        "n_params": n_params,
        "n_layers": n_layers,
        "hidden_size": hidden,
        "source": {"hub": "x/y", "revision": "main"},
    }


def _expected_bytes(n_params, n_layers, hidden, nbytes, batch=8, max_words=512):
    """The module docstring's formula, written out independently."""
    tokens = math.ceil(max_words * 1.5) + 1
    heads = hidden // 128
    hidden_states = batch * tokens * hidden * (n_layers + 1) * nbytes
    working = batch * tokens * hidden * 6 * nbytes + batch * heads * tokens**2 * nbytes
    return n_params * nbytes, hidden_states + working


def test_weights_and_activations_follow_the_documented_formula():
    s = extraction_sizing("llama-2-70b", _llm(69e9, 80, 8192), FEATURES, COMPUTE)
    weights, activations = _expected_bytes(69e9, 80, 8192, 2)
    assert s.weights_bytes == pytest.approx(weights)  # 138 GB in bfloat16
    assert s.weights_bytes == pytest.approx(138e9)
    assert s.activation_bytes == pytest.approx(activations)
    # 147.7 GB over 72 GB usable per 80 GB GPU: three GPUs, not two
    assert s.n_gpus == math.ceil((weights + activations) / 72e9) == 3


@pytest.mark.parametrize(
    ("n_params", "n_layers", "hidden", "dtype", "gpu_mem_gb", "n_gpus"),
    [
        (125e6, 12, 768, "auto", 80, 1),
        (6.7e9, 32, 4096, "auto", 80, 1),
        (30e9, 48, 7168, "auto", 80, 1),  # 60 GB + 5 GB of activations < 72 GB
        (66e9, 64, 9216, "auto", 80, 2),
        (66e9, 64, 9216, "float32", 80, 4),  # twice the bytes: 264 GB + 17 GB
        (66e9, 64, 9216, "auto", 40, 4),  # half the GPU: 36 GB usable each
        (72.7e9, 80, 8192, "bfloat16", 80, 3),  # Qwen2.5-72B
    ],
)
def test_gpus_follow_size_dtype_and_gpu_memory(
    n_params, n_layers, hidden, dtype, gpu_mem_gb, n_gpus
):
    features = {**FEATURES, "dtype": dtype}
    compute = {**COMPUTE, "gpu_mem_gb": gpu_mem_gb}
    s = extraction_sizing("m", _llm(n_params, n_layers, hidden), features, compute)
    weights, activations = _expected_bytes(n_params, n_layers, hidden, s.bytes_per_value)
    assert s.bytes_per_value == (4 if dtype == "float32" else 2)
    assert s.n_gpus == n_gpus == math.ceil((weights + activations) / (0.9 * gpu_mem_gb * 1e9))


def test_a_bigger_batch_or_context_needs_more_activation_memory():
    base = extraction_sizing("m", _llm(7e9, 32, 4096), FEATURES, COMPUTE)
    wide = {**FEATURES, "text": {**FEATURES["text"], "batch_size": 16}}
    long = {**FEATURES, "text": {**FEATURES["text"], "max_words": 1024}}
    assert extraction_sizing("m", _llm(7e9, 32, 4096), wide, COMPUTE).activation_bytes == (
        pytest.approx(2 * base.activation_bytes)
    )
    assert extraction_sizing("m", _llm(7e9, 32, 4096), long, COMPUTE).activation_bytes > (
        2 * base.activation_bytes  # the attention scores grow with the square
    )


def test_a_model_without_a_hidden_size_gets_the_scaling_estimate_and_one_without_n_params_none():
    s = extraction_sizing("m", _llm(12 * 32 * 4096**2, 32, None), FEATURES, COMPUTE)
    assert s.estimated_hidden and s.hidden_size == 4096
    assert extraction_sizing("tiny", _llm(None, 2, 16), FEATURES, COMPUTE) is None
    check_extraction(None, COMPUTE)  # not sized: nothing to refuse


def test_a_model_too_big_for_the_largest_job_is_refused_with_what_it_needs_and_the_fix():
    s = extraction_sizing("llama-2-70b", _llm(69e9, 80, 8192), FEATURES, COMPUTE)
    with pytest.raises(ConfigError) as err:
        check_extraction(s, {**COMPUTE, "max_gpus_per_job": 2})
    text = str(err.value)
    need = sum(_expected_bytes(69e9, 80, 8192, 2)) / 1e9
    assert "'llama-2-70b'" in text and f"~{need:.0f} GB" in text and "138 GB of weights" in text
    assert "features.dtype: bfloat16" not in text  # it is already 2 bytes a value
    assert "3 GPUs of 80 GB" in text and "compute.max_gpus_per_job = 2" in text
    assert "Fix: raise compute.max_gpus_per_job" in text
    check_extraction(s, {**COMPUTE, "max_gpus_per_job": 3})  # three are allowed: no error


def test_the_same_check_guards_a_cpu_run_against_the_job_s_host_memory():
    cpu = {**COMPUTE, "gpu": False}
    s = extraction_sizing("opt-66b", _llm(66e9, 64, 9216), FEATURES, cpu)
    # float32 on a CPU: 264 GB of weights live on the host
    assert s.n_gpus == 0 and s.bytes_per_value == 4
    weights, activations = _expected_bytes(66e9, 64, 9216, 4)
    story = 2 * 4 * 3000 * 9216 * 65  # a story's float32 features, twice
    assert s.host_bytes == pytest.approx(2e9 + story + weights + activations)
    with pytest.raises(ConfigError) as err:
        check_extraction(s, cpu)
    text = str(err.value)
    assert "'opt-66b'" in text and "compute.extract_mem_mb = 160,000 MB" in text
    assert "compute.gpu: true" in text and f"at least {math.ceil(s.host_bytes / 1e6):,}" in text
    small = extraction_sizing("opt-125m", _llm(125e6, 12, 768), FEATURES, cpu)
    check_extraction(small, cpu)  # 0.5 GB of weights: fits


# ------------------------------------------------------------------ the Study and the plan


def test_the_real_study_sizes_every_extraction_job_and_the_plan_prints_the_gpus():
    study = Study(load_config([DEMO, LEBEL]), ROOT, check_data=False)
    gpus = {job.wildcards["model"]: job.n_gpus for job in study.jobs() if "extract" in job.rule}
    assert set(gpus) == set(study.run_models)
    for model, n in gpus.items():
        sized = study.extraction_sizing(model)
        assert n == sized.n_gpus == study.extract_gpus(model) >= 1
    assert gpus["opt-125m"] == 1 and gpus["opt-66b"] >= 2 and gpus["llama-2-70b"] >= 2
    text = format_sizing(study)
    for model in study.run_models:
        assert model in text
    row = next(line for line in text.splitlines() if line.startswith("llama-2-70b"))
    assert row.split()[-1] == str(gpus["llama-2-70b"])


def test_gpu_hours_count_every_gpu_a_job_holds():
    study = Study(load_config([DEMO, LEBEL]), ROOT, check_data=False)
    model = CostModel(study, StudyFacts(study.config, ROOT))
    jobs = [j for j in study.jobs() if j.rule == "extract_text_features"]
    big = next(j for j in jobs if j.wildcards["model"] == "llama-2-70b")
    priced = model(big)
    assert priced.n_gpus == big.n_gpus >= 2
    assert priced.gpu_seconds == pytest.approx(priced.seconds * big.n_gpus)
    (row,) = plan_table(jobs, model)
    assert row.max_gpus == max(j.n_gpus for j in jobs)
    assert row.gpu_seconds == pytest.approx(sum(model(j).seconds * j.n_gpus for j in jobs))
    assert row.gpu_seconds > row.seconds


def test_the_study_refuses_a_model_too_big_before_any_job_and_cpu_demos_ask_for_no_gpu():
    config = load_config([DEMO, LEBEL])
    config["compute"]["max_gpus_per_job"] = 1
    with pytest.raises(ConfigError, match=r"'opt-66b' needs .* compute.max_gpus_per_job = 1"):
        Study(config, ROOT, check_data=False)
    demo = Study(load_config([DEMO]), ROOT)
    assert all(demo.extract_gpus(m) == 0 for m in demo.run_models)
    assert all(demo.extraction_sizing(m) is None for m in demo.run_models)  # tiny: not sized


def test_usable_memory_leaves_the_documented_reserve():
    assert sizing.usable_gpu_bytes(80) == pytest.approx(72e9)
    assert sizing.dtype_bytes("auto", on_gpu=True) == 2
    assert sizing.dtype_bytes("auto", on_gpu=False) == 4
    with pytest.raises(ValueError, match="float64"):
        sizing.dtype_bytes("float64", on_gpu=True)


def _extraction_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "extract_features_script", ROOT / "workflow_scripts/extract_features.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_job_uses_the_gpus_its_model_needs_not_the_run_s_capped_count():
    """Snakemake caps a local job's gpu at the run's (the default profile: one GPU job at a
    time): the job reads the uncapped count (resource model_gpus) and its GPUs' memory."""
    from types import SimpleNamespace

    from snakemake.iocontainers import Namedlist

    script = _extraction_script()

    def job(gpu, model_gpus):
        return SimpleNamespace(resources=Namedlist(fromdict={"gpu": gpu, "model_gpus": model_gpus}))

    assert script._gpus(job(1, 3)) == 3  # capped at one by the run: still three
    assert script._gpus(job(3, 3)) == 3
    assert script._gpus(job(0, 0)) == 1  # a CPU run: one device
