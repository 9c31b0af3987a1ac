"""Banded ridge and variance partitioning: the partition's algebra, the joint fit against the
single-band ridge, recovery of known contributions, the job on demo data, and the tables."""

from __future__ import annotations

import itertools

import h5py
import numpy as np
import pytest

from fmriscaling import DataError
from fmriscaling.encoding.folds import story_folds
from fmriscaling.encoding.partition import (
    SINGLE_BAND_FLOOR,
    band_weight_grid,
    fit_banded_ridge,
    fit_partition,
    method_comparison,
    partition_tables,
    subsets_of,
    venn_regions,
)
from fmriscaling.encoding.ridge import fit_ridge_cv
from fmriscaling.stats import r2_columns

ALPHAS = np.logspace(-1, 4, 11)

# ------------------------------------------------------------------------- the partition


def test_two_band_regions_are_the_textbook_formulas(rng):
    r2 = {s: rng.uniform(-0.1, 0.6, 50) for s in subsets_of(2)}
    regions = venn_regions(r2, 2)
    a, b, ab = r2[(0,)], r2[(1,)], r2[(0, 1)]
    np.testing.assert_allclose(regions[(0,)], ab - b, atol=1e-15)
    np.testing.assert_allclose(regions[(1,)], ab - a, atol=1e-15)
    np.testing.assert_allclose(regions[(0, 1)], a + b - ab, atol=1e-15)


def test_regions_sum_to_the_joint_r2_and_three_bands_follow_inclusion_exclusion(rng):
    r2 = {s: rng.uniform(-0.1, 0.6, 50) for s in subsets_of(3)}
    regions = venn_regions(r2, 3)
    assert set(regions) == set(subsets_of(3)) and len(regions) == 7
    np.testing.assert_allclose(sum(regions.values()), r2[(0, 1, 2)], rtol=0, atol=1e-14)
    # unique(A) = R²(ABC) − R²(BC); shared only by A and B = R²(AC) + R²(BC) − R²(C) − R²(ABC)
    np.testing.assert_allclose(regions[(0,)], r2[(0, 1, 2)] - r2[(1, 2)], atol=1e-15)
    np.testing.assert_allclose(
        regions[(0, 1)], r2[(0, 2)] + r2[(1, 2)] - r2[(2,)] - r2[(0, 1, 2)], atol=1e-15
    )
    triple = (
        sum(r2[(i,)] for i in range(3))
        - sum(r2[p] for p in itertools.combinations(range(3), 2))
        + r2[(0, 1, 2)]
    )
    np.testing.assert_allclose(regions[(0, 1, 2)], triple, atol=1e-15)
    with pytest.raises(ValueError, match=r"subsets \[\(0, 2\)\] missing"):
        venn_regions({s: v for s, v in r2.items() if s != (0, 2)}, 3)


def test_negative_estimates_are_kept():
    # a joint fit worse on the test story than one band alone: a negative unique term
    r2 = {(0,): np.array([0.3]), (1,): np.array([0.1]), (0, 1): np.array([0.25])}
    regions = venn_regions(r2, 2)
    assert regions[(1,)][0] == pytest.approx(-0.05) and regions[(0, 1)][0] == pytest.approx(0.15)


def test_r2_is_against_the_test_mean_and_zero_for_a_constant_column(rng):
    y = rng.standard_normal((40, 3)) + 5.0
    pred = y - y.mean(0) + 0.1 * rng.standard_normal((40, 3))
    pred[:, 2] = 0.0
    y[:, 1] = 7.0
    r2 = r2_columns(pred, y)
    yc = y[:, 0] - y[:, 0].mean()
    assert r2[0] == pytest.approx(1 - ((yc - pred[:, 0]) ** 2).sum() / (yc**2).sum())
    assert r2[1] == 0.0 and r2[2] == pytest.approx(0.0)


