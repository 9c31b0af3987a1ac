"""Tests of the synthetic ds003020-like dataset: layout, determinism, stimuli, ground truth."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
from scipy import signal
from scipy.io import wavfile

from fmriscaling import ConfigError
from fmriscaling.demo.names import synthetic_story_names
from fmriscaling.demo.synthetic import generate_dataset
from fmriscaling.demo.truth import analytic_cc_max, canonical_hrf, expected_correlation
from fmriscaling.stimuli import response_rows, simulated_tr_times, word_table
from fmriscaling.textgrid import read_textgrid

SUBJECTS = ("UTS01", "UTS02")
TEST_STORY = "wheretheressmoke"
SMALL = {
    "subjects": SUBJECTS,
    "n_train_stories": 6,
    "n_repeats": 10,
    "n_voxels": 200,
    "n_latent": 8,
    "story_n_trs": (60, 80),
    "test_n_trs": 250,  # 230 response rows: enough for stable per-voxel ceilings
    "seed": 3,
}
SILENCE = ("sp", "")
FILLERS = ("{BR}", "{LG}")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic") / "ds"
    summary = generate_dataset(root, **SMALL)
    return root, summary


@pytest.fixture(scope="module")
def respdict(dataset):
    root, _ = dataset
    return json.loads((root / "derivative" / "respdict.json").read_text())


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r per column of two (n_samples, n_columns) arrays."""
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    return (a * b).sum(axis=0) / np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))


def _load_truth(root: Path, subject: str) -> dict[str, np.ndarray]:
    with np.load(root / "ground_truth" / f"{subject}.npz") as z:
        return {k: z[k] for k in z.files}


def _repeats(root: Path, subject: str) -> tuple[np.ndarray, np.ndarray]:
    path = root / "derivative" / "preprocessed_data" / subject / f"{TEST_STORY}.hf5"
    with h5py.File(path, "r") as f:
        return f["data"][()], f["individual_repeats"][()]


# ----------------------------------------------------------------------------------- layout


def test_layout_matches_ds003020(dataset, respdict):
    root, summary = dataset
    stories = [f"synthstory{i:02d}" for i in range(1, 7)] + [TEST_STORY]
    assert sorted(respdict) == sorted(stories)
    assert summary["stories"] == stories
    expected = {"derivative/respdict.json"}
    for story in stories:
        expected |= {f"derivative/TextGrids/{story}.TextGrid", f"stimuli/{story}.wav"}
        for subject in SUBJECTS:
            expected.add(f"derivative/preprocessed_data/{subject}/{story}.hf5")
    for subject in SUBJECTS:
        xfm = f"derivative/pycortex-db/{subject}/transforms/{subject}_auto"
        expected |= {f"{xfm}/mask_thick.nii.gz", f"{xfm}/reference.nii.gz"}
        expected.add(f"ground_truth/{subject}.npz")
    expected |= {
        "ground_truth/stimulus_features.h5",
        "ground_truth/manifest.json",
        "ground_truth/README.md",
    }
    assert set(_files(root)) == expected


def test_story_names_match_the_generator_and_import_light(dataset):
    _, summary = dataset
    assert synthetic_story_names(SMALL["n_train_stories"]) == summary["train_stories"]
    # the workflow parse imports the names from here: no generator, not even numpy
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import fmriscaling.demo.names"],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [line for line in proc.stderr.splitlines() if line.startswith("import time:")]
    imported = {row.rsplit("|", 1)[1].strip() for row in rows[1:]}
    assert "fmriscaling.demo.names" in imported
    assert not imported & {"numpy", "fmriscaling.demo.stories", "fmriscaling.demo.synthetic"}


def test_training_lengths_follow_the_range(respdict):
    lengths = [n for story, n in respdict.items() if story != TEST_STORY]
    assert all(60 <= n <= 80 for n in lengths)
    assert len(set(lengths)) > 1
    assert respdict[TEST_STORY] == 250


