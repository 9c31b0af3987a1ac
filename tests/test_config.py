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


def test_lebel_registry_gives_every_text_model_its_width_and_the_newer_families():
    models = validate_config(_lebel())["models"]
    # the hub models (the demo's tiny ones stay declared under the overlay)
    hub = {name: spec for name, spec in models.items() if "hub" in spec["source"]}
    text = {name: spec for name, spec in hub.items() if spec["kind"] == "text"}
    assert all(spec["hidden_size"] for spec in text.values())
    opt = [768, 1024, 2048, 2560, 4096, 5120, 7168, 9216]
    assert [spec["hidden_size"] for spec in text.values() if spec["family"] == "OPT"] == opt
    families = {}
    for spec in text.values():
        families.setdefault(spec["family"], []).append((spec["n_layers"], spec["hidden_size"]))
    # (n_layers, hidden_size) of the published configs, in size order
    qwen = [(24, 896), (28, 1536), (36, 2048), (28, 3584), (48, 5120), (64, 5120), (80, 8192)]
    assert families["Qwen2.5"] == qwen
    assert families["Llama-3"] == [(16, 2048), (28, 3072), (32, 4096), (80, 8192)]
    for family, gated in (("Qwen2.5", False), ("Llama-3", True), ("LLaMA-2", True)):
        specs = [spec for spec in text.values() if spec["family"] == family]
        sizes = [spec["n_params"] for spec in specs]
        assert sizes == sorted(sizes), family
        assert all(spec["source"].get("gated", False) == gated for spec in specs), family
        assert all(spec["window_start"] == "auto" for spec in specs)
    # the newer families are declared, not run by default
    run = validate_config(_lebel())["run_models"]
    assert not any(m.startswith(("qwen", "llama-3")) for m in run)


