"""Tests of the Praat TextGrid reader and writer."""

from __future__ import annotations

import copy
import os

import pytest

from fmriscaling import DataError
from fmriscaling._utils import check_data_file
from fmriscaling.textgrid import (
    Interval,
    Point,
    TextGrid,
    Tier,
    read_textgrid,
    write_textgrid,
)

# hand-written in Praat's long format; line numbers matter for the error tests below
LONG = """File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0 
xmax = 2.5 
tiers? <exists> 
size = 2 
item []: 
    item [1]:
        class = "IntervalTier" 
        name = "phone" 
        xmin = 0 
        xmax = 2.5 
        intervals: size = 2 
        intervals [1]:
            xmin = 0 
            xmax = 0.75 
            text = "HH" 
        intervals [2]:
            xmin = 0.75 
            xmax = 2.5 
            text = "" 
    item [2]:
        class = "IntervalTier" 
        name = "word" 
        xmin = 0 
        xmax = 2.5 
        intervals: size = 3 
        intervals [1]:
            xmin = 0 
            xmax = 1.25 
            text = "hi" 
        intervals [2]:
            xmin = 1.25 
            xmax = 2 
            text = "say \"\"yes\"\"\" 
        intervals [3]:
            xmin = 2 
            xmax = 2.5 
            text = "caf\u00e9" 
"""  # noqa: W291

EXPECTED = TextGrid(
    xmin=0.0,
    xmax=2.5,
    tiers=[
        Tier("phone", 0.0, 2.5, [Interval(0.0, 0.75, "HH"), Interval(0.75, 2.5, "")]),
        Tier(
            "word",
            0.0,
            2.5,
            [
                Interval(0.0, 1.25, "hi"),
                Interval(1.25, 2.0, 'say "yes"'),
                Interval(2.0, 2.5, "caf\u00e9"),
            ],
        ),
    ],
)

# the same grid in the short format, written by hand (a text tier added)
SHORT = """File type = "ooTextFile"
Object class = "TextGrid"

0
2.5
<exists>
3
"IntervalTier"
"phone"
0
2.5
2
0
0.75
"HH"
0.75
2.5
""
"IntervalTier"
"word"
0
2.5
3
0
1.25
"hi"
1.25
2
"say \"\"yes\"\"\"
2
2.5
"caf\u00e9"
"TextTier"
"events"
0
2.5
2
0.5
"click"
1.5
""
"""

EVENTS = Tier("events", 0.0, 2.5, points=[Point(0.5, "click"), Point(1.5, "")], kind="TextTier")


def _write(tmp_path, text, name="story.TextGrid", encoding="utf-8", newline="\n"):
    path = tmp_path / name
    path.write_bytes(text.replace("\n", newline).encode(encoding))
    return path


def test_read_long_hand_written(tmp_path):
    tg = read_textgrid(_write(tmp_path, LONG))
    assert tg == EXPECTED
    assert tg.source == str(tmp_path / "story.TextGrid")
    assert tg.tier("word").intervals[1].text == 'say "yes"'
    assert tg.tier(0).name == "phone"


def test_read_short_hand_written(tmp_path):
    tg = read_textgrid(_write(tmp_path, SHORT))
    assert tg.tiers[:2] == EXPECTED.tiers
    assert tg.tiers[2] == EVENTS
    assert tg.tier("events").kind == "TextTier"


def test_text_tier_long_format_with_number_and_time_keys(tmp_path):
    text = """File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0
xmax = 3
tiers? <exists>
size = 1
item []:
    item [1]:
        class = "TextTier"
        name = "beats"
        xmin = 0
        xmax = 3
        points: size = 2
        points [1]:
            number = 0.25
            mark = "a"
        points [2]:
            time = 2.75
            mark = "b \"\"c\"\"\"
"""
    tg = read_textgrid(_write(tmp_path, text))
    assert tg.tiers == [
        Tier("beats", 0.0, 3.0, points=[Point(0.25, "a"), Point(2.75, 'b "c"')], kind="TextTier")
    ]


