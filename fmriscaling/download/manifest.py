"""The ds003020 manifest and the file selection made from it.

The dataset is 137 GB; a run needs a few subjects, stories and kinds of file. The manifest
(``config/datasets/ds003020_manifest.tsv``: path, size and MD5 of every file) says what exists;
:func:`select_files` picks the paths for some subjects, stories and kinds, and
:func:`relpath_for` spells the dataset-relative path of one file.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from fmriscaling._utils import ConfigError, DataError

logger = logging.getLogger(__name__)

#: Kinds of file :func:`select_files` knows about.
KINDS = ("respdict", "responses", "textgrids", "audio", "pycortex", "freesurfer")

RESPDICT = "derivative/respdict.json"
_RESPONSES_DIR = "derivative/preprocessed_data"
_TEXTGRID_DIR = "derivative/TextGrids"
_AUDIO_DIR = "stimuli"
_PYCORTEX_DIR = "derivative/pycortex-db"
_FREESURFER_DIR = "derivative/freesurfer_subjdir"

_MD5_RE = re.compile(r"[0-9a-f]{32}")


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read a dataset manifest: a TSV with columns ``path``, ``size``, ``md5``.

    Lines starting with ``#`` are comments. The source path is kept in ``df.attrs["source"]``.

    Parameters
    ----------
    path : path-like
        The manifest, e.g. ``config/datasets/ds003020_manifest.tsv``.

    Returns
    -------
    pandas.DataFrame
        One row per file: ``path`` (str, relative to the dataset root), ``size`` (int, bytes),
        ``md5`` (str, 32 lowercase hex digits), in file order.

    Raises
    ------
    DataError
        When the file is missing, the header is not ``path size md5`` or a row is malformed
        (wrong number of fields, non-integer size, bad MD5, duplicate path).
    """
    path = Path(path)
    fix = "regenerate it or restore it from the repository (config/datasets/)"
    if not path.is_file():
        raise DataError(f"manifest {path} does not exist; {fix}")
    lines = [
        (lineno, line)
        for lineno, line in enumerate(path.read_text().splitlines(), start=1)
        if line.strip() and not line.startswith("#")
    ]
    if not lines:
        raise DataError(f"manifest {path} has no header and no rows; {fix}")
    header_lineno, header = lines[0]
    if header.split("\t") != ["path", "size", "md5"]:
        raise DataError(
            f"manifest {path} line {header_lineno}: expected the tab-separated header "
            f"'path<TAB>size<TAB>md5', got {header!r}; {fix}"
        )
    paths: list[str] = []
    sizes: list[int] = []
    md5s: list[str] = []
    seen: set[str] = set()
    for lineno, line in lines[1:]:
        fields = line.split("\t")
        where = f"manifest {path} line {lineno}"
        if len(fields) != 3:
            raise DataError(
                f"{where}: expected 3 tab-separated fields (path, size, md5), got {len(fields)}: "
                f"{line!r}; {fix}"
            )
        relpath, size_text, md5 = fields
        try:
            size = int(size_text)
        except ValueError:
            raise DataError(f"{where}: size {size_text!r} is not an integer; {fix}") from None
        if size < 0:
            raise DataError(f"{where}: size {size} is negative; {fix}")
        if not _MD5_RE.fullmatch(md5):
            raise DataError(f"{where}: md5 {md5!r} is not 32 lowercase hex digits; {fix}")
        if relpath in seen:
            raise DataError(f"{where}: path {relpath!r} is listed twice; {fix}")
        seen.add(relpath)
        paths.append(relpath)
        sizes.append(size)
        md5s.append(md5)
    df = pd.DataFrame(
        {
            "path": pd.Series(paths, dtype=object),
            "size": pd.Series(sizes, dtype="int64"),
            "md5": pd.Series(md5s, dtype=object),
        }
    )
    df.attrs["source"] = str(path)
    return df


def _source(manifest: pd.DataFrame) -> str:
    return manifest.attrs.get("source", "the manifest")


