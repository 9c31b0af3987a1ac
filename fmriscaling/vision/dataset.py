"""The Algonauts 2023 challenge layout (NSD): file names, checks, and readers.

One folder per subject under the dataset root (the challenge archive's
``algonauts_2023_challenge_data/``)::

    <subject>/training_split/training_fmri/{lh,rh}_training_fmri.npy   (n_images, n_vertices) float32
    <subject>/training_split/training_images/train-0001_nsd-00013.png ...
    <subject>/test_split/test_images/test-0001_nsd-00845.png ...         (fMRI withheld)
    <subject>/roi_masks/{lh,rh}.<roi class>_challenge_space.npy          (n_vertices,) labels
    <subject>/roi_masks/mapping_<roi class>.npy                          {label: ROI name}, pickled
    <subject>/roi_masks/{lh,rh}.all-vertices_fsaverage_space.npy         fsaverage mask
    <subject>/noise_ceiling/{lh,rh}_ncsnr.npy                            (n_vertices,), not in the archive
    <subject>/noise_ceiling/training_n_repeats.npy                       (n_images,), optional

The challenge released no test fMRI: the workflow holds out part of the training split as its
test set, unless ``test_split/test_fmri/{lh,rh}_test_fmri.npy`` exist. The noise ceiling needs
NSD's per-vertex ncsnr, which the challenge archive does not hold (`NCSNR_HINT`).

Vertices of both hemispheres are concatenated in the order the hemispheres are given
(``lh`` then ``rh``); every per-vertex array of the track follows that order.

Safety: the ``mapping_<class>.npy`` files are pickled dicts. They are read with
`read_roi_mapping`, a restricted unpickler that builds only numpy's object-array wrapper and
dict / int / str values; anything else (e.g. a pickle that would call ``os.system``) is refused.
Nothing here calls ``np.load(..., allow_pickle=True)``.

This module needs numpy only (no torch), so a workflow parse can check a local copy cheaply.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from .._utils import DataError, check_data_file

logger = logging.getLogger(__name__)

__all__ = [
    "CATEGORY_CLASSES",
    "HEMISPHERES",
    "OBTAIN_HINT",
    "PUBLISHED_LABELS",
    "ROI_CLASSES",
    "by_hemisphere",
    "check_algonauts_dir",
    "check_image_counts",
    "list_images",
    "ncsnr_from_fsaverage",
    "npy_shape",
    "read_fmri",
    "read_ncsnr",
    "read_repeats",
    "read_roi_labels",
    "read_roi_mapping",
    "relpath",
    "roi_masks",
]

HEMISPHERES = ("lh", "rh")
ROI_CLASSES = (
    "prf-visualrois",
    "floc-bodies",
    "floc-faces",
    "floc-places",
    "floc-words",
    "streams",
)
#: category ROIs of the summaries: the union of a floc class's labelled vertices
CATEGORY_CLASSES = {
    "faces": "floc-faces",
    "bodies": "floc-bodies",
    "places": "floc-places",
    "words": "floc-words",
}
#: label tables as the challenge documents them (METHODS.md; the mapping files are the truth,
#: `read_roi_mapping` warns where they differ)
PUBLISHED_LABELS: dict[str, dict[int, str]] = {
    "streams": dict(enumerate(
        ["Unknown", "early", "midventral", "midlateral", "midparietal", "ventral", "lateral",
         "parietal"])),
    "prf-visualrois": dict(enumerate(
        ["Unknown", "V1v", "V1d", "V2v", "V2d", "V3v", "V3d", "hV4"])),
    "floc-bodies": dict(enumerate(["Unknown", "EBA", "FBA-1", "FBA-2", "mTL-bodies"])),
    "floc-faces": dict(enumerate(
        ["Unknown", "OFA", "FFA-1", "FFA-2", "mTL-faces", "aTL-faces"])),
    "floc-places": dict(enumerate(["Unknown", "OPA", "PPA", "RSC"])),
    "floc-words": dict(enumerate(
        ["Unknown", "OWFA", "VWFA-1", "VWFA-2", "mfs-words", "mTL-words"])),
}  # fmt: skip

_LAYOUT = {
    "training_fmri": "{subject}/training_split/training_fmri/{hemi}_training_fmri.npy",
    "test_fmri": "{subject}/test_split/test_fmri/{hemi}_test_fmri.npy",
    "training_images": "{subject}/training_split/training_images",
    "test_images": "{subject}/test_split/test_images",
    "roi_mask": "{subject}/roi_masks/{hemi}.{roi_class}_challenge_space.npy",
    "roi_mapping": "{subject}/roi_masks/mapping_{roi_class}.npy",
    "all_vertices": "{subject}/roi_masks/{hemi}.all-vertices_fsaverage_space.npy",
    "ncsnr": "{subject}/noise_ceiling/{hemi}_ncsnr.npy",
    "n_repeats": "{subject}/noise_ceiling/training_n_repeats.npy",
}

OBTAIN_HINT = (
    "The Algonauts 2023 challenge data come from the Natural Scenes Dataset (NSD), whose terms "
    "each user must accept: fill in the NSD data access form (https://naturalscenesdataset.org), "
    "then request the challenge data through the Algonauts 2023 form "
    "(http://algonauts.csail.mit.edu/challenge.html) and download "
    "algonauts_2023_challenge_data (one folder per subject, subj01 ... subj08). Unpack it so that "
    "the subject folders lie directly in the configured directory, e.g. "
    "{root}/subj01/training_split/training_fmri/lh_training_fmri.npy, or point "
    "vision.dataset.dir in the config at the folder that holds them."
)

NCSNR_HINT = (
    "The noise ceiling needs NSD's per-vertex ncsnr, which the challenge archive does not hold: "
    "from NSD (same terms) take nsddata_betas/ppdata/<subject>/fsaverage/"
    "betas_fithrf_GLMdenoise_RR/{{lh,rh}}.ncsnr.mgh and write them in challenge space with "
    "fmriscaling.vision.dataset.ncsnr_from_fsaverage(mgh, "
    "'{root}/<subject>/roi_masks/<hemi>.all-vertices_fsaverage_space.npy', "
    "out='{root}/<subject>/noise_ceiling/<hemi>_ncsnr.npy'); or set "
    "vision.noise_ceiling.enabled: false to report test correlations only."
)

_IMAGE_NAME = re.compile(r"^(?:train|test)-(\d+)_nsd-(\d+)\.png$")
_NPY_MAGIC = b"\x93NUMPY"


def relpath(kind: str, *, subject: str, hemi: str = "", roi_class: str = "") -> str:
    """Path of one file or folder of the layout, relative to the dataset root.

    Parameters
    ----------
    kind : str
        One of ``training_fmri``, ``test_fmri``, ``training_images``, ``test_images``,
        ``roi_mask``, ``roi_mapping``, ``all_vertices``, ``ncsnr``, ``n_repeats``.
    subject, hemi, roi_class : str
        Filled into the name (the workflow passes ``"{subject}"`` to keep a wildcard).
    """
    try:
        template = _LAYOUT[kind]
    except KeyError:
        raise ValueError(
            f"unknown Algonauts file kind {kind!r}; known: {sorted(_LAYOUT)}"
        ) from None
    return template.format(subject=subject, hemi=hemi, roi_class=roi_class)


def by_hemisphere(
    hemispheres: Sequence[str], files: Sequence[str | os.PathLike]
) -> dict[str, str | os.PathLike] | None:
    """``{hemisphere: file}`` in order, or None for no files (e.g. no test fMRI: held out)."""
    if not files:
        return None
    if len(files) != len(hemispheres):
        raise ValueError(f"{len(files)} files for hemispheres {list(hemispheres)}")
    return dict(zip(hemispheres, files, strict=True))


# ------------------------------------------------------------------------------------ listings


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The PNG images of a split folder, in fMRI row order.

    Names of the challenge (``train-0001_nsd-00013.png``) are ordered by their first index,
    which numbers the fMRI rows from 1; other names are ordered by name.

    Returns
    -------
    paths : list of Path
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist")
    paths = [p for p in folder.iterdir() if p.suffix.lower() == ".png"]
    matches = [_IMAGE_NAME.match(p.name) for p in paths]
    if paths and all(matches):
        order = np.argsort([int(m.group(1)) for m in matches], kind="stable")
        return [paths[i] for i in order]
    return sorted(paths)


def _read_npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of an open ``.npy`` file, which is left after its header."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    return np.lib.format.read_array_header_2_0(f)


def npy_shape(path: str | os.PathLike) -> tuple[int, ...]:
    """Shape of a ``.npy`` array, read from its header only (cheap for large files).

    Raises
    ------
    DataError
        When the file is missing, empty, a git-annex pointer or not a ``.npy`` file.
    """
    path = check_data_file(path, kind=".npy array")
    with open(path, "rb") as f:
        try:
            shape, _, _ = _read_npy_header(f)
        except ValueError as err:
            raise DataError(f"{path}: not a .npy array ({err}); re-extract the archive") from err
    return tuple(int(s) for s in shape)


# -------------------------------------------------------------------------------------- checks


def check_image_counts(
    subject: str,
    hemi: str,
    n_images: int,
    n_rows: int,
    *,
    images: str | os.PathLike,
    fmri: str | os.PathLike,
) -> None:
    """Fail when a split has a different number of images than its fMRI file has rows.

    Raises
    ------
    DataError
        Naming the subject, the hemisphere, both counts and both paths.
    """
    if int(n_images) != int(n_rows):
        raise DataError(
            f"{subject} {hemi}: {n_images} images in {images} but {n_rows} fMRI rows in {fmri}; "
            "each image must have exactly one row (row i = image i in name order). The archive "
            "is incomplete or mixed between subjects: re-extract this subject's folder."
        )


def check_algonauts_dir(
    root: str | os.PathLike,
    subjects: Sequence[str],
    hemispheres: Sequence[str] = HEMISPHERES,
    *,
    roi_classes: Sequence[str] = ROI_CLASSES,
    noise_ceiling: bool = True,
) -> dict[str, dict[str, int]]:
    """Check a local copy of the challenge data before any job runs.

    Every problem is collected first, then reported at once: missing folders and files, image
    folders without images, and image counts that differ from the fMRI rows.

    Parameters
    ----------
    root : path-like
        The folder holding the subject folders.
    subjects : sequence of str
        e.g. ``["subj01", "subj02"]``.
    hemispheres : sequence of {"lh", "rh"}
    roi_classes : sequence of str
        ROI classes whose label files and mappings must exist.
    noise_ceiling : bool
        Whether the ncsnr files must exist too.

    Returns
    -------
    counts : dict subject -> {"n_train": int, "n_test_images": int, "<hemi>": n_vertices}

    Raises
    ------
    DataError
        Listing what is missing, how to obtain it and where to put it, or naming the subject,
        hemisphere and both counts of an image / fMRI row mismatch.
    """
    root = Path(root)
    hint = OBTAIN_HINT.format(root=root)
    if not root.is_dir():
        raise DataError(
            f"the Algonauts 2023 data directory {root} does not exist (config key "
            f"vision.dataset.dir). {hint}"
        )
    missing: list[str] = []
    mismatches: list[str] = []
    counts: dict[str, dict[str, int]] = {}
    for subject in subjects:
        if not (root / subject).is_dir():
            missing.append(f"{root / subject}/ (the whole subject folder)")
            continue
        expected = [relpath("roi_mapping", subject=subject, roi_class=c) for c in roi_classes]
        for hemi in hemispheres:
            expected.append(relpath("training_fmri", subject=subject, hemi=hemi))
            expected += [
                relpath("roi_mask", subject=subject, hemi=hemi, roi_class=c) for c in roi_classes
            ]
        missing += [str(root / p) for p in expected if not (root / p).is_file()]
        if noise_ceiling:
            ncsnr = [root / relpath("ncsnr", subject=subject, hemi=h) for h in hemispheres]
            missing += [f"{p} (noise ceiling)" for p in ncsnr if not p.is_file()]
        images_dir = root / relpath("training_images", subject=subject)
        images = list_images(images_dir) if images_dir.is_dir() else []
        if not images:
            missing.append(f"{images_dir}/*.png (training images)")
        test_dir = root / relpath("test_images", subject=subject)
        counts[subject] = {
            "n_train": len(images),
            "n_test_images": len(list_images(test_dir)) if test_dir.is_dir() else 0,
        }
        for hemi in hemispheres:
            fmri = root / relpath("training_fmri", subject=subject, hemi=hemi)
            if not fmri.is_file() or not images:
                continue
            shape = npy_shape(fmri)
            if len(shape) != 2:
                mismatches.append(f"{fmri}: expected (n_images, n_vertices), got shape {shape}")
                continue
            counts[subject][hemi] = shape[1]
            try:
                check_image_counts(
                    subject, hemi, len(images), shape[0], images=images_dir, fmri=fmri
                )
            except DataError as err:
                mismatches.append(str(err))
    if missing:
        shown = "\n  - ".join(missing[:40])
        more = f"\n  ... and {len(missing) - 40} more" if len(missing) > 40 else ""
        ncsnr_hint = (
            "\n" + NCSNR_HINT.format(root=root)
            if any("noise ceiling" in m for m in missing)
            else ""
        )
        raise DataError(
            f"the Algonauts 2023 data in {root} are incomplete; missing:\n  - {shown}{more}\n"
            f"{hint}{ncsnr_hint}"
        )
    if mismatches:
        raise DataError("\n".join(mismatches))
    return counts


# ------------------------------------------------------------------------------------- readers


def read_fmri(path: str | os.PathLike, *, subject: str, hemi: str) -> np.ndarray:
    """One hemisphere's fMRI of a split, (n_images, n_vertices) float32 (memory-mapped).

    Raises
    ------
    DataError
        When the file is missing, not 2-D, or holds non-finite values.
    """
    path = check_data_file(path, kind=f"fMRI array of {subject} {hemi}")
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as err:
        raise DataError(f"{path}: not a numeric .npy array ({err})") from err
    if data.ndim != 2:
        raise DataError(
            f"{path}: expected (n_images, n_vertices) for {subject} {hemi}, got {data.shape}"
        )
    data = np.asarray(data, dtype=np.float32)
    if not np.isfinite(data).all():
        raise DataError(
            f"{path}: {int((~np.isfinite(data)).sum())} non-finite values in the fMRI of "
            f"{subject} {hemi}; expected finite z-scored responses"
        )
    return data


class _MappingUnpickler(pickle.Unpickler):
    """Builds numpy's object-array wrapper and plain dict / int / str values, nothing else.

    dict, int and str are pickle opcodes, not globals; the only globals a pickled
    ``np.save(dict)`` needs are numpy's array and scalar reconstructors and ``dtype``.
    """

    _ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
        }
    )

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_roi_mapping(path: str | os.PathLike) -> dict[int, str]:
    """The ``{label: ROI name}`` dict of a ``mapping_<class>.npy`` file, unpickled safely.

    The file is a pickled dict (the challenge's own code reads it with
    ``np.load(..., allow_pickle=True).item()``). Here the pickle is read by a restricted
    unpickler that admits only numpy's array wrapper, dict, int and str.

    Returns
    -------
    mapping : dict int -> str

    Raises
    ------
    DataError
        The file is missing, refers to anything else (code, other classes) or is not a dict
        of integer labels to names.
    """
    path = check_data_file(path, kind="ROI mapping")
    raw = path.read_bytes()
    stream = io.BytesIO(raw)
    if raw.startswith(_NPY_MAGIC):
        _, _, dtype = _read_npy_header(stream)
        if not dtype.hasobject:
            raise DataError(f"{path}: expected a pickled dict, found a {dtype} array")
    try:
        obj = _MappingUnpickler(stream).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError) as err:
        raise DataError(
            f"{path}: refused or unreadable ROI mapping ({err}). A mapping file holds only a "
            "dict of integer labels to ROI names; replace this file with the one of the "
            "challenge archive."
        ) from err
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject and obj.size == 1:
        obj = obj.reshape(()).item()
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict of labels to ROI names, got {type(obj).__name__}")
    mapping: dict[int, str] = {}
    for key, value in obj.items():
        if not isinstance(value, str) or int(key) != key:
            raise DataError(f"{path}: entry {key!r}: {value!r} is not an integer label -> name")
        mapping[int(key)] = value
    return mapping


def read_roi_labels(
    mask_files: Sequence[str | os.PathLike], mapping_file: str | os.PathLike, *, roi_class: str = ""
) -> tuple[np.ndarray, dict[int, str]]:
    """Per-vertex labels of one ROI class, hemispheres concatenated, and their names.

    Parameters
    ----------
    mask_files : sequence of path-like
        ``<hemi>.<class>_challenge_space.npy`` per hemisphere, in the concatenation order.
    mapping_file : path-like
        ``mapping_<class>.npy`` (read with `read_roi_mapping`).
    roi_class : str
        The class, to compare the mapping with `PUBLISHED_LABELS` (a difference is logged).

    Returns
    -------
    labels : int array of shape (n_vertices,)
        0 = outside every ROI of the class.
    mapping : dict int -> str
    """
    labels = []
    for path in mask_files:
        path = check_data_file(path, kind=f"ROI mask {roi_class}")
        values = np.load(path, allow_pickle=False)
        if values.ndim != 1:
            raise DataError(f"{path}: expected one label per vertex, got shape {values.shape}")
        labels.append(np.rint(values).astype(np.int64))
    mapping = read_roi_mapping(mapping_file)
    published = PUBLISHED_LABELS.get(roi_class)
    if published and mapping != published:
        logger.warning(
            "%s: the mapping's labels %s differ from the published table %s; using the file's",
            mapping_file,
            mapping,
            published,
        )
    return np.concatenate(labels), mapping


def read_ncsnr(files: Sequence[str | os.PathLike]) -> np.ndarray:
    """Per-vertex ncsnr of the hemispheres' files, concatenated, float64 (non-finite -> NaN)."""
    parts = []
    for path in files:
        path = check_data_file(path, kind=f"ncsnr file (see {NCSNR_HINT.format(root='<dir>')})")
        values = np.load(path, allow_pickle=False).astype(np.float64).ravel()
        parts.append(np.where(np.isfinite(values), values, np.nan))
    return np.concatenate(parts)


