"""Configuration validation: a JSON schema (YAML) with defaults, and errors that name the key."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from ._utils import ConfigError

# shipped inside the package, so that a non-editable install validates too
# (config/schema/config.schema.yaml is a link to it, beside the configs it describes)
SCHEMA_PATH = Path(__file__).resolve().parent / "config.schema.yaml"


def load_schema(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Read the config schema (YAML)."""
    with open(path or SCHEMA_PATH) as fh:
        return yaml.safe_load(fh)


def _extend_with_defaults(validator_class):
    """A validator that fills ``default`` values in before validating (objects only)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_DefaultFillingValidator = _extend_with_defaults(jsonschema.Draft202012Validator)


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    key = _key_path(error)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        where = f"under '{key}'" if error.absolute_path else "at the top level"
        return (
            f"unknown config key(s) {', '.join(repr(e) for e in extra)} {where}; "
            f"allowed keys: {', '.join(allowed)}"
        )
    if error.validator == "enum":
        return (
            f"config key '{key}' is {error.instance!r}; allowed values: "
            f"{', '.join(repr(v) for v in error.validator_value)}"
        )
    if error.validator == "required":
        return f"config key '{key}' is missing a required entry: {error.message}"
    desc = error.schema.get("description")
    hint = f" ({desc})" if desc else ""
    return f"config key '{key}': {error.message}{hint}"


def validate_config(
    config: Mapping[str, Any], schema: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Validate ``config`` against the schema and return a copy with defaults filled in.

    Raises
    ------
    ConfigError
        Naming every offending key and the allowed values.
    """
    schema = dict(schema or load_schema())
    filled = copy.deepcopy(dict(config))
    validator = _DefaultFillingValidator(schema)
    errors = sorted(validator.iter_errors(filled), key=lambda e: list(e.absolute_path))
    if errors:
        lines = "\n  - ".join(_describe(e) for e in errors)
        raise ConfigError(f"invalid configuration:\n  - {lines}")
    _check_semantics(filled)
    return filled


def _check_semantics(config: dict[str, Any]) -> None:
    """Checks a schema cannot express: cross-key consistency."""
    models = config.get("models", {})
    for name, spec in models.items():
        layers = spec.get("layers", "all")
        n_layers = spec["n_layers"]
        if isinstance(layers, list):
            bad = [layer for layer in layers if layer > n_layers]
            if bad:
                raise ConfigError(
                    f"config key 'models.{name}.layers' lists {bad}, but the model has layers "
                    f"0..{n_layers} (n_layers={n_layers}; 0 is the embedding layer)"
                )
    run = config.setdefault(
        "run_models", [name for name, spec in models.items() if spec["kind"] != "vision"]
    )
    unknown = [name for name in run if name not in models]
    if unknown:
        raise ConfigError(
            f"config key 'run_models' names {unknown}, which are not keys of 'models' "
            f"({', '.join(sorted(models))})"
        )
    vision_models = [name for name in run if models[name]["kind"] == "vision"]
    if vision_models:
        raise ConfigError(
            f"config key 'run_models' names vision models {vision_models}; list them under "
            "'vision.run_models'"
        )
    _check_vision(config)
    for i, fit in enumerate(config.get("subsampling", {}).get("fits", [])):
        name = fit["model"]
        if name not in run:
            raise ConfigError(
                f"config key 'subsampling.fits[{i}].model' is {name!r}, which is not in "
                f"'run_models' ({', '.join(run)})"
            )
        too_deep = [layer for layer in fit["layers"] if layer > models[name]["n_layers"]]
        if too_deep:
            raise ConfigError(
                f"config key 'subsampling.fits[{i}].layers' lists {too_deep}; {name} has "
                f"layers 0..{models[name]['n_layers']}"
            )
    encoding = config.get("encoding", {})
    if encoding.get("solver_impl") == "himalaya" and encoding.get("save_predictions"):
        raise ConfigError(
            "config key 'encoding.solver_impl' is 'himalaya', which makes no out-of-fold "
            "predictions, but 'encoding.save_predictions' is true; use solver_impl: fast or set "
            "save_predictions: false"
        )
    _check_stacks(config)
    _check_partitions(config)
    stim = config.get("stimuli", {})
    text = config.get("features", {}).get("text", {})
    if text and text.get("reset_words", 0) >= text.get("max_words", 1):
        raise ConfigError(
            "config key 'features.text.reset_words' must be smaller than "
            f"'features.text.max_words' (got {text['reset_words']} >= {text['max_words']})"
        )
    if stim and stim.get("trim_start", 0) < 0:
        raise ConfigError("config key 'stimuli.trim_start' must be >= 0")


