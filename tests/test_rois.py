"""ROI labels of every cortical voxel through pycortex, on the demo's dataset on S1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy.spatial import cKDTree

from fmriscaling import DataError
from fmriscaling.demo.cortex import write_annotation
from fmriscaling.rois import (
    annotation_relpath,
    label_voxels,
    load_voxel_labels,
    read_annotation,
    save_voxel_labels,
)

SUBJECT = "UTS01"
XFM = f"{SUBJECT}_auto"
GROUPS = {
    "precuneus": {"aparc": ["precuneus"]},
    "auditory": {"aparc": ["superiortemporal", "transversetemporal"]},
    "angular_gyrus": {"aparc.a2009s": ["G_pariet_inf-Angular"]},
}


def _db(root: Path) -> Path:
    return root / "derivative" / "pycortex-db"


def _mask(root: Path) -> Path:
    return _db(root) / SUBJECT / "transforms" / XFM / "mask_thick.nii.gz"


def _annotations(root: Path, atlases=("aparc", "aparc.a2009s")) -> dict[str, list[Path]]:
    return {a: [root / annotation_relpath(SUBJECT, h, a) for h in ("lh", "rh")] for a in atlases}


def _voxel_centres_mm(root: Path) -> np.ndarray:
    """Independent of pycortex: mask voxels (z, y, x order) -> surface mm via the xfm's inverse."""
    mask = nib.load(_mask(root)).get_fdata().T != 0  # (z, y, x)
    zyx = np.argwhere(mask)  # C order of the (z, y, x) array: the response columns
    coord = np.array(json.loads((_mask(root).parent / "matrices.xfm").read_text())["coord"])
    xyz1 = np.column_stack([zyx[:, ::-1], np.ones(len(zyx))])
    return (np.linalg.inv(coord) @ xyz1.T).T[:, :3]


def _fiducial(root: Path) -> tuple[np.ndarray, int]:
    surfaces = _db(root) / SUBJECT / "surfaces"
    hemis = []
    for hemi in ("lh", "rh"):
        pia, wm = (nib.load(surfaces / f"{s}_{hemi}.gii").darrays[0].data for s in ("pia", "wm"))
        hemis.append((pia.astype(float) + wm.astype(float)) / 2)
    return np.vstack(hemis), len(hemis[0])


@pytest.fixture(scope="module")
def labels(cortex_dataset):
    root, _ = cortex_dataset
    return label_voxels(
        _db(root), SUBJECT, _mask(root), xfmname=XFM, annotations=_annotations(root), groups=GROUPS
    )


def test_every_voxel_takes_the_label_of_its_nearest_fiducial_vertex(cortex_dataset, labels):
    root, _ = cortex_dataset
    fiducial, n_lh = _fiducial(root)
    centres = _voxel_centres_mm(root)
    distance, nearest = cKDTree(fiducial).query(centres)
    assert labels.n_voxels == 300
    np.testing.assert_allclose(labels.distance_mm, distance, atol=1e-4)
    assert (labels.vertex == nearest).mean() > 0.99  # ties aside
    names = read_annotation(*_annotations(root)["aparc"], n_vertices=(n_lh, len(fiducial) - n_lh))
    same = labels.atlas_labels["aparc"] == names[nearest]
    assert same.mean() > 0.99
    np.testing.assert_array_equal(labels.hemisphere == "lh", labels.vertex < n_lh)


