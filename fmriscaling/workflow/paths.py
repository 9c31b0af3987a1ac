"""Every path of the workflow, spelled once: templates with ``{wildcards}``, and the log and
benchmark paths that mirror them.

Rules use the templates as they are (wildcards left open); targets and input functions fill
some or all wildcards in with `fill`. The datasets' own layouts come from the library
(`fmriscaling.download.manifest.relpath_for`, `fmriscaling.vision.dataset.relpath`): the same
ones the downloader and the dataset readers use.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from ..download.manifest import relpath_for
from ..vision.dataset import relpath as vision_relpath

__all__ = ["fill", "language_paths", "log_key", "vision_paths"]

_WILDCARD = re.compile(r"\{(\w+)\}")


def fill(template: str, /, **values: object) -> str:
    """``template`` with the named wildcards filled in and the others left as they are.

    >>> fill("results/{dataset}/{subject}.npz", subject="UTS01")
    'results/{dataset}/UTS01.npz'
    """
    return _WILDCARD.sub(lambda m: str(values.get(m.group(1), m.group(0))), template)


def _in_data(kind: str) -> str:
    return f"results/data/{{dataset}}/{relpath_for(kind, subject='{subject}', story='{story}')}"


def language_paths() -> dict[str, str]:
    """Templates of the language track (ds003020 layout) and of the shared stages."""
    return {
        "data": "results/data/{dataset}",
        "dataset_file": "results/data/{dataset}/{path}",
        "respdict": _in_data("respdict"),
        "textgrid": _in_data("textgrids"),
        "audio": _in_data("audio"),
        "responses": _in_data("responses"),
        "transform": "results/data/{dataset}/derivative/pycortex-db/{subject}/transforms/"
        "{subject}_auto/{name}.nii.gz",
        "pycortex_file": "results/data/{dataset}/derivative/pycortex-db/{subject}/{file}",
        "ground_truth": "results/data/{dataset}/ground_truth",
        "model": "results/models/{model}",
        "timing": "results/stimuli/{dataset}/{story}.{kind}.tsv",
        "features": "results/features/{dataset}/{model}",
        "prepared": "results/responses/{dataset}/{subject}.h5",
        "fit": "results/encoding/{dataset}/{subject}/{model}/layer-{layer}/scores.{ext}",
        "subset_fit": "results/encoding/{dataset}/{subject}/{model}/layer-{layer}/"
        "ntrain-{n}/seed-{seed}/scores.{ext}",
        # a layer's features projected to {width} dimensions (features.fixed_dim)
        "width_fit": "results/encoding/{dataset}/{subject}/{model}/layer-{layer}/"
        "width-{width}/scores.{ext}",
        "noise_ceiling": "results/noise_ceiling/{dataset}/{subject}.npz",
        "stack_member": "results/stacking/{dataset}/{subject}/members/{model}/layer-{layer}.h5",
        "stack": "results/stacking/{dataset}/{subject}/{stack}/scores.npz",
        "partition": "results/partition/{dataset}/{subject}/{partition}/scores.npz",
        "table": "results/tables/{dataset}/{name}.csv",
        "table_gz": "results/tables/{dataset}/{name}.csv.gz",
        "rois": "results/rois/{dataset}/{subject}.npz",
        "figure": "results/figures/{dataset}/{name}.{fmt}",
        "brain_map": "results/figures/{dataset}/{subject}_best_model_map.{fmt}",
        "partition_map": "results/figures/{dataset}/{subject}_variance_partition_map.{fmt}",
    }


def vision_paths(root: str) -> dict[str, str]:
    """Templates of the vision track; ``root`` is the challenge data's folder (generated data:
    ``results/data/{dataset}``; a local copy: wherever ``vision.dataset.dir`` says)."""

    def in_data(kind: str) -> str:
        relpath = vision_relpath(kind, subject="{subject}", hemi="{hemi}", roi_class="{roi_class}")
        return f"{root}/{relpath}"

    fits = "results/encoding/{dataset}/{subject}"
    return {
        "vision_truth": "results/data/{dataset}/ground_truth",
        "vision_fmri": in_data("training_fmri"),
        "vision_test_fmri": in_data("test_fmri"),
        "vision_images": in_data("training_images"),
        "vision_test_images": in_data("test_images"),
        "vision_roi_mask": in_data("roi_mask"),
        "vision_roi_mapping": in_data("roi_mapping"),
        "vision_fsaverage": in_data("all_vertices"),
        "vision_ncsnr": in_data("ncsnr"),
        "vision_repeats": in_data("n_repeats"),
        "vision_fit": f"{fits}/{{model}}/selected/scores.{{ext}}",
        "vision_subset_fit": f"{fits}/{{model}}/selected/ntrain-{{n}}/seed-{{seed}}/scores.{{ext}}",
        "vision_ensemble": f"{fits}/ensemble/scores.{{ext}}",
    }


def log_key(template: str, /, **values: object) -> str:
    """What a log or benchmark of an output is filed under: its path below its stage folder,
    without extensions or a generic file name.

    >>> log_key("results/encoding/{dataset}/{subject}/{model}/layer-{layer}/scores.{ext}")
    '{dataset}/{subject}/{model}/layer-{layer}'
    >>> log_key("results/stimuli/{dataset}/{story}.{kind}.tsv", dataset="demo")
    'demo/{story}'
    """
    parts = PurePosixPath(template).parts[2:]  # below results/<stage>/
    leaf = parts[-1].split(".", 1)[0]
    key = PurePosixPath(*parts[:-1]) if leaf == "scores" else PurePosixPath(*parts[:-1], leaf)
    return fill(str(key), **values)
