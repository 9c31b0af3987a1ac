"""Stimulus timing: word and phone tables from TextGrids, simulated TR times, trimming.

Follows the companion code of Antonello et al. (2023) / LeBel et al. (2023):

- the word tier is the second tier of a story's TextGrid (the first holds phones);
- labels whose lower-cased, brace-stripped text is a filler (``sp``, ``{LG}``,
  ``sentence_start``, ...) are dropped; empty labels ``""`` are kept as words by default
  (the LM stage gives them the previous word's feature);
- a word's time is the midpoint of its interval;
- for a story with ``n = respdict[story]``, ``n - 5`` triggers are simulated every 2.0 s with
  the sound starting 10 s in, so TR ``k`` sits at ``k * 2.0 - 10 + 1.0`` s relative to sound
  onset; features computed there lose their first 10 and last 5 rows, leaving the ``n - 20``
  rows of the response file.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from ._utils import DataError, atomic_path, check_data_file
from .textgrid import INTERVAL_TIER, TextGrid, Tier, read_textgrid

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_FILLERS",
    "filler_key",
    "phone_table",
    "phone_tier",
    "read_phones",
    "read_respdict",
    "read_trs",
    "read_words",
    "response_rows",
    "simulated_tr_times",
    "story_tables",
    "word_table",
    "word_tier",
    "write_table",
]

DEFAULT_FILLERS: tuple[str, ...] = ("sentence_start", "sentence_end", "br", "lg", "ls", "ns", "sp")
"""Labels (lower-cased, braces stripped) that mark noise or silence, not words."""

WORD_COLUMNS = ("word", "start", "end", "time")
PHONE_COLUMNS = ("phone", "start", "end", "time")
TR_COLUMNS = ("tr_index", "time", "response_row")


def _where(tg: TextGrid) -> str:
    return f" {tg.source}" if tg.source else ""


def _pick_tier(tg: TextGrid, names: tuple[str, ...], index: int, what: str) -> Tier:
    for tier in tg.tiers:
        if tier.name.strip().lower() in names:
            chosen = tier
            break
    else:
        if len(tg.tiers) < 2:
            raise DataError(
                f"TextGrid{_where(tg)} has {len(tg.tiers)} tier(s) {tg.tier_names}; expected "
                f"at least 2 (phones, then words) or a tier named {names[0]!r}. Check that the "
                "file is a story TextGrid of ds003020 and re-download it if it is truncated."
            )
        chosen = tg.tiers[index]
    if chosen.kind != INTERVAL_TIER:
        raise DataError(
            f"TextGrid{_where(tg)}: the {what} tier {chosen.name!r} is a {chosen.kind}; expected "
            f"an IntervalTier (tiers present: {tg.tier_names})."
        )
    return chosen


def word_tier(tg: TextGrid) -> Tier:
    """The word tier: a tier named ``word``/``words`` if any, else the second tier.

    Raises
    ------
    DataError
        When the TextGrid has fewer than 2 tiers and none is named like a word tier, or the
        chosen tier is not an IntervalTier.
    """
    return _pick_tier(tg, ("word", "words"), 1, "word")


def phone_tier(tg: TextGrid) -> Tier:
    """The phone tier: a tier named ``phone``/``phones`` if any, else the first tier.

    Raises
    ------
    DataError
        As :func:`word_tier`.
    """
    return _pick_tier(tg, ("phone", "phones"), 0, "phone")


def filler_key(label: str) -> str:
    """Normalised label used for the filler test: lower-cased, braces and whitespace stripped.

    ``"{LG}"`` -> ``"lg"``, ``" SP "`` -> ``"sp"``.
    """
    return label.lower().replace("{", "").replace("}", "").strip()


def _interval_table(
    tier: Tier, column: str, fillers: Iterable[str], keep_empty: bool
) -> pd.DataFrame:
    filler_set = {filler_key(f) for f in fillers}
    rows = []
    n_fillers = n_empty = 0
    for iv in tier.intervals:
        key = filler_key(iv.text)
        if key == "":
            n_empty += 1
            if not keep_empty:
                continue
        elif key in filler_set:
            n_fillers += 1
            continue
        rows.append((iv.text, iv.xmin, iv.xmax))
    logger.debug(
        "tier %r: %d intervals, %d fillers dropped, %d empty labels %s",
        tier.name,
        len(tier.intervals),
        n_fillers,
        n_empty,
        "kept" if keep_empty else "dropped",
    )
    labels = [r[0] for r in rows]
    start = np.array([r[1] for r in rows], dtype=np.float64)
    end = np.array([r[2] for r in rows], dtype=np.float64)
    return pd.DataFrame(
        {
            column: pd.Series(labels, dtype=object),
            "start": start,
            "end": end,
            "time": 0.5 * (start + end),
        }
    )


def word_table(
    tg: TextGrid, *, fillers: Iterable[str] = DEFAULT_FILLERS, keep_empty: bool = True
) -> pd.DataFrame:
    """Words of a story with their times.

    Parameters
    ----------
    tg : TextGrid
        The story's TextGrid.
    fillers : iterable of str
        Labels to drop, compared after :func:`filler_key` normalisation.
    keep_empty : bool
        Keep intervals with an empty (or whitespace) label as words ``""``; the companion
        code does, and the LM stage gives them the previous word's feature.

    Returns
    -------
    DataFrame of shape (n_words, 4)
        Columns ``word`` (label as written), ``start``, ``end`` (s) and ``time`` (midpoint,
        s), in tier order.
    """
    return _interval_table(word_tier(tg), "word", fillers, keep_empty)


def phone_table(
    tg: TextGrid, *, fillers: Iterable[str] = DEFAULT_FILLERS, keep_empty: bool = True
) -> pd.DataFrame:
    """Phones of a story with their times; as :func:`word_table` on the phone tier.

    Returns
    -------
    DataFrame of shape (n_phones, 4)
        Columns ``phone``, ``start``, ``end``, ``time``.
    """
    return _interval_table(phone_tier(tg), "phone", fillers, keep_empty)


def _check_n_trs(n_trs: int, minimum: int, what: str) -> int:
    if isinstance(n_trs, bool) or not isinstance(n_trs, int | np.integer):
        raise TypeError(f"n_trs must be an int, got {type(n_trs).__name__}")
    n_trs = int(n_trs)
    if n_trs < minimum:
        raise DataError(
            f"n_trs={n_trs} is too small: {what} needs at least {minimum}. n_trs is "
            "respdict[story], the TR count of the untrimmed run; check respdict.json and the "
            "trimming settings."
        )
    return n_trs


def simulated_tr_times(
    n_trs: int, *, tr: float = 2.0, sound_onset: float = 10.0, n_end_skip: int = 5
) -> np.ndarray:
    """Midpoints of the simulated TRs, in seconds relative to sound onset.

    Parameters
    ----------
    n_trs : int
        ``respdict[story]``: TR count of the untrimmed run.
    tr : float
        Simulated repetition time (s).
    sound_onset : float
        Time of sound onset after the first trigger (s).
    n_end_skip : int
        Triggers not simulated at the end: ``n_trs - n_end_skip`` TRs are returned.

    Returns
    -------
    tr_times : array of shape (n_trs - n_end_skip,)
        ``k * tr - sound_onset + tr / 2`` for ``k = 0 .. n_trs - n_end_skip - 1``.
    """
    n = _check_n_trs(n_trs, n_end_skip + 1, f"simulating TRs with n_end_skip={n_end_skip}")
    return np.arange(n - n_end_skip, dtype=np.float64) * tr - sound_onset + tr / 2.0


def response_rows(
    n_trs: int, *, trim_start: int = 10, trim_end: int = 5, n_end_skip: int = 5
) -> slice:
    """Rows of the simulated TRs that match the rows of the response file.

    Parameters
    ----------
    n_trs : int
        ``respdict[story]``.
    trim_start, trim_end : int
        Simulated TRs dropped at the start and the end.
    n_end_skip : int
        As in :func:`simulated_tr_times`.

    Returns
    -------
    slice
        Into an array of ``n_trs - n_end_skip`` simulated TRs; selects
        ``n_trs - n_end_skip - trim_start - trim_end`` rows (``n_trs - 20`` by default).

    Raises
    ------
    DataError
        When that count is not positive.
    """
    if trim_start < 0 or trim_end < 0 or n_end_skip < 0:
        raise ValueError(
            f"trim_start, trim_end and n_end_skip must be >= 0, got "
            f"{trim_start}, {trim_end}, {n_end_skip}"
        )
    n = _check_n_trs(
        n_trs,
        n_end_skip + trim_start + trim_end + 1,
        f"trimming (n_end_skip={n_end_skip}, trim_start={trim_start}, trim_end={trim_end})",
    )
    return slice(trim_start, n - n_end_skip - trim_end)


def read_respdict(path: str | os.PathLike) -> dict[str, int]:
    """Read ``respdict.json``: ``{story: TR count of the untrimmed run}``.

    Raises
    ------
    DataError
        When the file is missing, a git-annex pointer, not JSON, not an object, or holds a
        value that is not a positive integer; the message names the file and the story.
    """
    path = check_data_file(path, kind="respdict JSON file")
    try:
        obj = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{path}: not valid JSON ({exc}); expected an object {{story: n_TRs}} as in "
            "ds003020's derivative/respdict.json. Re-download it."
        ) from None
    if not isinstance(obj, dict) or not obj:
        raise DataError(
            f"{path}: expected a non-empty JSON object {{story: n_TRs}}, got "
            f"{type(obj).__name__}{' (empty)' if obj == {} else ''}. Re-download it."
        )
    out: dict[str, int] = {}
    for story, n in obj.items():
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise DataError(
                f"{path}: story {story!r} has TR count {n!r}; expected a positive integer. "
                "Fix or re-download the file."
            )
        out[story] = n
    return out


def story_tables(
    textgrid_path: str | os.PathLike,
    n_trs: int,
    *,
    tr: float = 2.0,
    sound_onset: float = 10.0,
    fillers: Iterable[str] = DEFAULT_FILLERS,
    keep_empty: bool = True,
    trim_start: int = 10,
    trim_end: int = 5,
    n_end_skip: int = 5,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Word, phone and TR tables of one story.

    Parameters
    ----------
    textgrid_path : path-like
        The story's TextGrid; its stem names the story in messages.
    n_trs : int
        ``respdict[story]``.
    tr, sound_onset, n_end_skip
        As in :func:`simulated_tr_times`.
    fillers, keep_empty
        As in :func:`word_table`.
    trim_start, trim_end
        As in :func:`response_rows`.

    Returns
    -------
    words : DataFrame of shape (n_words, 4)
        Columns ``word, start, end, time``.
    phones : DataFrame of shape (n_phones, 4)
        Columns ``phone, start, end, time``.
    trs : DataFrame of shape (n_trs - n_end_skip, 3)
        ``tr_index`` (0 ..), ``time`` (TR midpoint relative to sound onset, s) and
        ``response_row``: the row of the response file, or -1 for trimmed TRs.

    Raises
    ------
    DataError
        When the TextGrid cannot be read, or the story has no words left after dropping
        fillers.
    """
    story = Path(textgrid_path).stem
    tg = read_textgrid(textgrid_path)
    words = word_table(tg, fillers=fillers, keep_empty=keep_empty)
    phones = phone_table(tg, fillers=fillers, keep_empty=keep_empty)
    if not (words["word"].map(filler_key) != "").any():
        raise DataError(
            f"story {story!r}: the word tier {word_tier(tg).name!r} of {textgrid_path} holds no "
            f"words after dropping fillers {tuple(fillers)} and empty labels. Check that the "
            "tier order is phones, words and that the file is the story's TextGrid."
        )
    tr_times = simulated_tr_times(n_trs, tr=tr, sound_onset=sound_onset, n_end_skip=n_end_skip)
    rows = response_rows(n_trs, trim_start=trim_start, trim_end=trim_end, n_end_skip=n_end_skip)
    response_row = np.full(tr_times.shape, -1, dtype=np.int64)
    response_row[rows] = np.arange(rows.stop - rows.start)
    trs = pd.DataFrame(
        {"tr_index": np.arange(tr_times.size), "time": tr_times, "response_row": response_row}
    )
    lo, hi = tr_times[0] - tr / 2.0, tr_times[-1] + tr / 2.0
    outside = (words["time"] < lo) | (words["time"] > hi)
    if outside.any():
        logger.warning(
            "story %r: %d of %d words lie outside the simulated TR span [%.2f, %.2f] s "
            "(n_trs=%d from respdict); check respdict and sound_onset",
            story,
            int(outside.sum()),
            len(words),
            lo,
            hi,
            n_trs,
        )
    logger.info(
        "story %r: %d words, %d phones, %d simulated TRs, %d response rows",
        story,
        len(words),
        len(phones),
        len(trs),
        rows.stop - rows.start,
    )
    return words, phones, trs


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write ``df`` as a tab-separated file without index, atomically.

    Floats are written at full precision (``repr``), so they read back bit for bit.
    """
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False, lineterminator="\n")


def _read_table(
    path: str | os.PathLike,
    columns: tuple[str, ...],
    dtypes: dict[str, type],
    label: str | None = None,
) -> pd.DataFrame:
    path = check_data_file(path, kind="TSV table")
    try:
        # na_filter=False: an empty word is "" (not NaN), and "null"/"NA"/"nan" stay words
        df = pd.read_csv(
            path,
            sep="\t",
            keep_default_na=False,
            na_filter=False,
            dtype={label: object} if label else None,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{path}: not a readable TSV table ({exc}). Rerun the rule that writes it."
        ) from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; expected {list(columns)}, found "
            f"{list(df.columns)}. Rerun the rule that writes it."
        )
    df = df[list(columns)]
    try:
        df = df.astype(dtypes)
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"{path}: a column has values of the wrong type ({exc}); expected {dtypes}. "
            "Rerun the rule that writes it."
        ) from None
    return df


def read_words(path: str | os.PathLike) -> pd.DataFrame:
    """Read a word table written by :func:`write_table`; empty words stay ``""``.

    Returns
    -------
    DataFrame of shape (n_words, 4)
        Columns ``word`` (str), ``start``, ``end``, ``time`` (float64).
    """
    df = _read_table(
        path, WORD_COLUMNS, {"start": np.float64, "end": np.float64, "time": np.float64}, "word"
    )
    df["word"] = df["word"].astype(str).astype(object)
    return df


def read_phones(path: str | os.PathLike) -> pd.DataFrame:
    """Read a phone table written by :func:`write_table` (columns ``phone, start, end, time``)."""
    df = _read_table(
        path, PHONE_COLUMNS, {"start": np.float64, "end": np.float64, "time": np.float64}, "phone"
    )
    df["phone"] = df["phone"].astype(str).astype(object)
    return df


def read_trs(path: str | os.PathLike) -> pd.DataFrame:
    """Read a TR table written by :func:`write_table`.

    Returns
    -------
    DataFrame of shape (n_simulated_trs, 3)
        Columns ``tr_index`` (int64), ``time`` (float64), ``response_row`` (int64, -1 for
        trimmed TRs).
    """
    return _read_table(
        path, TR_COLUMNS, {"tr_index": np.int64, "time": np.float64, "response_row": np.int64}
    )


def kept_tr_rows(
    trs_path: str | os.PathLike, story: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """TR times of a story and the indices of its kept TRs, ordered by ``response_row``.

    Returns
    -------
    tr_times : array of shape (n_simulated_trs,)
        Every simulated TR time (the interpolation targets).
    keep : array of shape (n_response_rows,)
        Indices into ``tr_times`` of the rows of the response file, in file order.
    """
    story = story or Path(trs_path).name.split(".")[0]
    trs = read_trs(trs_path)
    tr_times = np.asarray(trs["time"], dtype=np.float64)
    response_row = np.asarray(trs["response_row"], dtype=np.int64)
    keep = np.flatnonzero(response_row >= 0)
    keep = keep[np.argsort(response_row[keep], kind="stable")]
    if keep.size == 0:
        raise DataError(
            f"story {story!r}: {trs_path} keeps no TR (every response_row is -1); check the "
            "story's TR count in respdict.json and the trimming settings"
        )
    if not np.array_equal(response_row[keep], np.arange(keep.size)):
        raise DataError(
            f"story {story!r}: response_row in {trs_path} must number the kept TRs 0..n-1 "
            "(and mark dropped TRs with -1); re-run the stimulus timing stage"
        )
    return tr_times, keep
