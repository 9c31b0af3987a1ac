"""pycortex, used without touching the user's pycortex set-up or the dataset's files.

pycortex keeps one global database object (``cortex.db``) and reads (and on first import
creates) ``~/.config/pycortex/options.cfg``. Here:

- `import_cortex` imports pycortex with its config directory pointed at a private temporary
  folder, so the user's options file is neither read nor created, and sends the lines pycortex
  prints at import to the log;
- `pycortex_session` points ``cortex.db`` at a *shadow* of a subject folder for the duration of
  a block: a temporary filestore whose folders are real and whose files are links to the
  dataset's files (``overlays.svg``, which pycortex may rewrite, is copied). Whatever pycortex
  computes and caches (mappers, flatmap pixel maps, masks, curvature) lands in the shadow and
  is gone afterwards; the dataset folder is only read.

``db_dir`` is a pycortex filestore: the folder holding one folder per subject, e.g. ds003020's
``derivative/pycortex-db``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from types import ModuleType

from ._utils import DataError

logger = logging.getLogger(__name__)

__all__ = [
    "SAMPLE_SUBJECT",
    "SAMPLE_SURFACE_INFO",
    "SUBJECT_FILES",
    "has_surfaces",
    "import_cortex",
    "inkscape_available",
    "installed_colormaps",
    "pycortex_session",
    "sample_filestore",
    "transform_files",
]

#: The sample subject shipped with pycortex (its transform ``fullhead``).
SAMPLE_SUBJECT = "S1"
#: Files of a subject folder the maps and ROIs read, relative to ``<db_dir>/<subject>/``.
SUBJECT_FILES: tuple[str, ...] = (
    *(
        f"surfaces/{surf}_{hemi}.gii"
        for surf in ("flat", "inflated", "pia", "wm")
        for hemi in ("lh", "rh")
    ),
    "overlays.svg",
)
#: Surface information pycortex ships for its sample subject (the WebGL viewer's bumpy flatmap):
#: the demo copies it into each demo subject's folder.
SAMPLE_SURFACE_INFO: tuple[str, ...] = ("surface-info/bumpy_flatmap.npz",)
# pycortex may add layers to overlays.svg and write it back: the shadow holds a copy
_COPIED = frozenset({"overlays.svg"})
# (filestore, subjects) of the sessions open now, innermost last
_ACTIVE: list[tuple[Path, frozenset[str]]] = []


def transform_files(subject: str, xfmname: str) -> tuple[str, ...]:
    """Files of a transform, relative to ``<db_dir>/<subject>/``.

    Parameters
    ----------
    subject : str
    xfmname : str
        E.g. ``"UTS01_auto"``.

    Returns
    -------
    tuple of str
        ``transforms/<xfmname>/{matrices.xfm, reference.nii.gz, mask_thick.nii.gz}``.
    """
    folder = f"transforms/{xfmname}"
    return tuple(
        f"{folder}/{name}" for name in ("matrices.xfm", "reference.nii.gz", "mask_thick.nii.gz")
    )


class _LogWriter(io.TextIOBase):
    """A text stream that sends each line written to it to the log (pycortex prints)."""

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                logger.info("pycortex: %s", line.strip())
        return len(text)


def import_cortex() -> ModuleType:
    """pycortex, imported without reading or creating the user's pycortex options file.

    Returns
    -------
    module
        ``cortex``.
    """
    if "cortex" in sys.modules:
        return sys.modules["cortex"]
    saved = os.environ.get("XDG_CONFIG_HOME")
    with tempfile.TemporaryDirectory(prefix="fmriscaling-pycortex-config-") as private:
        os.environ["XDG_CONFIG_HOME"] = private
        try:
            with contextlib.redirect_stdout(_LogWriter()):
                import cortex
        finally:
            if saved is None:
                os.environ.pop("XDG_CONFIG_HOME", None)
            else:
                os.environ["XDG_CONFIG_HOME"] = saved
    return cortex


def inkscape_available() -> bool:
    """Whether pycortex found Inkscape (it rasterises the ROI outlines of a flatmap)."""
    import_cortex()
    from cortex import testing_utils

    return testing_utils.INKSCAPE_VERSION is not None


def sample_filestore() -> Path:
    """The filestore of pycortex's sample data (subject ``S1``), wherever pip installed it.

    Returns
    -------
    pathlib.Path
        The folder holding ``S1/``.

    Raises
    ------
    DataError
        When the installed pycortex ships no sample subject.
    """
    candidates: list[Path] = []
    with contextlib.suppress(metadata.PackageNotFoundError):
        for file in metadata.files("pycortex") or ():
            parts = Path(str(file)).parts
            if parts[-4:] == ("db", SAMPLE_SUBJECT, "surfaces", "flat_lh.gii"):
                candidates.append(Path(file.locate()).resolve().parents[2])
    candidates.append(Path(sys.prefix) / "share" / "pycortex" / "db")
    for folder in candidates:
        if has_surfaces(folder, SAMPLE_SUBJECT):
            return folder
    raise DataError(
        f"pycortex's sample subject {SAMPLE_SUBJECT} is not installed (looked in "
        f"{[str(c) for c in candidates]}); reinstall pycortex: pip install --force-reinstall "
        "pycortex==1.4.0"
    )


def installed_colormaps() -> Path | None:
    """pycortex's colormap folder (``share/pycortex/colormaps``) wherever pip put it, or None.

    pycortex bakes the folder's path into its ``defaults.cfg`` when it is built; a wheel built
    in a temporary build environment (uv, pip's isolated builds) points there, and the WebGL
    viewer refuses to start when that folder is gone.
    """
    with contextlib.suppress(metadata.PackageNotFoundError):
        for file in metadata.files("pycortex") or ():
            parts = Path(str(file)).parts
            if parts[-3:-1] == ("pycortex", "colormaps"):
                folder = Path(file.locate()).resolve().parent
                if folder.is_dir():
                    return folder
    folder = Path(sys.prefix) / "share" / "pycortex" / "colormaps"
    return folder if folder.is_dir() else None


def has_surfaces(db_dir: str | os.PathLike, subject: str) -> bool:
    """Whether ``db_dir`` holds the surfaces of ``subject`` (flat, pia and white matter).

    Parameters
    ----------
    db_dir : path-like
        A pycortex filestore.
    subject : str

    Returns
    -------
    bool
    """
    folder = Path(db_dir) / subject / "surfaces"
    return all(
        (folder / f"{s}_{h}.gii").is_file() for s in ("flat", "pia", "wm") for h in ("lh", "rh")
    )


def _mirror(source: Path, dest: Path) -> None:
    """Real folders, linked files (copied where pycortex may write them)."""
    for root, dirs, files in os.walk(source, followlinks=True):
        rel = Path(root).relative_to(source)
        (dest / rel).mkdir(parents=True, exist_ok=True)
        dirs.sort()
        for name in sorted(files):
            src = Path(root) / name
            if name in _COPIED:
                shutil.copyfile(src, dest / rel / name)
            else:
                os.symlink(src.resolve(), dest / rel / name)


@contextlib.contextmanager
def pycortex_session(db_dir: str | os.PathLike, subjects: Sequence[str]) -> Iterator[ModuleType]:
    """pycortex with ``cortex.db`` pointed at a shadow of some subjects of ``db_dir``.

    Parameters
    ----------
    db_dir : path-like
        A pycortex filestore.
    subjects : sequence of str
        Subject folders to make available.

    Yields
    ------
    module
        ``cortex``, its database set to the shadow until the block ends; its cache folder is
        the shadow's (``<subject>/cache``), and anything pycortex writes (a new transform, a
        mask, curvature) stays in the shadow. A session opened inside another one on the same
        ``db_dir`` and subjects reuses it, caches included (several maps, one cache).

    Raises
    ------
    DataError
        When a subject folder is missing from ``db_dir``.
    """
    db_dir = Path(db_dir)
    if _ACTIVE and _ACTIVE[-1][0] == db_dir.resolve() and set(subjects) <= _ACTIVE[-1][1]:
        yield sys.modules["cortex"]
        return
    for subject in subjects:
        if not (db_dir / subject).is_dir():
            raise DataError(
                f"{db_dir / subject} does not exist: no pycortex database for {subject} "
                f"(expected surfaces/ and transforms/ under it)"
            )
    cortex = import_cortex()
    db = cortex.database.db
    saved = (db.filestore, db._subjects, db.auxfile)
    options = cortex.options.config
    # a [basic] cache option (a user config read before us) would move the cache elsewhere
    saved_cache = options.get("basic", "cache", fallback=None)
    # the colormaps of the WebGL viewer: where pip installed them, if the built-in path is gone
    saved_cmaps = options.get("webgl", "colormaps", fallback=None)
    colormaps = installed_colormaps()
    with tempfile.TemporaryDirectory(prefix="fmriscaling-pycortex-") as shadow:
        filestore = Path(shadow)
        for subject in subjects:
            _mirror(db_dir / subject, filestore / subject)
        options.remove_option("basic", "cache")
        if (saved_cmaps is None or not Path(saved_cmaps).is_dir()) and colormaps is not None:
            if not options.has_section("webgl"):
                options.add_section("webgl")
            options.set("webgl", "colormaps", str(colormaps))
        db.filestore, db._subjects, db.auxfile = str(filestore), None, None
        # surfaces are memoised per (subject, type): another filestore must not see them
        db.__dict__.pop("_memocache", None)
        _ACTIVE.append((db_dir.resolve(), frozenset(subjects)))
        try:
            with contextlib.redirect_stdout(_LogWriter()):
                yield cortex
        finally:
            _ACTIVE.pop()
            db.filestore, db._subjects, db.auxfile = saved
            db.__dict__.pop("_memocache", None)
            if saved_cache is not None:
                options.set("basic", "cache", saved_cache)
            if saved_cmaps is not None:
                options.set("webgl", "colormaps", saved_cmaps)
            elif options.has_section("webgl"):
                options.remove_option("webgl", "colormaps")
