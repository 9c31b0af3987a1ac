"""The conda environments of the rules pin what pyproject.toml pins, and every rule has one."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parent.parent
# conda-forge names that differ from PyPI's
CONDA_TO_PYPI = {"pytorch": "torch", "huggingface_hub": "huggingface-hub"}


def _pyproject_requirements() -> dict[str, SpecifierSet]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = [Requirement(r) for r in data["project"]["dependencies"]]
    return {r.name.lower(): r.specifier for r in reqs}


def _env_requirements(path: Path) -> dict[str, SpecifierSet]:
    env = yaml.safe_load(path.read_text())
    out = {}
    for dep in env["dependencies"]:
        assert isinstance(dep, str), f"{path.name}: use conda packages only, got {dep!r}"
        name, _, spec = dep.partition(" ")
        out[CONDA_TO_PYPI.get(name, name).lower()] = SpecifierSet(spec.replace(" ", ""))
    return out


ENV_FILES = sorted((ROOT / "envs").glob("*.yaml"))


def test_there_are_stage_environments():
    assert {p.stem for p in ENV_FILES} >= {"fmriscaling", "features", "encoding", "figures"}


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda p: p.name)
def test_env_pins_match_pyproject(env_file):
    pyproject = _pyproject_requirements()
    env = _env_requirements(env_file)
    for name, spec in env.items():
        if name == "python":
            continue
        assert name in pyproject, f"{env_file.name} pins {name}, which pyproject.toml lacks"
        assert spec == pyproject[name], (
            f"{env_file.name} pins {name} {spec}, pyproject.toml says {pyproject[name]}"
        )


def test_python_pin_matches_requires_python():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    lower = data["project"]["requires-python"]
    for env_file in ENV_FILES:
        assert _env_requirements(env_file)["python"].contains("3.11")
    assert SpecifierSet(lower).contains("3.11")


def test_every_rule_with_a_script_names_an_existing_env():
    for smk in sorted((ROOT / "rules").glob("*.smk")):
        text = smk.read_text()
        for rule, body in re.findall(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)+)", text, re.M):
            if "script:" not in body:
                continue
            match = re.search(r'conda:\n\s+"([^"]+)"', body)
            assert match, f"rule {rule} in {smk.name} has a script but no conda env"
            assert (smk.parent / match.group(1)).resolve().is_file(), (
                f"rule {rule}: {match.group(1)} does not exist"
            )