def test_response_files_are_trimmed_float64(dataset, respdict):
    root, _ = dataset
    for subject in SUBJECTS:
        for story, n_trs in respdict.items():
            path = root / "derivative" / "preprocessed_data" / subject / f"{story}.hf5"
            with h5py.File(path, "r") as f:
                assert f["data"].dtype == np.float64
                assert f["data"].shape == (n_trs - 20, SMALL["n_voxels"])
                if story == TEST_STORY:
                    assert f["individual_repeats"].shape == (10, n_trs - 20, SMALL["n_voxels"])
                else:
                    assert set(f) == {"data"}


def test_test_story_data_is_the_repeat_mean(dataset):
    root, _ = dataset
    for subject in SUBJECTS:
        data, repeats = _repeats(root, subject)
        np.testing.assert_array_equal(data, repeats.mean(axis=0))
        # the repeats are distinct noisy realisations
        assert not np.allclose(repeats[0], repeats[1])


def test_summary_paths_exist_and_manifest_is_relative(dataset):
    root, summary = dataset
    paths = summary["paths"]
    assert Path(paths["respdict"]).is_file()
    for story in summary["stories"]:
        assert Path(paths["textgrids"][story]).is_file()
        assert Path(paths["wavs"][story]).is_file()
        for subject in SUBJECTS:
            assert Path(paths["responses"][subject][story]).is_file()
    manifest = json.loads((root / "ground_truth" / "manifest.json").read_text())
    assert manifest["params"]["seed"] == SMALL["seed"]
    assert manifest["paths"]["respdict"] == "derivative/respdict.json"
    assert json.loads(json.dumps(summary)) == summary  # JSON-serialisable


def test_mask_has_n_voxels_and_matches_voxel_order(dataset):
    root, _ = dataset
    for subject in SUBJECTS:
        xfm = root / "derivative" / "pycortex-db" / subject / "transforms" / f"{subject}_auto"
        mask = nib.load(xfm / "mask_thick.nii.gz").get_fdata().T.astype(bool)  # (z, y, x)
        ref = nib.load(xfm / "reference.nii.gz").get_fdata().T
        assert mask.sum() == SMALL["n_voxels"]
        assert ref.shape == mask.shape
        # brighter inside the brain than in the corners: an anatomical-ish volume
        assert ref[mask].mean() > ref[~mask].mean()
        np.testing.assert_array_equal(_load_truth(root, subject)["voxel_zyx"], np.argwhere(mask))


# ------------------------------------------------------------------------------ determinism


def test_same_seed_gives_identical_files(dataset, tmp_path):
    root, _ = dataset
    generate_dataset(tmp_path / "again", **SMALL)
    first, second = _files(root), _files(tmp_path / "again")
    assert first.keys() == second.keys()
    differing = [name for name in first if first[name] != second[name]]
    assert differing == []


def test_different_seed_gives_different_data(dataset, tmp_path):
    root, _ = dataset
    generate_dataset(tmp_path / "other", **{**SMALL, "seed": SMALL["seed"] + 1})
    first, second = _files(root), _files(tmp_path / "other")
    for name in (
        f"derivative/TextGrids/{TEST_STORY}.TextGrid",
        f"stimuli/{TEST_STORY}.wav",
        f"derivative/preprocessed_data/UTS01/{TEST_STORY}.hf5",
    ):
        assert first[name] != second[name], name


# ------------------------------------------------------------------------------- TextGrids


