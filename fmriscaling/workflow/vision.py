"""The vision track's part of the `fmriscaling.workflow.Study` (Algonauts 2023 / NSD): its
data (generated, or a local copy checked before any job, or the published counts for a plan),
the split, the data-size sweep, the fits, tables, figures and targets."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from .. import outputs
from .._utils import ConfigError, DataError
from ..config import alpha_grid
from ..sweep import sweep_sizes
from ..vision.dataset import ROI_CLASSES, check_algonauts_dir
from .paths import fill

__all__ = ["VisionTrack"]

#: a wildcard constraint that matches nothing: the rule is off for this config
NEVER = "(?!x)x"


def alternatives(names) -> str:
    """Regex matching exactly one of ``names`` (or nothing when empty)."""
    return "|".join(re.escape(n) for n in names) if names else NEVER


class VisionTrack:
    """Mixed into `Study`: everything of the vision track (its settings are the Study's
    ``vision*`` attributes, set in ``Study.__init__``)."""

    def vision_wildcards(self) -> dict[str, str]:
        """Rules of the vision track match its own dataset, subjects and models only."""
        return dict(
            dataset=re.escape(self.vision_dataset) if self.vision_enabled else NEVER,
            subject=alternatives(self.vision_subjects),
            model=alternatives(self.vision_run_models),
        )

    def vision_subject_files(
        self, subject: str, dataset: str | None = None
    ) -> dict[str, list[str]]:
        """Every file and folder of one subject that the demo generator writes, by kind
        (``dataset="{dataset}"`` keeps the wildcard open, for the generator's outputs)."""
        dataset = self.vision_dataset if dataset is None else dataset

        def each(name: str, **values: Any) -> str:
            return self.path(name, dataset=dataset, subject=subject, **values)

        hemis = self.hemispheres
        return {
            "fmri": [each("vision_fmri", hemi=h) for h in hemis],
            "images": [each("vision_images"), each("vision_test_images")],
            "roi_masks": [
                each("vision_roi_mask", hemi=h, roi_class=c) for h in hemis for c in ROI_CLASSES
            ],
            "roi_mappings": [each("vision_roi_mapping", roi_class=c) for c in ROI_CLASSES],
            "fsaverage": [each("vision_fsaverage", hemi=h) for h in hemis],
            "ncsnr": [each("vision_ncsnr", hemi=h) for h in hemis],
            "repeats": [each("vision_repeats")],
        }

    def demo_vision_outputs(self) -> dict[str, str | list[str]]:
        """What rule generate_demo_vision_dataset writes, by output name (``{dataset}`` open):
        ``ground_truth`` and ``images`` are folders."""

        def of(*kinds: str) -> list[str]:
            return [
                f
                for s in self.vision_subjects
                for kind in kinds
                for f in self.vision_subject_files(s, "{dataset}")[kind]
            ]

        return dict(
            ground_truth=self.path("vision_truth"),
            fmri=of("fmri"),
            images=of("images"),
            rois=of("roi_masks", "roi_mappings", "fsaverage"),
            noise_ceiling=of("ncsnr", "repeats"),
        )

    def vision_truth_model_dir(self) -> str | list[str]:
        """The snapshot of the model whose features drive the synthetic vision dataset ([] for
        none: a real dataset)."""
        truth = self.vision_truth_models
        return self.model_dir(truth[0]) if truth else []

    def vision_roi_files(self, subject: str) -> dict[str, list[str]]:
        """ROI label files of one subject: the masks of each class (hemispheres in order), then
        the class's mapping."""
        return {
            c: [
                self.vpath("vision_roi_mask", subject=subject, hemi=h, roi_class=c)
                for h in self.hemispheres
            ]
            + [self.vpath("vision_roi_mapping", subject=subject, roi_class=c)]
            for c in ROI_CLASSES
        }

    def _local(self, path: str) -> Path:
        """A path of the workflow, under its directory (an absolute one stays as it is)."""
        return self.root / path

    @functools.cached_property
    def vision_data(self) -> dict[str, dict[str, int]]:
        """Per subject: training images (``n_train``), test images and vertices per hemisphere.

        Synthetic: from the generator's config. A local copy is checked first (`DataError`
        naming what is missing, how to obtain it and where to put it), unless the study was
        made with ``check_data=False`` and the copy is not there: then the published counts.
        """
        if self.vision_source == "synthetic":
            n = self.vision["synthetic"]["n_train_images"]
            return {s: {"n_train": n} for s in self.vision_subjects}
        try:
            return check_algonauts_dir(
                self._local(self.vision_root),
                self.vision_subjects,
                self.hemispheres,
                noise_ceiling=self.vision["noise_ceiling"]["enabled"],
            )
        except DataError:
            if self.check_data:
                raise
        from .facts import published_algonauts_counts

        counts = published_algonauts_counts(self.vision_subjects)
        self.assume(
            "vision data not on disk: the published Algonauts 2023 image and vertex counts "
            "per subject (NSD: 8779-9841 training images, 159-395 test images)"
        )
        return counts

    def assume(self, text: str) -> None:
        if text not in self.assumptions:
            self.assumptions.append(text)

    def vision_uses_test_split(self, subject: str) -> bool:
        """Whether the test set is the test split (its fMRI exists), not held-out training images."""
        mode = self.vision["split"]["test"]
        files = [self.vpath("vision_test_fmri", subject=subject, hemi=h) for h in self.hemispheres]
        present = self.vision_source == "local" and all(self._local(f).is_file() for f in files)
        if mode == "test_split" and not present:
            if not self.check_data and self.vision_source == "local":
                return True  # planned before the data: the test split is what will be there
            raise ConfigError(
                f"config key 'vision.split.test' is 'test_split', but {subject} has no test fMRI "
                f"({', '.join(files)}); the challenge never released it: use 'held_out' or 'auto'"
            )
        return mode != "held_out" and present

    def vision_full_train(self, subject: str) -> int:
        """Training images of a subject's full fit (`split_rows`, as the fit computes them)."""
        from ..vision.selection import split_rows

        split = self.vision["split"]
        train, _ = split_rows(
            self.vision_data[subject]["n_train"],
            test_split=self.vision_uses_test_split(subject),
            n_images=split["n_images"],
            test_fraction=split["test_fraction"],
            n_train=split["n_train"],
        )
        return int(train.size)

    @functools.cached_property
    def vision_sweep_sizes(self) -> list[int]:
        """Training-set sizes of the data-scaling sweep, the same for every subject: the grid up
        to the smallest subject's full fit, below it (each subject's full fit is the sweep's
        top; the paper fixed vision.split.n_images at the smallest subject's 8779 images for
        this reason)."""
        if not self.vision_enabled or not self.vision["subsampling"]["model"]:
            return []
        try:
            n_full = min(self.vision_full_train(s) for s in self.vision_subjects)
        except DataError:
            return []  # a local copy is missing or incomplete: vision_targets() reports it
        return sweep_sizes(n_full, self.vision["subsampling"]["n_train"], unit="images")

    def vision_image_sets(self) -> list[tuple[str, str]]:
        """(image set name, image folder) of every subject: its training split, and its test
        split when that is the test set."""
        self.vision_data  # noqa: B018 (checks a local copy first)
        sets = []
        for subject in self.vision_subjects:
            sets.append((f"{subject}_train", self.vpath("vision_images", subject=subject)))
            if self.vision_uses_test_split(subject):
                sets.append((f"{subject}_test", self.vpath("vision_test_images", subject=subject)))
        return sets

    def vision_image_folders(self) -> list[str]:
        return [folder for _, folder in self.vision_image_sets()]

    def vision_image_set_names(self) -> list[str]:
        return [name for name, _ in self.vision_image_sets()]

    def vision_ncsnr(self, subject: str) -> list[str]:
        return self.vision_subject_files(subject)["ncsnr"]

    def vision_save_predictions(self, model: str) -> bool:
        """Whether a selection job keeps its test predictions: asked for, or an ensemble member."""
        return bool(
            self.vision["selection"]["save_predictions"] or model in self.vision["ensemble"]
        )

    def vision_ensemble_members(self, subject: str) -> list[str]:
        return [
            self.vpath("vision_fit", subject=subject, model=m, ext="npz")
            for m in self.vision["ensemble"]
        ]

    def vision_entry_files(self, ext: str) -> list[str]:
        return [fill(e["path"], ext=ext) for e in self.vision_entries]

    def vision_entry_labels(self) -> list[dict[str, Any]]:
        return self.entry_labels(self.vision_entries)

    def vision_roi_inputs(self) -> list[str]:
        """Every subject's ROI label files, subjects then classes (`vision_roi_files`)."""
        return [
            f for s in self.vision_subjects for fs in self.vision_roi_files(s).values() for f in fs
        ]

    def vision_fmri(self, subject: str) -> list[str]:
        self.vision_data  # noqa: B018 (checks a local copy first)
        return [self.vpath("vision_fmri", subject=subject, hemi=h) for h in self.hemispheres]

    def vision_test_fmri(self, subject: str) -> list[str]:
        if not self.vision_uses_test_split(subject):
            return []
        return [self.vpath("vision_test_fmri", subject=subject, hemi=h) for h in self.hemispheres]

    def vision_repeats(self, subject: str) -> list[str]:
        """The per-image repeat counts, where the dataset has them (else a default is assumed)."""
        repeats = self.vpath("vision_repeats", subject=subject)
        return (
            [repeats] if self.vision_source == "synthetic" or self._local(repeats).is_file() else []
        )

    def vision_selection_params(self) -> dict[str, Any]:
        """The settings of every per-vertex selection job."""
        v, enc = self.vision, self.config["encoding"]
        return dict(
            pooling=v["pooling"],
            hemispheres=self.hemispheres,
            alphas=alpha_grid(v["selection"]["alphas"]),
            n_folds=v["selection"]["n_folds"],
            fold_seed=v["selection"]["seed"],
            n_images=v["split"]["n_images"],
            test_fraction=v["split"]["test_fraction"],
            n_train=v["split"]["n_train"],
            backend=enc["backend"],
            solver=enc["solver"],
            score_dtype=enc["score_dtype"],
            statistics=self.config["statistics"],
        )

    def vision_sweep_outputs(self, ext: str) -> list[str]:
        """The per-(size, seed) outputs of one subject's sweep job, sizes then seeds."""
        seeds = self.vision["subsampling"]["seeds"]
        return [
            self.path("vision_subset_fit", n=n, seed=s, ext=ext)
            for n in self.vision_sweep_sizes
            for s in seeds
        ]

    @functools.cached_property
    def vision_entries(self) -> list[dict[str, Any]]:
        """Metadata and scores path of every vision fit, in table order."""
        entries = []
        sub = self.vision["subsampling"]
        for subject in self.vision_subjects:
            for model in self.vision_run_models:
                spec = self.models[model]
                common = dict(
                    subject=subject, model=model, family=spec["family"], n_params=spec["n_params"]
                )
                labels = dict(dataset=self.vision_dataset, subject=subject, model=model)
                entries.append(
                    dict(
                        common,
                        kind="full",
                        n_train=None,
                        seed=-1,
                        path=self.path("vision_fit", **labels),
                    )
                )
                if model == sub["model"]:
                    for n in self.vision_sweep_sizes:
                        for seed in sub["seeds"]:
                            path = self.path("vision_subset_fit", **labels, n=n, seed=seed)
                            entries.append(
                                dict(common, kind="subsample", n_train=n, seed=seed, path=path)
                            )
            if self.vision["ensemble"]:
                entries.append(
                    dict(
                        subject=subject,
                        model="ensemble",
                        family="ensemble",
                        n_params=None,
                        kind="ensemble",
                        n_train=None,
                        seed=-1,
                        path=self.vpath("vision_ensemble", subject=subject),
                    )
                )
        return entries

    @property
    def vision_table_names(self) -> list[str]:
        return list(outputs.VISION_TABLES)

    def vision_table_outputs(self) -> dict[str, str]:
        """Named outputs of the vision_table rule: its tables, then the bootstrap table and the
        replicate lines of the scaling fits (gzipped, the language track's schema)."""
        tables = {name: self.path("table", name=name) for name in self.vision_table_names}
        gz = (outputs.BOOTSTRAP_TABLE, outputs.SCALING_LINES)
        return tables | {name: self.path("table_gz", name=name) for name in gz}

    @property
    def vision_figure_names(self) -> list[str]:
        # model-size figures need a family with two sizes, the data-scaling figure a sweep
        families = [self.models[m]["family"] for m in self.vision_run_models]
        sizes = max((families.count(f) for f in set(families)), default=0)
        return outputs.vision_figure_names(
            model_sizes=sizes > 1, sweep=bool(self.vision["subsampling"]["model"])
        )

    def vision_figure_outputs(self) -> dict[str, list[str]]:
        """Named outputs of the vision_figures rule (figure name -> its file per format)."""
        return {name: self.formats_of("figure", name=name) for name in self.vision_figure_names}

    def vision_targets(self) -> list[str]:
        """The vision track's tables and figures ([] when it is off); checks a local copy first."""
        if not self.vision_enabled:
            return []
        self.vision_data  # noqa: B018 (checks a local copy first)
        d = self.vision_dataset
        tables = [self.path("table", dataset=d, name=name) for name in self.vision_table_names]
        figures = [fill(f, dataset=d) for fs in self.vision_figure_outputs().values() for f in fs]
        return tables + figures