def _path_parts(manifest: pd.DataFrame) -> list[list[str]]:
    return [p.split("/") for p in manifest["path"]]


def manifest_subjects(manifest: pd.DataFrame) -> list[str]:
    """Subjects with any file in the manifest (responses, pycortex or FreeSurfer), sorted.

    Parameters
    ----------
    manifest : pandas.DataFrame
        As returned by :func:`read_manifest`.

    Returns
    -------
    list of str
        E.g. ``["UTS01", ..., "UTS09"]``.
    """
    subject_dirs = {_RESPONSES_DIR, _PYCORTEX_DIR, _FREESURFER_DIR}
    subjects = {
        parts[2]
        for parts in _path_parts(manifest)
        if len(parts) > 3 and "/".join(parts[:2]) in subject_dirs
    }
    return sorted(subjects)


def manifest_stories(manifest: pd.DataFrame, subject: str | None = None) -> list[str]:
    """Stories with a response file ``derivative/preprocessed_data/<subject>/<story>.hf5``.

    Parameters
    ----------
    manifest : pandas.DataFrame
        As returned by :func:`read_manifest`.
    subject : str, optional
        A subject id such as ``"UTS01"``; None gives the union over all subjects.

    Returns
    -------
    list of str
        Story names, sorted.

    Raises
    ------
    DataError
        When ``subject`` has no response file in the manifest (the message lists close matches).
    """
    stories: dict[str, set[str]] = {}
    for parts in _path_parts(manifest):
        if len(parts) == 4 and "/".join(parts[:2]) == _RESPONSES_DIR and parts[3].endswith(".hf5"):
            stories.setdefault(parts[2], set()).add(parts[3][: -len(".hf5")])
    if subject is None:
        return sorted(set().union(*stories.values()))
    if subject not in stories:
        raise DataError(
            f"subject {subject!r} has no response files in {_source(manifest)}"
            f"{_suggest(subject, stories)}; subjects there: {', '.join(sorted(stories))}"
        )
    return sorted(stories[subject])


def _suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def relpath_for(kind: str, *, subject: str | None = None, story: str | None = None) -> str:
    """Dataset-relative path of a single-file kind.

    Parameters
    ----------
    kind : {"respdict", "responses", "textgrids", "audio"}
        Kind of file. ``pycortex`` and ``freesurfer`` are folders: use :func:`select_files`.
    subject : str, optional
        Needed for ``responses``.
    story : str, optional
        Needed for ``responses``, ``textgrids`` and ``audio``.

    Returns
    -------
    str
        E.g. ``relpath_for("responses", subject="UTS01", story="souls")`` is
        ``"derivative/preprocessed_data/UTS01/souls.hf5"``.
    """
    if kind == "respdict":
        return RESPDICT
    if kind in ("responses", "textgrids", "audio") and story is None:
        raise ConfigError(f"kind {kind!r} needs a story")
    if kind == "responses":
        if subject is None:
            raise ConfigError("kind 'responses' needs a subject")
        return f"{_RESPONSES_DIR}/{subject}/{story}.hf5"
    if kind == "textgrids":
        return f"{_TEXTGRID_DIR}/{story}.TextGrid"
    if kind == "audio":
        return f"{_AUDIO_DIR}/{story}.wav"
    raise ConfigError(
        f"kind {kind!r} is not a single-file kind; use one of respdict, responses, textgrids, "
        "audio (pycortex and freesurfer are folders: use select_files)"
    )