def test_band_weight_grid_starts_equal_then_each_band_alone_then_seeded_draws():
    grid = band_weight_grid(2, 8, seed=3)
    assert grid.shape == (8, 2)
    np.testing.assert_allclose(grid.sum(1), 1.0)
    np.testing.assert_allclose(grid[0], [0.5, 0.5])
    np.testing.assert_allclose(grid[1], [1 - SINGLE_BAND_FLOOR, SINGLE_BAND_FLOOR])
    np.testing.assert_allclose(grid[2], [SINGLE_BAND_FLOOR, 1 - SINGLE_BAND_FLOOR])
    np.testing.assert_array_equal(grid, band_weight_grid(2, 8, seed=3))
    assert not np.array_equal(grid[3:], band_weight_grid(2, 8, seed=4)[3:])
    assert band_weight_grid(3, 2).shape == (4, 3)  # never fewer than equal + each band


# -------------------------------------------------------------------------- the joint fit


def _two_bands(rng, n_per_group=30, lengths=(100, 120, 110, 90, 130), n_test=300, width=10):
    """Independent bands A and B; voxels driven by A only, B only, both, and pure noise."""
    n = sum(lengths)
    A = rng.standard_normal((n + n_test, width)).astype(np.float32)
    B = rng.standard_normal((n + n_test, width)).astype(np.float32)
    groups = np.repeat(np.array(["A", "B", "AB", "none"]), n_per_group)
    share = {"A": (1.0, 0.0), "B": (0.0, 1.0), "AB": (0.7, 0.7), "none": (0.0, 0.0)}
    wa = rng.standard_normal((width, groups.size)) / np.sqrt(width)
    wb = rng.standard_normal((width, groups.size)) / np.sqrt(width)
    sa = np.array([share[g][0] for g in groups])
    sb = np.array([share[g][1] for g in groups])
    Y = (sa * (A @ wa) + sb * (B @ wb) + rng.standard_normal((n + n_test, groups.size))).astype(
        np.float32
    )
    return A, B, Y, groups, n, story_folds(list(lengths), n_folds=5)


@pytest.fixture(scope="module")
def two_bands():
    return _two_bands(np.random.default_rng(1))


def _single(X, Y, n, folds, solver="auto"):
    return fit_ridge_cv(
        X[:n],
        Y[:n],
        alphas=ALPHAS,
        folds=folds,
        X_test=X[n:],
        Y_test=Y[n:],
        backend="numpy",
        solver=solver,
        score_dtype="float32",
        return_test_pred=True,
    )


@pytest.mark.filterwarnings(
    "ignore:divide by zero:RuntimeWarning", "ignore:invalid value:RuntimeWarning"
)
@pytest.mark.parametrize(
    "backend", ["numpy", "torch", pytest.param("torch_cuda", marks=pytest.mark.gpu)]
)
@pytest.mark.parametrize("solver", ["primal", "dual"])
def test_a_band_at_zero_weight_leaves_the_single_band_ridge(rng, solver, backend):
    """Band weights (1, 0): the joint model is the ridge of band A alone, in the primal
    (himalaya BandedRidgeCV) and in the dual (MultipleKernelRidgeCV)."""
    n, lengths = 180, [60, 60, 60]
    width = 12 if solver == "primal" else 240  # the dual where TRs < features
    A = rng.standard_normal((n + 40, width)).astype(np.float32)
    B = rng.standard_normal((n + 40, 8)).astype(np.float32)
    weights = rng.standard_normal((width, 15)) * np.sqrt(1.0 / width)
    Y = (A @ weights + rng.standard_normal((n + 40, 15))).astype(np.float32)
    folds = story_folds(lengths, n_folds=3)
    fit = fit_banded_ridge(
        [A[:n], B[:n]],
        Y[:n],
        [A[n:], B[n:]],
        folds=folds,
        alphas=ALPHAS,
        n_iter=np.array([[1.0, 0.0]]),
        solver=solver,
        backend=backend,
        score="r",
    )
    single = _single(A, Y, n, folds, solver=solver)  # the ridge stage's own solver, scored by r
    assert fit.solver == solver and fit.n_iter == 1
    np.testing.assert_allclose(fit.alphas, single.alphas, rtol=1e-5)
    np.testing.assert_allclose(fit.band_weights[1], 0.0, atol=1e-12)
    np.testing.assert_allclose(fit.pred[1], 0.0, atol=1e-6)
    np.testing.assert_allclose(fit.pred[0], single.test_pred, rtol=1e-3, atol=1e-4)


