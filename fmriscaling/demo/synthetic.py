"""Seeded synthetic dataset in the exact OpenNeuro ds003020 layout, with known ground truth.

`generate_dataset` writes, under ``root``::

    derivative/respdict.json                                   {story: untrimmed n_trs}
    derivative/TextGrids/<story>.TextGrid                      tiers "phone" and "word"
    derivative/preprocessed_data/<subject>/<story>.hf5         dataset "data" (n_trs - 20, n_voxels)
        (test story: also "individual_repeats" (n_repeats, n_trs - 20, n_voxels))
    derivative/pycortex-db/<subject>/transforms/<subject>_auto/{mask_thick,reference}.nii.gz
        (with ``cortex="S1"``: a whole pycortex subject folder on pycortex's sample subject,
        and derivative/freesurfer_subjdir/<subject>/label/{lh,rh}.{aparc,aparc.a2009s}.annot;
        see `fmriscaling.demo.cortex`)
    stimuli/<story>.wav                                        16 kHz mono int16
    ground_truth/stimulus_features.h5, ground_truth/<subject>.npz,
    ground_truth/manifest.json, ground_truth/README.md

Generative model (METHODS.md, "Stimulus timing" and "Noise ceiling"):

1. Each story is a sequence of words with pauses, its TextGrid and its audio
   (`fmriscaling.demo.stories`).
2. Every word type has a fixed random embedding (``n_latent`` dims). The word embeddings are
   summed (box-car) into the n − 5 simulated TR bins (bin k spans ``[k*tr, (k+1)*tr)`` of scan
   time, i.e. ``[k*tr - sound_onset, (k+1)*tr - sound_onset)`` of story time; a word counts
   in the bin of its midpoint) and convolved with the canonical double-gamma HRF.
3. Per subject, signal = HRF-convolved features @ weights (``n_latent x n_voxels``, spatially
   smooth; a fraction of voxels has zero weights), scaled so that every signal voxel has unit
   variance over the test story's response rows. An "auditory" group of voxels (the
   ``auditory_fraction`` of signal voxels nearest the middle of one lateral face of the volume)
   hears the sound instead of the words: its signal is the HRF-convolved acoustic features (log
   band power of the audio per TR, `fmriscaling.demo.stories.story_acoustic_features`) @
   acoustic weights, scaled the same way; every other signal voxel is "semantic". Noise is
   white Gaussian with a per-voxel sd chosen so that the analytic noise ceiling of the test
   story spans ``noise_levels``.
4. Rows 10 .. n − 5 − 5 of the n − 5 simulated TRs are kept: n − 20 rows, as in ds003020.

This module holds steps 2-4 (anatomy, weights, noise, ground truth) and the writer; the story
names live in `fmriscaling.demo.names`, importable without numpy.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from scipy import signal
from scipy.io import wavfile

from .._pycortex import SAMPLE_SUBJECT
from .._utils import ConfigError, atomic_path, write_json
from ..textgrid import write_textgrid
from .anatomy import auditory_voxels, cortical_anatomy, save_nifti, smooth_on_mask, subject_anatomy
from .names import TRAIN_STORY_PREFIX, synthetic_story_names
from .stories import (
    ACOUSTIC_BANDS,
    ACOUSTIC_FMAX,
    ACOUSTIC_FMIN,
    N_END_SKIP,
    SOUND_ONSET,
    TRIM_END,
    TRIM_START,
    VOCABULARY,
    make_story,
    seeded_rng,
    story_acoustic_features,
    story_audio,
    story_response_rows,
    story_textgrid,
    story_tr_features,
)
from .truth import analytic_cc_max, canonical_hrf, expected_correlation

logger = logging.getLogger(__name__)

__all__ = [
    "TRAIN_STORY_PREFIX",
    "generate_dataset",
    "story_lengths",
    "story_texts",
    "synthetic_story_names",
]


def _write_hf5(path: Path, **datasets: np.ndarray) -> None:
    with atomic_path(path) as tmp, h5py.File(tmp, "w", track_order=False) as f:
        for key, value in datasets.items():
            f.create_dataset(key, data=np.asarray(value, dtype=np.float64), track_times=False)


# --------------------------------------------------------------------------------------
# the generator
# --------------------------------------------------------------------------------------


def _check_params(
    *,
    subjects: Sequence[str],
    n_train_stories: int,
    test_story: str,
    n_repeats: int,
    n_voxels: int,
    n_latent: int,
    story_n_trs: Sequence[int],
    test_n_trs: int,
    tr: float,
    sample_rate: int,
    seed: int,
    noise_levels: Sequence[float],
    null_fraction: float,
    cortex: str | None,
    auditory_fraction: float,
) -> None:
    def bad(key: str, value: Any, expected: str) -> ConfigError:
        return ConfigError(f"synthetic.{key} = {value!r}: expected {expected}.")

    if not subjects or len(set(subjects)) != len(subjects):
        raise bad("subjects", subjects, "a non-empty list of distinct names")
    if n_train_stories < 1:
        raise bad("n_train_stories", n_train_stories, "an integer >= 1")
    if test_story.startswith(TRAIN_STORY_PREFIX):
        raise bad("test_story", test_story, f"a name not starting with {TRAIN_STORY_PREFIX!r}")
    if n_repeats < 2:
        raise bad("n_repeats", n_repeats, "an integer >= 2 (the noise ceiling needs repeats)")
    if n_voxels < 1 or n_latent < 1:
        raise bad("n_voxels/n_latent", (n_voxels, n_latent), "positive integers")
    if len(story_n_trs) != 2 or not 40 <= story_n_trs[0] <= story_n_trs[1]:
        raise bad("story_n_trs", story_n_trs, "[min, max] with 40 <= min <= max")
    if test_n_trs < 40:
        raise bad("test_n_trs", test_n_trs, "an integer >= 40")
    if tr <= 0 or sample_rate < 8000:
        raise bad("tr/sample_rate", (tr, sample_rate), "tr > 0 and sample_rate >= 8000")
    if (n_trs_min := min(story_n_trs[0], test_n_trs)) * tr < 40 + SOUND_ONSET + N_END_SKIP * tr:
        raise bad("story_n_trs/test_n_trs", n_trs_min, "stories of at least 40 s of audio")
    if seed < 0:
        raise bad("seed", seed, "a non-negative integer")
    lo, hi = noise_levels
    if not 0 < lo <= hi < 1:
        raise bad("noise_levels", noise_levels, "(low, high) with 0 < low <= high < 1")
    if not 0 <= null_fraction < 1:
        raise bad("null_fraction", null_fraction, "a fraction in [0, 1)")
    if cortex not in (None, SAMPLE_SUBJECT):
        raise bad("cortex", cortex, f"{SAMPLE_SUBJECT!r} (pycortex's sample subject) or null")
    if not 0 <= auditory_fraction < 1:
        raise bad("auditory_fraction", auditory_fraction, "a fraction in [0, 1)")


def story_lengths(
    seed: int, n_train_stories: int, story_n_trs: Sequence[int], test_story: str, test_n_trs: int
) -> dict[str, int]:
    """Story -> its run's TRs (the respdict), training stories first, then the test story: the
    first draw of the seed's "respdict" stream fixes every training length."""
    train_stories = synthetic_story_names(n_train_stories)
    lengths = seeded_rng(seed, "respdict").integers(
        story_n_trs[0], story_n_trs[1] + 1, n_train_stories
    )
    n_trs = {s: int(n) for s, n in zip(train_stories, lengths, strict=True)}
    n_trs[test_story] = int(test_n_trs)
    return n_trs


