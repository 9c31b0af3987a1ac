"""Config schema: defaults, errors that name the key, and the shipped configs are valid."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml
from snakemake.utils import update_config

from fmriscaling import ConfigError
from fmriscaling.config import load_schema, model_layers, validate_config

ROOT = Path(__file__).resolve().parent.parent


def _demo() -> dict:
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def _lebel() -> dict:
    config = _demo()
    update_config(config, yaml.safe_load((ROOT / "config" / "lebel2023.yaml").read_text()))
    return config


def test_demo_config_is_valid_and_gets_defaults():
    config = validate_config(_demo())
    assert config["dataset"]["source"] == "synthetic"
    assert config["download"]["base_url"].startswith("https://")
    assert config["encoding"]["bootstrap"] == {"n_boots": 15, "chunk_len": 40, "n_chunks": None}


def test_lebel_overlay_replaces_models_and_subsampling():
    config = validate_config(_lebel())
    assert config["dataset"]["subjects"] == ["UTS01", "UTS02", "UTS03"]
    assert not any(m.startswith("tiny") for m in config["run_models"])
    assert config["subsampling"]["fits"] == [{"model": "opt-125m", "layers": [9]}]
    assert config["models"]["opt-30b"]["n_params"] == 30_000_000_000


def test_lebel_alpha_grid_is_the_companion_grid_squared():
    a = validate_config(_lebel())["encoding"]["alphas"]
    ours = np.logspace(a["log10_min"], a["log10_max"], a["num"])
    np.testing.assert_allclose(ours, np.logspace(1, 4, 15) ** 2)


def test_every_schema_key_is_described():
    missing = []

    def walk(node, where):
        for key, sub in node.get("properties", {}).items():
            if "description" not in sub:
                missing.append(f"{where}.{key}")
            walk(sub, f"{where}.{key}")
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], f"{where}.*")
        for alternative in node.get("oneOf", []):
            walk(alternative, where)
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{where}[]")

    walk(load_schema(), "config")
    assert missing == []


def test_unknown_key_is_named():
    config = _demo()
    config["encoding"]["delayz"] = [1, 2]
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) 'delayz' under 'encoding'"):
        validate_config(config)


def test_unknown_top_level_key_is_named():
    config = _demo()
    config["encodng"] = {}
    with pytest.raises(ConfigError, match="'encodng' at the top level"):
        validate_config(config)


def test_wrong_enum_value_names_key_and_allowed_values():
    config = _demo()
    config["encoding"]["backend"] = "tpu"
    with pytest.raises(ConfigError, match=r"'encoding.backend' is 'tpu'; allowed values: 'auto'"):
        validate_config(config)


def test_wrong_type_names_key():
    config = _demo()
    config["encoding"]["n_folds"] = "five"
    with pytest.raises(ConfigError, match=r"config key .encoding\.n_folds."):
        validate_config(config)


def test_model_kind_must_be_known():
    config = _demo()
    config["models"]["tiny-opt-xs"]["kind"] = "vision"
    with pytest.raises(ConfigError, match=r"models\.tiny-opt-xs\.kind"):
        validate_config(config)


def test_run_models_must_be_declared():
    config = _demo()
    config["run_models"] = ["tiny-opt-xs", "gpt-5"]
    with pytest.raises(ConfigError, match=r"'run_models' names \['gpt-5'\]"):
        validate_config(config)


def test_layers_beyond_model_depth_rejected():
    config = _demo()
    config["models"]["tiny-opt-xs"]["layers"] = [0, 7]
    with pytest.raises(ConfigError, match=r"models.tiny-opt-xs.layers' lists \[7\]"):
        validate_config(config)


def test_subsampling_model_must_run():
    config = _demo()
    config["subsampling"]["fits"] = [{"model": "tiny-opt-xs", "layers": [9]}]
    with pytest.raises(ConfigError, match=r"subsampling.fits\[0\].layers' lists \[9\]"):
        validate_config(config)


def test_reset_must_be_below_max_words():
    config = _demo()
    config["features"]["text"] = {"max_words": 256, "reset_words": 256}
    with pytest.raises(ConfigError, match=r"reset_words"):
        validate_config(config)


def test_himalaya_solver_impl_refuses_save_predictions():
    config = _demo()
    config.setdefault("encoding", {}).update(solver_impl="himalaya", save_predictions=True)
    with pytest.raises(
        ConfigError, match=r"'encoding.solver_impl' is 'himalaya'.*save_predictions"
    ):
        validate_config(config)
    config["encoding"]["save_predictions"] = False
    assert validate_config(config)["encoding"]["solver_impl"] == "himalaya"


def test_validation_does_not_mutate_input():
    config = _demo()
    before = copy.deepcopy(config)
    validate_config(config)
    assert config == before


def test_model_layers():
    assert model_layers({"n_layers": 3, "layers": "all"}) == [0, 1, 2, 3]
    assert model_layers({"n_layers": 12, "layers": [9, 3, 9]}) == [3, 9]


def _schema_default(schema: dict, key: str):
    node = schema
    for part in key.split("."):
        node = node["properties"][part]
    return node["default"]


def _library_defaults():
    """(config key, function, parameter) of every library parameter that a config key sets."""
    from fmriscaling.demo.synthetic import generate_dataset
    from fmriscaling.download.http import download_file
    from fmriscaling.encoding.fit import EncodingSettings
    from fmriscaling.encoding.noise_ceiling import compute_noise_ceiling_file
    from fmriscaling.encoding.ridge import fit_ridge_cv
    from fmriscaling.features.extract import extract_model
    from fmriscaling.features.lm import extract_text_model
    from fmriscaling.features.speech import extract_speech_model
    from fmriscaling.stimuli import story_tables

    pairs = [
        # the settings of fit_encoding and fit_encoding_subjects (the rules' function)
        (EncodingSettings, {
            "encoding.delays": "delays", "encoding.cv": "cv", "encoding.n_folds": "n_folds",
            "encoding.test_extra_trim": "extra_trim_test", "encoding.backend": "backend",
            "encoding.solver": "solver", "encoding.solver_impl": "solver_impl",
            "encoding.score_dtype": "score_dtype", "encoding.save_weights": "save_weights",
            "encoding.save_predictions": "save_predictions", "encoding.seed": "seed",
        }),
        (fit_ridge_cv, {
            "encoding.backend": "backend", "encoding.solver": "solver",
            "encoding.solver_impl": "solver_impl", "encoding.score_dtype": "score_dtype",
        }),
        (story_tables, {
            "stimuli.tr": "tr", "stimuli.sound_onset": "sound_onset",
            "stimuli.fillers": "fillers", "stimuli.keep_empty_words": "keep_empty",
            "stimuli.trim_start": "trim_start", "stimuli.trim_end": "trim_end",
        }),
        # the floor is the workflow's choice (the paper's 0.25); the library's default is none
        (compute_noise_ceiling_file, {"encoding.test_extra_trim": "extra_trim"}),
        (download_file, {"download.retries": "retries", "download.timeout_s": "timeout"}),
        (extract_text_model, {
            "features.text.max_words": "max_words", "features.text.reset_words": "reset_words",
            "features.text.batch_size": "batch_size", "features.device": "device",
            "features.dtype": "dtype",
        }),
        (extract_speech_model, {
            "features.speech.window_s": "window_s", "features.speech.stride_s": "stride_s",
            "features.speech.batch_size": "batch_size", "features.device": "device",
            "features.dtype": "dtype",
        }),
        (extract_model, {
            "features.lanczos.window": "lanczos_window",
            "features.lanczos.normalize": "lanczos_normalize",
        }),
        (generate_dataset, {
            f"synthetic.{key}": key
            for key in ("seed", "n_train_stories", "n_repeats", "n_voxels", "n_latent",
                        "story_n_trs", "test_n_trs")
        }),
    ]  # fmt: skip
    return [(key, fn, param) for fn, mapping in pairs for key, param in mapping.items()]


@pytest.mark.parametrize(
    ("key", "function", "param"),
    _library_defaults(),
    ids=lambda v: v if isinstance(v, str) else getattr(v, "__name__", ""),
)
def test_a_config_key_and_the_library_parameter_it_sets_share_one_default(key, function, param):
    import inspect

    library = inspect.signature(function).parameters[param].default
    schema = _schema_default(load_schema(), key)
    if isinstance(library, tuple):
        library = list(library)
    assert library == schema, (
        f"{function.__name__}({param}={library!r}) but the schema's {key} defaults to {schema!r}"
    )