def test_textgrids_have_phone_and_word_tiers_tiling_the_audio(dataset, respdict):
    root, _ = dataset
    labels: set[str] = set()
    for story, n_trs in respdict.items():
        tg = read_textgrid(root / "derivative" / "TextGrids" / f"{story}.TextGrid")
        duration = (n_trs - 5) * 2.0 - 10.0
        assert tg.tier_names == ["phone", "word"]
        assert (tg.xmin, tg.xmax) == (0.0, duration)
        words, phones = tg.tiers[1].intervals, tg.tiers[0].intervals
        for tier in (words, phones):
            assert tier[0].xmin == 0.0 and tier[-1].xmax == duration
            assert all(a.xmax == b.xmin for a, b in itertools.pairwise(tier))
            assert all(iv.xmax > iv.xmin for iv in tier)
        labels |= {iv.text for iv in words}
        real = [iv for iv in words if iv.text not in (*SILENCE, *FILLERS)]
        durations = np.array([iv.xmax - iv.xmin for iv in real])
        assert durations.min() >= 0.15 - 1e-4 and durations.max() <= 0.6 + 1e-4  # 0.1 ms rounding
        # words span the audio: speech starts within 2 s and ends within 6 s of the end
        assert real[0].xmin < 2.0 and real[-1].xmax > duration - 6.0
        # every word is covered by 2-4 phones that start and end with it
        for iv in real:
            inside = [p for p in phones if iv.xmin <= p.xmin and p.xmax <= iv.xmax]
            assert 2 <= len(inside) <= 4
            assert inside[0].xmin == iv.xmin and inside[-1].xmax == iv.xmax
    assert {"sp", ""} <= labels
    assert labels & set(FILLERS)


def test_word_reader_recovers_the_true_words(dataset, respdict):
    root, _ = dataset
    with h5py.File(root / "ground_truth" / "stimulus_features.h5", "r") as f:
        for story in respdict:
            tg = read_textgrid(root / "derivative" / "TextGrids" / f"{story}.TextGrid")
            table = word_table(tg, keep_empty=False)
            assert table["word"].tolist() == f[story]["words"].asstr()[()].tolist()
            np.testing.assert_allclose(table["time"], f[story]["word_times"][()], atol=1e-12)


# ---------------------------------------------------------------------------------- audio


def test_wav_is_16k_mono_with_sound_in_words_and_silence_in_pauses(dataset, respdict):
    root, _ = dataset
    for story in [TEST_STORY, "synthstory01"]:
        rate, audio = wavfile.read(root / "stimuli" / f"{story}.wav")
        assert rate == 16000 and audio.dtype == np.int16 and audio.ndim == 1
        assert len(audio) == ((respdict[story] - 5) * 2 - 10) * rate
        x = audio.astype(np.float64) / 32768
        tg = read_textgrid(root / "derivative" / "TextGrids" / f"{story}.TextGrid")
        for iv in tg.tiers[1].intervals:
            seg = x[round(iv.xmin * rate) : round(iv.xmax * rate)]
            if iv.text in SILENCE:
                assert np.abs(seg).max() == 0.0
            elif iv.text not in FILLERS:
                assert np.sqrt(np.mean(seg**2)) > 0.1


def test_a_word_sounds_the_same_everywhere_and_unlike_other_words(dataset):
    root, _ = dataset
    rate, audio = wavfile.read(root / "stimuli" / f"{TEST_STORY}.wav")
    tg = read_textgrid(root / "derivative" / "TextGrids" / f"{TEST_STORY}.TextGrid")
    words = [iv for iv in tg.tiers[1].intervals if iv.text not in (*SILENCE, *FILLERS)]

    def spectrum(iv):
        seg = audio[round(iv.xmin * rate) : round(iv.xmax * rate)].astype(np.float64)
        spec = np.abs(np.fft.rfft(seg[: int(0.15 * rate)], n=4096))
        return spec / np.linalg.norm(spec)

    by_word: dict[str, list] = {}
    for iv in words:
        by_word.setdefault(iv.text, []).append(iv)
    repeated = [w for w, ivs in by_word.items() if len(ivs) >= 2][:10]
    assert len(repeated) >= 5
    first = np.array([spectrum(by_word[w][0]) for w in repeated])
    second = np.array([spectrum(by_word[w][1]) for w in repeated])
    similarity = second @ first.T  # (repeated word, candidate word)
    # the second occurrence of each word is identified by the spectrum of its first
    np.testing.assert_array_equal(similarity.argmax(axis=1), np.arange(len(repeated)))
    assert np.diag(similarity).min() > 0.9
    assert similarity[~np.eye(len(repeated), dtype=bool)].mean() < 0.3