def _check_stacks(config: dict[str, Any]) -> None:
    """Stack names are unique; members are run models, with layers they have, listed once."""
    stacks = config.get("stacks", [])
    names = [stack["name"] for stack in stacks]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"config key 'stacks' names {repeated} more than once; names must differ")
    if stacks and config.get("encoding", {}).get("solver_impl") == "himalaya":
        raise ConfigError(
            "config key 'stacks' is not empty but 'encoding.solver_impl' is 'himalaya', which "
            "makes no out-of-fold predictions; use solver_impl: fast or remove the stacks"
        )
    models, run = config["models"], config["run_models"]
    for i, stack in enumerate(stacks):
        for j, member in enumerate(stack["members"]):
            key = f"stacks[{i}].members[{j}]"
            name, layer = member["model"], member["layer"]
            if name not in run:
                raise ConfigError(
                    f"config key '{key}.model' is {name!r}, which is not in 'run_models' "
                    f"({', '.join(run)}): a member needs the model's features and layer fits. "
                    "Add the model to run_models, or override 'stacks' (stacks: [] for none)"
                )
            if layer == "even" and not any(lay % 2 == 0 for lay in model_layers(models[name])):
                raise ConfigError(
                    f"config key '{key}.layer' is 'even', but the layers of {name} "
                    f"({model_layers(models[name])}) include no even layer"
                )
            if isinstance(layer, int) and layer > models[name]["n_layers"]:
                raise ConfigError(
                    f"config key '{key}.layer' is {layer}; {name} has layers "
                    f"0..{models[name]['n_layers']}"
                )
        resolved = stack_members(stack, models)
        labels = [(m["model"], m["layer"]) for m in resolved]
        twice = sorted({f"{m}/layer-{lay}" for m, lay in labels if labels.count((m, lay)) > 1})
        if twice:
            raise ConfigError(
                f"config key 'stacks[{i}].members' lists {twice} more than once (after "
                "expanding 'even'); list each member once"
            )


