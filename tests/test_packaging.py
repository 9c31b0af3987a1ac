"""The conda environments of the rules pin what pyproject.toml pins, and every rule has one."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
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
    requires = SpecifierSet(data["project"]["requires-python"])
    for env_file in ENV_FILES:
        env_python = _env_requirements(env_file)["python"]
        # every bound pyproject.toml sets, each environment sets too (it may add an upper one)
        assert set(requires) <= set(env_python), (
            f"{env_file.name} pins python {env_python}, pyproject.toml requires {requires}"
        )


# what runs the workflow, not a stage: installed beside snakemake, never inside a job
RUNNER_PACKAGES = {"snakemake", "snakemake-executor-plugin-slurm"}


def test_every_dependency_is_in_a_stage_environment():
    in_envs = set().union(*(_env_requirements(p) for p in ENV_FILES))
    missing = sorted(set(_pyproject_requirements()) - RUNNER_PACKAGES - in_envs)
    assert not missing, f"pyproject.toml depends on {missing}, which no envs/*.yaml pins"


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


@pytest.mark.slow
def test_a_built_wheel_validates_configs_on_its_own(tmp_path):
    """A non-editable install carries the schema: validate from the wheel's files alone."""
    # build from a copy: a build/ folder left in the tree would hide a missing file next time
    src = tmp_path / "src"
    shutil.copytree(
        ROOT / "fmriscaling", src / "fmriscaling", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("fmriscaling-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(tmp_path / "site")
    code = (
        "import sys; sys.path.insert(0, {site!r}); "
        "import yaml, fmriscaling.config as c; "
        "assert c.__file__.startswith({site!r}), c.__file__; "
        "cfg = c.validate_config(yaml.safe_load(open({config!r}))); "
        "print(cfg['encoding']['score_dtype'])"
    ).format(site=str(tmp_path / "site"), config=str(ROOT / "config" / "config.yaml"))
    proc = subprocess.run(
        [sys.executable, "-I", "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "auto"


# what a script may read of the job: only these, so that every value it uses is a declared
# input, output or param (a params change reruns the job; a path rebuilt in a script does not).
# Resources describe what the job was given (extraction: the GPUs it spans), which changes where
# it runs, never what it writes: they must not rerun it
SCRIPT_ATTRIBUTES = {"input", "output", "params", "log", "threads", "resources"}


@pytest.mark.parametrize(
    "script", sorted((ROOT / "workflow_scripts").glob("*.py")), ids=lambda p: p.name
)
def test_scripts_read_only_inputs_outputs_params_and_log(script):
    text = script.read_text()
    assert "def main(smk)" in text, f"{script.name}: expected a main(smk) adapter"
    used = set(re.findall(r"\bsmk\.(\w+)", text))
    assert used <= SCRIPT_ATTRIBUTES, (
        f"{script.name} reads smk.{sorted(used - SCRIPT_ATTRIBUTES)}; pass it as a param"
    )


def _imported_top_modules(path: Path) -> set[str]:
    """The fmriscaling top-level modules that ``path`` imports (relative or absolute)."""
    rel = path.relative_to(ROOT).with_suffix("")
    package = list(rel.parts[:-1])  # a package's __init__ and its modules share it
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            else:
                names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n.split(".")[1] for n in names if n.startswith("fmriscaling.")}
    return found


def test_library_imports_point_down_the_documented_layers():
    """fmriscaling/__init__.py's layer list is true: no module imports a later layer."""
    import fmriscaling

    layers = {}
    for line in fmriscaling.__doc__.splitlines():
        if m := re.match(r"(\d+)\. (.*)", line.strip()):
            for name in re.findall(r"``(\w+)``", m.group(2)):
                layers[name] = int(m.group(1))
    modules = {p.stem if p.parent.name == "fmriscaling" else p.parent.name
               for p in (ROOT / "fmriscaling").glob("*") if p.suffix == ".py" or p.is_dir()}  # fmt: skip
    modules -= {"__init__", "__pycache__"}
    assert modules == set(layers), "every module has a layer"
    upward = []
    for path in sorted((ROOT / "fmriscaling").rglob("*.py")):
        rel = path.relative_to(ROOT / "fmriscaling")
        own = rel.parts[0].removesuffix(".py")
        if own == "__init__.py" or own == "__init__":
            continue
        for target in _imported_top_modules(path) - {own}:
            if layers[target] > layers[own]:
                upward.append(f"{rel} ({own}, layer {layers[own]}) imports {target} "
                              f"(layer {layers[target]})")  # fmt: skip
    assert upward == []