def read_repeats(path: str | os.PathLike | None, n_images: int, *, default: int = 3) -> np.ndarray:
    """How many times each training image was shown (1-3), ``default`` where unrecorded.

    ``<subject>/noise_ceiling/training_n_repeats.npy`` holds the counts when the user adds it
    (NSD's design file has them); the challenge archive has none, so without the file every
    image counts ``default`` times.

    Parameters
    ----------
    path : path-like or None
    n_images : int
        Training images of the subject.
    default : int

    Returns
    -------
    n_repeats : int array of shape (n_images,)
    """
    if path is None:
        logger.info("no repeat counts; every image counts %d repeats", default)
        return np.full(int(n_images), int(default), dtype=np.int64)
    path = check_data_file(path, kind="repeat counts")
    counts = np.load(path, allow_pickle=False).astype(np.int64).ravel()
    if counts.size != int(n_images) or counts.min(initial=1) < 1 or counts.max(initial=1) > 3:
        raise DataError(
            f"{path}: expected {n_images} repeat counts of 1-3 (one per training image), got "
            f"{counts.size} values in [{counts.min(initial=0)}, {counts.max(initial=0)}]"
        )
    return counts


def ncsnr_from_fsaverage(
    mgh: str | os.PathLike,
    all_vertices: str | os.PathLike,
    *,
    out: str | os.PathLike | None = None,
) -> np.ndarray:
    """NSD's fsaverage ncsnr of one hemisphere, reduced to the challenge's vertices.

    Parameters
    ----------
    mgh : path-like
        ``<hemi>.ncsnr.mgh`` of NSD's ``betas_fithrf_GLMdenoise_RR`` in fsaverage space.
    all_vertices : path-like
        ``roi_masks/<hemi>.all-vertices_fsaverage_space.npy`` of the subject (1 = challenge
        vertex).
    out : path-like, optional
        Where to save the result as ``.npy`` (``<subject>/noise_ceiling/<hemi>_ncsnr.npy``).

    Returns
    -------
    ncsnr : float32 array of shape (n_challenge_vertices,)
    """
    import nibabel as nib

    from .._utils import atomic_path

    values = np.asarray(nib.load(os.fspath(mgh)).get_fdata(), dtype=np.float32).ravel()
    mask = np.load(all_vertices, allow_pickle=False).ravel() > 0
    if mask.size != values.size:
        raise DataError(
            f"{mgh} has {values.size} fsaverage vertices but {all_vertices} masks {mask.size}"
        )
    ncsnr = values[mask]
    if out is not None:
        with atomic_path(out, suffix=".npy") as tmp:
            np.save(tmp, ncsnr)
    return ncsnr


def roi_masks(
    labels: Mapping[str, tuple[np.ndarray, Mapping[int, str]]],
) -> dict[tuple[str, str], np.ndarray]:
    """Boolean vertex masks of the summaries: each stream ROI and each category.

    Parameters
    ----------
    labels : mapping roi class -> (labels, mapping)
        From `read_roi_labels`.

    Returns
    -------
    masks : dict (group, roi) -> bool array of shape (n_vertices,)
        ``("all", "all")``; ``("stream", <name>)`` per named stream label; ``("category",
        <faces|bodies|places|words>)`` = any labelled vertex of that floc class. ROIs that a
        subject lacks have all-False masks (kept, so tables stay rectangular).
    """
    n = len(next(iter(labels.values()))[0])
    masks: dict[tuple[str, str], np.ndarray] = {("all", "all"): np.ones(n, dtype=bool)}
    if "streams" in labels:
        values, mapping = labels["streams"]
        for label, name in sorted(mapping.items()):
            if label != 0:
                masks[("stream", name)] = values == label
    for category, roi_class in CATEGORY_CLASSES.items():
        if roi_class in labels:
            masks[("category", category)] = labels[roi_class][0] > 0
    return masks
