"""Group maps on fsaverage5: the sphere projection, the challenge's fsaverage vertices, GIFTI
files, group means and ROI tables, each subject's maps, and the Study's surface stage."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from fmriscaling._utils import DataError
from fmriscaling.surface.group import group_maps, group_roi_table
from fmriscaling.surface.maps import (
    MapSpec,
    language_map_specs,
    language_voxel_maps,
    vision_map_specs,
)
from fmriscaling.surface.project import (
    SurfaceMaps,
    fsaverage_to_fsaverage5,
    labels_to_fsaverage5,
    load_surface_maps,
    read_func_gifti,
    save_surface_maps,
    voxels_to_vertices,
    write_func_gifti,
)
from fmriscaling.surface.sphere import (
    FSAVERAGE5_VERTICES,
    SphereProjection,
    check_vertex_counts,
    fsaverage_mesh,
    read_sphere,
)


def _random_sphere(rng, n):
    points = rng.standard_normal((n, 3))
    return 100 * points / np.linalg.norm(points, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def fsaverage5():
    mesh = fsaverage_mesh()
    return {h: mesh[h]["sphere"] for h in ("lh", "rh")}


@pytest.fixture(scope="module")
def projection(fsaverage5):
    rng = np.random.default_rng(1)
    source = {"lh": _random_sphere(rng, 30000), "rh": _random_sphere(rng, 25000)}
    return source, SphereProjection(source, fsaverage5)


def test_fsaverage5_comes_from_nilearn_without_network(fsaverage5):
    from nilearn import datasets

    mesh = fsaverage_mesh()
    # the bundled files read directly are what nilearn's own loaders give
    surfaces = datasets.load_fsaverage("fsaverage5")
    sulcal = datasets.load_fsaverage_data(mesh="fsaverage5", data_type="sulcal")
    for hemi, part in (("lh", "left"), ("rh", "right")):
        inflated = surfaces["inflated"].parts[part]
        np.testing.assert_allclose(mesh[hemi]["inflated"], inflated.coordinates)
        np.testing.assert_array_equal(mesh[hemi]["faces"], inflated.faces)
        np.testing.assert_allclose(mesh[hemi]["sulcal"], sulcal.data.parts[part])
        sphere = surfaces["sphere"].parts[part].coordinates
        np.testing.assert_allclose(fsaverage5[hemi] * 100, sphere, rtol=1e-3, atol=0.05)
    for hemi in ("lh", "rh"):
        assert fsaverage5[hemi].shape == (FSAVERAGE5_VERTICES, 3)
        assert np.allclose(np.linalg.norm(fsaverage5[hemi], axis=1), 1.0)
        assert mesh[hemi]["faces"].max() == FSAVERAGE5_VERTICES - 1
        assert mesh[hemi]["sulcal"].shape == (FSAVERAGE5_VERTICES,)


def test_a_painted_vertex_lands_on_the_fsaverage_vertex_nearest_its_registered_position(
    projection, fsaverage5
):
    source, proj = projection
    n_lh = len(source["lh"])
    for hemi, k in (("lh", 1234), ("rh", 20000)):
        values = np.zeros(n_lh + len(source["rh"]))
        offset = 0 if hemi == "lh" else n_lh
        values[offset + k] = 1.0
        out = proj.project(values)
        part = out[:FSAVERAGE5_VERTICES] if hemi == "lh" else out[FSAVERAGE5_VERTICES:]
        # independent: brute-force nearest neighbours by the largest dot product
        unit = source[hemi] / 100.0
        target_of_source = np.argmax(unit @ fsaverage5[hemi].T, axis=1)
        nearest = target_of_source[k]
        cell_size = int((target_of_source == nearest).sum())
        assert np.argmax(part) == nearest
        assert part[nearest] == pytest.approx(1.0 / cell_size)
        # anywhere else the value is 0, unless an empty cell took it from its nearest vertex
        others = np.flatnonzero(part > 0)
        for t in others[others != nearest]:
            assert np.argmax(unit @ fsaverage5[hemi][t]) == k
        other = out[FSAVERAGE5_VERTICES:] if hemi == "lh" else out[:FSAVERAGE5_VERTICES]
        assert not other.any()


def test_a_constant_map_stays_constant_and_nan_vertices_stay_out(projection):
    source, proj = projection
    n = len(source["lh"]) + len(source["rh"])
    out = proj.project(np.full(n, 0.37))
    assert np.allclose(out, 0.37)
    # a NaN on some vertices: the cells average the others, still the constant
    values = np.full(n, 0.37)
    values[::3] = np.nan
    out = proj.project(values)
    assert np.allclose(out[np.isfinite(out)], 0.37)
    assert np.isfinite(out).mean() > 0.8  # a cell of only NaN vertices is NaN


def test_cells_average_the_subject_vertices_in_them(projection, fsaverage5):
    source, proj = projection
    rng = np.random.default_rng(2)
    values = rng.standard_normal(len(source["lh"]) + len(source["rh"]))
    out = proj.project(values)
    unit = source["rh"] / 100.0
    cell = np.argmax(unit @ fsaverage5["rh"].T, axis=1)
    rh_values = values[len(source["lh"]) :]
    for t in np.unique(cell)[:50]:
        assert out[FSAVERAGE5_VERTICES + t] == pytest.approx(rh_values[cell == t].mean())


def test_labels_take_the_majority_of_each_cell(fsaverage5):
    # a dense subject mesh (~20 vertices a cell) labelled by the side of z, a tenth of the
    # vertices mislabelled and a tenth unlabelled: each cell's majority is still the true side
    rng = np.random.default_rng(3)
    source = {"lh": _random_sphere(rng, 200000), "rh": _random_sphere(rng, 200000)}
    proj = SphereProjection(source, fsaverage5)
    labels = np.concatenate([np.where(source[h][:, 2] > 0, "top", "bottom") for h in source])
    wrong = np.where(labels == "top", "bottom", "top")
    draw = rng.random(labels.size)
    noisy = np.where(draw < 0.1, wrong, np.where(draw < 0.2, "", labels))
    out = proj.project_labels(noisy)
    truth = np.concatenate([np.where(fsaverage5[h][:, 2] > 0, "top", "bottom") for h in source])
    far = np.abs(np.concatenate([fsaverage5[h][:, 2] for h in source])) > 0.05
    # a cell of ~8 votes goes wrong with a chance of ~1/300: a handful of ~19,000
    assert (out[far] == truth[far]).mean() > 0.999
    # a cell whose vertices are all unlabelled has no label
    assert proj.project_labels(np.full(labels.size, "")).tolist() == [""] * out.size


def test_majority_counts_votes_per_group_and_breaks_ties_to_the_first_name():
    from fmriscaling.surface.sphere import majority

    names = np.array(["a", "b", "c"])
    groups = np.array([0, 0, 0, 1, 1, 3])
    codes = np.array([1, 2, 1, 2, 0, 2])
    assert majority(groups, codes, 4, names).tolist() == ["b", "a", "", "c"]


def test_a_surface_that_is_not_a_sphere_is_refused_by_name(tmp_path, rng):
    coords = _random_sphere(rng, 500) * rng.uniform(0.5, 1.5, size=(500, 1))  # a blob
    faces = np.array([[0, 1, 2]], dtype=np.int32)
    path = tmp_path / "lh.white"
    nib.freesurfer.write_geometry(str(path), coords, faces)
    with pytest.raises(DataError, match=r"lh.white.*not on a sphere.*sphere.reg"):
        read_sphere(path)
    path = tmp_path / "lh.sphere.reg"
    nib.freesurfer.write_geometry(str(path), _random_sphere(rng, 500), faces)
    assert np.allclose(np.linalg.norm(read_sphere(path), axis=1), 1.0)
    with pytest.raises(DataError, match=r"does not exist.*registration sphere"):
        read_sphere(tmp_path / "rh.sphere.reg")
    (tmp_path / "junk").write_text("not a surface")
    with pytest.raises(DataError, match="junk is not a FreeSurfer surface"):
        read_sphere(tmp_path / "junk")


def test_vertex_count_mismatch_names_the_sphere_and_both_counts(rng):
    spheres = {"lh": _random_sphere(rng, 100), "rh": _random_sphere(rng, 90)}
    files = {"lh": "sub/surf/lh.sphere.reg", "rh": "sub/surf/rh.sphere.reg"}
    check_vertex_counts({"lh": 100, "rh": 90}, spheres, files)
    with pytest.raises(DataError, match=r"rh.sphere.reg has 90 vertices but .* rh surface has 91"):
        check_vertex_counts({"lh": 100, "rh": 91}, spheres, files)


def test_voxels_reach_vertices_as_weighted_means_of_finite_values():
    import scipy.sparse as sp

    # vertex 0: voxel 0 only; 1: half 0, half 1; 2: voxel 2 (NaN) -> NaN; 3: no voxel -> NaN;
    # 4: voxels 1 and 2 (NaN): voxel 1's value
    matrix = sp.csr_matrix(
        np.array([[1, 0, 0], [0.5, 0.5, 0], [0, 0, 1], [0, 0, 0], [0, 0.3, 0.7]])
    )
    out = voxels_to_vertices(matrix, np.array([2.0, 4.0, np.nan]))
    assert out[:2] == pytest.approx([2.0, 3.0])
    assert np.isnan(out[2]) and np.isnan(out[3])
    assert out[4] == pytest.approx(4.0)
    with pytest.raises(DataError, match="2 values for a mask of 3 voxels"):
        voxels_to_vertices(matrix, np.zeros(2))


def test_challenge_vertices_below_fsaverage5s_count_are_carried_exactly():
    lh = np.zeros(163842, dtype=bool)
    lh[[5, 700, 10241, 10242, 90000]] = True  # the last two are not fsaverage5 vertices
    rh = np.zeros(163842, dtype=bool)
    rh[[0, 12]] = True
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    out, carried = fsaverage_to_fsaverage5(values, [lh, rh])
    assert carried == 5
    assert out.shape == (2 * FSAVERAGE5_VERTICES,)
    assert out[[5, 700, 10241]] == pytest.approx([1.0, 2.0, 3.0])
    assert out[FSAVERAGE5_VERTICES + np.array([0, 12])] == pytest.approx([6.0, 7.0])
    assert np.isfinite(out).sum() == 5
    labels = labels_to_fsaverage5(np.array(["V1", "V2", "", "x", "y", "hV4", "V1"]), [lh, rh])
    assert labels[5] == "V1" and labels[700] == "V2" and labels[10241] == ""
    assert labels[FSAVERAGE5_VERTICES] == "hV4"
    with pytest.raises(
        DataError, match=r"7 vertex values, but the all-vertices masks select 5 \(lh\) \+ 1 \(rh\)"
    ):
        rh[12] = False
        fsaverage_to_fsaverage5(values, [lh, rh])
    with pytest.raises(DataError, match="expected fsaverage's 163842"):
        fsaverage_to_fsaverage5(np.zeros(2), [np.ones(1), np.ones(1)])
    # the fits' hemisphere order is the masks': rh first lands on the right hemisphere
    rh[12] = True
    out, _ = fsaverage_to_fsaverage5(np.array([6.0, 7.0, *values[:5]]), {"rh": rh, "lh": lh})
    assert out[FSAVERAGE5_VERTICES + np.array([0, 12])] == pytest.approx([6.0, 7.0])
    assert out[[5, 700, 10241]] == pytest.approx([1.0, 2.0, 3.0])
    out, _ = fsaverage_to_fsaverage5(values[:5], {"lh": lh})  # one hemisphere: the other NaN
    assert np.isnan(out[FSAVERAGE5_VERTICES:]).all() and np.isfinite(out).sum() == 3


def test_vision_fits_of_another_hemisphere_order_are_refused_by_name(tmp_path):
    from fmriscaling.surface.jobs import _check_hemispheres

    lh = np.zeros(163842, dtype=bool)
    lh[:3] = True
    rh = np.zeros(163842, dtype=bool)
    rh[:5] = True
    path = tmp_path / "scores.npz"
    np.savez(path, hemispheres=np.array(["lh", "rh"]), hemisphere_sizes=np.array([3, 5]))
    _check_hemispheres({"m": path}, {"lh": lh, "rh": rh})
    with pytest.raises(DataError, match=r"scores.npz holds hemispheres \['lh', 'rh'\]"):
        _check_hemispheres({"m": path}, {"rh": rh, "lh": lh})


def test_gifti_files_round_trip_through_nibabel(tmp_path, rng):
    values = rng.standard_normal(FSAVERAGE5_VERTICES).astype(np.float32)
    values[:10] = np.nan
    counts = rng.integers(0, 3, FSAVERAGE5_VERTICES)
    path = write_func_gifti(
        tmp_path / "g_space-fsaverage5_hemi-L_desc-x.func.gii", values, hemi="lh",
        name="tiny-opt.test_r", meta={"subjects": "UTS01,UTS02"}, counts=counts,
    )  # fmt: skip
    image = nib.load(path)
    assert image.meta["AnatomicalStructurePrimary"] == "CortexLeft"
    assert image.darrays[0].meta["Name"] == "tiny-opt.test_r"
    assert image.darrays[0].meta["subjects"] == "UTS01,UTS02"
    np.testing.assert_array_equal(image.darrays[0].data, values)
    np.testing.assert_array_equal(image.darrays[1].data, counts.astype(np.float32))
    np.testing.assert_array_equal(read_func_gifti(path), values)
    assert not list(tmp_path.glob(".*"))  # no temporary left behind


def _spec(name, group="mean"):
    source, kind = name.split(".")
    return MapSpec(name, source, kind, kind, "viridis", 0.0, 1.0, group)


def test_the_group_mean_equals_a_hand_computation_on_two_subjects(tmp_path):
    n = 2 * FSAVERAGE5_VERTICES
    a = np.full((2, n), np.nan)
    b = np.full((2, n), np.nan)
    a[0, :3] = [0.2, 0.4, np.nan]
    b[0, :3] = [0.6, np.nan, np.nan]
    a[1, :4] = [1.0, 0.6, 0.4, 0.0]  # significance: the fraction of subjects at >= 0.5
    b[1, :4] = [1.0, 0.0, 0.5, np.nan]
    labels_a = np.full(n, "", dtype="<U8")
    labels_b = labels_a.copy()
    labels_a[:3] = ["ST", "ST", "IP"]
    labels_b[:3] = ["ST", "IP", "IP"]
    subjects = {
        "S1": SurfaceMaps(["m.test_r", "m.significant"], a, {"aparc": labels_a}),
        "S2": SurfaceMaps(["m.test_r", "m.significant"], b, {"aparc": labels_b}),
    }
    for name, maps in subjects.items():  # through the files, as the rule does
        save_surface_maps(tmp_path / f"{name}.npz", maps)
        subjects[name] = load_surface_maps(tmp_path / f"{name}.npz")
    specs = [_spec("m.test_r"), _spec("m.significant", "fraction")]
    group = group_maps(subjects, specs)
    assert group.values[0, :3] == pytest.approx([0.4, 0.4, np.nan], nan_ok=True)
    assert group.counts[0, :3].tolist() == [2, 1, 0]
    assert group.values[1, :4] == pytest.approx([1.0, 0.5, 0.5, 0.0])
    assert group.counts[1, :4].tolist() == [2, 2, 2, 1]
    # labels: the majority across subjects (a tie goes to the first in sorted order)
    assert group.labels["aparc"][:3].tolist() == ["ST", "IP", "IP"]
    table = group_roi_table(group, specs, {"temporal": {"aparc": ["ST"]}, "x": {"other": ["a"]}})
    row = table.set_index(["map", "roi"]).loc[("m.test_r", "IP")]
    assert row["n_vertices"] == 1 and row["mean"] == pytest.approx(0.4)  # vertex 2 has no value
    row = table.set_index(["map", "roi"]).loc[("m.test_r", "temporal")]
    assert row["n_vertices"] == 1 and row["mean_n_subjects"] == 2
    cortex = table.set_index(["map", "roi"]).loc[("m.significant", "cortex")]
    assert cortex["n_vertices"] == 4 and cortex["mean"] == pytest.approx(0.5)
    assert "x" not in set(table["roi"])  # its atlas is not in the maps
    with pytest.raises(DataError, match=r"S1 has no map m\.gain"):
        group_maps(subjects, [_spec("m.gain")])


def test_the_tracks_map_specs():
    families = {"opt": ["opt-s", "opt-m"], "whisper": ["whisper"]}
    names = [s.name for s in language_map_specs(families, ["st"], significance=True)]
    assert names == [
        "noise_ceiling.cc_max",
        "opt.test_r", "opt.cc_norm", "opt.depth", "opt.gain", "opt.significant",
        "whisper.test_r", "whisper.cc_norm", "whisper.depth", "whisper.significant",
        "st.speech_weight",
    ]  # fmt: skip
    specs = language_map_specs(families, [], significance=False)
    assert not [s for s in specs if s.kind == "significant"]
    gain = next(s for s in specs if s.kind == "gain")
    assert gain.vmin is None  # symmetric around 0
    names = [s.name for s in vision_map_specs({"clip": ["s", "m"]}, noise_ceiling=True)]
    assert names == ["noise_ceiling.cc_max", "clip.test_r", "clip.score", "clip.depth", "clip.gain"]


def test_a_subjects_voxel_maps_from_its_fits(tmp_path, rng):
    n = 50
    cv = rng.standard_normal((4, n))  # layers 0..3 of the largest model
    r = {layer: rng.uniform(-0.1, 0.6, n) for layer in range(4)}
    small_r = rng.uniform(-0.1, 0.4, n)
    scores = {}
    for layer in range(4):
        path = tmp_path / f"m-{layer}.npz"
        np.savez(path, test_r=r[layer], cv_score=cv[layer], significant=r[layer] > 0.3)
        scores[("opt-m", layer)] = path
    np.savez(tmp_path / "s-1.npz", test_r=small_r, cv_score=np.zeros(n))
    scores[("opt-s", 1)] = tmp_path / "s-1.npz"
    weights = rng.dirichlet([1, 1, 1], size=n).T
    np.savez(tmp_path / "stack.npz", weights=weights, kinds=np.array(["speech", "text", "speech"]))
    best = pd.DataFrame(
        {
            "subject": "S1", "model": ["opt-s", "opt-m"], "family": "opt",
            "n_params": [1e6, 3e6], "layer": [1, 2], "n_layers": [2, 3],
        }
    )  # fmt: skip
    cc_max = rng.uniform(0.1, 0.9, n)
    cc_max[:3] = np.nan
    specs = language_map_specs({"opt": ["opt-s", "opt-m"]}, ["st"], significance=True)
    maps = language_voxel_maps(
        specs, "S1", best_layers=best, scores=scores, cc_max=cc_max, floor=0.25,
        stacks={"st": tmp_path / "stack.npz"},
    )  # fmt: skip
    np.testing.assert_allclose(maps["opt.test_r"], r[2])
    np.testing.assert_allclose(maps["opt.gain"], r[2] - small_r)
    np.testing.assert_allclose(maps["opt.depth"], np.argmax(cv, axis=0) / 3)
    np.testing.assert_allclose(maps["opt.significant"], (r[2] > 0.3).astype(float))
    expected = r[2] / np.maximum(cc_max, 0.25)
    np.testing.assert_allclose(maps["opt.cc_norm"][3:], expected[3:])
    assert np.isnan(maps["opt.cc_norm"][:3]).all()
    np.testing.assert_allclose(maps["noise_ceiling.cc_max"], cc_max)
    np.testing.assert_allclose(maps["st.speech_weight"], weights[0] + weights[2])
    # a model fitted at some layers only (the registry's `layers`): depth over those
    del scores[("opt-m", 3)]
    maps = language_voxel_maps(specs, "S1", best_layers=best, scores=scores, cc_max=cc_max,
                               floor=None, stacks={"st": tmp_path / "stack.npz"})  # fmt: skip
    np.testing.assert_allclose(maps["opt.depth"], np.argmax(cv[:3], axis=0) / 3)
    # but not without its CV-best layer (the tables and the inputs disagree)
    del scores[("opt-m", 2)]
    with pytest.raises(DataError, match="no scores of opt-m layer 2 among the rule's inputs"):
        language_voxel_maps(specs, "S1", best_layers=best, scores=scores, cc_max=cc_max,
                            floor=None, stacks={"st": tmp_path / "stack.npz"})  # fmt: skip


def test_a_sphere_of_another_subject_fails_before_any_map_is_read(cortex_dataset, tmp_path, rng):
    from fmriscaling.demo.cortex import synthetic_spheres
    from fmriscaling.surface.jobs import language_subject_job

    root, _ = cortex_dataset
    db = root / "derivative" / "pycortex-db"
    spheres = []
    for hemi, coords, faces in synthetic_spheres():
        if hemi == "rh":
            coords = coords[:-7]  # seven vertices short: another subject's mesh
            faces = faces[(faces < len(coords)).all(axis=1)]
        path = tmp_path / f"{hemi}.sphere.reg"
        nib.freesurfer.write_geometry(str(path), coords, faces)
        spheres.append(path)
    n_rh = len(nib.load(db / "UTS01" / "surfaces" / "pia_rh.gii").darrays[0].data)
    with pytest.raises(
        DataError,
        match=rf"rh.sphere.reg has {n_rh - 7} vertices but the subject's pycortex rh surface has {n_rh}",
    ):
        language_subject_job(
            [], "UTS01", best_layers=tmp_path / "missing.csv", scores={}, ceiling=tmp_path / "x",
            floor=None, stacks={}, db_dir=db, xfmname="UTS01_auto", mask=tmp_path / "mask",
            spheres=spheres, annotations={}, sampler="nearest", out=tmp_path / "maps.npz",
            giftis=[],
        )  # fmt: skip
    assert not (tmp_path / "maps.npz").exists()


def test_the_demo_spheres_are_on_the_sphere_with_s1s_vertex_order(cortex_dataset):
    from fmriscaling.surface.sphere import sphere_relpath, surface_vertex_counts

    root, _ = cortex_dataset
    counts = surface_vertex_counts(root / "derivative" / "pycortex-db", "UTS01")
    for hemi in ("lh", "rh"):
        unit = read_sphere(root / sphere_relpath("UTS01", hemi))
        assert unit.shape == (counts[hemi], 3)
        coords, _ = nib.freesurfer.read_geometry(str(root / sphere_relpath("UTS01", hemi)))
        assert np.allclose(np.linalg.norm(coords, axis=1), 100.0, rtol=1e-5)
        # the axes keep their meaning: the inflated surface's most anterior vertex is at +y
        inflated = (
            nib.load(
                root / "derivative" / "pycortex-db" / "UTS01" / "surfaces" / f"inflated_{hemi}.gii"
            )
            .darrays[0]
            .data
        )
        assert unit[np.argmax(inflated[:, 1]), 1] > 0.8