@pytest.mark.parametrize("short", [False, True])
@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be"])
def test_round_trip(tmp_path, short, encoding):
    tg = TextGrid(
        xmin=0.0,
        xmax=10.1,
        tiers=[*copy.deepcopy(EXPECTED.tiers), EVENTS, Tier("empty", 0.0, 10.1)],
    )
    # values without a short decimal form must survive bit for bit
    tg.tiers[0].intervals.append(Interval(2.5, 0.1 + 0.2 + 2.5, "\u00fc\u00df"))
    path = tmp_path / "rt.TextGrid"
    write_textgrid(tg, path, short=short, encoding=encoding)
    head = path.read_bytes()[:2]
    if encoding == "utf-16-le":
        assert head == b"F\x00"  # no BOM: detected from the NUL bytes
    back = read_textgrid(path)
    assert back == tg
    assert back.tiers[0].intervals[-1].xmax == 0.1 + 0.2 + 2.5


def test_written_long_format_looks_like_praat(tmp_path):
    path = tmp_path / "w.TextGrid"
    write_textgrid(EXPECTED, path)
    lines = path.read_text().splitlines()
    assert lines[:2] == ['File type = "ooTextFile"', 'Object class = "TextGrid"']
    assert '            text = "say ""yes""" ' in lines
    assert "        intervals: size = 3 " in lines
    assert not list(tmp_path.glob(".*part"))  # atomic write leaves no temporary file


def test_utf16_with_bom_and_crlf(tmp_path):
    for enc in ("utf-16", "utf-16-be"):
        raw = (
            ("\ufeff" + LONG).replace("\n", "\r\n").encode(enc if enc != "utf-16" else "utf-16-le")
        )
        path = tmp_path / f"{enc}.TextGrid"
        path.write_bytes(raw)
        assert path.read_bytes()[:2] in (b"\xff\xfe", b"\xfe\xff")
        assert read_textgrid(path) == EXPECTED


def test_utf8_bom(tmp_path):
    path = _write(tmp_path, LONG, encoding="utf-8-sig")
    assert path.read_bytes()[:3] == b"\xef\xbb\xbf"
    assert read_textgrid(path).tier("word").intervals[2].text == "caf\u00e9"


@pytest.mark.parametrize("text", [LONG, SHORT])
def test_crlf(tmp_path, text):
    path = _write(tmp_path, text, newline="\r\n")
    assert b"\r\n" in path.read_bytes()
    assert read_textgrid(path).tiers[:2] == EXPECTED.tiers


def test_annex_pointer_content(tmp_path):
    path = _write(
        tmp_path, "/annex/objects/MD5E-s41233--0123456789abcdef0123456789abcdef.TextGrid\n"
    )
    with pytest.raises(DataError, match=r"annex") as exc:
        read_textgrid(path)
    assert str(path) in str(exc.value)
    assert "datalad get" in str(exc.value)


def test_annex_pointer_broken_symlink(tmp_path):
    path = tmp_path / "story.TextGrid"
    os.symlink("../.git/annex/objects/Xy/Zw/MD5E-s1--abc/MD5E-s1--abc", path)
    with pytest.raises(DataError, match=r"git-annex symlink"):
        read_textgrid(path)


def test_annex_symlink_path_text_in_regular_file(tmp_path):
    path = _write(
        tmp_path, "../../.git/annex/objects/pQ/Wk/MD5E-s9--x.TextGrid/MD5E-s9--x.TextGrid"
    )
    with pytest.raises(DataError, match=r"git-annex pointer"):
        check_data_file(path, kind="TextGrid")


def test_empty_and_missing_and_whitespace(tmp_path):
    with pytest.raises(DataError, match=r"empty"):
        read_textgrid(_write(tmp_path, "", name="e.TextGrid"))
    with pytest.raises(DataError, match=r"only whitespace"):
        read_textgrid(_write(tmp_path, "  \n\n", name="w.TextGrid"))
    with pytest.raises(DataError, match=r"does not exist"):
        read_textgrid(tmp_path / "nope.TextGrid")


