"""Tests of the HDF5 response readers, the TR-count check and the mask loader."""

from __future__ import annotations

import logging

import h5py
import nibabel as nib
import numpy as np
import pytest

from fmriscaling import DataError
from fmriscaling.responses import (
    check_tr_count,
    constant_voxels,
    load_mask,
    read_repeats,
    read_responses,
)


def _hf5(path, **datasets):
    with h5py.File(path, "w") as f:
        for name, arr in datasets.items():
            f.create_dataset(name, data=arr)
    return path


def test_read_responses_shape_dtype(tmp_path, rng):
    data = rng.standard_normal((6, 9))
    path = _hf5(tmp_path / "souls.hf5", data=data)
    Y = read_responses(path, n_trs=6, story="souls")
    assert Y.shape == (6, 9)
    assert Y.dtype == np.float32
    np.testing.assert_allclose(Y, data, rtol=1e-6)


def test_wrong_tr_count(tmp_path, rng):
    path = _hf5(tmp_path / "souls.hf5", data=rng.standard_normal((6, 9)))
    with pytest.raises(DataError) as exc:
        read_responses(path, n_trs=355, story="souls")
    msg = str(exc.value)
    assert "'souls'" in msg
    assert "has 6 TRs but 355 were expected" in msg
    assert str(path) in msg


@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_non_finite_values(tmp_path, rng, bad_value):
    data = rng.standard_normal((6, 9))
    data[0, 2] = data[4, 2] = data[1, 7] = bad_value
    path = _hf5(tmp_path / "s.hf5", data=data)
    with pytest.raises(DataError, match=r"3 NaN/inf value\(s\) in 2 of 9 voxels") as exc:
        read_responses(path)
    assert "[2, 7]" in str(exc.value)
    assert str(path) in str(exc.value)


def test_annex_pointer_and_not_hdf5(tmp_path):
    pointer = tmp_path / "souls.hf5"
    pointer.write_text("/annex/objects/MD5E-s230399888--d41d8cd98f00b204e9800998ecf8427e.hf5\n")
    with pytest.raises(DataError, match=r"git-annex pointer"):
        read_responses(pointer)
    other = tmp_path / "text.hf5"
    other.write_text("this is not hdf5 " * 100)
    with pytest.raises(DataError, match=r"not an HDF5 file") as exc:
        read_responses(other)
    assert str(other) in str(exc.value)
    empty = tmp_path / "empty.hf5"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty"):
        read_responses(empty)


def test_missing_data_lists_datasets(tmp_path, rng):
    path = _hf5(tmp_path / "s.hf5", responses=rng.standard_normal((4, 3)), mask=np.ones(3))
    with pytest.raises(DataError, match=r"no dataset 'data'") as exc:
        read_responses(path)
    assert "responses (4, 3)" in str(exc.value)
    assert "mask (3,)" in str(exc.value)


def test_data_not_2d(tmp_path):
    path = _hf5(tmp_path / "s.hf5", data=np.zeros((2, 3, 4)))
    with pytest.raises(DataError, match=r"shape \(2, 3, 4\); expected 2-D"):
        read_responses(path)


def test_constant_voxels(tmp_path, rng, caplog):
    data = rng.standard_normal((6, 5))
    data[:, 1] = 3.0
    data[:, 4] = 0.0
    assert constant_voxels(data).tolist() == [False, True, False, False, True]
    path = _hf5(tmp_path / "s.hf5", data=data)
    with caplog.at_level(logging.WARNING, logger="fmriscaling.responses"):
        Y = read_responses(path)
    assert Y.shape == (6, 5)
    assert any("2 of 5 voxels are constant" in r.getMessage() for r in caplog.records)


def test_read_repeats(tmp_path, rng, caplog):
    reps = rng.standard_normal((3, 7, 4))
    path = _hf5(tmp_path / "wheretheressmoke.hf5", individual_repeats=reps, data=reps.mean(0))
    with caplog.at_level(logging.WARNING, logger="fmriscaling.responses"):
        out = read_repeats(path, n_trs=7)
    assert out.shape == (3, 7, 4)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, reps, rtol=1e-6)
    assert not caplog.records  # data is the repeat mean: nothing to warn about


