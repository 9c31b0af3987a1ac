"""Praat TextGrids: data classes, a reader (long and short text formats) and a writer.

The ds003020 TextGrids (``derivative/TextGrids/<story>.TextGrid``) hold a phone tier and a
word tier. Most use Praat's long "ooTextFile" format, some the short one; encodings seen in
the wild are UTF-8 (with or without BOM) and UTF-16 (with BOM).

Both text formats carry the same stream of values (numbers, quoted strings, ``<exists>``
flags); the long format only adds ``key =`` labels and ``item [i]:`` headings. The reader
therefore turns either format into that value stream and parses it once.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ._utils import DataError, atomic_path, check_data_file

logger = logging.getLogger(__name__)

__all__ = [
    "Interval",
    "Point",
    "TextGrid",
    "Tier",
    "check_data_file",
    "read_textgrid",
    "write_textgrid",
]

INTERVAL_TIER = "IntervalTier"
TEXT_TIER = "TextTier"
_TIER_KINDS = (INTERVAL_TIER, TEXT_TIER)


@dataclass(frozen=True)
class Interval:
    """One interval of an IntervalTier: ``[xmin, xmax]`` in seconds with its label."""

    xmin: float
    xmax: float
    text: str = ""

    @property
    def mid(self) -> float:
        """Midpoint of the interval, in seconds."""
        return 0.5 * (self.xmin + self.xmax)


@dataclass(frozen=True)
class Point:
    """One point of a TextTier (point tier): a time in seconds and its mark."""

    time: float
    mark: str = ""


@dataclass
class Tier:
    """One tier of a TextGrid.

    Parameters
    ----------
    name : str
        Tier name (e.g. ``"phone"``, ``"word"``).
    xmin, xmax : float
        Time span of the tier, in seconds.
    intervals : list of Interval
        The intervals, for an ``IntervalTier`` (empty for a ``TextTier``).
    points : list of Point
        The points, for a ``TextTier`` (empty for an ``IntervalTier``).
    kind : {"IntervalTier", "TextTier"}
        Praat class of the tier.
    """

    name: str
    xmin: float
    xmax: float
    intervals: list[Interval] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)
    kind: str = INTERVAL_TIER

    def __post_init__(self) -> None:
        if self.kind not in _TIER_KINDS:
            raise ValueError(f"Tier.kind must be one of {_TIER_KINDS}, got {self.kind!r}")

    @property
    def is_interval_tier(self) -> bool:
        """Whether this is an IntervalTier."""
        return self.kind == INTERVAL_TIER

    def __len__(self) -> int:
        return len(self.intervals) if self.is_interval_tier else len(self.points)


@dataclass
class TextGrid:
    """A Praat TextGrid: a time span and a list of tiers.

    Parameters
    ----------
    xmin, xmax : float
        Time span, in seconds.
    tiers : list of Tier
        The tiers, in file order.
    source : str, optional
        File the TextGrid was read from (used in error messages; not compared).
    """

    xmin: float
    xmax: float
    tiers: list[Tier] = field(default_factory=list)
    source: str | None = field(default=None, compare=False, repr=False)

    @property
    def tier_names(self) -> list[str]:
        """Names of the tiers, in file order."""
        return [t.name for t in self.tiers]

    def tier(self, name_or_index: str | int) -> Tier:
        """Return a tier by name (first match) or by 0-based index.

        Raises
        ------
        DataError
            When no tier has that name or the index is out of range; the message lists
            the tiers present.
        """
        where = f" in {self.source}" if self.source else ""
        if isinstance(name_or_index, int):
            try:
                return self.tiers[name_or_index]
            except IndexError:
                raise DataError(
                    f"TextGrid{where} has {len(self.tiers)} tier(s) {self.tier_names}; "
                    f"there is no tier at index {name_or_index}."
                ) from None
        for t in self.tiers:
            if t.name == name_or_index:
                return t
        raise DataError(
            f"TextGrid{where} has no tier named {name_or_index!r}; tiers present: "
            f"{self.tier_names}. Pass one of these names or a tier index."
        )


# --------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------


def _fmt_num(x: float) -> str:
    # shortest text that round-trips; integers as Praat writes them ("0", not "0.0")
    x = float(x)
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(x)


def _fmt_str(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


def _long_lines(tg: TextGrid) -> list[str]:
    lines = [
        'File type = "ooTextFile"',
        'Object class = "TextGrid"',
        "",
        f"xmin = {_fmt_num(tg.xmin)} ",
        f"xmax = {_fmt_num(tg.xmax)} ",
    ]
    if not tg.tiers:
        lines.append("tiers? <absent> ")
        return lines
    lines += ["tiers? <exists> ", f"size = {len(tg.tiers)} ", "item []: "]
    for i, tier in enumerate(tg.tiers, start=1):
        lines += [
            f"    item [{i}]:",
            f"        class = {_fmt_str(tier.kind)} ",
            f"        name = {_fmt_str(tier.name)} ",
            f"        xmin = {_fmt_num(tier.xmin)} ",
            f"        xmax = {_fmt_num(tier.xmax)} ",
        ]
        if tier.is_interval_tier:
            lines.append(f"        intervals: size = {len(tier.intervals)} ")
            for j, iv in enumerate(tier.intervals, start=1):
                lines += [
                    f"        intervals [{j}]:",
                    f"            xmin = {_fmt_num(iv.xmin)} ",
                    f"            xmax = {_fmt_num(iv.xmax)} ",
                    f"            text = {_fmt_str(iv.text)} ",
                ]
        else:
            lines.append(f"        points: size = {len(tier.points)} ")
            for j, pt in enumerate(tier.points, start=1):
                lines += [
                    f"        points [{j}]:",
                    f"            number = {_fmt_num(pt.time)} ",
                    f"            mark = {_fmt_str(pt.mark)} ",
                ]
    return lines


def _short_lines(tg: TextGrid) -> list[str]:
    lines = [
        'File type = "ooTextFile"',
        'Object class = "TextGrid"',
        "",
        _fmt_num(tg.xmin),
        _fmt_num(tg.xmax),
    ]
    if not tg.tiers:
        lines.append("<absent>")
        return lines
    lines += ["<exists>", str(len(tg.tiers))]
    for tier in tg.tiers:
        lines += [
            _fmt_str(tier.kind),
            _fmt_str(tier.name),
            _fmt_num(tier.xmin),
            _fmt_num(tier.xmax),
        ]
        if tier.is_interval_tier:
            lines.append(str(len(tier.intervals)))
            for iv in tier.intervals:
                lines += [_fmt_num(iv.xmin), _fmt_num(iv.xmax), _fmt_str(iv.text)]
        else:
            lines.append(str(len(tier.points)))
            for pt in tier.points:
                lines += [_fmt_num(pt.time), _fmt_str(pt.mark)]
    return lines


def write_textgrid(
    tg: TextGrid,
    path: str | os.PathLike,
    *,
    short: bool = False,
    encoding: str = "utf-8",
) -> None:
    """Write ``tg`` as a Praat text file, atomically.

    Parameters
    ----------
    tg : TextGrid
        The TextGrid to write.
    path : path-like
        Destination file.
    short : bool
        Write Praat's short text format instead of the long "ooTextFile" one.
    encoding : str
        Text encoding, e.g. ``"utf-8"``, ``"utf-8-sig"`` (with BOM) or ``"utf-16"``
        (with BOM, native byte order).
    """
    lines = _short_lines(tg) if short else _long_lines(tg)
    text = "\n".join(lines) + "\n"
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding=encoding, newline="\n") as fh:
            fh.write(text)
    logger.debug("wrote TextGrid with %d tier(s) to %s", len(tg.tiers), path)


# --------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------

_REDOWNLOAD_HINT = (
    "Re-download the file (check its md5 against the dataset manifest) or re-export it "
    "from Praat as a text file."
)


def _decode(path: Path, raw: bytes) -> str:
    """Decode TextGrid bytes: UTF-8 (BOM optional) or UTF-16 (BOM, or guessed from NULs)."""
    if raw.startswith(b"\xef\xbb\xbf"):
        encoding = "utf-8-sig"
    elif raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"
    elif b"\x00" in raw[:512]:
        # UTF-16 without BOM: ASCII text has its NUL bytes at odd offsets in little-endian
        head = raw[:512]
        encoding = "utf-16-le" if head[1::2].count(0) >= head[0::2].count(0) else "utf-16-be"
    else:
        encoding = "utf-8"
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        if encoding == "utf-8":
            # Praat writes Latin-1-compatible files when every character fits
            logger.warning("%s is not valid UTF-8 (%s); decoding it as Latin-1", path, exc)
            return raw.decode("latin-1")
        raise DataError(
            f"{path}: could not decode the TextGrid as {encoding} ({exc}). Expected UTF-8 or "
            f"UTF-16 text. {_REDOWNLOAD_HINT}"
        ) from None


_HEADER = re.compile(
    r'\A\s*File\s+type\s*=\s*"(?P<type>[^"]*)"\s*\n\s*Object\s+class\s*=\s*"(?P<cls>[^"]*)"'
)
_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r\f\v\ufeff]+)
  | (?P<nl>\n)
  | (?P<str>"(?:[^"]|"")*")
  | (?P<open>")
  | (?P<flag><[A-Za-z]+>)
  | (?P<bracket>\[[^\]\n]*\])
  | (?P<eq>=)
  | (?P<comment>![^\n]*)
  | (?P<word>[^\s"=\[\]!]+)
  | (?P<other>.)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Token:
    kind: str  # "str", "flag", "word", "eq"
    text: str
    line: int
    key: str | None = None  # long format: the label before "=", for messages


def _tokenize(path: Path, text: str, start: int, first_line: int) -> list[_Token]:
    tokens: list[_Token] = []
    line = first_line
    for m in _TOKEN.finditer(text, start):
        kind = m.lastgroup
        s = m.group()
        if kind == "nl":
            line += 1
            continue
        if kind in ("ws", "comment", "bracket"):
            continue
        if kind == "open":
            raise DataError(
                f"{path}: line {line}: a quoted string is never closed (file truncated?). "
                f"{_REDOWNLOAD_HINT}"
            )
        if kind == "str":
            tokens.append(_Token("str", s[1:-1].replace('""', '"'), line))
            line += s.count("\n")
            continue
        tokens.append(_Token("word" if kind == "other" else kind, s, line))
    return tokens


def _long_values(tokens: list[_Token]) -> list[_Token]:
    """Values of a long-format file: the token after each ``=``, plus ``<flags>``."""
    values: list[_Token] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.kind == "eq" and i + 1 < len(tokens):
            key = tokens[i - 1].text if i > 0 and tokens[i - 1].kind == "word" else None
            nxt = tokens[i + 1]
            values.append(_Token(nxt.kind, nxt.text, nxt.line, key))
            i += 2
            continue
        if tok.kind == "flag":
            values.append(tok)
        i += 1
    return values


class _Values:
    """Cursor over the value stream with typed reads and located error messages."""

    def __init__(self, path: Path, values: list[_Token], last_line: int) -> None:
        self.path = path
        self.values = values
        self.pos = 0
        self.last_line = last_line

    def _next(self, what: str) -> _Token:
        if self.pos >= len(self.values):
            raise DataError(
                f"{self.path}: the file ends (line {self.last_line}) while reading {what}; "
                f"the TextGrid looks truncated. {_REDOWNLOAD_HINT}"
            )
        tok = self.values[self.pos]
        self.pos += 1
        return tok

    def _bad(self, tok: _Token, what: str, expected: str) -> DataError:
        key = f" ({tok.key} = ...)" if tok.key else ""
        return DataError(
            f"{self.path}: line {tok.line}{key}: expected {expected} for {what}, got "
            f"{tok.text!r}. {_REDOWNLOAD_HINT}"
        )

    def _word(self, what: str, convert, expected: str):
        """The next token as a bare word converted by ``convert``, or a parse error."""
        tok = self._next(what)
        try:
            if tok.kind != "word":
                raise ValueError
            return tok, convert(tok.text)
        except ValueError:
            raise self._bad(tok, what, expected) from None

    def number(self, what: str) -> float:
        tok, value = self._word(what, float, "a number")
        if value != value or value in (float("inf"), float("-inf")):
            raise self._bad(tok, what, "a finite number")
        return value

    def count(self, what: str) -> int:
        tok, value = self._word(what, int, "a non-negative integer")
        if value < 0:
            raise self._bad(tok, what, "a non-negative integer")
        return value

    def string(self, what: str) -> str:
        tok = self._next(what)
        if tok.kind != "str":
            raise self._bad(tok, what, "a quoted string")
        return tok.text

    def flag(self, what: str) -> str:
        tok = self._next(what)
        if tok.kind != "flag":
            raise self._bad(tok, what, "<exists> or <absent>")
        return tok.text


def _parse_tier(vals: _Values, i: int) -> Tier:
    kind = vals.string(f"the class of tier {i}")
    if kind not in _TIER_KINDS:
        raise DataError(
            f"{vals.path}: tier {i} has class {kind!r}; expected one of {_TIER_KINDS}. "
            f"{_REDOWNLOAD_HINT}"
        )
    name = vals.string(f"the name of tier {i}")
    where = f"tier {i} ({name!r})"
    xmin = vals.number(f"xmin of {where}")
    xmax = vals.number(f"xmax of {where}")
    n = vals.count(f"the number of {'intervals' if kind == INTERVAL_TIER else 'points'} of {where}")
    tier = Tier(name=name, xmin=xmin, xmax=xmax, kind=kind)
    if kind == INTERVAL_TIER:
        for j in range(1, n + 1):
            what = f"interval {j} of {n} of {where}"
            a = vals.number(f"xmin of {what}")
            b = vals.number(f"xmax of {what}")
            label = vals.string(f"text of {what}")
            if b < a:
                raise DataError(
                    f"{vals.path}: {what} ends before it starts (xmin={a}, xmax={b}). "
                    f"{_REDOWNLOAD_HINT}"
                )
            tier.intervals.append(Interval(a, b, label))
    else:
        for j in range(1, n + 1):
            what = f"point {j} of {n} of {where}"
            t = vals.number(f"time of {what}")
            tier.points.append(Point(t, vals.string(f"mark of {what}")))
    return tier


def read_textgrid(path: str | os.PathLike) -> TextGrid:
    """Read a Praat TextGrid in the long or short text format.

    Parameters
    ----------
    path : path-like
        A ``.TextGrid`` file, UTF-8 (with or without BOM) or UTF-16 (with BOM, or detected
        by its NUL bytes); LF or CRLF line ends.

    Returns
    -------
    TextGrid
        With ``source`` set to ``str(path)``.

    Raises
    ------
    DataError
        When the file is missing, empty, a git-annex pointer, not a Praat text TextGrid,
        or malformed (bad number, truncated tier); the message names the file and the line
        or tier where reading failed.
    """
    path = check_data_file(path, kind="TextGrid")
    text = _decode(path, path.read_bytes())
    if not text.strip():
        raise DataError(f"{path}: the TextGrid holds only whitespace. {_REDOWNLOAD_HINT}")
    header = _HEADER.match(text)
    if header is None:
        first = text.strip().splitlines()[0][:80]
        raise DataError(
            f"{path}: not a Praat text TextGrid: expected the header 'File type = "
            f'"ooTextFile"\' / \'Object class = "TextGrid"\', found {first!r}. '
            f"{_REDOWNLOAD_HINT}"
        )
    if not header["type"].startswith("ooTextFile"):
        raise DataError(
            f"{path}: file type is {header['type']!r}; only Praat text files "
            f"(\"ooTextFile\") are supported. Re-save it from Praat with 'Save as text file'."
        )
    if header["cls"] != "TextGrid":
        raise DataError(
            f"{path}: the Praat object class is {header['cls']!r}, expected 'TextGrid'."
        )
    first_line = text.count("\n", 0, header.end()) + 1
    tokens = _tokenize(path, text, header.end(), first_line)
    is_long = bool(tokens) and tokens[0].kind == "word" and tokens[0].text == "xmin"
    values = _long_values(tokens) if is_long else [t for t in tokens if t.kind != "eq"]
    vals = _Values(path, values, text.count("\n") + 1)

    xmin = vals.number("the TextGrid's xmin")
    xmax = vals.number("the TextGrid's xmax")
    tiers: list[Tier] = []
    if vals.flag("the 'tiers?' flag") == "<exists>":
        n_tiers = vals.count("the number of tiers")
        tiers = [_parse_tier(vals, i) for i in range(1, n_tiers + 1)]
    if vals.pos < len(vals.values):
        extra = vals.values[vals.pos]
        logger.warning(
            "%s: %d value(s) after the last declared tier (from line %d) were ignored",
            path,
            len(vals.values) - vals.pos,
            extra.line,
        )
    logger.debug(
        "read %s TextGrid %s: tiers %s",
        "long" if is_long else "short",
        path,
        [t.name for t in tiers],
    )
    return TextGrid(xmin=xmin, xmax=xmax, tiers=tiers, source=str(path))
