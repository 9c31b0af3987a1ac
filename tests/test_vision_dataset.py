"""The Algonauts 2023 adapter: layout checks and their instructions, image / fMRI row counts,
safe ROI mappings (a malicious pickle is refused), and the synthetic dataset's layout."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from _vision_fixtures import HEMIS, SUBJECT, build_dataset

from fmriscaling import DataError
from fmriscaling.vision.dataset import (
    PUBLISHED_LABELS,
    ROI_CLASSES,
    check_algonauts_dir,
    list_images,
    ncsnr_from_fsaverage,
    npy_shape,
    read_repeats,
    read_roi_labels,
    read_roi_mapping,
    relpath,
    roi_masks,
)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_dataset(tmp_path_factory.mktemp("vision"), n_train_images=24, n_vertices=30)


@pytest.fixture
def copy(built, tmp_path):
    """A fresh copy of the dataset to damage."""
    root = tmp_path / "algonauts"
    shutil.copytree(built["data"], root)
    return root


def test_synthetic_dataset_has_the_challenge_layout(built):
    root = built["data"]
    counts = check_algonauts_dir(root, [SUBJECT], HEMIS)
    assert counts[SUBJECT] == {"n_train": 24, "n_test_images": 4, "lh": 30, "rh": 30}
    images = list_images(root / relpath("training_images", subject=SUBJECT))
    assert images[0].name.startswith("train-0001_nsd-") and images[-1].name.startswith("train-0024")
    assert npy_shape(root / relpath("training_fmri", subject=SUBJECT, hemi="lh")) == (24, 30)
    fmri = np.load(root / relpath("training_fmri", subject=SUBJECT, hemi="rh"))
    assert fmri.dtype == np.float32
    np.testing.assert_allclose(fmri.mean(0), 0, atol=1e-5)  # z-scored per vertex, as NSD's
    for roi_class in ROI_CLASSES:
        # the mapping files are real pickled dicts, readable only by the restricted unpickler
        path = root / relpath("roi_mapping", subject=SUBJECT, roi_class=roi_class)
        with pytest.raises(ValueError, match="allow_pickle"):
            np.load(path)
        assert read_roi_mapping(path) == PUBLISHED_LABELS[roi_class]


def test_missing_directory_says_how_to_obtain_the_data_and_where_to_put_it(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(DataError) as err:
        check_algonauts_dir(root, ["subj01"])
    message = str(err.value)
    assert f"{root} does not exist" in message and "vision.dataset.dir" in message
    assert "naturalscenesdataset.org" in message and "algonauts.csail.mit.edu" in message
    assert f"{root}/subj01/training_split/training_fmri/lh_training_fmri.npy" in message


def test_incomplete_directory_lists_every_missing_file(copy):
    fmri = copy / relpath("training_fmri", subject=SUBJECT, hemi="rh")
    mapping = copy / relpath("roi_mapping", subject=SUBJECT, roi_class="floc-faces")
    ncsnr = copy / relpath("ncsnr", subject=SUBJECT, hemi="lh")
    for path in (fmri, mapping, ncsnr):
        path.unlink()
    with pytest.raises(DataError) as err:
        check_algonauts_dir(copy, [SUBJECT, "subj02"], HEMIS)
    message = str(err.value)
    assert "incomplete" in message
    for path in (fmri, mapping, ncsnr):
        assert str(path) in message
    assert f"{copy / 'subj02'}/ (the whole subject folder)" in message
    # how to obtain the challenge data, and NSD's ncsnr, which the archive lacks
    assert "naturalscenesdataset.org" in message and "ncsnr.mgh" in message


def test_noise_ceiling_files_are_optional_when_it_is_off(copy):
    (copy / relpath("ncsnr", subject=SUBJECT, hemi="rh")).unlink()
    with pytest.raises(DataError, match="noise ceiling"):
        check_algonauts_dir(copy, [SUBJECT], HEMIS)
    assert check_algonauts_dir(copy, [SUBJECT], HEMIS, noise_ceiling=False)[SUBJECT]["n_train"]


def test_image_and_fmri_row_counts_must_agree(copy):
    folder = copy / relpath("training_images", subject=SUBJECT)
    for image in list_images(folder)[-2:]:
        image.unlink()
    with pytest.raises(DataError) as err:
        check_algonauts_dir(copy, [SUBJECT], HEMIS)
    message = str(err.value)
    for hemi in HEMIS:
        assert f"{SUBJECT} {hemi}: 22 images in {folder} but 24 fMRI rows" in message


def test_images_are_ordered_by_their_row_index(tmp_path):
    for name in ("train-10_nsd-00007.png", "train-2_nsd-00001.png", "train-1_nsd-00100.png"):
        (tmp_path / name).write_bytes(b"png")
    assert [p.name.split("_")[0] for p in list_images(tmp_path)] == [
        "train-1",
        "train-2",
        "train-10",
    ]


def test_a_real_pickled_mapping_is_read(tmp_path):
    table = {0: "Unknown", 1: "OFA", 2: "FFA-1"}
    np.save(tmp_path / "npy_dict.npy", np.array(table, dtype=object), allow_pickle=True)
    assert read_roi_mapping(tmp_path / "npy_dict.npy") == table
    # numpy integer keys (a dict built from label arrays) and a bare pickle file
    np_keys = {np.int64(k): v for k, v in table.items()}
    np.save(tmp_path / "np_keys.npy", np.array(np_keys, dtype=object), allow_pickle=True)
    assert read_roi_mapping(tmp_path / "np_keys.npy") == table
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps(table))
    assert read_roi_mapping(tmp_path / "plain.pkl") == table


class _Exploit:
    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


@pytest.mark.parametrize("wrapper", ["npy", "pickle"])
def test_a_malicious_mapping_is_refused_without_running_it(tmp_path, wrapper):
    target = tmp_path / "pwned"
    path = tmp_path / f"mapping_streams.{wrapper}"
    payload = {0: "Unknown", 1: _Exploit(target)}
    if wrapper == "npy":
        np.save(path, np.array(payload, dtype=object), allow_pickle=True)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(DataError, match=r"refus.*(posix|os|nt)\.system"):
        read_roi_mapping(path)
    assert not target.exists()


def test_a_mapping_must_map_labels_to_names(tmp_path):
    np.save(tmp_path / "m.npy", np.array({"1": 2}, dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="not an integer label -> name"):
        read_roi_mapping(tmp_path / "m.npy")
    np.save(tmp_path / "numbers.npy", np.arange(3))
    with pytest.raises(DataError, match="expected a pickled dict"):
        read_roi_mapping(tmp_path / "numbers.npy")


def test_roi_masks_of_streams_and_categories(built):
    root = built["data"]
    labels = {
        c: read_roi_labels(
            [root / relpath("roi_mask", subject=SUBJECT, hemi=h, roi_class=c) for h in HEMIS],
            root / relpath("roi_mapping", subject=SUBJECT, roi_class=c),
            roi_class=c,
        )
        for c in ROI_CLASSES
    }
    masks = roi_masks(labels)
    streams = labels["streams"][0]
    assert masks[("all", "all")].sum() == streams.size == 60
    assert set(masks) >= {("stream", "early"), ("stream", "parietal"), ("category", "faces")}
    np.testing.assert_array_equal(masks[("stream", "ventral")], streams == 5)
    np.testing.assert_array_equal(masks[("category", "words")], labels["floc-words"][0] > 0)
    # the demo puts category ROIs in the higher streams only
    assert np.isin(streams[masks[("category", "faces")]], [5, 6]).all()


def test_repeat_counts_are_checked(tmp_path):
    assert read_repeats(None, 4, default=2).tolist() == [2, 2, 2, 2]
    np.save(tmp_path / "r.npy", np.array([3, 3, 4]))
    with pytest.raises(DataError, match="expected 3 repeat counts of 1-3"):
        read_repeats(tmp_path / "r.npy", 3)


def test_ncsnr_from_fsaverage_keeps_the_challenge_vertices(tmp_path):
    values = np.arange(10, dtype=np.float32)
    nib.save(nib.MGHImage(values.reshape(10, 1, 1), np.eye(4)), tmp_path / "lh.ncsnr.mgh")
    mask = np.zeros(10, dtype=np.float32)
    mask[[1, 4, 7]] = 1
    np.save(tmp_path / "lh.all-vertices_fsaverage_space.npy", mask)
    out = tmp_path / "noise_ceiling" / "lh_ncsnr.npy"
    got = ncsnr_from_fsaverage(
        tmp_path / "lh.ncsnr.mgh", tmp_path / "lh.all-vertices_fsaverage_space.npy", out=out
    )
    np.testing.assert_array_equal(got, [1, 4, 7])
    np.testing.assert_array_equal(np.load(out), [1, 4, 7])
