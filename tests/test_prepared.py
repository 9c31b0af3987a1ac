"""Prepared responses (one checked file per subject) and fits that share a design across subjects.

A shared fit must give every subject what a fit of that subject alone, from its raw files, gives;
a prepared file that is truncated, damaged, built from other raw files or trimmed otherwise must
be refused, never used.
"""

from __future__ import annotations

import json
import os
import re

import h5py
import numpy as np
import pytest

from fmriscaling import DataError
from fmriscaling._utils import provenance_path
from fmriscaling.encoding.design import build_design
from fmriscaling.encoding.fit import fit_encoding, fit_encoding_subjects
from fmriscaling.encoding.prepared import (
    StaleResponsesError,
    open_prepared,
    prepare_responses,
)
from fmriscaling.encoding.ridge import fit_ridge_cv
from fmriscaling.encoding.targets import ArrayColumns, StackedColumns
from fmriscaling.responses import read_responses

TRAIN = ["alpha", "beta", "gamma", "delta"]
TEST = "test"
SETTINGS = {"delays": (1, 2, 3, 4), "alphas": np.logspace(-1, 4, 6), "backend": "numpy"}
ARRAYS = ("test_r", "alpha", "cv_score", "weights", "test_pred", "test_true", "oof_pred")


@pytest.fixture
def subjects(encoding_dataset, tmp_path):
    """Two subjects with the same stories: layer file, raw files and prepared files."""
    feature_file, raw = encoding_dataset(subjects=("S1", "S2"))
    prepared = {}
    for subject, files in raw.items():
        prepared[subject] = tmp_path / "prepared" / f"{subject}.h5"
        prepare_responses(
            files,
            prepared[subject],
            stories=[*TRAIN, TEST],
            extra_trim={TEST: 40},
            subject=subject,
            params={"extra_trim": {TEST: 40}},
        )
    return feature_file, raw, prepared


def _shared(subjects, tmp_path, **kw):
    feature_file, _, prepared = subjects
    args = dict(
        feature_file=feature_file,
        prepared_files=prepared,
        train_stories=TRAIN,
        test_story=TEST,
        out_npz={s: tmp_path / "shared" / s / "scores.npz" for s in prepared},
        **SETTINGS,
    )
    return fit_encoding_subjects(**{**args, **kw})


def _alone(subjects, subject, tmp_path, **kw):
    feature_file, raw, _ = subjects
    args = dict(
        feature_file=feature_file,
        response_files=raw[subject],
        train_stories=TRAIN,
        test_story=TEST,
        out_npz=tmp_path / "alone" / subject / "scores.npz",
        **SETTINGS,
    )
    return fit_encoding(**{**args, **kw})


def test_prepared_file_holds_what_build_design_makes(subjects):
    _, raw, prepared = subjects
    responses = {s: read_responses(p) for s, p in raw["S1"].items()}
    features = {s: np.zeros((y.shape[0], 1), np.float32) for s, y in responses.items()}
    with open_prepared(prepared["S1"], extra_trim={TEST: 40}) as handle:
        record = handle.record
        for story in [*TRAIN, TEST]:
            trim = {TEST: 40}.get(story, 0)
            _, expected, _ = build_design(features, responses, [story], extra_trim={TEST: trim})
            # the very same bytes: a fit gets identical numbers from either path
            np.testing.assert_array_equal(handle.read(story), expected)
        stacked = handle.columns(TRAIN)
        _, Y_train, _ = build_design(features, responses, TRAIN)
        np.testing.assert_array_equal(stacked.read(slice(3, 8)), Y_train[:, 3:8])
        assert stacked.shape == Y_train.shape
    assert record["stories"] == [*TRAIN, TEST]
    assert record["n_trs"] == [120, 100, 110, 90, 120]
    assert record["n_trs_raw"] == [120, 100, 110, 90, 160]
    assert record["extra_trim"] == [0, 0, 0, 0, 40] and record["n_voxels"] == 10
    assert record["sources"][0]["size"] == os.path.getsize(raw["S1"]["alpha"])
    with h5py.File(prepared["S1"], "r") as f:
        ds = f["stories"]["alpha"]
        assert ds.dtype == np.float32 and ds.fletcher32 and ds.chunks == (120, 10)
    prov = json.loads(provenance_path(prepared["S1"]).read_text())
    assert prov["file_size"] == os.path.getsize(prepared["S1"])
    assert prov["record"] == record and prov["params"] == {"extra_trim": {TEST: 40}}


