"""Tests of word/phone tables, simulated TR times, trimming and TSV tables."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from fmriscaling import DataError
from fmriscaling.stimuli import (
    DEFAULT_FILLERS,
    filler_key,
    phone_table,
    read_phones,
    read_respdict,
    read_trs,
    read_words,
    response_rows,
    simulated_tr_times,
    story_tables,
    word_table,
    word_tier,
    write_table,
)
from fmriscaling.textgrid import Interval, TextGrid, Tier, read_textgrid

# hand-written story TextGrid: phones, then words with fillers and an empty label
STORY = """File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0
xmax = 4
tiers? <exists>
size = 2
item []:
    item [1]:
        class = "IntervalTier"
        name = "phone"
        xmin = 0
        xmax = 4
        intervals: size = 4
        intervals [1]:
            xmin = 0
            xmax = 0.5
            text = "sp"
        intervals [2]:
            xmin = 0.5
            xmax = 0.8
            text = "HH"
        intervals [3]:
            xmin = 0.8
            xmax = 1.2
            text = "AY1"
        intervals [4]:
            xmin = 1.2
            xmax = 4
            text = ""
    item [2]:
        class = "IntervalTier"
        name = "word"
        xmin = 0
        xmax = 4
        intervals: size = 8
        intervals [1]:
            xmin = 0
            xmax = 0.5
            text = "sentence_start"
        intervals [2]:
            xmin = 0.5
            xmax = 1.2
            text = "Hi"
        intervals [3]:
            xmin = 1.2
            xmax = 1.3
            text = "sp"
        intervals [4]:
            xmin = 1.3
            xmax = 1.9
            text = "{LG}"
        intervals [5]:
            xmin = 1.9
            xmax = 2.1
            text = ""
        intervals [6]:
            xmin = 2.1
            xmax = 2.6
            text = "there"
        intervals [7]:
            xmin = 2.6
            xmax = 3.1
            text = " {NS} "
        intervals [8]:
            xmin = 3.1
            xmax = 4
            text = "SENTENCE_END"