def test_not_a_textgrid(tmp_path):
    path = _write(tmp_path, "word\tstart\nhi\t0.5\n", name="x.TextGrid")
    with pytest.raises(DataError, match=r"ooTextFile") as exc:
        read_textgrid(path)
    assert str(path) in str(exc.value)
    other = _write(tmp_path, LONG.replace('"TextGrid"', '"Sound"', 1), name="s.TextGrid")
    with pytest.raises(DataError, match=r"'Sound'"):
        read_textgrid(other)


def test_truncated_names_file_and_tier(tmp_path):
    cut = LONG[: LONG.index('text = "hi"')]
    path = _write(tmp_path, cut, name="cut.TextGrid")
    with pytest.raises(DataError, match=r"truncated") as exc:
        read_textgrid(path)
    msg = str(exc.value)
    assert str(path) in msg
    assert "interval 1 of 3 of tier 2 ('word')" in msg


def test_truncated_tier_count(tmp_path):
    # size says 3 tiers, only 2 follow
    path = _write(tmp_path, LONG.replace("size = 2 \n", "size = 3 \n", 1), name="t.TextGrid")
    with pytest.raises(DataError, match=r"class of tier 3.*truncated"):
        read_textgrid(path)


def test_bad_number_names_file_and_line(tmp_path):
    bad = LONG.replace("xmax = 1.25 ", "xmax = 1.2.5 ", 1)
    line = bad.splitlines().index("            xmax = 1.2.5 ") + 1
    assert line == 31
    path = _write(tmp_path, bad, name="bad.TextGrid")
    with pytest.raises(DataError) as exc:
        read_textgrid(path)
    msg = str(exc.value)
    assert str(path) in msg
    assert f"line {line}" in msg
    assert "'1.2.5'" in msg
    assert "interval 1 of 3 of tier 2" in msg


def test_bad_number_short_format_line(tmp_path):
    lines = SHORT.splitlines()
    assert lines[13] == "0.75"  # xmax of the first interval of tier 1
    lines[13] = "0.75x"
    path = _write(tmp_path, "\n".join(lines) + "\n", name="bad.TextGrid")
    with pytest.raises(
        DataError, match=r"line 14: expected a number for xmax of interval 1 of 2 of tier 1"
    ):
        read_textgrid(path)


def test_unclosed_string(tmp_path):
    path = _write(tmp_path, LONG[: LONG.index("hi")], name="u.TextGrid")
    with pytest.raises(DataError, match=r"never closed"):
        read_textgrid(path)


def test_unknown_tier_class_and_reversed_interval(tmp_path):
    path = _write(tmp_path, LONG.replace('"IntervalTier"', '"PitchTier"', 1), name="c.TextGrid")
    with pytest.raises(DataError, match=r"PitchTier"):
        read_textgrid(path)
    rev = LONG.replace("xmax = 0.75 ", "xmax = -0.75 ", 1)
    with pytest.raises(DataError, match=r"ends before it starts"):
        read_textgrid(_write(tmp_path, rev, name="r.TextGrid"))


def test_tier_lookup_errors_list_tiers():
    with pytest.raises(DataError, match=r"\['phone', 'word'\]"):
        EXPECTED.tier("words")
    with pytest.raises(DataError, match=r"index 5"):
        EXPECTED.tier(5)


def test_no_tiers(tmp_path):
    path = tmp_path / "none.TextGrid"
    write_textgrid(TextGrid(0.0, 1.0, []), path)
    assert "tiers? <absent>" in path.read_text()
    assert read_textgrid(path) == TextGrid(0.0, 1.0, [])


def test_latin1_fallback_warns(tmp_path, caplog):
    path = _write(tmp_path, LONG, encoding="latin-1")
    with caplog.at_level("WARNING", logger="fmriscaling.textgrid"):
        tg = read_textgrid(path)
    assert tg.tier("word").intervals[2].text == "caf\u00e9"
    assert any("not valid UTF-8" in r.getMessage() for r in caplog.records)
