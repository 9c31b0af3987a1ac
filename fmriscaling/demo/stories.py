"""Stimuli of the demo dataset: seeded stories, their TextGrids, audio and true TR features.

Each story is a sequence of words drawn from a fixed ~200-word vocabulary with a Zipf-like
distribution, grouped into sentences, with pauses (``sp``, ``""``, ``{BR}``, ``{LG}``). Its
audio lasts ``(n_trs - 5) * tr - sound_onset`` seconds (the n − 5 simulated triggers end with
the scan; the TextGrid time axis starts at sound onset).

Word audio: each word type has a deterministic spectral signature (three tones whose
frequencies and amplitudes are a hash of the word), enveloped over the word's interval;
``sp`` and ``""`` intervals are exact digital silence, ``{BR}``/``{LG}`` are quiet noise.

Acoustic features (`story_acoustic_features`): the log power of the audio in a few frequency
bands, averaged per TR; they drive the demo's "auditory" voxels, which see the sound, not the
words.

`fmriscaling.demo.synthetic` turns these stories into responses and writes the dataset.
"""

from __future__ import annotations

import hashlib
import itertools
import zlib
from dataclasses import dataclass

import numpy as np

from ..stimuli import response_rows, simulated_tr_times
from ..textgrid import Interval, TextGrid, Tier

# METHODS "Stimulus timing": n - 5 simulated triggers; rows 10 .. -5 of those are kept
N_END_SKIP = 5
TRIM_START = 10
TRIM_END = 5
SOUND_ONSET = 10.0
# acoustic features (the driver of the demo's auditory voxels): log band power of the audio
ACOUSTIC_BANDS = 4
ACOUSTIC_FMIN, ACOUSTIC_FMAX = 150.0, 4000.0  # Hz: the word tones span 180 Hz .. 3.8 kHz
_ACOUSTIC_FLOOR = 1e-8  # power floor of the log: digital silence maps to 0
# amplitude of full-scale audio in int16 (headroom for the summed tones)
_INT16_SCALE = 0.8 * 32767

# ~200 common English words, roughly by frequency: rank order sets the Zipf probabilities
VOCABULARY = tuple(
    """
    the and i to a was of it that in my he you she we they her had but so
    his me not with on for at there like just what this all be is were one
    then out up when know from said have do about would them back time going
    get could got went into no an thought or him something did really people
    very go little house over now because well see way think day even only
    who night down first two here come mother father home room door water
    never still long after away old right again around made where us before
    good looked other say told eyes head hand felt old school years back
    friend car life world girl boy man woman children family voice light
    window street city morning dark small big last next always every each
    much more most some any many few same different new young whole half
    began tried wanted asked turned walked stood looked heard moment minute
    hour week year story table floor bed wall road tree river sky fire
    smoke cold warm quiet loud slowly quickly suddenly finally together
    alone inside outside behind under above between through across toward
    paper phone money word name face heart body blood sleep dream fear
    love hope music song dance laugh cry call wait open close break
    remember forget understand believe""".split()
)
VOCABULARY = tuple(dict.fromkeys(VOCABULARY))  # drop repeats, keep rank order
_WORD_SET = frozenset(VOCABULARY)
_ZIPF_EXPONENT = 1.0
_ZIPF_OFFSET = 2.7  # Zipf-Mandelbrot offset: the top words are less dominant than pure 1/rank

_CONSONANTS = "B CH D DH F G HH JH K L M N NG P R S SH T TH V W Y Z ZH".split()
_VOWELS = "AA AE AH AO AW AY EH ER EY IH IY OW OY UH UW".split()

# labels of non-word intervals and their probabilities at a sentence end
_PAUSE_LABELS = ("sp", "", "{BR}", "{LG}")
_PAUSE_PROBS = (0.55, 0.25, 0.12, 0.08)


@dataclass
class Story:
    """One generated story: its word tier, and the vocabulary ids and times of its words."""

    name: str
    n_trs: int
    duration: float  # seconds of audio = TextGrid xmax
    intervals: list[tuple[float, float, str]]  # word tier, tiling [0, duration]
    word_ids: np.ndarray  # (n_words,) index into the vocabulary, for word intervals only
    word_intervals: np.ndarray  # (n_words, 2)


def seeded_rng(seed: int, *keys: str) -> np.random.Generator:
    """The random stream of one part of the dataset, e.g. ``seeded_rng(seed, "story", name)``."""
    # one independent stream per (seed, keys): changing a size never reshuffles other parts
    return np.random.default_rng([seed, *(zlib.crc32(k.encode()) for k in keys)])


def _word_hash(word: str, n: int) -> np.ndarray:
    digest = hashlib.blake2b(word.encode(), digest_size=4 * n).digest()
    return np.frombuffer(digest, dtype="<u4").astype(np.float64) / 2.0**32