@pytest.mark.parametrize("kw", [{}, {"n_targets_batch": 3}, {"cv": "bootstrap", "seed": 2}])
def test_shared_fit_equals_fits_of_each_subject_from_raw_files(subjects, tmp_path, kw):
    kw = {"save_weights": True, "save_predictions": True, **kw}
    summaries = _shared(subjects, tmp_path, **kw)
    for subject, other in (("S1", "S2"), ("S2", "S1")):
        alone = _alone(subjects, subject, tmp_path, **kw)
        shared = summaries[subject]
        assert shared["shared_with"] == [other] and alone["shared_with"] == []
        assert shared["n_voxels"] == alone["n_voxels"] == 10
        for key in ("n_train_trs", "n_test_trs", "n_folds", "solver", "mean_test_r"):
            assert shared[key] == alone[key], key
        with (
            np.load(tmp_path / "shared" / subject / "scores.npz") as a,
            np.load(tmp_path / "alone" / subject / "scores.npz") as b,
        ):
            assert sorted(a.files) == sorted(b.files)
            for name in ARRAYS:
                # same bytes in, same batches: the same numbers
                np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    prov = json.loads((tmp_path / "shared/S1/scores.npz.provenance.json").read_text())
    assert prov["prepared_responses"].endswith("S1.h5") and len(prov["prepared_record_hash"]) == 16


@pytest.mark.parametrize("backend", ["torch", pytest.param("torch_cuda", marks=pytest.mark.gpu)])
def test_shared_fit_equals_fits_of_each_subject_on_torch(subjects, tmp_path, backend):
    kw = {"backend": backend, "score_dtype": "float32", "n_targets_batch": 4}
    _shared(subjects, tmp_path, **kw)
    for subject in ("S1", "S2"):
        _alone(subjects, subject, tmp_path, **kw)
        with (
            np.load(tmp_path / "shared" / subject / "scores.npz") as a,
            np.load(tmp_path / "alone" / subject / "scores.npz") as b,
        ):
            # a GPU may pick other kernels for other shapes: equal within float32 rounding
            np.testing.assert_array_equal(a["alpha"], b["alpha"])
            np.testing.assert_allclose(a["test_r"], b["test_r"], atol=1e-5)
            np.testing.assert_allclose(a["cv_score"], b["cv_score"], atol=1e-5)


def test_shared_subset_fit_reads_only_its_stories(subjects, tmp_path):
    subset = ["beta", "delta"]
    shared = _shared(subjects, tmp_path, train_stories=subset)
    alone = _alone(subjects, "S2", tmp_path, train_stories=subset)
    assert shared["S2"]["n_train_trs"] == 190 == alone["n_train_trs"]
    with (
        np.load(tmp_path / "shared/S2/scores.npz") as a,
        np.load(tmp_path / "alone/S2/scores.npz") as b,
    ):
        np.testing.assert_array_equal(a["test_r"], b["test_r"])


def test_stacked_targets_never_share_a_batch(rng):
    X = rng.standard_normal((80, 5)).astype(np.float32)
    Y1, Y2 = (rng.standard_normal((80, n)).astype(np.float32) for n in (7, 4))
    stacked = StackedColumns([ArrayColumns(Y1), ArrayColumns(Y2)])
    assert stacked.segments == (7, 4)
    np.testing.assert_array_equal(stacked.read(slice(5, 9)), np.hstack([Y1, Y2])[:, 5:9])
    folds = [(np.arange(40, 80), np.arange(40)), (np.arange(40), np.arange(40, 80))]
    fit = dict(alphas=[0.1, 10.0, 1000.0], folds=folds, backend="numpy", n_targets_batch=5)
    both = fit_ridge_cv(X, stacked, **fit)
    first, second = fit_ridge_cv(X, Y1, **fit), fit_ridge_cv(X, Y2, **fit)
    np.testing.assert_array_equal(both.cv_scores_all, np.hstack([first.cv_scores_all,
                                                                second.cv_scores_all]))  # fmt: skip


