"""Truncated and corrupt HDF5 inputs: response and feature readers say what is wrong and the fix."""

from __future__ import annotations

import h5py
import pytest

from fmriscaling import DataError
from fmriscaling.features.io import FeatureWriter, layer_path, list_stories, read_layer
from fmriscaling.responses import read_repeats, read_responses


def _truncate(path, n_bytes: int) -> None:
    path.write_bytes(path.read_bytes()[:n_bytes])


def _overwrite(path, start: int, stop: int) -> None:
    blob = bytearray(path.read_bytes())
    blob[start:stop] = b"\xff" * (stop - start)
    path.write_bytes(bytes(blob))


@pytest.fixture
def response_file(tmp_path, rng):
    """The test story of UTS01 in the ds003020 layout under ``<tmp>/ds``: repeats and their mean."""
    path = tmp_path / "ds" / "derivative" / "preprocessed_data" / "UTS01" / "wheretheressmoke.hf5"
    path.parent.mkdir(parents=True)
    repeats = rng.standard_normal((3, 40, 25))
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=repeats.mean(axis=0))
        f.create_dataset("individual_repeats", data=repeats)
    return path


@pytest.fixture
def feature_file(tmp_path, rng):
    """Layer 1 of a two-layer model, two stories, in ``results/features/<dataset>/<model>``."""
    out_dir = tmp_path / "results" / "features" / "demo" / "tiny"
    with FeatureWriter(out_dir, n_layers=2, model_name="tiny") as writer:
        for story in ("a_story", "b_story"):
            writer.write_story(story, rng.standard_normal((3, 30, 16)))
    return layer_path(out_dir, 1)


RESPONSE_READERS = [read_responses, read_repeats]
FEATURE_READERS = [lambda path: read_layer(path, "a_story"), list_stories]


def _fetch_commands(path) -> list[str]:
    root = path.parents[3]
    return [
        f"`snakemake --cores 1 --force {path}`",
        f"`python -m fmriscaling.download --dest {root} --subjects UTS01 --stories "
        "wheretheressmoke --kinds responses --verify-existing`",
    ]


@pytest.mark.parametrize("read", RESPONSE_READERS)
def test_truncated_response_file(response_file, read):
    full = response_file.stat().st_size
    _truncate(response_file, full // 2)
    with pytest.raises(DataError) as exc:
        read(response_file)
    message = str(exc.value)
    assert message.startswith(f"{response_file}: truncated HDF5 response file: ")
    # HDF5 records the complete file's length in its superblock
    assert f"{full // 2} bytes on disk, but its HDF5 superblock records {full} bytes" in message
    assert f"({full - full // 2} bytes missing)" in message
    for command in _fetch_commands(response_file):
        assert command in message


def test_response_file_against_expected_size(response_file, rng):
    size = response_file.stat().st_size
    Y = read_responses(response_file, expected_size=size)
    assert Y.shape == (40, 25)
    with pytest.raises(DataError) as exc:
        read_responses(response_file, expected_size=size + 1000)
    assert f"{size} bytes on disk, but {size + 1000} bytes were expected" in str(exc.value)
    assert "(1000 bytes missing)" in str(exc.value)
    with pytest.raises(DataError, match=f"has {size} bytes but {size - 1} were expected"):
        read_repeats(response_file, expected_size=size - 1)


@pytest.mark.parametrize("read", RESPONSE_READERS)
def test_corrupt_response_header(response_file, read):
    _overwrite(response_file, 8, 16)  # the superblock's version numbers, after the signature
    with pytest.raises(DataError) as exc:
        read(response_file)
    message = str(exc.value)
    assert message.startswith(f"{response_file}: not a readable HDF5 file: its header")
    assert "bad superblock version number" in message
    for command in _fetch_commands(response_file):
        assert command in message


def test_overwritten_signature_outside_the_dataset_layout(tmp_path, rng):
    path = tmp_path / "souls.hf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=rng.standard_normal((6, 9)))
    _overwrite(path, 0, 8)
    with pytest.raises(DataError) as exc:
        read_responses(path)
    message = str(exc.value)
    assert message.startswith(f"{path}: not an HDF5 file (first bytes b'\\xff\\xff")
    assert f"`snakemake --cores 1 --force {path}`" in message
    # not in derivative/preprocessed_data/<subject>/: no downloader command to offer
    assert "fmriscaling.download" not in message


def test_corrupt_data_chunk(tmp_path, rng):
    path = tmp_path / "souls.hf5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("data", data=rng.standard_normal((6, 9)), compression="gzip")
        chunk = ds.id.get_chunk_info(0)
    _overwrite(path, chunk.byte_offset, chunk.byte_offset + chunk.size)
    with pytest.raises(DataError, match=r"reading the HDF5 response file failed, it is corrupt"):
        read_responses(path)


@pytest.mark.parametrize("read", FEATURE_READERS)
def test_truncated_feature_file(feature_file, read):
    full = feature_file.stat().st_size
    _truncate(feature_file, 1000)
    with pytest.raises(DataError) as exc:
        read(feature_file)
    message = str(exc.value)
    assert message.startswith(f"{feature_file}: truncated HDF5 feature file: ")
    assert f"1000 bytes on disk, but its HDF5 superblock records {full} bytes" in message
    assert f"({full - 1000} bytes missing)" in message
    # the rule's output is the model's directory, not the layer file
    assert f"`snakemake --cores 1 --force {feature_file.parent}`" in message


@pytest.mark.parametrize("read", FEATURE_READERS)
def test_corrupt_feature_header(feature_file, read):
    _overwrite(feature_file, 8, 16)
    with pytest.raises(DataError) as exc:
        read(feature_file)
    message = str(exc.value)
    assert message.startswith(f"{feature_file}: not a readable HDF5 file: its header")
    assert f"`snakemake --cores 1 --force {feature_file.parent}`" in message


def test_feature_file_that_is_an_annex_pointer(feature_file):
    feature_file.write_text("/annex/objects/MD5E-s230399888--d41d8cd98f00b204e9800998ecf8427e.h5\n")
    with pytest.raises(DataError, match=r"git-annex pointer"):
        read_layer(feature_file, "a_story")


def test_intact_files_still_read(response_file, feature_file):
    assert read_repeats(response_file).shape == (3, 40, 25)
    assert list_stories(feature_file) == ["a_story", "b_story"]
    assert read_layer(feature_file, "b_story").shape == (30, 16)


def test_locked_file_is_not_called_corrupt(response_file, monkeypatch):
    def locked(*args, **kwargs):
        raise OSError(
            "Unable to synchronously open file (unable to lock file, errno = 11, error "
            "message = 'Resource temporarily unavailable')"
        )

    monkeypatch.setattr(h5py, "File", locked)
    with pytest.raises(DataError) as exc:
        read_responses(response_file)
    message = str(exc.value)
    assert "could not open the HDF5 response file (Unable" in message
    assert "corrupt" not in message and "If it is damaged: Fetch it again" in message