def test_the_partition_recovers_each_voxel_group_s_source(two_bands):
    A, B, Y, groups, n, folds = two_bands
    fit = fit_banded_ridge(
        [A[:n], B[:n]],
        Y[:n],
        [A[n:], B[n:]],
        folds=folds,
        alphas=ALPHAS,
        n_iter=12,
        backend="numpy",
    )
    y_test = Y[n:]

    def single(X):  # one band: one penalty per voxel, scored as the joint fit (R²)
        return fit_banded_ridge(
            [X[:n]], Y[:n], [X[n:]], folds=folds, alphas=ALPHAS, n_iter=1, backend="numpy"
        ).pred[0]

    r2 = {
        (0,): r2_columns(single(A), y_test),
        (1,): r2_columns(single(B), y_test),
        (0, 1): r2_columns(fit.pred.sum(0), y_test),
    }
    regions = venn_regions(r2, 2)
    unique_a, unique_b, shared = regions[(0,)], regions[(1,)], regions[(0, 1)]

    def mean(values, group):
        return values[groups == group].mean()

    # A-only voxels: A's unique variance dominates, and the other way round
    assert mean(unique_a, "A") > 0.25 and mean(unique_a, "A") > 10 * abs(mean(unique_b, "A"))
    assert mean(unique_b, "B") > 0.25 and mean(unique_b, "B") > 10 * abs(mean(unique_a, "B"))
    assert mean(unique_a, "AB") > 0.1 and mean(unique_b, "AB") > 0.1
    # independent bands share (next to) nothing; where both drive a voxel, the joint fit
    # explains each band's part against less noise than a band alone does (less shrinkage),
    # which shows as a small negative shared term (kept, not clipped)
    for group in ("A", "B"):
        assert abs(mean(shared, group)) < 0.02
    assert -0.25 * min(mean(unique_a, "AB"), mean(unique_b, "AB")) < mean(shared, "AB") < 0.01
    # the joint model gives each voxel group most of its weight on its own band
    assert mean(fit.band_weights[0], "A") > 0.8 and mean(fit.band_weights[1], "B") > 0.8
    # the regions add up to the joint R² exactly, voxel by voxel
    np.testing.assert_allclose(unique_a + unique_b + shared, r2[(0, 1)], rtol=0, atol=1e-12)


def test_the_split_of_the_joint_r2_sums_to_it(two_bands):
    from himalaya.scoring import r2_score_split

    A, B, Y, _, n, folds = two_bands
    fit = fit_banded_ridge(
        [A[:n], B[:n]],
        Y[:n],
        [A[n:], B[n:]],
        folds=folds,
        alphas=ALPHAS,
        n_iter=4,
        backend="numpy",
    )
    y_c = Y[n:].astype(np.float64) - Y[n:].mean(0)
    split = np.asarray(r2_score_split(y_c, fit.pred.astype(np.float64)))
    np.testing.assert_allclose(split.sum(0), r2_columns(fit.pred.sum(0), Y[n:]), atol=1e-6)


def test_bands_on_other_trs_are_refused(two_bands):
    A, B, Y, _, n, folds = two_bands
    with pytest.raises(ValueError, match=r"bands \[1\] have other TR counts"):
        fit_banded_ridge([A[:n], B[: n - 1]], Y[:n], [A[n:], B[n:]], folds=folds, alphas=ALPHAS)


# ------------------------------------------------------------------------------- the job