def _phones(word: str) -> list[str]:
    n = int(np.clip(len(word) // 2 + 1, 2, 4))
    u = _word_hash("phones:" + word, n)
    out = []
    for i, x in enumerate(u):
        if i % 2 == 0:
            out.append(_CONSONANTS[int(x * len(_CONSONANTS))])
        else:
            out.append(_VOWELS[int(x * len(_VOWELS))] + str(int(x * 1000) % 3))
    return out


def _tones(word: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    u = _word_hash("tones:" + word, 9)
    freqs = 180.0 * (3800.0 / 180.0) ** u[:3]  # log-uniform 180 Hz .. 3.8 kHz
    amps = 0.3 + u[3:6]
    amps = amps / amps.sum()
    phases = 2 * np.pi * u[6:9]
    return freqs, amps, phases


def _audio_duration(n_trs: int, tr: float, sample_rate: int) -> float:
    seconds = (n_trs - N_END_SKIP) * tr - SOUND_ONSET
    return round(seconds * sample_rate) / sample_rate


def make_story(name: str, n_trs: int, tr: float, sample_rate: int, seed: int) -> Story:
    """Draw the words and pauses of a story whose run has ``n_trs`` TRs (respdict value)."""
    rng = seeded_rng(seed, "story", name)
    duration = _audio_duration(n_trs, tr, sample_rate)
    ranks = np.arange(len(VOCABULARY))
    probs = 1.0 / (ranks + _ZIPF_OFFSET) ** _ZIPF_EXPONENT
    probs /= probs.sum()

    bounds = [0.0]
    labels: list[str] = []
    ids: list[int] = []

    def add(dur: float, label: str, word_id: int = -1) -> None:
        bounds.append(bounds[-1] + dur)
        labels.append(label)
        ids.append(word_id)

    add(rng.uniform(0.4, 1.5), "")  # leading silence
    end = duration - rng.uniform(1.0, 3.0)
    done = False
    while not done:
        n_words = int(rng.integers(4, 15))
        for i in range(n_words):
            wid = int(rng.choice(len(VOCABULARY), p=probs))
            word = VOCABULARY[wid]
            dur = float(np.clip(0.1 + 0.045 * len(word) + rng.normal(0, 0.04), 0.15, 0.6))
            if bounds[-1] + dur > end:
                done = True
                break
            add(dur, word, wid)
            if i == n_words - 1:
                break
            if rng.random() < 0.2:  # short pause inside a sentence
                pause = rng.uniform(0.05, 0.35)
                if bounds[-1] + pause > end:
                    done = True
                    break
                add(pause, "sp" if rng.random() < 0.9 else "{BR}")
        if done:
            break
        pause = rng.uniform(1.0, 3.0) if rng.random() < 0.1 else rng.uniform(0.3, 1.0)
        if bounds[-1] + pause > end:
            break
        add(pause, str(rng.choice(_PAUSE_LABELS, p=_PAUSE_PROBS)))
    if labels[-1] == "":
        bounds.pop()
        labels.pop()
        ids.pop()
    labels.append("")  # trailing silence up to the end of the audio
    ids.append(-1)
    bounds.append(duration)

    # TextGrid precision (0.1 ms); durations are >= 50 ms so the order survives rounding
    edges = np.round(np.asarray(bounds), 4)
    edges[-1] = duration
    intervals = [
        (float(a), float(b), lab) for a, b, lab in zip(edges[:-1], edges[1:], labels, strict=True)
    ]
    id_arr = np.asarray(ids)
    is_word = id_arr >= 0
    word_intervals = np.column_stack([edges[:-1][is_word], edges[1:][is_word]])
    return Story(name, n_trs, duration, intervals, id_arr[is_word], word_intervals)


def story_textgrid(story: Story, seed: int) -> TextGrid:
    """The story's TextGrid: tiers "phone" (hashed pseudo-phones per word) and "word"."""
    rng = seeded_rng(seed, "phones", story.name)
    phone_iv: list[Interval] = []
    word_iv: list[Interval] = []
    for a, b, label in story.intervals:
        word_iv.append(Interval(a, b, label))
        if label in _WORD_SET:
            phones = _phones(label)
            w = 0.5 + rng.random(len(phones))
            cuts = np.round(a + (b - a) * np.cumsum(w)[:-1] / w.sum(), 4)
            edges = [a, *(float(c) for c in cuts), b]
            phone_iv += [
                Interval(x0, x1, p) for x0, x1, p in zip(edges[:-1], edges[1:], phones, strict=True)
            ]
        else:
            phone_iv.append(Interval(a, b, label))
    tiers = [
        Tier("phone", 0.0, story.duration, phone_iv),
        Tier("word", 0.0, story.duration, word_iv),
    ]
    return TextGrid(0.0, story.duration, tiers)


def story_audio(story: Story, sample_rate: int, seed: int) -> np.ndarray:
    """The story's audio, int16 mono: array of shape (round(duration * sample_rate),)."""
    rng = seeded_rng(seed, "audio", story.name)
    n_samples = round(story.duration * sample_rate)
    x = np.zeros(n_samples)
    for a, b, label in story.intervals:
        i0, i1 = round(a * sample_rate), round(b * sample_rate)
        n = i1 - i0
        if n <= 0 or label in ("sp", ""):
            continue  # exact silence
        ramp = min(round(0.015 * sample_rate), n // 4)
        env = np.ones(n)
        if ramp > 0:
            r = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
            env[:ramp] = r
            env[n - ramp :] = r[::-1]
        if label in _WORD_SET:
            t = np.arange(n) / sample_rate
            freqs, amps, phases = _tones(label)
            tone = np.sin(2 * np.pi * freqs[:, None] * t[None, :] + phases[:, None])
            x[i0:i1] = rng.uniform(0.7, 1.0) * env * (amps @ tone)
        else:  # breath / laughter: quiet broadband noise
            level = 0.08 if label.lower() == "{lg}" else 0.03
            x[i0:i1] = level * env * rng.standard_normal(n)
    return np.round(np.clip(x, -1.0, 1.0) * _INT16_SCALE).astype(np.int16)


def story_tr_features(
    story: Story, embedding: np.ndarray, tr: float
) -> tuple[np.ndarray, np.ndarray]:
    """True features per simulated TR: the box-car sum of the embeddings of its words.

    Parameters
    ----------
    story : Story
    embedding : array of shape (n_vocab, n_latent)
        The true feature of each vocabulary word.
    tr : float
        Seconds between simulated triggers.

    Returns
    -------
    tr_times : array of shape (n_trs - 5,)
        Midpoints of the simulated TRs, seconds from sound onset.
    feats : array of shape (n_trs - 5, n_latent)
        Sum of the features of the words whose midpoint falls in each TR.
    """
    tr_times = simulated_tr_times(
        story.n_trs, tr=tr, sound_onset=SOUND_ONSET, n_end_skip=N_END_SKIP
    )
    # TR k spans scan time [k tr, (k+1) tr) = story time + sound onset; a word counts in
    # the TR of its midpoint
    mids = story.word_intervals.mean(axis=1)
    bins = np.floor((mids + SOUND_ONSET) / tr).astype(int)
    feats = np.zeros((len(tr_times), embedding.shape[1]))
    np.add.at(feats, bins, embedding[story.word_ids])
    return tr_times, feats


def story_acoustic_features(
    audio: np.ndarray,
    sample_rate: int,
    n_trs: int,
    tr: float,
    n_bands: int = ACOUSTIC_BANDS,
) -> np.ndarray:
    """True acoustic features per simulated TR: the log spectrum of the audio in a few bands.

    The audio is cut into 25 ms Hann frames every 10 ms; each frame's power is summed in
    ``n_bands`` log-spaced bands between `ACOUSTIC_FMIN` and `ACOUSTIC_FMAX` (the range of the
    word tones), put on a log scale (``log10(power + floor) - log10(floor)``: 0 in digital
    silence), and averaged over the frames whose centre falls in each TR (the TR bins of
    `story_tr_features`). TRs without audio (before sound onset, after its end) are 0.

    Parameters
    ----------
    audio : int16 array of shape (n_samples,)
        The story's audio (`story_audio`).
    sample_rate : int
    n_trs : int
        The story's run length (respdict value); features exist for its n − 5 simulated TRs.
    tr : float
        Seconds between simulated triggers.
    n_bands : int
        Frequency bands.

    Returns
    -------
    feats : array of shape (n_trs - 5, n_bands)
    """
    x = np.asarray(audio, dtype=np.float64) / 32768.0
    frame = round(0.025 * sample_rate)
    hop = round(0.010 * sample_rate)
    n_frames = 1 + (len(x) - frame) // hop
    starts = hop * np.arange(n_frames)
    frames = x[starts[:, None] + np.arange(frame)[None, :]] * np.hanning(frame)[None, :]
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # (n_frames, n_freqs)
    freqs = np.fft.rfftfreq(frame, 1.0 / sample_rate)
    edges = np.geomspace(ACOUSTIC_FMIN, ACOUSTIC_FMAX, n_bands + 1)
    band = np.stack(
        [
            power[:, (freqs >= lo) & (freqs < hi)].sum(axis=1)
            for lo, hi in itertools.pairwise(edges)
        ],
        axis=1,
    )
    log_band = np.log10(band + _ACOUSTIC_FLOOR) - np.log10(_ACOUSTIC_FLOOR)
    # a frame counts in the TR bin of its centre (scan time = story time + sound onset)
    centres = (starts + frame / 2) / sample_rate
    bins = np.floor((centres + SOUND_ONSET) / tr).astype(int)
    n_rows = n_trs - N_END_SKIP
    keep = bins < n_rows
    sums = np.zeros((n_rows, n_bands))
    np.add.at(sums, bins[keep], log_band[keep])
    counts = np.bincount(bins[keep], minlength=n_rows)[:, None]
    return sums / np.maximum(counts, 1)


def story_response_rows(n_trs: int) -> slice:
    """Rows of the n − 5 simulated TRs that the response files keep (n − 20 of them)."""
    return response_rows(n_trs, trim_start=TRIM_START, trim_end=TRIM_END, n_end_skip=N_END_SKIP)