@pytest.mark.parametrize(("overlay", "family"), [("qwen2.5", "Qwen2.5"), ("llama-3", "Llama-3")])
def test_family_overlay_runs_the_whole_family_with_the_studys_analyses(overlay, family):
    config = _lebel()
    path = ROOT / "config" / "families" / f"{overlay}.yaml"
    update_config(config, yaml.safe_load(path.read_text()))
    config = validate_config(config)
    models = config["models"]
    members = [m for m, spec in models.items() if spec["family"] == family]
    assert config["run_models"] == [*members, "whisper-medium"]
    # the stack, the partition and the data-size curve name run models of the family
    used = {m["model"] for stack in config["stacks"] for m in stack["members"]}
    used |= {b["model"] for part in config["partitions"] for b in part["bands"]}
    used |= {fit["model"] for fit in config["subsampling"]["fits"]}
    assert used <= set(config["run_models"]) and used & set(members)
    # the data-size fit's layer sits at the paper's relative depth (OPT-125M: layer 9 of 12)
    fit = config["subsampling"]["fits"][0]
    assert fit["layers"] == [models[fit["model"]]["n_layers"] * 3 // 4]


def test_window_start_default_is_the_librarys():
    import inspect

    from fmriscaling.features.lm import extract_text_model, load_causal_lm

    spec = load_schema()["properties"]["models"]["additionalProperties"]["properties"]
    default = spec["window_start"]["default"]
    for function in (extract_text_model, load_causal_lm):
        assert inspect.signature(function).parameters["window_start"].default == default


def test_window_start_takes_a_policy_or_a_token_id():
    config = _demo()
    config["models"]["tiny-opt-xs"]["window_start"] = 2
    assert validate_config(config)["models"]["tiny-opt-xs"]["window_start"] == 2
    config["models"]["tiny-opt-xs"]["window_start"] = "first"
    with pytest.raises(ConfigError, match="window_start"):
        validate_config(config)


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
    config["models"]["tiny-opt-xs"]["kind"] = "smell"
    with pytest.raises(ConfigError, match=r"models\.tiny-opt-xs\.kind"):
        validate_config(config)


def _overlay(name: str) -> dict:
    config = _demo()
    update_config(config, yaml.safe_load((ROOT / "config" / name).read_text()))
    return config


def test_the_demo_runs_the_vision_track_and_lebel_does_not():
    demo = validate_config(_demo())
    assert demo["vision"]["enabled"] and demo["vision"]["dataset"]["source"] == "synthetic"
    assert all(demo["models"][m]["kind"] == "vision" for m in demo["vision"]["run_models"])
    assert not any(demo["models"][m]["kind"] == "vision" for m in demo["run_models"])
    assert validate_config(_lebel())["vision"]["enabled"] is False


def test_algonauts_overlay_is_a_vision_only_study():
    config = validate_config(_overlay("algonauts2023.yaml"))
    vision = config["vision"]
    assert config["run_models"] == [] and config["subsampling"]["fits"] == []
    assert vision["dataset"]["source"] == "local" and len(vision["dataset"]["subjects"]) == 8
    assert vision["split"] == {
        "test": "auto",
        "n_images": 8779,
        "test_fraction": 0.1,
        "n_train": None,
    }
    alphas = vision["selection"]["alphas"]
    np.testing.assert_allclose(
        np.logspace(alphas["log10_min"], alphas["log10_max"], alphas["num"]), np.logspace(0, 15, 30)
    )
    assert vision["selection"]["n_folds"] == 8
    for name in vision["run_models"]:
        spec = config["models"][name]
        assert spec["kind"] == "vision" and spec["source"]["revision"]
    families = {config["models"][m]["family"] for m in vision["run_models"]}
    assert "EVA-02-CLIP" in families


def test_vision_models_are_run_by_the_vision_track_only():
    config = _demo()
    config["run_models"] = ["tiny-opt-xs", "tiny-clip-s"]
    with pytest.raises(ConfigError, match=r"'run_models' names vision models \['tiny-clip-s'\]"):
        validate_config(config)
    config = _demo()
    config["vision"]["run_models"] = ["tiny-opt-xs"]
    with pytest.raises(ConfigError, match=r"'vision.run_models' names \['tiny-opt-xs'\]"):
        validate_config(config)
    config = _demo()
    config["vision"]["ensemble"] = ["tiny-clip-s"]
    with pytest.raises(ConfigError, match=r"'vision.ensemble'"):
        validate_config(config)
    config = _demo()
    config["vision"]["dataset"]["name"] = config["dataset"]["name"]
    with pytest.raises(ConfigError, match="give them different names"):
        validate_config(config)


def test_the_demo_truth_must_exist_in_its_model():
    config = _demo()
    config["vision"]["synthetic"]["truth"]["higher"]["layer"] = 9
    with pytest.raises(ConfigError, match=r"truth.higher.layer' is 9; tiny-clip-m has layers 0..3"):
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
    config["stacks"] = []  # stacks need out-of-fold predictions too (test_stacking.py)
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
    from fmriscaling.demo.vision import generate_vision_dataset
    from fmriscaling.download.http import download_file
    from fmriscaling.encoding.fit import EncodingSettings
    from fmriscaling.encoding.noise_ceiling import compute_noise_ceiling_file
    from fmriscaling.encoding.ridge import fit_ridge_cv
    from fmriscaling.features.extract import extract_model
    from fmriscaling.features.lm import extract_text_model
    from fmriscaling.features.speech import extract_speech_model
    from fmriscaling.figures.brain import draw_brain_maps, plot_flatmap
    from fmriscaling.figures.ceiling import draw_noise_ceiling_figure
    from fmriscaling.rois import label_voxels
    from fmriscaling.scaling import bootstrap_means, scaling_fits
    from fmriscaling.stimuli import story_tables
    from fmriscaling.vision.features import extract_vision_model
    from fmriscaling.vision.scores import compute_vision_noise_ceiling
    from fmriscaling.vision.selection import fit_vision_selection

    pairs = [
        # the settings of fit_encoding and fit_encoding_subjects (the rules' function)
        (EncodingSettings, {
            "encoding.delays": "delays", "encoding.cv": "cv", "encoding.n_folds": "n_folds",
            "encoding.test_extra_trim": "test_extra_trim", "encoding.backend": "backend",
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
        (compute_noise_ceiling_file, {"encoding.test_extra_trim": "test_extra_trim"}),
        (download_file, {"download.retries": "retries", "download.timeout_s": "timeout"}),
        (extract_text_model, {
            "features.text.max_words": "max_words", "features.text.reset_words": "reset_words",
            "features.text.batch_size": "batch_size", "features.device": "device",
            "features.dtype": "dtype", "compute.gpu_mem_gb": "gpu_mem_gb",
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
                        "story_n_trs", "test_n_trs", "cortex", "auditory_fraction")
        }),
        (bootstrap_means, {
            "scaling.bootstrap.n_replicates": "n_replicates", "scaling.bootstrap.seed": "seed",
        }),
        (scaling_fits, {
            "scaling.ci": "ci", "scaling.bootstrap.seed": "seed",
            "scaling.bootstrap.resample_subjects": "resample_subjects",
        }),
        (label_voxels, {"rois.functional": "functional"}),
        (draw_brain_maps, {
            "figures.flatmap.height": "height", "figures.flatmap.pixelwise": "pixelwise",
            "figures.flatmap.with_rois": "with_rois",
        }),
        (plot_flatmap, {
            "figures.flatmap.height": "height", "figures.flatmap.pixelwise": "pixelwise",
            "figures.flatmap.with_rois": "with_rois",
        }),
        (draw_noise_ceiling_figure, {"figures.roi_min_voxels": "min_voxels"}),
        (generate_vision_dataset, {
            f"vision.synthetic.{key}": key
            for key in ("seed", "n_train_images", "n_test_images", "image_size", "n_vertices",
                        "n_latent", "ncsnr")
        }),
        (extract_vision_model, {
            "vision.pooling": "pooling", "vision.features.batch_size": "batch_size",
            "vision.features.n_workers": "n_workers", "features.device": "device",
            "features.dtype": "dtype",
        }),
        (fit_vision_selection, {
            "vision.split.n_images": "n_images", "vision.split.test_fraction": "test_fraction",
            "vision.split.n_train": "n_train", "vision.selection.n_folds": "n_folds",
            "vision.selection.seed": "fold_seed", "encoding.backend": "backend",
            "encoding.solver": "solver", "encoding.score_dtype": "score_dtype",
            "vision.selection.save_predictions": "save_predictions",
        }),
        (compute_vision_noise_ceiling, {
            "vision.split.n_images": "n_images", "vision.split.test_fraction": "test_fraction",
            "vision.noise_ceiling.n_repeats": "default_repeats",
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