@pytest.fixture(scope="module")
def demo_bands(tmp_path_factory):
    """A small demo dataset, its true word and sound features as the layers of two models,
    and each model's stack member (the bands' single fits)."""
    from fmriscaling.demo.synthetic import generate_dataset
    from fmriscaling.encoding.oof import fit_stack_member
    from fmriscaling.features.io import FeatureWriter
    from fmriscaling.stimuli import response_rows

    tmp = tmp_path_factory.mktemp("partition")
    summary = generate_dataset(
        tmp / "ds",
        subjects=["UTS01"],
        n_train_stories=5,
        n_voxels=120,
        n_latent=8,
        story_n_trs=(90, 110),
        test_n_trs=200,
        seed=2,
    )
    truth_file = tmp / "ds" / "ground_truth" / "stimulus_features.h5"
    dirs = {"words": tmp / "words", "sound": tmp / "sound", "noise": tmp / "noise"}
    rng = np.random.default_rng(5)
    with h5py.File(truth_file) as truth:
        for name, key in (("words", "tr_features"), ("sound", "tr_acoustic"), ("noise", None)):
            with FeatureWriter(dirs[name], n_layers=0, model_name=name) as writer:
                for story, n_trs in summary["n_trs"].items():
                    rows = response_rows(n_trs)
                    if key is None:  # a band that drives nothing
                        values = rng.standard_normal((len(range(n_trs)[rows]), 6))
                    else:
                        values = truth[story][key][()][rows]
                    writer.write_story(story, values.astype(np.float32)[None])
    responses = summary["paths"]["responses"]["UTS01"]
    settings = {
        "test_story": summary["test_story"],
        "alphas": np.logspace(0, 4, 9).tolist(),
        "n_folds": 3,
        "delays": [1, 2, 3, 4],
        "test_extra_trim": 10,
        "backend": "numpy",
        "score_dtype": "float32",
    }
    members = {}
    for name, folder in dirs.items():
        members[name] = tmp / f"{name}.h5"
        fit_stack_member(
            feature_dir=folder,
            layer=0,
            layer_fits={},
            response_files=responses,
            train_stories=summary["train_stories"],
            out_h5=members[name],
            meta={"subject": "UTS01", "model": name},
            **settings,
        )
    encoding = {k: v for k, v in settings.items() if k != "score_dtype"}
    encoding.update(cv="stories")
    return dict(
        summary=summary,
        dirs=dirs,
        members=members,
        responses=responses,
        encoding=encoding,
        truth=np.load(tmp / "ds" / "ground_truth" / "UTS01.npz"),
        tmp=tmp,
    )


def _run_partition(demo_bands, out, **overrides):
    kwargs = dict(
        member_files=[demo_bands["members"]["sound"], demo_bands["members"]["words"]],
        bands=["sound", "words"],
        kinds=["speech", "text"],
        feature_dirs=[demo_bands["dirs"]["sound"], demo_bands["dirs"]["words"]],
        response_files=demo_bands["responses"],
        train_stories=demo_bands["summary"]["train_stories"],
        out_npz=out,
        encoding=demo_bands["encoding"],
        partitioning={"n_iter": 8, "seed": 0},
        statistics={"n_permutations": 200, "block_trs": 10, "fdr_q": 0.05, "seed": 0},
        meta={"subject": "UTS01", "partition": "p"},
    )
    kwargs.update(overrides)
    return fit_partition(**kwargs)


@pytest.fixture(scope="module")
def demo_partition(demo_bands):
    out = demo_bands["tmp"] / "partition" / "scores.npz"
    summary = _run_partition(demo_bands, out)
    return out, summary


def test_sound_is_unique_in_auditory_voxels_and_words_in_semantic_ones(demo_bands, demo_partition):
    out, summary = demo_partition
    s = np.load(out)
    truth = demo_bands["truth"]
    group = truth["voxel_group"]
    assert list(s["components"]) == ["sound", "words", "sound+words"]
    assert list(s["component_kinds"]) == ["unique", "unique", "shared"]
    unique_sound, unique_words = s["component_r2"][0], s["component_r2"][1]
    aud, sem = group == "auditory", group == "semantic"
    assert unique_sound[aud].mean() > 0.05 and unique_sound[aud].mean() > unique_sound[sem].mean()
    assert unique_words[sem].mean() > 0.05 and unique_words[sem].mean() > unique_words[aud].mean()
    # the members' own test predictions (r-chosen alphas) are kept for the record; the
    # partition's single bands are fitted as the joint model is (R²-chosen), and score higher
    with h5py.File(demo_bands["members"]["sound"]) as member:
        expected = r2_columns(member["test_pred"][()], member["test_true"][()])
    np.testing.assert_allclose(s["member_r2"][0], expected, atol=1e-6)
    assert s["subset_r2"][0].mean() > s["member_r2"][0].mean()
    np.testing.assert_allclose(
        s["component_r2"].astype(np.float64).sum(0), s["joint_r2"], atol=1e-5
    )
    np.testing.assert_allclose(s["split_r2"].sum(0), s["joint_r2"], atol=1e-4)
    # the joint model's r has a permutation p per voxel; signal voxels are found
    assert s["joint_p"].shape == s["joint_r"].shape and s["joint_p"].min() > 0
    assert s["joint_significant"][truth["has_signal"]].mean() > 0.5
    assert summary["fits"]["sound+words"]["n_iter"] == 8 and summary["n_significant"] > 0