def select_files(
    manifest: pd.DataFrame,
    *,
    subjects: Sequence[str] | str | None,
    stories: Sequence[str] | str | None = "all",
    kinds: Sequence[str],
) -> list[str]:
    """Manifest paths for some subjects, stories and kinds of file.

    Parameters
    ----------
    manifest : pandas.DataFrame
        As returned by :func:`read_manifest`.
    subjects : sequence of str, "all" or None
        Subject ids such as ``["UTS01", "UTS02"]``; ``"all"`` for every subject; None or empty
        for none (then story-level kinds cover every story with responses).
    stories : sequence of str, "all" or None
        Story names; ``"all"`` or None for every story each subject has. With explicit names,
        a subject that lacks one of them is an error.
    kinds : sequence of str
        Among ``respdict`` (``derivative/respdict.json``), ``responses``
        (``derivative/preprocessed_data/<subject>/<story>.hf5``), ``textgrids``
        (``derivative/TextGrids/<story>.TextGrid``), ``audio`` (``stimuli/<story>.wav``),
        ``pycortex`` (``derivative/pycortex-db/<subject>/...``) and ``freesurfer``
        (``derivative/freesurfer_subjdir/<subject>/...``).

    Returns
    -------
    list of str
        Manifest paths, unique, in manifest order.

    Raises
    ------
    DataError
        When a subject, a story or a needed file is not in the manifest; the message names it
        and lists close matches.
    ConfigError
        When a kind is unknown.
    """
    kinds = list(kinds)
    for kind in kinds:
        if kind not in KINDS:
            raise ConfigError(
                f"unknown kind {kind!r}{_suggest(kind, KINDS)}; known kinds: {', '.join(KINDS)}"
            )
    all_subjects = manifest_subjects(manifest)
    if subjects is None:
        subjects = []
    elif isinstance(subjects, str):
        subjects = all_subjects if subjects == "all" else [subjects]
    for subject in subjects:
        if subject not in all_subjects:
            raise DataError(
                f"subject {subject!r} is not in {_source(manifest)}{_suggest(subject, all_subjects)}"
                f"; subjects there: {', '.join(all_subjects)}"
            )
    all_stories = manifest_stories(manifest)
    explicit_stories: list[str] | None
    if stories is None or (isinstance(stories, str) and stories == "all"):
        explicit_stories = None
    else:
        explicit_stories = [stories] if isinstance(stories, str) else list(stories)
        for story in explicit_stories:
            if story not in all_stories:
                raise DataError(
                    f"story {story!r} has no response file in {_source(manifest)}"
                    f"{_suggest(story, all_stories)}; see manifest_stories() for the list"
                )

    available = set(manifest["path"])
    wanted: set[str] = set()

    def need(relpath: str, what: str) -> None:
        if relpath not in available:
            raise DataError(
                f"{what}: {relpath} is not in {_source(manifest)}"
                f"{_suggest(relpath, available)}; choose another subject or story"
            )
        wanted.add(relpath)

    per_subject: dict[str, list[str]] = {}
    for subject in subjects:
        have = manifest_stories(manifest, subject)
        if explicit_stories is None:
            per_subject[subject] = have
        else:
            missing = [s for s in explicit_stories if s not in have]
            if missing and "responses" in kinds:
                raise DataError(
                    f"subject {subject} has no responses for {', '.join(missing)} in "
                    f"{_source(manifest)} ({len(have)} stories there); drop them or the subject"
                )
            per_subject[subject] = [s for s in explicit_stories if s in have]
    if explicit_stories is not None:
        story_set = list(explicit_stories)
    elif subjects:
        story_set = sorted(set().union(*per_subject.values()))
    else:
        story_set = all_stories

    if "respdict" in kinds:
        need(RESPDICT, "respdict")
    if "responses" in kinds:
        for subject, subject_stories in per_subject.items():
            for story in subject_stories:
                need(relpath_for("responses", subject=subject, story=story), "responses")
    for kind in ("textgrids", "audio"):
        if kind in kinds:
            for story in story_set:
                need(relpath_for(kind, story=story), kind)
    for kind, folder in (("pycortex", _PYCORTEX_DIR), ("freesurfer", _FREESURFER_DIR)):
        if kind not in kinds:
            continue
        for subject in subjects:
            prefix = f"{folder}/{subject}/"
            files = [p for p in manifest["path"] if p.startswith(prefix)]
            if not files:
                raise DataError(
                    f"{kind}: no files under {prefix} in {_source(manifest)}; subject {subject} "
                    f"has none in this dataset; drop '{kind}' or the subject"
                )
            wanted.update(files)
    return [p for p in manifest["path"] if p in wanted]
