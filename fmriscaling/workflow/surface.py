"""The group maps' part of the `fmriscaling.workflow.Study` (``group_maps:``): which maps each
track carries to fsaverage5, the files of the surface rules, their inputs and targets."""

from __future__ import annotations

from typing import Any

from ..surface.maps import MapSpec, language_map_specs, vision_map_specs
from ..surface.project import gifti_name
from ..surface.sphere import HEMIS, sphere_relpath
from .paths import fill

__all__ = ["SURFACE_PATHS", "SurfaceTrack"]

#: Path templates of the surface stage (``{who}``: a subject, or ``group``).
SURFACE_PATHS = {
    "surface_maps": "results/surface/{dataset}/{subject}/maps.npz",
    "group_surface_maps": "results/surface/{dataset}/group/maps.npz",
    "surface_dir": "results/surface/{dataset}/{subject}",
    "group_surface_dir": "results/surface/{dataset}/group",
    "group_figure": "results/figures/{dataset}/group/{map}.{fmt}",
    "group_page": "results/viewers/{dataset}/group/{map}.html",
    "viewer": "results/viewers/{dataset}/{subject}",
}
#: The group ROI table of each track.
GROUP_ROI_TABLE = "group_rois"


class SurfaceTrack:
    """Mixed into `Study`: the group maps on fsaverage5 and the viewers (the settings are the
    Study's ``config["group_maps"]``)."""

    # ------------------------------------------------------------------------- switches

    @property
    def surface_config(self) -> dict[str, Any]:
        return self.config["group_maps"]

    @property
    def surface_enabled(self) -> bool:
        """Language group maps: on, models to map, and pycortex surfaces to map them through."""
        return bool(self.surface_config["enabled"] and self.run_models and self.has_cortex)

    @property
    def vision_surface_enabled(self) -> bool:
        return bool(self.surface_config["enabled"] and self.vision_enabled)

    @property
    def viewers_enabled(self) -> bool:
        return self.surface_enabled and bool(self.surface_config["viewers"])

    def surface_tracks(self) -> list[str]:
        """The tracks with group maps: ``language``, ``vision``."""
        return [t for t, on in (("language", self.surface_enabled),
                                ("vision", self.vision_surface_enabled)) if on]  # fmt: skip

    # ----------------------------------------------------------------------------- maps

    def _families(self, models: list[str]) -> dict[str, list[str]]:
        families: dict[str, list[str]] = {}
        for model in models:
            families.setdefault(self.models[model]["family"], []).append(model)
        return families

    @property
    def speech_stacks(self) -> list[str]:
        """Stacks with a speech member (their speech weight is a map)."""
        return [n for n, ms in self.stacks.items() if any(m["kind"] == "speech" for m in ms)]

    def surface_specs(self, track: str) -> list[MapSpec]:
        """The maps of a track (`fmriscaling.surface.maps`)."""
        if track == "language":
            significance = self.config["statistics"]["n_permutations"] > 0
            return language_map_specs(
                self._families(self.run_models), self.speech_stacks, significance=significance
            )
        return vision_map_specs(
            self._families(self.vision_run_models),
            noise_ceiling=self.vision["noise_ceiling"]["enabled"],
        )

    def surface_spec_params(self, track: str) -> list[dict[str, Any]]:
        """The specs as plain dicts (a rule's params)."""
        return [dict(s.__dict__) for s in self.surface_specs(track)]

    def surface_dataset(self, track: str) -> str:
        return self.dataset if track == "language" else self.vision_dataset

    # ---------------------------------------------------------------------------- files

    def surface_giftis(self, track: str, who: str, dataset: str | None = None) -> list[str]:
        """GIFTI files of a subject's (or the ``group``'s) maps: per map, lh then rh."""
        dataset = self.surface_dataset(track) if dataset is None else dataset
        folder = self.path(
            "group_surface_dir" if who == "group" else "surface_dir", dataset=dataset, subject=who
        )
        return [
            f"{folder}/{gifti_name(who, hemi, spec.name)}"
            for spec in self.surface_specs(track)
            for hemi in HEMIS
        ]

    def surface_maps_file(self, track: str, who: str) -> str:
        dataset = self.surface_dataset(track)
        if who == "group":
            return self.path("group_surface_maps", dataset=dataset)
        return self.path("surface_maps", dataset=dataset, subject=who)

    def group_roi_table(self, track: str) -> str:
        return self.path("table", dataset=self.surface_dataset(track), name=GROUP_ROI_TABLE)

    def group_figure_files(self, track: str) -> dict[str, list[str]]:
        """Map name -> its group figure per format (``figures.map_formats``)."""
        dataset = self.surface_dataset(track)
        return {
            spec.name: [
                self.path("group_figure", dataset=dataset, map=spec.name, fmt=fmt)
                for fmt in self.map_formats
            ]
            for spec in self.surface_specs(track)
        }

    def page_specs(self, track: str) -> list[MapSpec]:
        """The group maps with an interactive page (``group_maps.pages``: all, none or kinds)."""
        pages = self.surface_config["pages"]
        if pages is True or pages is False:
            return self.surface_specs(track) if pages else []
        return [s for s in self.surface_specs(track) if s.kind in pages]

    def group_pages(self, track: str) -> dict[str, str]:
        """Map name -> its interactive nilearn page, for the maps of `page_specs`."""
        dataset = self.surface_dataset(track)
        return {
            spec.name: self.path("group_page", dataset=dataset, map=spec.name)
            for spec in self.page_specs(track)
        }

    def group_page_files(self, track: str) -> list[str]:
        return list(self.group_pages(track).values())

    def viewer_dir(self, subject: str) -> str:
        return self.path("viewer", dataset=self.dataset, subject=subject)

    def sphere_files(self, subject: str, dataset: str | None = None) -> list[str]:
        """The subject's FreeSurfer registration spheres (lh, rh) in the dataset
        (``dataset="{dataset}"`` keeps the wildcard open)."""
        dataset = self.dataset if dataset is None else dataset
        return [
            self.path("dataset_file", dataset=dataset, path=sphere_relpath(subject, hemi))
            for hemi in HEMIS
        ]

    # --------------------------------------------------------------------------- inputs

    def surface_fits(self, subject: str) -> list[dict[str, Any]]:
        """The subject's full fits the language maps read: every layer of every run model."""
        return self.full_fits_of(subject)

    def surface_inputs(self, subject: str) -> dict[str, Any]:
        """Inputs of a language subject's surface_maps job, by name."""
        d = self.dataset
        return dict(
            best_layers=self.path("table", dataset=d, name="best_layers"),
            scores=self.entry_files(self.surface_fits(subject), "npz"),
            ceiling=self.path("noise_ceiling", dataset=d, subject=subject),
            stacks=[
                self.path("stack", dataset=d, subject=subject, stack=s) for s in self.speech_stacks
            ],
            pycortex=self.pycortex_inputs(subject),
            mask=self.path("transform", dataset=d, subject=subject, name="mask_thick"),
            spheres=self.sphere_files(subject),
            annotations=self.annotation_inputs(d, subject),
        )

    def surface_score_labels(self, subject: str) -> list[list[Any]]:
        """(model, layer) of each score file of `surface_inputs`, in order."""
        return [[e["model"], int(e["layer"])] for e in self.surface_fits(subject)]

    def vision_surface_inputs(self, subject: str) -> dict[str, Any]:
        """Inputs of a vision subject's surface_maps job, by name."""
        d = self.vision_dataset
        nc = self.vision["noise_ceiling"]["enabled"]
        return dict(
            encoding=self.path("table", dataset=d, name="encoding"),
            scores=[
                self.path("vision_fit", dataset=d, subject=subject, model=m, ext="npz")
                for m in self.vision_run_models
            ],
            ceiling=[self.vpath("noise_ceiling", subject=subject)] if nc else [],
            fsaverage=[
                self.vpath("vision_fsaverage", subject=subject, hemi=h) for h in self.hemispheres
            ],
            rois=[f for fs in self.vision_roi_files(subject).values() for f in fs],
        )

    def group_inputs(self, track: str) -> list[str]:
        subjects = self.subjects if track == "language" else self.vision_subjects
        return [self.surface_maps_file(track, s) for s in subjects]

    def viewer_inputs(self, subject: str) -> dict[str, Any]:
        d = self.dataset
        return dict(
            voxels=self.path("table_gz", dataset=d, name="voxels"),
            stacks=self.stacking_weight_maps(subject),
            pycortex=self.pycortex_inputs(subject),
            mask=self.path("transform", dataset=d, subject=subject, name="mask_thick"),
        )

    def viewer_links(self, track: str) -> list[list[str]]:
        """(title, URL relative to ``results/``) of a track's interactive pages and viewers,
        for the report (``results/report.html`` links them)."""
        links = [
            [f"{spec.name} (group, fsaverage5)", page.removeprefix("results/")]
            for spec, page in zip(self.page_specs(track), self.group_page_files(track), strict=True)
        ]
        if track == "language" and self.viewers_enabled:
            links += [
                [
                    f"{s}: pycortex WebGL viewer",
                    f"{self.viewer_dir(s).removeprefix('results/')}/index.html",
                ]
                for s in self.subjects
            ]
        return links

    # -------------------------------------------------------------------------- targets

    def surface_targets(self) -> list[str]:
        """Group maps, GIFTIs, ROI tables, figures, pages and viewers of every track."""
        out = []
        for track in self.surface_tracks():
            dataset = self.surface_dataset(track)
            subjects = self.subjects if track == "language" else self.vision_subjects
            out += [fill(self.surface_maps_file(track, "group"), dataset=dataset)]
            out += self.surface_giftis(track, "group")
            out += [f for s in subjects for f in self.surface_giftis(track, s)]
            out += [self.group_roi_table(track)]
            out += [f for fs in self.group_figure_files(track).values() for f in fs]
            out += self.group_page_files(track)
        if self.viewers_enabled:
            out += [self.viewer_dir(s) for s in self.subjects]
        return out

    def download_spheres(self) -> bool:
        """Whether the ds003020 download includes the subjects' registration spheres."""
        return self.surface_enabled and self.source == "openneuro"