def test_three_bands_fit_every_pair_and_a_band_of_noise_explains_nothing(demo_bands, tmp_path):
    out = tmp_path / "scores.npz"
    summary = _run_partition(
        demo_bands,
        out,
        member_files=[demo_bands["members"][b] for b in ("sound", "words", "noise")],
        bands=["sound", "words", "noise"],
        kinds=["speech", "text", "text"],
        feature_dirs=[demo_bands["dirs"][b] for b in ("sound", "words", "noise")],
        partitioning={"n_iter": 6, "seed": 0},
        statistics=None,
    )
    s = np.load(out)
    assert list(s["subsets"]) == [
        "sound", "words", "noise", "sound+words", "sound+noise", "words+noise",
        "sound+words+noise",
    ]  # fmt: skip
    assert list(s["component_kinds"]) == ["unique"] * 3 + ["shared"] * 4
    assert sorted(summary["fits"]) == sorted(s["subsets"])  # every band, pair and the triple
    np.testing.assert_allclose(
        s["component_r2"].astype(np.float64).sum(0), s["joint_r2"], atol=1e-5
    )
    unique = dict(zip(s["components"][:3], s["component_r2"][:3], strict=True))
    assert abs(unique["noise"].mean()) < 0.01 < unique["sound"].mean()
    assert "joint_p" not in s.files  # no statistics asked for


def test_two_bands_resolving_to_one_feature_space_are_refused(demo_bands, tmp_path):
    sound = demo_bands["members"]["sound"]
    with pytest.raises(DataError, match=r"two bands resolved to the same model and layer"):
        _run_partition(demo_bands, tmp_path / "scores.npz", member_files=[sound, sound])


def test_members_of_other_test_responses_are_refused(demo_bands, tmp_path):
    other = dict(demo_bands["encoding"], test_extra_trim=5)
    with pytest.raises(DataError, match=r"fitted on other test responses.*stack_member"):
        _run_partition(demo_bands, tmp_path / "scores.npz", encoding=other)
    assert not (tmp_path / "scores.npz").exists()


# ---------------------------------------------------------------------------------- tables


def _fake_partition(path, joint_r2, single_r2):
    a, b = single_r2
    np.savez(
        path,
        bands=np.array(["A", "B"]),
        band_models=np.array(["a", "b"]),
        band_layers=np.array([1, 3]),
        member_r=np.sqrt(np.clip(np.stack([a, b]), 0, None)) - 0.05,
        member_r2=np.stack([a, b]) - 0.1,
        components=np.array(["A", "B", "A+B"]),
        component_kinds=np.array(["unique", "unique", "shared"]),
        component_r2=np.stack([joint_r2 - b, joint_r2 - a, a + b - joint_r2]),
        subset_r2=np.stack([a, b, joint_r2]),
        single_r=np.sqrt(np.clip(np.stack([a, b]), 0, None)),
        joint_r=np.sqrt(np.clip(joint_r2, 0, None)),
        joint_r2=joint_r2,
        split_r2=np.stack([joint_r2 / 2, joint_r2 / 2]),
        band_weights=np.full((2, joint_r2.size), 0.5),
        joint_significant=joint_r2 > 0.1,
    )
    return path