# --------------------------------------------------------------------------- ground truth


def test_stored_features_follow_the_timing_convention(dataset, respdict):
    root, _ = dataset
    with h5py.File(root / "ground_truth" / "stimulus_features.h5", "r") as f:
        embedding, hrf = f["embedding"][()], f["hrf"][()]
        np.testing.assert_allclose(hrf, canonical_hrf(2.0))
        for story, n_trs in respdict.items():
            g = f[story]
            tr_times = simulated_tr_times(n_trs)
            np.testing.assert_array_equal(g["tr_times"][()], tr_times)
            # independent box-car: each word in the 2-s bin around a TR midpoint
            feats = np.zeros((n_trs - 5, embedding.shape[1]))
            for t, wid in zip(g["word_times"][()], g["word_ids"][()], strict=True):
                k = int(np.argmin(np.abs(tr_times - t)))
                assert abs(tr_times[k] - t) <= 1.0
                feats[k] += embedding[wid]
            np.testing.assert_allclose(g["tr_features"][()], feats, atol=1e-12)
            np.testing.assert_allclose(
                g["tr_features_hrf"][()], signal.lfilter(hrf, 1.0, feats, axis=0), atol=1e-12
            )
            rows = response_rows(n_trs)
            assert (g.attrs["row_start"], g.attrs["row_stop"]) == (rows.start, rows.stop)
        test_hrf = f[TEST_STORY]["tr_features_hrf"][()][response_rows(250)]
        test_acoustic = f[TEST_STORY]["tr_acoustic_hrf"][()][response_rows(250)]
    for subject in SUBJECTS:
        truth = _load_truth(root, subject)
        # semantic voxels follow the words, auditory voxels the sound (test_auditory_group_...)
        signal_ = test_hrf @ truth["weights"] + test_acoustic @ truth["acoustic_weights"]
        np.testing.assert_allclose(truth["test_signal"], signal_, atol=1e-10)
        assert not truth["weights"][:, ~truth["has_signal"]].any()
        np.testing.assert_allclose(truth["test_signal"].var(axis=0), truth["signal_variance"])


def test_noise_ceilings_span_near_zero_to_near_one(dataset):
    root, _ = dataset
    for subject in SUBJECTS:
        truth = _load_truth(root, subject)
        cc_max, has_signal = truth["cc_max"], truth["has_signal"]
        assert 0.05 <= cc_max[has_signal].min() < 0.1
        assert 0.95 < cc_max[has_signal].max() <= 0.99
        assert np.all(cc_max[~has_signal] == 0) and (~has_signal).sum() == 20
        s2, sigma2 = truth["signal_variance"], truth["noise_sd"] ** 2
        np.testing.assert_allclose(
            cc_max[has_signal], 1 / np.sqrt(1 + sigma2[has_signal] / (10 * s2[has_signal]))
        )


def test_true_signal_correlates_with_repeat_mean_as_predicted(dataset):
    root, _ = dataset
    for subject in SUBJECTS:
        truth = _load_truth(root, subject)
        data, _ = _repeats(root, subject)
        has_signal = truth["has_signal"]
        r = _corr(truth["test_signal"][:, has_signal], data[:, has_signal])
        expected = truth["expected_test_corr"][has_signal]
        assert abs(r.mean() - expected.mean()) < 0.03
        assert np.corrcoef(r, expected)[0, 1] > 0.9


def test_empirical_noise_ceiling_tracks_the_analytic_one(dataset):
    root, _ = dataset
    empirical, analytic = [], []
    for subject in SUBJECTS:
        data, repeats = _repeats(root, subject)
        n = repeats.shape[0]
        # METHODS "Noise ceiling"
        tp = repeats.var(axis=1).mean(axis=0)
        sp = (n * data.var(axis=0) - tp) / (n - 1)
        empirical.append(np.sqrt(np.clip(sp, 0, None) / data.var(axis=0)))
        analytic.append(_load_truth(root, subject)["cc_max"])
    empirical, analytic = np.concatenate(empirical), np.concatenate(analytic)
    assert np.corrcoef(empirical, analytic)[0, 1] > 0.9
    assert abs(empirical.mean() - analytic.mean()) < 0.05