def story_texts(
    *,
    n_train_stories: int = 12,
    test_story: str = "wheretheressmoke",
    story_n_trs: Sequence[int] = (100, 140),
    test_n_trs: int = 150,
    tr: float = 2.0,
    sample_rate: int = 16000,
    seed: int = 0,
    **_: Any,
) -> dict[str, str]:
    """The words of every story `generate_dataset` writes with these arguments, as the text of
    its TextGrid's word tier (what the tiny LMs' tokenizer trains on), without writing anything.

    So the tiny models build while the dataset is generated. Arguments as `generate_dataset`
    (others are ignored).
    """
    n_trs = story_lengths(seed, n_train_stories, story_n_trs, test_story, test_n_trs)
    texts = {}
    for name, n in n_trs.items():
        grid = story_textgrid(make_story(name, n, tr, sample_rate, seed), seed)
        texts[name] = " ".join(i.text for i in grid.tiers[1].intervals if i.text)
    return texts


def generate_dataset(
    root: str | os.PathLike,
    *,
    subjects: Sequence[str] = ("UTS01", "UTS02"),
    n_train_stories: int = 12,
    test_story: str = "wheretheressmoke",
    n_repeats: int = 10,
    n_voxels: int = 300,
    n_latent: int = 16,
    story_n_trs: Sequence[int] = (100, 140),
    test_n_trs: int = 150,
    tr: float = 2.0,
    sample_rate: int = 16000,
    seed: int = 0,
    noise_levels: Sequence[float] = (0.05, 0.99),
    null_fraction: float = 0.1,
    cortex: str | None = None,
    auditory_fraction: float = 0.2,
) -> dict[str, Any]:
    """Write a seeded synthetic dataset in the ds003020 layout, with its ground truth.

    The same arguments always give the same files (byte for byte, except the zip timestamps
    inside the ground-truth ``.npz`` files, whose arrays are identical).

    Parameters
    ----------
    root : path-like
        Dataset root (the folder that holds ``derivative/`` and ``stimuli/``).
    subjects : sequence of str
        Subject folder names.
    n_train_stories : int
        Number of training stories, named ``synthstory01``, ``synthstory02``, ...
    test_story : str
        Name of the repeated test story.
    n_repeats : int
        Repeats of the test story (``individual_repeats``).
    n_voxels : int
        Voxels per subject (= True voxels of the cortical mask).
    n_latent : int
        Dimensions of the true word-level features.
    story_n_trs : (int, int)
        Inclusive range of the untrimmed TR count (respdict value) of a training story.
    test_n_trs : int
        Untrimmed TR count of the test story.
    tr : float
        Seconds between simulated triggers.
    sample_rate : int
        Audio sample rate in Hz.
    seed : int
        Seed of every random draw.
    noise_levels : (float, float)
        Range of the analytic noise ceiling CC_max of the test story (with ``n_repeats``
        repeats) over signal voxels; per-voxel values are spread uniformly over the range,
        following a spatially smooth map.
    null_fraction : float
        Fraction of voxels with zero weights (no signal, CC_max = 0).
    cortex : {"S1", None}
        ``"S1"``: lay each subject's voxels on pycortex's sample subject, through a coarse grid
        of its own, and write a pycortex subject folder and synthetic FreeSurfer annotations
        for it (`fmriscaling.demo.cortex`). None: a synthetic blob anatomy, masks only (no
        surfaces: maps fall back to slices, and there are no ROIs).
    auditory_fraction : float
        Fraction of the signal voxels driven by the acoustic features instead of the words
        (the "auditory" group of ``voxel_group`` in the ground truth).

    Returns
    -------
    summary : dict
        ``root``, ``subjects``, ``train_stories``, ``test_story``, ``stories`` (all, test last),
        ``n_trs`` {story: respdict value}, ``n_words`` {story: words, fillers excluded},
        ``n_voxels``, ``n_latent``, ``n_repeats``, ``seconds`` (generation time) and ``paths``
        (``respdict``; ``textgrids``, ``wavs`` {story: path}; ``responses`` {subject: {story:
        path}}; ``masks``, ``references`` {subject: path}; ``ground_truth``), all
        JSON-serialisable. ``ground_truth/manifest.json`` holds the same, with the arguments
        and paths relative to ``root``.

    Notes
    -----
    Files of an earlier call with more stories or subjects are not removed.

    Raises
    ------
    ConfigError
        If an argument is out of range; the message names it.
    """
    start_time = time.perf_counter()
    subjects = list(subjects)
    story_n_trs = [int(v) for v in story_n_trs]
    noise_levels = tuple(float(v) for v in noise_levels)
    _check_params(
        subjects=subjects,
        n_train_stories=n_train_stories,
        test_story=test_story,
        n_repeats=n_repeats,
        n_voxels=n_voxels,
        n_latent=n_latent,
        story_n_trs=story_n_trs,
        test_n_trs=test_n_trs,
        tr=tr,
        sample_rate=sample_rate,
        seed=seed,
        noise_levels=noise_levels,
        null_fraction=null_fraction,
        cortex=cortex,
        auditory_fraction=auditory_fraction,
    )
    root = Path(root)
    deriv = root / "derivative"
    truth_dir = root / "ground_truth"

    n_trs = story_lengths(seed, n_train_stories, story_n_trs, test_story, test_n_trs)
    stories = list(n_trs)
    train_stories = stories[:-1]

    embedding = seeded_rng(seed, "embedding").standard_normal((len(VOCABULARY), n_latent))
    hrf = canonical_hrf(tr)

    paths: dict[str, Any] = {
        "respdict": str(deriv / "respdict.json"),
        "textgrids": {},
        "wavs": {},
        "responses": {s: {} for s in subjects},
        "masks": {},
        "references": {},
        "ground_truth": {
            "stimulus_features": str(truth_dir / "stimulus_features.h5"),
            "manifest": str(truth_dir / "manifest.json"),
            "readme": str(truth_dir / "README.md"),
            "subjects": {},
        },
    }
    write_json(deriv / "respdict.json", n_trs)

    features_hrf: dict[str, np.ndarray] = {}
    acoustic_hrf: dict[str, np.ndarray] = {}
    n_words: dict[str, int] = {}
    feat_path = truth_dir / "stimulus_features.h5"
    with atomic_path(feat_path) as tmp, h5py.File(tmp, "w") as fh:
        fh.attrs.update(
            tr=tr,
            sound_onset=SOUND_ONSET,
            n_end_skip=N_END_SKIP,
            trim_start=TRIM_START,
            trim_end=TRIM_END,
            seed=seed,
        )
        ds = {"track_times": False}
        fh.create_dataset(
            "vocabulary", data=np.array(VOCABULARY, dtype=object), dtype=h5py.string_dtype(), **ds
        )
        fh.create_dataset("embedding", data=embedding, **ds)
        fh.create_dataset("hrf", data=hrf, **ds)
        edges = np.geomspace(ACOUSTIC_FMIN, ACOUSTIC_FMAX, ACOUSTIC_BANDS + 1)
        fh.create_dataset("acoustic_band_edges", data=edges, **ds)
        for name in stories:
            story = make_story(name, n_trs[name], tr, sample_rate, seed)
            n_words[name] = len(story.word_ids)
            tg_path = deriv / "TextGrids" / f"{name}.TextGrid"
            write_textgrid(story_textgrid(story, seed), tg_path)
            wav_path = root / "stimuli" / f"{name}.wav"
            audio = story_audio(story, sample_rate, seed)
            with atomic_path(wav_path) as tmp_wav:
                wavfile.write(tmp_wav, sample_rate, audio)
            paths["textgrids"][name] = str(tg_path)
            paths["wavs"][name] = str(wav_path)

            tr_times, feats = story_tr_features(story, embedding, tr)
            # causal convolution: the response at TR t sees the stimulus up to TR t
            features_hrf[name] = signal.lfilter(hrf, [1.0], feats, axis=0)
            acoustic = story_acoustic_features(audio, sample_rate, n_trs[name], tr)
            acoustic_hrf[name] = signal.lfilter(hrf, [1.0], acoustic, axis=0)
            rows = story_response_rows(n_trs[name])
            g = fh.create_group(name)
            g.attrs.update(n_trs=n_trs[name], row_start=rows.start, row_stop=rows.stop)
            g.create_dataset(
                "words",
                data=np.array([VOCABULARY[i] for i in story.word_ids], dtype=object),
                dtype=h5py.string_dtype(),
                **ds,
            )
            g.create_dataset("word_ids", data=story.word_ids, **ds)
            g.create_dataset("word_intervals", data=story.word_intervals, **ds)
            g.create_dataset("word_times", data=story.word_intervals.mean(axis=1), **ds)
            g.create_dataset("word_features", data=embedding[story.word_ids], **ds)
            g.create_dataset("tr_times", data=tr_times, **ds)
            g.create_dataset("tr_features", data=feats, **ds)
            g.create_dataset("tr_features_hrf", data=features_hrf[name], **ds)
            g.create_dataset("tr_acoustic", data=acoustic, **ds)
            g.create_dataset("tr_acoustic_hrf", data=acoustic_hrf[name], **ds)

    test_rows = story_response_rows(n_trs[test_story])
    lo, hi = noise_levels
    cortices = cortical_anatomy(root, subjects, n_voxels, seed, paths) if cortex else {}
    for subject in subjects:
        if cortices:
            mask, ref, affine = (
                cortices[subject].mask,
                cortices[subject].reference,
                cortices[subject].affine,
            )
        else:
            mask, ref, affine = subject_anatomy(subject, n_voxels, seed)
        xfm_dir = deriv / "pycortex-db" / subject / "transforms" / f"{subject}_auto"
        save_nifti(mask, affine, xfm_dir / "mask_thick.nii.gz", np.uint8)
        save_nifti(ref, affine, xfm_dir / "reference.nii.gz", np.float32)
        paths["masks"][subject] = str(xfm_dir / "mask_thick.nii.gz")
        paths["references"][subject] = str(xfm_dir / "reference.nii.gz")

        rng = seeded_rng(seed, "subject", subject)
        weights = smooth_on_mask(rng, mask, n_latent, sigma=1.0)  # (n_latent, n_voxels)
        has_signal = np.ones(n_voxels, dtype=bool)
        has_signal[rng.permutation(n_voxels)[: round(null_fraction * n_voxels)]] = False
        weights[:, ~has_signal] = 0.0
        # the auditory group hears the sound, not the words (its own stream: the draws above
        # and below, and so every other voxel, stay as they were without it)
        auditory = auditory_voxels(mask, has_signal, auditory_fraction)
        weights[:, auditory] = 0.0
        field = smooth_on_mask(seeded_rng(seed, "auditory", subject), mask, ACOUSTIC_BANDS, 1.0)
        field /= field.std() + 1e-12
        # mostly positive band weights: loudness with some spectral tilt
        acoustic_weights = np.where(auditory, 1.0 + 0.5 * field, 0.0)
        # unit signal variance on the test story's response rows, for every signal voxel
        test_sd = (
            features_hrf[test_story][test_rows] @ weights
            + acoustic_hrf[test_story][test_rows] @ acoustic_weights
        ).std(axis=0)
        weights[:, has_signal] /= test_sd[has_signal]
        acoustic_weights[:, has_signal] /= test_sd[has_signal]
        voxel_group = np.where(
            has_signal, np.where(auditory, "auditory", "semantic"), "unresponsive"
        )
        signal_variance = np.where(has_signal, 1.0, 0.0)
        # target ceilings: a smooth map, ranked onto a uniform grid over [lo, hi]
        field = smooth_on_mask(rng, mask, 1, sigma=1.5)[0]
        ranks = np.argsort(np.argsort(field, kind="stable"), kind="stable")
        target = lo + (hi - lo) * (ranks + 0.5) / n_voxels
        noise_sd = np.sqrt(n_repeats * (1.0 / target**2 - 1.0))  # s^2 = 1 in the formula

        for name in stories:
            rows = story_response_rows(n_trs[name])
            clean = features_hrf[name][rows] @ weights + acoustic_hrf[name][rows] @ acoustic_weights
            noise_rng = seeded_rng(seed, "noise", subject, name)
            out = root / "derivative" / "preprocessed_data" / subject / f"{name}.hf5"
            if name == test_story:
                test_signal = clean
                repeats = clean + noise_sd * noise_rng.standard_normal((n_repeats, *clean.shape))
                _write_hf5(out, data=repeats.mean(axis=0), individual_repeats=repeats)
            else:
                _write_hf5(out, data=clean + noise_sd * noise_rng.standard_normal(clean.shape))
            paths["responses"][subject][name] = str(out)

        n_test_rows = test_signal.shape[0]
        cc_max = analytic_cc_max(signal_variance, noise_sd, n_repeats)
        expected = expected_correlation(signal_variance, noise_sd**2 / n_repeats, n_test_rows)
        gt_path = truth_dir / f"{subject}.npz"
        with atomic_path(gt_path, suffix=".npz") as tmp:
            np.savez(
                tmp,
                weights=weights,
                acoustic_weights=acoustic_weights,
                voxel_group=voxel_group,
                hrf=hrf,
                tr=np.float64(tr),
                n_repeats=np.int64(n_repeats),
                has_signal=has_signal,
                noise_sd=noise_sd,
                signal_variance=signal_variance,
                test_signal=test_signal,
                cc_max=cc_max,
                expected_test_corr=expected,
                voxel_zyx=np.argwhere(mask),
            )
        paths["ground_truth"]["subjects"][subject] = str(gt_path)

    seconds = time.perf_counter() - start_time
    summary = {
        "root": str(root),
        "subjects": subjects,
        "train_stories": train_stories,
        "test_story": test_story,
        "stories": stories,
        "n_trs": n_trs,
        "n_words": n_words,
        "n_voxels": n_voxels,
        "n_latent": n_latent,
        "n_repeats": n_repeats,
        "paths": paths,
    }
    params = {
        "subjects": subjects,
        "n_train_stories": n_train_stories,
        "test_story": test_story,
        "n_repeats": n_repeats,
        "n_voxels": n_voxels,
        "n_latent": n_latent,
        "story_n_trs": story_n_trs,
        "test_n_trs": test_n_trs,
        "tr": tr,
        "sample_rate": sample_rate,
        "seed": seed,
        "noise_levels": list(noise_levels),
        "null_fraction": null_fraction,
        "cortex": cortex,
        "auditory_fraction": auditory_fraction,
    }
    # paths relative to root: the manifest does not depend on where the dataset lives
    manifest = {**summary, "root": ".", "paths": _relative(paths, root)}
    write_json(truth_dir / "manifest.json", {"params": params, **manifest})
    with atomic_path(truth_dir / "README.md") as tmp:
        tmp.write_text(_README)
    logger.info(
        "synthetic dataset: %d stories x %d subjects x %d voxels written to %s in %.1f s",
        len(stories),
        len(subjects),
        n_voxels,
        root,
        seconds,
    )
    return {**summary, "seconds": seconds}