"""


@pytest.fixture
def story_path(tmp_path):
    path = tmp_path / "mystory.TextGrid"
    path.write_text(STORY, encoding="utf-8")
    return path


def test_filler_key():
    assert filler_key("{LG}") == "lg"
    assert filler_key(" {NS} ") == "ns"
    assert filler_key("SENTENCE_START") == "sentence_start"
    assert filler_key("Hi") == "hi"
    assert set(DEFAULT_FILLERS) == {"sentence_start", "sentence_end", "br", "lg", "ls", "ns", "sp"}


def test_word_table_by_hand(story_path):
    words = word_table(read_textgrid(story_path))
    assert list(words.columns) == ["word", "start", "end", "time"]
    assert words["word"].tolist() == ["Hi", "", "there"]
    np.testing.assert_allclose(words["start"], [0.5, 1.9, 2.1])
    np.testing.assert_allclose(words["end"], [1.2, 2.1, 2.6])
    np.testing.assert_allclose(words["time"], [0.85, 2.0, 2.35])


def test_word_table_drop_empty(story_path):
    words = word_table(read_textgrid(story_path), keep_empty=False)
    assert words["word"].tolist() == ["Hi", "there"]
    np.testing.assert_allclose(words["time"], [0.85, 2.35])


def test_word_table_custom_fillers(story_path):
    words = word_table(read_textgrid(story_path), fillers=("sp", "{HI}"))
    # "{HI}" normalises to "hi", so "Hi" goes; sentence markers and {LG}/{NS} now stay
    assert words["word"].tolist() == [
        "sentence_start",
        "{LG}",
        "",
        "there",
        " {NS} ",
        "SENTENCE_END",
    ]


def test_phone_table_by_hand(story_path):
    phones = phone_table(read_textgrid(story_path))
    assert list(phones.columns) == ["phone", "start", "end", "time"]
    assert phones["phone"].tolist() == ["HH", "AY1", ""]
    np.testing.assert_allclose(phones["time"], [0.65, 1.0, 2.6])


def test_word_tier_choice():
    a = Tier("a", 0, 1, [Interval(0, 1, "x")])
    b = Tier("b", 0, 1, [Interval(0, 1, "y")])
    assert word_tier(TextGrid(0, 1, [a, b])) is b  # second tier by default
    words = Tier("Words", 0, 1, [Interval(0, 1, "w")])
    assert word_tier(TextGrid(0, 1, [words, a])) is words  # a tier named like "words" wins
    with pytest.raises(DataError, match=r"1 tier\(s\) \['a'\]; expected at least 2") as exc:
        word_tier(TextGrid(0, 1, [a], source="one.TextGrid"))
    assert "one.TextGrid" in str(exc.value)
    points = Tier("b", 0, 1, kind="TextTier")
    with pytest.raises(DataError, match=r"TextTier"):
        word_tier(TextGrid(0, 1, [a, points]))


def test_simulated_tr_times_by_hand():
    t = simulated_tr_times(30)
    assert t.shape == (25,)
    assert t[0] == -9.0  # 0 * 2 - 10 + 1
    assert t[5] == 1.0
    assert t[-1] == 39.0  # 24 * 2 - 10 + 1
    np.testing.assert_allclose(
        simulated_tr_times(8, tr=1.5, sound_onset=3.0, n_end_skip=2),
        [-2.25, -0.75, 0.75, 2.25, 3.75, 5.25],
    )
    with pytest.raises(DataError, match=r"n_trs=5 is too small"):
        simulated_tr_times(5)


def test_response_rows():
    rows = response_rows(30)
    assert rows == slice(10, 20)
    assert len(np.arange(25)[rows]) == 30 - 20
    assert len(np.arange(375 - 5)[response_rows(375)]) == 355  # ds003020 "souls"
    assert response_rows(50, trim_start=50 - 5 - 5 - 1) == slice(39, 40)
    assert response_rows(21) == slice(10, 11)
    with pytest.raises(DataError, match=r"n_trs=20 is too small.*respdict"):
        response_rows(20)
    with pytest.raises(ValueError, match=r">= 0"):
        response_rows(30, trim_start=-1)


def test_story_tables(story_path, caplog):
    with caplog.at_level(logging.WARNING, logger="fmriscaling.stimuli"):
        words, phones, trs = story_tables(story_path, 30)
    assert not caplog.records  # every word lies inside the TR span
    assert words["word"].tolist() == ["Hi", "", "there"]
    assert phones["phone"].tolist() == ["HH", "AY1", ""]
    assert list(trs.columns) == ["tr_index", "time", "response_row"]
    assert trs["tr_index"].tolist() == list(range(25))
    np.testing.assert_array_equal(trs["time"], np.arange(25) * 2.0 - 9.0)
    assert trs["response_row"].tolist() == [-1] * 10 + list(range(10)) + [-1] * 5
    _, _, trs_drop = story_tables(story_path, 30, keep_empty=False, trim_start=12, trim_end=3)
    assert trs_drop["response_row"].tolist() == [-1] * 12 + list(range(10)) + [-1] * 3


def test_story_only_fillers(tmp_path):
    text = STORY.replace('"Hi"', '"br"').replace('"there"', '"ls"')
    path = tmp_path / "silence.TextGrid"
    path.write_text(text)
    with pytest.raises(DataError, match=r"story 'silence'.*no words") as exc:
        story_tables(path, 30)
    assert str(path) in str(exc.value)


def test_story_words_outside_span_warn(tmp_path, caplog):
    path = tmp_path / "late.TextGrid"
    # the last interval becomes the word "late" on [3.1, 100] s: midpoint 51.55 s
    path.write_text(STORY.replace('"SENTENCE_END"', '"late"').replace("xmax = 4\n", "xmax = 100\n"))
    with caplog.at_level(logging.WARNING, logger="fmriscaling.stimuli"):
        words, _, _ = story_tables(path, 21)  # 16 TRs: span [-10, 22] s
    assert words["word"].tolist()[-1] == "late"
    assert any("1 of 4 words lie outside" in r.getMessage() for r in caplog.records)


def test_read_respdict(tmp_path):
    good = tmp_path / "respdict.json"
    good.write_text(json.dumps({"souls": 375, "alternateithicatom": 373}))
    assert read_respdict(good) == {"souls": 375, "alternateithicatom": 373}
    for bad, pattern in [
        ({"souls": 0}, r"'souls' has TR count 0"),
        ({"souls": 37.5}, r"positive integer"),
        ({"souls": True}, r"positive integer"),
        ([375], r"JSON object"),
        ({}, r"empty"),
    ]:
        good.write_text(json.dumps(bad))
        with pytest.raises(DataError, match=pattern) as exc:
            read_respdict(good)
        assert str(good) in str(exc.value)
    good.write_text("{'souls': 375}")
    with pytest.raises(DataError, match=r"not valid JSON"):
        read_respdict(good)


def test_word_table_tsv_round_trip_keeps_empty_words(tmp_path):
    words = pd.DataFrame(
        {
            "word": ["", "null", "NA", "nan", 'say "hi"', "a,b", "None", "#"],
            "start": [0.1 + 0.2, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
            "end": [0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5],
        }
    )
    words["time"] = (words["start"] + words["end"]) / 2
    path = tmp_path / "words.tsv"
    write_table(words, path)
    # the trap this guards: pandas' default turns "" (and "NA", "null") into NaN
    naive = pd.read_csv(path, sep="\t")
    assert naive["word"].isna().sum() >= 1
    back = read_words(path)
    assert back["word"].tolist() == words["word"].tolist()
    assert back["start"].dtype == np.float64
    assert back["start"].iloc[0] == 0.1 + 0.2  # bit-exact floats
    pd.testing.assert_frame_equal(back, words, check_dtype=False)


def test_story_tables_written_and_read(tmp_path, story_path):
    words, phones, trs = story_tables(story_path, 30)
    write_table(words, tmp_path / "w.tsv")
    write_table(phones, tmp_path / "p.tsv")
    write_table(trs, tmp_path / "t.tsv")
    assert read_words(tmp_path / "w.tsv")["word"].tolist() == ["Hi", "", "there"]
    assert read_phones(tmp_path / "p.tsv")["phone"].tolist() == ["HH", "AY1", ""]
    trs_back = read_trs(tmp_path / "t.tsv")
    assert trs_back["response_row"].dtype == np.int64
    pd.testing.assert_frame_equal(trs_back, trs)


def test_read_words_errors(tmp_path):
    path = tmp_path / "w.tsv"
    path.write_text("word\tstart\nhi\t1\n")
    with pytest.raises(DataError, match=r"missing column\(s\) \['end', 'time'\]") as exc:
        read_words(path)
    assert str(path) in str(exc.value)
    path.write_text("word\tstart\tend\ttime\nhi\tx\t1\t1\n")
    with pytest.raises(DataError, match=r"wrong type"):
        read_words(path)
