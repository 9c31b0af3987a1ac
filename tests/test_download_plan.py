"""The real study's download plan, per kind of file, is the library's own manifest selection.

The DAG of `download_dataset` on the real ds003020 manifest (no network, Snakemake's own
tab-separated summary) with every kind of file asked for; for each kind, the files the workflow
plans to fetch equal what `fmriscaling.download.select_files` selects for it, and there is at
least one.
"""

from __future__ import annotations

import io

import pandas as pd
import pytest
from _workflow import ROOT, copy_workflow, snakemake

from fmriscaling.download.manifest import manifest_stories, read_manifest, select_files

pytestmark = pytest.mark.slow

SUBJECTS = ["UTS01", "UTS02"]
# folder of each kind in the dataset (what a planned path is sorted by)
KIND_FOLDERS = {
    "respdict": "derivative/respdict.json",
    "responses": "derivative/preprocessed_data/",
    "textgrids": "derivative/TextGrids/",
    "audio": "stimuli/",
    "pycortex": "derivative/pycortex-db/",
    "freesurfer": "derivative/freesurfer_subjdir/",
}


@pytest.fixture(scope="module")
def planned(tmp_path_factory) -> set[str]:
    """Dataset paths of every download_ds003020_file job `download_dataset` plans."""
    workdir = copy_workflow(tmp_path_factory.mktemp("plan"))
    overlay = workdir / "all_kinds.yaml"
    overlay.write_text(
        f"dataset: {{subjects: {SUBJECTS}}}\n"
        "download: {kinds: [pycortex, freesurfer]}\n"
        "run_models: [opt-125m, whisper-tiny]\n"  # a speech model: the audio is needed
        "stacks: []\n"  # lebel2023.yaml's stack needs models this overlay does not run
        "partitions: []\n"  # ... and so does its partition
    )
    proc = snakemake(
        workdir,
        "download_dataset",
        "--summary",
        "--configfile",
        "config/lebel2023.yaml",
        str(overlay),
    )
    table = pd.read_csv(io.StringIO(proc.stdout), sep="\t")
    outputs = list(table.loc[table["rule"] == "download_ds003020_file", "output_file"])
    prefix = "results/data/lebel2023/"
    assert outputs and all(o.startswith(prefix) for o in outputs)
    return {o.removeprefix(prefix) for o in outputs}


@pytest.fixture(scope="module")
def manifest():
    return read_manifest(ROOT / "config" / "datasets" / "ds003020_manifest.tsv")


def _train_and_test_stories(manifest, subject):
    # lebel2023.yaml: train_stories all, none excluded, plus the test story
    return manifest_stories(manifest, subject)


@pytest.mark.parametrize("kind", list(KIND_FOLDERS))
def test_planned_files_of_a_kind_are_the_library_selection(planned, manifest, kind):
    if kind == "responses":
        expected = set()
        for subject in SUBJECTS:
            stories = _train_and_test_stories(manifest, subject)
            expected |= set(
                select_files(manifest, subjects=[subject], stories=stories, kinds=[kind])
            )
    elif kind in ("pycortex", "freesurfer"):
        expected = set(select_files(manifest, subjects=SUBJECTS, kinds=[kind]))
    else:
        stories = sorted(set().union(*(_train_and_test_stories(manifest, s) for s in SUBJECTS)))
        expected = set(select_files(manifest, subjects=None, stories=stories, kinds=[kind]))
    got = {p for p in planned if p.startswith(KIND_FOLDERS[kind])}
    assert expected, f"the library selects no {kind} files: the test itself is wrong"
    assert got == expected, (
        f"{kind}: {len(got)} planned, {len(expected)} selected; planned only: "
        f"{sorted(got - expected)[:3]}, selected only: {sorted(expected - got)[:3]}"
    )