def _ridge_test_r(root: Path, respdict: dict, feature: str) -> dict[str, np.ndarray]:
    """Test r per subject of a ridge fit (delays 1-4, alpha 50) on a true stimulus feature."""
    delays = (1, 2, 3, 4)

    def design(story):
        feats = f[story][feature][()][response_rows(respdict[story])]
        feats = (feats - feats.mean(0)) / feats.std(0)
        out = np.zeros((len(feats), len(delays) * feats.shape[1]))
        for j, d in enumerate(delays):
            out[d:, j * feats.shape[1] : (j + 1) * feats.shape[1]] = feats[:-d]
        return out

    train = [s for s in respdict if s != TEST_STORY]
    with h5py.File(root / "ground_truth" / "stimulus_features.h5", "r") as f:
        X_train = np.vstack([design(s) for s in train])
        X_test = design(TEST_STORY)
    test_r = {}
    for subject in SUBJECTS:
        Y = []
        for story in train:
            path = root / "derivative" / "preprocessed_data" / subject / f"{story}.hf5"
            with h5py.File(path, "r") as h:
                y = h["data"][()]
            Y.append((y - y.mean(0)) / y.std(0))
        Y_train = np.vstack(Y)
        weights = np.linalg.solve(
            X_train.T @ X_train + 50.0 * np.eye(X_train.shape[1]), X_train.T @ Y_train
        )
        data, _ = _repeats(root, subject)
        test_r[subject] = _corr(X_test @ weights, data)
    return test_r


def test_ridge_on_true_features_recovers_high_snr_voxels(dataset, respdict):
    root, _ = dataset
    for subject, r in _ridge_test_r(root, respdict, "tr_features").items():
        truth = _load_truth(root, subject)
        cc_max = truth["cc_max"]
        # the word features drive the semantic voxels (the auditory ones hear the sound)
        high = (cc_max > 0.8) & (truth["voxel_group"] == "semantic")
        none = cc_max == 0
        assert r[high].mean() > 0.4
        assert r[high].min() > 0
        assert r[high].mean() > r[none].mean() + 0.3


def test_auditory_voxels_hear_the_sound_and_the_others_the_words(dataset, respdict):
    root, _ = dataset
    words = _ridge_test_r(root, respdict, "tr_features")
    sound = _ridge_test_r(root, respdict, "tr_acoustic")
    for subject in SUBJECTS:
        truth = _load_truth(root, subject)
        group, has_signal = truth["voxel_group"], truth["has_signal"]
        auditory = group == "auditory"
        # a fifth of the signal voxels, a compact patch on the +x side, never a null voxel
        assert auditory.sum() == round(0.2 * has_signal.sum())
        assert set(group[~has_signal]) == {"unresponsive"} and set(group[has_signal]) == {
            "auditory",
            "semantic",
        }
        x = truth["voxel_zyx"][:, 2]
        assert x[auditory].min() > np.median(x[has_signal])
        assert not truth["weights"][:, auditory].any()
        assert not truth["acoustic_weights"][:, ~auditory].any()
        # each group is predicted by its own driver and not by the other one
        high = truth["cc_max"] > 0.6
        for driver, own, other in ((sound, auditory, ~auditory), (words, ~auditory, auditory)):
            r = driver[subject]
            assert r[high & own].mean() > 0.4
            assert r[high & own].mean() > r[high & other & has_signal].mean() + 0.25