def test_read_repeats_mean_mismatch_warns(tmp_path, rng, caplog):
    reps = rng.standard_normal((2, 7, 4))
    path = _hf5(tmp_path / "w.hf5", individual_repeats=reps, data=reps.mean(0) + 1.0)
    with caplog.at_level(logging.WARNING, logger="fmriscaling.responses"):
        read_repeats(path)
    assert any("differs from the mean" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("data_shape", [(6, 4), (7, 3)])
def test_read_repeats_refuses_data_of_another_shape(tmp_path, rng, data_shape):
    # test r is computed on 'data': a ceiling over other TRs or voxels must not pass silently
    reps = rng.standard_normal((2, 7, 4))
    path = _hf5(tmp_path / "w.hf5", individual_repeats=reps, data=rng.standard_normal(data_shape))
    with pytest.raises(DataError) as exc:
        read_repeats(path)
    msg = str(exc.value)
    for part in (str(path), f"shape {data_shape}", "(7, 4)", "individual_repeats", "md5"):
        assert part in msg


def test_read_repeats_alternative_name(tmp_path, rng):
    reps = rng.standard_normal((2, 5, 3))
    path = _hf5(tmp_path / "w.hf5", repeats=reps)
    np.testing.assert_allclose(read_repeats(path), reps, rtol=1e-6)


def test_read_repeats_neither_dataset(tmp_path, rng):
    path = _hf5(tmp_path / "w.hf5", data=rng.standard_normal((5, 3)))
    with pytest.raises(DataError, match=r"no repeats dataset") as exc:
        read_repeats(path)
    msg = str(exc.value)
    assert "data (5, 3)" in msg
    assert "test story" in msg
    assert "individual_repeats" in msg


def test_read_repeats_validation(tmp_path, rng):
    one = _hf5(tmp_path / "one.hf5", individual_repeats=rng.standard_normal((1, 5, 3)))
    with pytest.raises(DataError, match=r"holds 1 repeat"):
        read_repeats(one)
    flat = _hf5(tmp_path / "flat.hf5", individual_repeats=rng.standard_normal((5, 3)))
    with pytest.raises(DataError, match=r"expected 3-D"):
        read_repeats(flat)
    short = _hf5(tmp_path / "short.hf5", individual_repeats=rng.standard_normal((2, 5, 3)))
    with pytest.raises(DataError, match=r"have 5 TRs but 6 were expected"):
        read_repeats(short, n_trs=6, story="wheretheressmoke")
    reps = rng.standard_normal((2, 5, 3))
    reps[1, 0, 0] = np.nan
    nan = _hf5(tmp_path / "nan.hf5", individual_repeats=reps)
    with pytest.raises(DataError, match=r"1 of 3 voxels"):
        read_repeats(nan)


def test_check_tr_count():
    check_tr_count("souls", 355, 355)
    with pytest.raises(DataError) as exc:
        check_tr_count(
            "souls", 360, 355, feature_file="feat/souls.npz", response_file="UTS01/souls.hf5"
        )
    msg = str(exc.value)
    for part in ("'souls'", "360", "355", "feat/souls.npz", "UTS01/souls.hf5", "respdict"):
        assert part in msg


def test_load_mask(tmp_path, rng):
    vol = (rng.random((4, 5, 6)) > 0.5).astype(np.uint8)
    path = tmp_path / "mask_thick.nii.gz"
    nib.save(nib.Nifti1Image(vol, np.eye(4)), path)
    mask, n = load_mask(path)
    assert mask.dtype == bool
    assert mask.shape == (6, 5, 4)  # pycortex (z, y, x) order
    assert n == int(vol.sum())
    np.testing.assert_array_equal(mask, vol.T.astype(bool))
    mask_xyz, _ = load_mask(path, pycortex_order=False)
    np.testing.assert_array_equal(mask_xyz, vol.astype(bool))
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not a nifti at all" * 100)
    with pytest.raises(DataError, match=r"not a readable NIfTI"):
        load_mask(bad)