def test_partition_tables_average_each_group_and_count_negative_estimates(tmp_path):
    joint = np.array([0.4, 0.3, 0.05, 0.2])
    a, b = np.array([0.35, 0.0, 0.0, 0.1]), np.array([0.1, 0.3, 0.1, 0.1])
    path = _fake_partition(tmp_path / "p.npz", joint, (a, b))
    labels = {"S1": np.array(["x", "x", "y", "y"])}
    entries = [{"subject": "S1", "partition": "p", "path": path}]
    summary, voxels = partition_tables(entries, labels)
    row = summary.set_index(["group", "measure", "bands"])
    assert row.loc[("x", "unique", "A"), "mean_r2"] == pytest.approx(np.mean([0.3, 0.0]))
    assert row.loc[("y", "unique", "A"), "fraction_negative"] == pytest.approx(0.5)  # 0.05 − 0.1
    assert row.loc[("all", "joint", "A+B"), "mean_r2"] == pytest.approx(joint.mean())
    assert row.loc[("y", "shared", "A+B"), "n_voxels"] == 2
    assert set(summary["measure"]) == {"unique", "shared", "joint", "single", "split"}
    unique_a = voxels[(voxels["measure"] == "unique") & (voxels["bands"] == "A")]
    np.testing.assert_allclose(unique_a["value"], joint - b)
    assert {"joint_r", "band_weight", "joint_significant"} <= set(voxels["measure"])
    with pytest.raises(DataError, match="voxel labels"):
        partition_tables(entries, {"S1": np.array(["x"])})
    with pytest.raises(DataError, match="run the fit_partition rule"):
        partition_tables([{"subject": "S1", "partition": "p", "path": tmp_path / "no.npz"}])


def test_method_comparison_lists_singles_the_best_single_stacks_and_joint_fits(tmp_path):
    joint = np.array([0.4, 0.3, 0.05, 0.2])
    a, b = np.array([0.64, 0.0, 0.0, 0.1]), np.array([0.04, 0.09, 0.04, 0.1])
    part = _fake_partition(tmp_path / "p.npz", joint, (a, b))
    stack = tmp_path / "s.npz"
    np.savez(stack, stack_r=np.full(4, 0.5), stack_r2=np.full(4, 0.25))
    labels = {"S1": np.array(["x", "x", "y", "y"])}
    table = method_comparison(
        [{"subject": "S1", "partition": "p", "path": part}],
        [{"subject": "S1", "stack": "st", "path": stack}],
        labels,
    )
    x = table[table["group"] == "x"].set_index(["method", "name"])
    assert set(x.index) == {
        ("banded", "p"),
        ("single", "a/layer-1"),
        ("single", "b/layer-3"),
        ("member", "a/layer-1"),
        ("member", "b/layer-3"),
        ("best single", "a/layer-1"),
        ("stack", "st"),
    }
    assert x.loc[("banded", "p"), "mean_r2"] == pytest.approx(0.35)
    assert x.loc[("member", "a/layer-1"), "mean_r2"] == pytest.approx(np.mean(a[:2]) - 0.1)
    assert x.loc[("stack", "st"), "mean_r"] == pytest.approx(0.5)
    assert np.isnan(x.loc[("stack", "st"), "fraction_significant"])
    assert x.loc[("banded", "p"), "fraction_significant"] == pytest.approx(1.0)
    y = table[table["group"] == "y"].set_index(["method", "name"])
    assert ("best single", "b/layer-3") in y.index  # chosen per group by mean r
    # a second partition holding the same feature space adds no second single row
    twice = method_comparison(
        [{"subject": "S1", "partition": q, "path": part} for q in ("p", "q")], [], labels
    )
    assert (twice[twice["group"] == "all"]["method"] == "single").sum() == 2
    old = tmp_path / "old.npz"
    np.savez(old, stack_r=np.full(4, 0.5))
    with pytest.raises(DataError, match=r"no stack_r2.*rerun its stack_regression"):
        method_comparison([], [{"subject": "S1", "stack": "st", "path": old}])
    other = tmp_path / "other.npz"
    np.savez(other, stack_r=np.full(5, 0.5), stack_r2=np.full(5, 0.25))
    with pytest.raises(DataError, match=r"other.npz has 5 voxels.*Rerun the out-of-date"):
        method_comparison(
            [{"subject": "S1", "partition": "p", "path": part}],
            [{"subject": "S1", "stack": "st", "path": other}],
        )