def _relative(obj: Any, root: Path) -> Any:
    if isinstance(obj, dict):
        return {k: _relative(v, root) for k, v in obj.items()}
    return Path(obj).relative_to(root).as_posix()


_README = """\
# Ground truth of the synthetic ds003020-like dataset

Written by `fmriscaling.demo.synthetic.generate_dataset`; `manifest.json` holds its arguments and
the story list. Timing follows METHODS.md: a story with `n = respdict[story]` has `n - 5`
simulated TRs (TR k spans scan time `[k*tr, (k+1)*tr)`; sound onset at 10 s of scan time, so
story time = scan time - 10 s), and its response files keep rows `10 .. n - 5 - 5` of those
(`n - 20` rows; attributes `row_start`, `row_stop` below).

## stimulus_features.h5
- `vocabulary` (n_vocab,) str; `embedding` (n_vocab, n_latent): the true feature of each word.
- `hrf` (n_taps,): canonical double-gamma HRF sampled at the TR (unit sum, lag 0 first).
- per story group `<story>` (attrs `n_trs`, `row_start`, `row_stop`):
  - `words`, `word_ids` (n_words,): the word intervals of the TextGrid word tier, in order
    (fillers `sp`, `{BR}`, `{LG}` and empty `""` intervals are not words and carry no feature);
  - `word_intervals` (n_words, 2) seconds from sound onset; `word_times` (n_words,) midpoints;
  - `word_features` (n_words, n_latent) = `embedding[word_ids]`;
  - `tr_times` (n - 5,): midpoints of the simulated TRs, seconds from sound onset;
  - `tr_features` (n - 5, n_latent): box-car sum of the word features whose midpoint falls in
    each TR;
  - `tr_features_hrf` (n - 5, n_latent): `tr_features` convolved (causally) with `hrf`.
  - `tr_acoustic` (n - 5, n_bands): the acoustic features, log power of the audio in the
    bands `acoustic_band_edges` (Hz; 25 ms frames every 10 ms, `log10(power + 1e-8) + 8`, so
    0 in silence), averaged over the frames centred in each TR; `tr_acoustic_hrf` the same
    convolved with `hrf`.

## <subject>.npz
- `weights` (n_latent, n_voxels), `acoustic_weights` (n_bands, n_voxels): noise-free response =
  `tr_features_hrf[rows] @ weights + tr_acoustic_hrf[rows] @ acoustic_weights` with
  `rows = row_start:row_stop`.
- `voxel_group` (n_voxels,) str: the true driver of each voxel. `"semantic"` voxels respond
  to the words only (`acoustic_weights` zero), `"auditory"` voxels (a compact patch at the +x
  side of the volume) to the sound only (`weights` zero), `"unresponsive"` voxels to nothing
  (not "null", which pandas reads back from a CSV as NaN).
- `has_signal` (n_voxels,) bool: False for voxels whose weights are all zero (`"unresponsive"`).
- `signal_variance` (n_voxels,): variance over time (ddof=0) of the noise-free test-story
  signal (1 for signal voxels, 0 otherwise; training stories have variance near 1).
- `noise_sd` (n_voxels,): sd of the white Gaussian noise of every run (each training story has
  one noisy run; the test story has `n_repeats`, and `data` is their mean).
- `test_signal` (n - 20, n_voxels): the noise-free test-story signal.
- `cc_max` (n_voxels,): analytic noise ceiling of the test-story repeat mean,
  `1 / sqrt(1 + noise_sd**2 / (n_repeats * signal_variance))` (0 without signal); equals the
  population correlation of a perfect model with the repeat mean.
- `expected_test_corr` (n_voxels,): expected Pearson r of `test_signal` with the repeat mean
  over the test story's `n - 20` rows (finite-sample, second order in the noise).
- `hrf`, `tr`, `n_repeats`: copies of the model constants.
- `voxel_zyx` (n_voxels, 3): the voxels' indices in the (z, y, x) array `nib.load(mask).get_fdata().T`
  (the pycortex orientation); data columns follow that array's C order.
"""