def test_a_known_parcellation_is_reproduced_on_s1(cortex_dataset, tmp_path):
    """Anterior / posterior halves of S1's surface: every voxel farther than 10 mm from the
    cut (more than its 8 mm to the surface) lands in its half, in the right hemisphere."""
    root, _ = cortex_dataset
    fiducial, n_lh = _fiducial(root)
    cut = np.median(fiducial[:, 1])
    halves = {}
    for hemi, points in (("lh", fiducial[:n_lh]), ("rh", fiducial[n_lh:])):
        halves[hemi] = tmp_path / f"{hemi}.halves.annot"
        write_annotation(
            halves[hemi], (points[:, 1] > cut).astype(np.int32) + 1, ["?", "back", "front"]
        )
    result = label_voxels(
        _db(root), SUBJECT, _mask(root), xfmname=XFM,
        annotations={"halves": [halves["lh"], halves["rh"]]},
        groups={"front": {"halves": ["front"]}}, functional=False,
    )  # fmt: skip
    centres = _voxel_centres_mm(root)
    front = result.membership[result.roi_names.index("front")]
    far = np.abs(centres[:, 1] - cut) > 10
    assert far.sum() > 150
    np.testing.assert_array_equal(front[far], centres[far, 1] > cut)
    assert set(result.atlas_labels["halves"]) == {"front", "back"}
    lateral = np.abs(centres[:, 0]) > 10
    np.testing.assert_array_equal(result.hemisphere[lateral] == "lh", centres[lateral, 0] < 0)


def test_groups_and_the_functional_rois_of_overlays_svg(labels):
    names = dict(zip(labels.roi_names, labels.roi_sources, strict=True))
    assert {n: names[n] for n in GROUPS} == dict.fromkeys(GROUPS, "anatomical")
    assert {"AC", "Broca", "sPMv"} <= {n for n, s in names.items() if s == "functional"}
    auditory = labels.membership[labels.roi_names.index("auditory")]
    in_labels = np.isin(labels.atlas_labels["aparc"], GROUPS["auditory"]["aparc"])
    np.testing.assert_array_equal(auditory, in_labels)
    assert auditory.sum() > 0


def test_labels_round_trip_without_pickles(labels, tmp_path):
    path = save_voxel_labels(labels, tmp_path / "UTS01.npz", params={"groups": GROUPS})
    again = load_voxel_labels(path)
    assert again.roi_names == labels.roi_names and again.roi_sources == labels.roi_sources
    np.testing.assert_array_equal(again.membership, labels.membership)
    for atlas in labels.atlas_labels:
        np.testing.assert_array_equal(again.atlas_labels[atlas], labels.atlas_labels[atlas])
    assert path.with_name("UTS01.npz.provenance.json").is_file()


def test_labelling_reads_the_dataset_and_never_writes_it(cortex_dataset, labels):
    root, _ = cortex_dataset
    before = {p: p.stat().st_mtime_ns for p in _db(root).rglob("*")}
    label_voxels(
        _db(root), SUBJECT, _mask(root), xfmname=XFM, annotations=_annotations(root), groups=GROUPS
    )
    assert {p: p.stat().st_mtime_ns for p in _db(root).rglob("*")} == before


def test_an_annotation_of_another_surface_fails_naming_it(cortex_dataset, tmp_path):
    root, _ = cortex_dataset
    short = tmp_path / "lh.aparc.annot"
    write_annotation(short, np.zeros(10, dtype=np.int32), ["unknown"])
    files = _annotations(root, ("aparc",))
    with pytest.raises(DataError, match=r"lh.aparc.annot labels 10 vertices"):
        label_voxels(
            _db(root), SUBJECT, _mask(root), xfmname=XFM,
            annotations={"aparc": [short, files["aparc"][1]]}, groups={}, functional=False,
        )  # fmt: skip


def test_a_group_of_an_atlas_without_annotations_fails_naming_it(cortex_dataset):
    root, _ = cortex_dataset
    with pytest.raises(DataError, match=r"'angular_gyrus' uses atlas\(es\) \['aparc.a2009s'\]"):
        label_voxels(
            _db(root), SUBJECT, _mask(root), xfmname=XFM,
            annotations=_annotations(root, ("aparc",)), groups=GROUPS,
        )  # fmt: skip


def test_importing_pycortex_leaves_the_users_config_alone(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    code = "from fmriscaling._pycortex import import_cortex; import_cortex()"
    env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert not (home / ".config").exists()  # pycortex would create .config/pycortex/options.cfg
    assert "Inkscape not found" not in proc.stdout  # its import-time prints go to the log