def test_band_weights_off_the_simplex_are_refused(two_bands):
    A, B, Y, _, n, folds = two_bands
    with pytest.raises(ValueError, match=r"expected rows of 2 weights >= 0 that sum to 1"):
        fit_banded_ridge(
            [A[:n], B[:n]], Y[:n], [A[n:], B[n:]], folds=folds, alphas=ALPHAS,
            n_iter=np.array([[1.0, 1.0]]),
        )  # fmt: skip


def test_the_partition_figure_draws_each_group_s_regions(tmp_path):
    from fmriscaling.figures.partition import draw_partition_figure, plot_partition_by_roi

    joint = np.array([0.4, 0.3, 0.05, 0.2])
    a, b = np.array([0.36, 0.0, 0.0, 0.1]), np.array([0.09, 0.25, 0.04, 0.1])
    entries = [
        {
            "subject": s,
            "partition": "p",
            "path": _fake_partition(tmp_path / f"{s}.npz", joint, (a, b)),
        }
        for s in ("S1", "S2")
    ]
    table, _ = partition_tables(entries, {s: np.array(["x", "x", "y", "y"]) for s in ("S1", "S2")})
    from matplotlib.figure import Figure

    ax = plot_partition_by_roi(table, Figure().subplots(), min_voxels=1)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0].startswith("cortex") and labels[1].startswith("x (true group)")
    assert len(labels) == 3
    # 3 regions x 3 groups of bars, the joint R² markers at the groups' means
    assert len(ax.patches) >= 9
    joint_points = next(c for c in ax.collections if c.get_gid() == "joint")
    np.testing.assert_allclose(
        sorted(joint_points.get_offsets()[:, 0]), sorted([joint.mean(), 0.35, 0.125])
    )
    written = draw_partition_figure(table, [tmp_path / "f.png"], min_voxels=1)
    assert written[0].stat().st_size > 1000
    with pytest.raises(DataError, match="no voxel group has 99 voxels"):
        plot_partition_by_roi(table, Figure().subplots(), min_voxels=99)


# ---------------------------------------------------------------------------------- config


def _config():
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parent.parent
    return yaml.safe_load((root / "config" / "config.yaml").read_text())


def _with_bands(*bands, name="p"):
    return lambda config: config.update(partitions=[{"name": name, "bands": list(bands)}])


def test_demo_partition_is_the_cv_best_speech_and_text_layers():
    from fmriscaling.config import partition_bands, validate_config

    config = validate_config(_config())
    (partition,) = config["partitions"]
    assert partition_bands(partition, config["models"]) == [
        {"model": "tiny-whisper", "kind": "speech", "layer": "best", "name": "tiny-whisper"},
        {"model": "tiny-opt-m", "kind": "text", "layer": "best", "name": "tiny-opt-m"},
    ]
    assert config["partitioning"]["score"] == "r2" and config["partitioning"]["solver"] == "auto"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            _with_bands({"model": "tiny-gpt", "layer": 1}, {"model": "tiny-opt-m", "layer": 1}),
            r"'partitions\[0\].bands\[0\].model' is 'tiny-gpt', which is not a model",
        ),
        (
            lambda config: (
                config.update(run_models=["tiny-opt-xs", "tiny-opt-m"], stacks=[]),
                _with_bands(
                    {"model": "tiny-whisper", "layer": "best"},
                    {"model": "tiny-opt-m", "layer": "best"},
                )(config),
            ),
            r"bands\[0\].model' is 'tiny-whisper', which is not in 'run_models'.*story audio",
        ),
        (
            _with_bands({"model": "tiny-clip-s", "layer": 1}, {"model": "tiny-opt-m", "layer": 1}),
            r"bands\[0\].model' is 'tiny-clip-s'",
        ),
        (
            _with_bands({"model": "tiny-opt-m", "layer": 9}, {"model": "tiny-whisper", "layer": 1}),
            r"bands\[0\].layer' is 9; tiny-opt-m has layers",
        ),
        (
            _with_bands({"model": "tiny-opt-m", "layer": 2}, {"model": "tiny-opt-m", "layer": 2}),
            r"lists \['tiny-opt-m/layer-2'\] more than once",
        ),
        (
            _with_bands({"model": "tiny-opt-m", "layer": 1}, {"model": "tiny-opt-m", "layer": 2}),
            r"gives two bands the label \['tiny-opt-m'\]; set 'name'",
        ),
        (_with_bands({"model": "tiny-opt-m", "layer": 1}), r"partitions.0.bands"),
        (
            _with_bands(
                {"model": "tiny-opt-m", "layer": "even"}, {"model": "tiny-whisper", "layer": 1}
            ),
            r"partitions.0.bands.0.layer",
        ),
        (
            lambda config: config.update(
                partitions=[config["partitions"][0], config["partitions"][0]]
            ),
            r"'partitions' names \['speech-text'\] more than once",
        ),
        (lambda config: config.update(partitioning={"score": "mse"}), r"partitioning.score"),
    ],
    ids=[
        "unknown",
        "no-audio",
        "vision",
        "depth",
        "twice",
        "labels",
        "one-band",
        "even",
        "names",
        "score",
    ],
)
def test_bad_partitions_name_the_key(change, message):
    from fmriscaling import ConfigError
    from fmriscaling.config import validate_config

    config = _config()
    change(config)
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