def _refused(subjects, tmp_path, match, **kw):
    with pytest.raises(StaleResponsesError, match=match):
        _shared(subjects, tmp_path, **kw)


def test_truncated_prepared_file_is_refused_named_and_kept(subjects, tmp_path):
    path = subjects[2]["S2"]
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size - 100)
    _refused(subjects, tmp_path, rf"{size - 100} bytes but was written with {size}")
    # the caller's hint (how to rebuild it) is added; the reader deletes nothing
    hint = "It is an output of rule prepare_responses: rebuild it."
    _refused(subjects, tmp_path, rf"{re.escape(str(path))}.*{re.escape(hint)}", stale_hint=hint)
    assert path.exists() and provenance_path(path).exists()
    assert not (tmp_path / "shared/S1/scores.npz").exists()  # and no subject got a result


def test_damaged_byte_fails_the_read(subjects, tmp_path):
    path = subjects[2]["S1"]
    with h5py.File(path, "r") as f:
        offset = f["stories"]["gamma"].id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as f:  # same size, same record: only the checksum can tell
        f.seek(offset + 17)
        byte = f.read(1)
        f.seek(offset + 17)
        f.write(bytes([byte[0] ^ 0xFF]))
    _refused(subjects, tmp_path, r"story 'gamma' failed, the file is corrupt")


def test_touched_raw_file_is_fine_but_a_rewritten_one_is_stale(subjects, tmp_path, caplog):
    raw = subjects[1]["S1"]["beta"]
    stat = raw.stat()
    later = stat.st_mtime_ns + 1_000_000_000
    os.utime(raw, ns=(stat.st_atime_ns, later))
    # the same bytes (as Snakemake's input checksums see it, it needs no rebuild either)
    with caplog.at_level("INFO"):
        _shared(subjects, tmp_path)
    assert "was touched since" in caplog.text
    with h5py.File(raw, "r+") as f:  # other values, same size
        f["data"][3, 2] += 1.0
    os.utime(raw, ns=(stat.st_atime_ns, later))
    assert raw.stat().st_size == stat.st_size
    _refused(subjects, tmp_path, rf"source {raw} changed since it was built \(same size")


def test_other_trim_than_the_prepared_one_is_refused(subjects, tmp_path):
    _refused(subjects, tmp_path, r"'test': 40 stored, 30 asked", test_extra_trim=30)


def test_missing_provenance_or_story_is_refused(subjects, tmp_path):
    _, raw, prepared = subjects
    # a file of the training stories only cannot serve a fit that needs the test story
    prepare_responses(raw["S1"], prepared["S1"], stories=TRAIN)
    _refused(subjects, tmp_path, r"lacks stories \['test'\]")
    provenance_path(prepared["S2"]).unlink()
    with pytest.raises(StaleResponsesError, match=r"provenance record .* is missing"):
        with open_prepared(prepared["S2"]):
            pass


def test_tr_count_mismatch_names_the_story_and_both_counts(subjects, tmp_path):
    feature_file = subjects[0]
    with h5py.File(feature_file, "a") as f:
        x = f["gamma"][:100]
        del f["gamma"]
        f["gamma"] = x
    with pytest.raises(DataError, match=r"story 'gamma': features have 100 TRs.*110 TRs"):
        _shared(subjects, tmp_path)
    assert subjects[2]["S1"].exists()  # the responses are fine: nothing to rebuild


def test_prepare_refuses_other_voxel_counts(subjects, tmp_path):
    _, raw, _ = subjects
    with h5py.File(raw["S1"]["delta"], "r+") as f:
        data = f["data"][:, :7]
        del f["data"]
        f["data"] = data
    with pytest.raises(DataError, match=r"'delta'.* 7 voxels but story 'alpha' has 10"):
        prepare_responses(raw["S1"], tmp_path / "x.h5", stories=TRAIN)
    assert not (tmp_path / "x.h5").exists()