def stack_members(stack: Mapping[str, Any], models: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The members of a configured stack, ``even`` expanded to one member per even layer.

    Parameters
    ----------
    stack : mapping
        One entry of the config's ``stacks`` (``name``, ``members``).
    models : mapping
        The model registry (``kind``, ``n_layers``, ``layers`` per model).

    Returns
    -------
    members : list of dict
        ``model``, ``kind`` and ``layer`` (an int, or ``"best"``, resolved per subject when the
        member is fitted), in the configured order.
    """
    members = []
    for member in stack["members"]:
        spec = models[member["model"]]
        layer = member["layer"]
        layers = [lay for lay in model_layers(spec) if lay % 2 == 0] if layer == "even" else [layer]
        members += [
            {"model": member["model"], "kind": spec["kind"], "layer": lay} for lay in layers
        ]
    return members


def _check_partitions(config: dict[str, Any]) -> None:
    """Partition names are unique; bands are models of run_models (language and speech models:
    vision models are refused there), with layers they have, distinct feature spaces with
    distinct labels."""
    partitions = config.get("partitions", [])
    names = [partition["name"] for partition in partitions]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(
            f"config key 'partitions' names {repeated} more than once; names must differ"
        )
    models, run = config["models"], config["run_models"]
    for i, partition in enumerate(partitions):
        for j, band in enumerate(partition["bands"]):
            key = f"partitions[{i}].bands[{j}]"
            name, layer = band["model"], band["layer"]
            if name not in models:
                raise ConfigError(
                    f"config key '{key}.model' is {name!r}, which is not a model of the registry "
                    f"('models': {', '.join(sorted(models))}). Declare it there and add it to "
                    "run_models, or fix the name"
                )
            if name not in run:
                need = (
                    "the story audio (fetched for the speech models of run_models) and "
                    if models[name]["kind"] == "speech"
                    else ""
                )
                raise ConfigError(
                    f"config key '{key}.model' is {name!r}, which is not in 'run_models' "
                    f"({', '.join(run)}): a band needs {need}the model's features and layer "
                    "fits. Add the model to run_models, or override 'partitions' "
                    "(partitions: [] for none)"
                )
            if isinstance(layer, int) and layer > models[name]["n_layers"]:
                raise ConfigError(
                    f"config key '{key}.layer' is {layer}; {name} has layers "
                    f"0..{models[name]['n_layers']}"
                )
        bands = partition_bands(partition, models)
        spaces = [(b["model"], b["layer"]) for b in bands]
        twice = sorted({f"{m}/layer-{lay}" for m, lay in spaces if spaces.count((m, lay)) > 1})
        if twice:
            raise ConfigError(
                f"config key 'partitions[{i}].bands' lists {twice} more than once; a partition "
                "splits the variance between different feature spaces"
            )
        labels = [b["name"] for b in bands]
        same = sorted({n for n in labels if labels.count(n) > 1})
        if same:
            raise ConfigError(
                f"config key 'partitions[{i}].bands' gives two bands the label {same}; set "
                "'name' on the bands of the same model so that tables can tell them apart"
            )


def partition_bands(
    partition: Mapping[str, Any], models: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The bands of a configured partition: ``model``, ``kind``, ``layer`` (an int or
    ``"best"``) and ``name`` (the configured label, else the model's name), in order."""
    return [
        {
            "model": band["model"],
            "kind": models[band["model"]]["kind"],
            "layer": band["layer"],
            "name": band.get("name", band["model"]),
        }
        for band in partition["bands"]
    ]


def _check_vision(config: dict[str, Any]) -> None:
    """The vision track's models, sweep, ensemble and demo truth refer to declared models."""
    vision = config.get("vision", {})
    if not vision.get("enabled"):
        return
    models = config.get("models", {})
    name = vision.get("dataset", {}).get("name")
    if name == config.get("dataset", {}).get("name"):
        raise ConfigError(
            f"config keys 'vision.dataset.name' and 'dataset.name' are both {name!r}; the two "
            "tracks write to results/<stage>/<name>/, so give them different names"
        )
    run = vision.get("run_models", [])
    if not run:
        raise ConfigError("config key 'vision.run_models' is empty but 'vision.enabled' is true")
    wrong = [n for n in run if n not in models or models[n]["kind"] != "vision"]
    if wrong:
        raise ConfigError(
            f"config key 'vision.run_models' names {wrong}, which are not models of kind "
            f"vision in 'models' (vision models: "
            f"{', '.join(n for n, s in models.items() if s['kind'] == 'vision') or 'none'})"
        )
    sweep = vision.get("subsampling", {}).get("model")
    if sweep is not None and sweep not in run:
        raise ConfigError(
            f"config key 'vision.subsampling.model' is {sweep!r}, which is not in "
            f"'vision.run_models' ({', '.join(run)})"
        )
    ensemble = vision.get("ensemble", [])
    if ensemble and (len(ensemble) < 2 or not set(ensemble) <= set(run)):
        raise ConfigError(
            f"config key 'vision.ensemble' is {ensemble}: expected at least 2 names of "
            f"'vision.run_models' ({', '.join(run)})"
        )
    if vision.get("dataset", {}).get("source") == "synthetic":
        truth = vision.get("synthetic", {}).get("truth")
        if truth is None:
            raise ConfigError(
                "config key 'vision.synthetic.truth' is missing: a synthetic vision dataset "
                "needs the model and (layer, pool) that drive its responses"
            )
        spec = models.get(truth["model"])
        if spec is None or spec["kind"] != "vision" or "build" not in spec["source"]:
            raise ConfigError(
                f"config key 'vision.synthetic.truth.model' is {truth['model']!r}: expected a "
                "vision model of 'models' with a build source (a tiny demo model)"
            )
        for driver in ("early", "higher"):
            if truth[driver]["layer"] > spec["n_layers"]:
                raise ConfigError(
                    f"config key 'vision.synthetic.truth.{driver}.layer' is "
                    f"{truth[driver]['layer']}; {truth['model']} has layers 0..{spec['n_layers']}"
                )


def model_layers(spec: Mapping[str, Any]) -> list[int]:
    """Layer indices to fit for a model spec (0 = embedding layer)."""
    layers = spec.get("layers", "all")
    if layers == "all":
        return list(range(spec["n_layers"] + 1))
    return sorted(set(int(layer) for layer in layers))


def alpha_grid(spec: Mapping[str, Any]) -> list[float]:
    """The ridge penalties of an ``alphas`` config entry: ``num`` values log-spaced from
    ``10**log10_min`` to ``10**log10_max`` (``encoding.alphas``, ``vision.selection.alphas``)."""
    import numpy as np

    return np.logspace(spec["log10_min"], spec["log10_max"], spec["num"]).tolist()