@pytest.mark.parametrize("solver", ["primal", "dual"])
def test_the_plan_s_flop_count_bounds_what_himalaya_runs(monkeypatch, solver):
    """`cost.banded_ridge_flops` (the plan's price of a joint fit) against the matrix products
    and decompositions the search calls: the decompositions exactly, the products within the
    refit's bound (the dual's linear kernels are formed outside himalaya, and priced apart)."""
    import himalaya.backend.numpy as numpy_backend

    from fmriscaling.cost import banded_ridge_flops

    counted = {"gemm": 0.0, "decompositions": 0.0}
    matmul, svd, eigh = numpy_backend.matmul, numpy_backend.svd, numpy_backend.eigh

    def counting_matmul(a, b):
        out = matmul(a, b)
        counted["gemm"] += 2.0 * np.prod(out.shape) * a.shape[-1]
        return out

    def counting_svd(x, full_matrices=False):
        n, p = x.shape
        counted["decompositions"] += 4.0 * n * p * p + 9.0 * p**3
        return svd(x, full_matrices=full_matrices)

    def counting_eigh(x):
        counted["decompositions"] += 9.0 * x.shape[0] ** 3
        return eigh(x)

    monkeypatch.setattr(numpy_backend, "matmul", counting_matmul)
    monkeypatch.setattr(numpy_backend, "svd", counting_svd)
    monkeypatch.setattr(numpy_backend, "eigh", counting_eigh)
    rng = np.random.default_rng(3)
    lengths, n_voxels, n_test = [80, 80, 80, 80], 40, 30
    widths = (12, 20) if solver == "primal" else (200, 240)
    n = sum(lengths)
    X = [rng.standard_normal((n + n_test, w)).astype(np.float32) for w in widths]
    Y = rng.standard_normal((n + n_test, n_voxels)).astype(np.float32)
    folds = story_folds(lengths, n_folds=4)
    fit = fit_banded_ridge(
        [x[:n] for x in X], Y[:n], [x[n:] for x in X], folds=folds, alphas=ALPHAS, n_iter=5,
        backend="numpy", solver=solver,
    )  # fmt: skip
    model = banded_ridge_flops(
        n, widths, n_voxels, n_test, [(n - 80, 80)] * 4, len(ALPHAS), fit.n_iter, solver
    )
    kernels = 2.0 * n * (n + n_test) * sum(widths) if solver == "dual" else 0.0
    # every fold's decomposition of every weighting, and one refit per weighting that improved
    # some voxel (the price counts a refit for each)
    p = sum(widths)
    refit = 9.0 * n**3 if solver == "dual" else 4.0 * n * p * p + 9.0 * p**3
    skipped = (model.eigh - counted["decompositions"]) / refit
    assert skipped == pytest.approx(round(skipped), abs=1e-6) and 0 <= round(skipped) < fit.n_iter
    # the products: at most the price; the price's refit counts every alpha of the grid,
    # himalaya's only those some voxel chose (at this size the dual's refit is half its work)
    assert 0.4 * (model.gemm - kernels) < counted["gemm"] <= model.gemm - kernels