def test_acoustic_features_are_zero_in_silence_and_follow_the_words(dataset, respdict):
    root, _ = dataset
    with h5py.File(root / "ground_truth" / "stimulus_features.h5", "r") as f:
        edges = f["acoustic_band_edges"][()]
        assert edges[0] < 180 and edges[-1] > 3800  # the word tones' range
        g = f[TEST_STORY]
        acoustic, features = g["tr_acoustic"][()], g["tr_features"][()]
    assert acoustic.shape == (respdict[TEST_STORY] - 5, len(edges) - 1)
    # the 5 TRs before sound onset (10 s) are silent; every TR with a word has sound
    np.testing.assert_array_equal(acoustic[:5], 0.0)
    has_words = np.abs(features).sum(1) > 0
    assert has_words.sum() > 0.8 * len(has_words) and (acoustic[has_words] > 0).all()


# ------------------------------------------------------------------------------- helpers


def test_analytic_helpers_agree_in_the_large_sample_limit():
    s2 = np.array([0.0, 1.0, 1.0, 2.0])
    v = np.array([1.0, 0.5, 3.0, 0.1])
    np.testing.assert_allclose(
        expected_correlation(s2, v, 10**7), analytic_cc_max(s2, np.sqrt(v), 1), atol=1e-5
    )
    assert analytic_cc_max(np.array([0.0]), np.array([1.0]), 10)[0] == 0.0


def test_expected_correlation_matches_monte_carlo(rng):
    n_rows, n_draws = 40, 4000
    sig = rng.standard_normal(n_rows)
    sig = (sig - sig.mean()) / sig.std()
    noise_var = 2.0
    y = sig + np.sqrt(noise_var) * rng.standard_normal((n_draws, n_rows))
    r = _corr(np.repeat(sig[:, None], n_draws, axis=1), y.T)
    expected = expected_correlation(np.array([1.0]), np.array([noise_var]), n_rows)[0]
    assert abs(r.mean() - expected) < 3 * r.std() / np.sqrt(n_draws)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("n_repeats", 1),
        ("story_n_trs", (30, 40)),
        ("noise_levels", (0.5, 1.0)),
        ("test_story", "synthstory99"),
        ("subjects", ()),
        ("seed", -1),
    ],
)
def test_bad_arguments_name_the_key(tmp_path, key, value):
    with pytest.raises(ConfigError, match=key):
        generate_dataset(tmp_path, **{**SMALL, key: value})
    assert not any(tmp_path.iterdir())


def test_default_size_is_modest(tmp_path):
    start = time.perf_counter()
    summary = generate_dataset(tmp_path / "demo")
    seconds = time.perf_counter() - start
    assert summary["subjects"] == list(SUBJECTS)
    assert len(summary["stories"]) == 13 and summary["test_story"] == TEST_STORY
    assert all(100 <= summary["n_trs"][s] <= 140 for s in summary["train_stories"])
    wav_bytes = sum(p.stat().st_size for p in (tmp_path / "demo" / "stimuli").iterdir())
    total_bytes = sum(p.stat().st_size for p in (tmp_path / "demo").rglob("*") if p.is_file())
    # 13 stories of ~4 min at 16 kHz int16: ~90 MB of audio, ~15 MB of the rest
    assert wav_bytes < 120e6 and total_bytes - wav_bytes < 30e6
    assert seconds < 60  # generous: ~3-4 s on 2 cores


def test_story_texts_are_the_words_of_the_generated_textgrids(cortex_dataset):
    """The tiny LMs' tokenizer corpus, drawn without writing the dataset, is what the
    generator writes into the TextGrids' word tier (the build job runs beside the generator)."""
    from conftest import CORTEX_DEMO

    from fmriscaling.demo.synthetic import story_texts
    from fmriscaling.textgrid import read_textgrid

    root, _ = cortex_dataset
    texts = story_texts(**CORTEX_DEMO)
    grids = sorted((root / "derivative" / "TextGrids").glob("*.TextGrid"))
    assert sorted(texts) == [g.stem for g in grids]
    for grid in grids:
        words = [i.text for i in read_textgrid(grid).tiers[1].intervals if i.text]
        assert texts[grid.stem] == " ".join(words) and len(words) > 50
