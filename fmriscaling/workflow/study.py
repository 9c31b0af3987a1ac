"""`Study`: what a configured study runs, before it runs.

One object, built from the validated configuration (and the dataset manifest where the data is
downloaded), owns the workflow's own logic: every path template, the subjects' training and
test stories, the fit groups (subjects that share a training set share one fit job) and their
job names, the data-size draws, the stacks, the vision sweep, the table and figure names, the
final targets, and (`Study.jobs`) every job with its wildcards, inputs and resources, which the
plan prices. ``rules/common.smk`` builds one instance and keeps one-line input functions over
it; every decision is here, where unit tests reach it without Snakemake.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import outputs
from .._pycortex import SAMPLE_SURFACE_INFO, SUBJECT_FILES, transform_files
from .._utils import ConfigError
from ..config import alpha_grid, model_layers, partition_bands, stack_members, validate_config
from ..download.manifest import manifest_stories, read_manifest, relpath_for, select_files
from ..encoding.width import width_label
from ..rois import annotation_relpath
from ..sizing import ExtractionSizing, check_extraction, extraction_sizing
from ..surface.sphere import sphere_relpath
from ..sweep import draw_subset, sweep_sizes
from ..vision.dataset import ROI_CLASSES
from .paths import fill, language_paths, log_key, vision_paths
from .surface import SURFACE_PATHS, SurfaceTrack
from .vision import NEVER, VisionTrack, alternatives

logger = logging.getLogger(__name__)

__all__ = ["NEVER", "Study", "alternatives"]

#: the kinds of fit job: all training stories, the data-size subsets, and all training stories
#: with every layer projected to a fixed width (features.fixed_dim)
FIT_KINDS = {
    "fit": "fit_encoding",
    "subset_fit": "fit_encoding_subset",
    "width_fit": "fit_encoding_width",
}
DEMO_PYCORTEX_FILES = (*SUBJECT_FILES, "surface-info/curvature.npz", *SAMPLE_SURFACE_INFO)
#: the per-subject brain maps (path templates), drawn in ``figures.map_formats``
MAP_FIGURES = ("brain_map", "partition_map")


class Study(VisionTrack, SurfaceTrack):
    """The workflow's view of one configured study.

    Parameters
    ----------
    config : mapping
        The merged configuration (validated here; defaults filled in, see ``config``).
    root : path-like
        The workflow's working directory: relative paths of the config (the manifest, a local
        vision dataset) and of ``results/`` are under it.
    check_data : bool, default True
        Whether a local copy of the vision data is checked (`check_algonauts_dir`) when the
        vision track needs its sizes. False plans a study before its data exist: the sizes are
        the published ones (`fmriscaling.workflow.facts.ALGONAUTS_PUBLISHED`), and
        ``assumptions`` says so.

    Attributes
    ----------
    config : dict
        The validated configuration with every default filled in.
    paths : dict
        Template name -> path template (``{wildcards}`` open).
    assumptions : list of str
        What the study took for granted because a file was not there yet.
    """

    def __init__(
        self, config: Mapping[str, Any], root: str | os.PathLike = ".", *, check_data: bool = True
    ) -> None:
        self.config = validate_config(config)
        self.root = Path(root)
        self.check_data = check_data
        self.assumptions: list[str] = []
        c = self.config
        dataset = c["dataset"]
        self.dataset: str = dataset["name"]
        self.source: str = dataset["source"]
        self.subjects: list[str] = list(dataset["subjects"])
        self.test_story: str = dataset["test_story"]
        self.run_models: list[str] = list(c["run_models"])
        # ---- vision track settings
        vision = c["vision"]
        self.vision = vision
        self.vision_enabled: bool = vision["enabled"]
        self.vision_dataset: str = vision["dataset"]["name"]
        self.vision_source: str = vision["dataset"]["source"]
        self.vision_subjects: list[str] = list(vision["dataset"]["subjects"])
        self.hemispheres: list[str] = list(vision["dataset"]["hemispheres"])
        self.vision_roi_classes: list[str] = list(ROI_CLASSES)
        self.vision_run_models: list[str] = (
            list(vision["run_models"]) if self.vision_enabled else []
        )
        # the tiny model whose features drive the synthetic vision dataset
        self.vision_truth_models: list[str] = (
            [vision["synthetic"]["truth"]["model"]]
            if self.vision_enabled and self.vision_source == "synthetic"
            else []
        )
        # ---- models
        names = dict.fromkeys(self.run_models + self.vision_run_models + self.vision_truth_models)
        self.models: dict[str, dict[str, Any]] = {name: c["models"][name] for name in names}
        self.text_models = self._models_where(lambda spec: spec["kind"] == "text")
        self.speech_models = self._models_where(lambda spec: spec["kind"] == "speech")
        self.built_models = self._models_where(lambda spec: "build" in spec["source"])
        self.hub_models = self._models_where(lambda spec: "hub" in spec["source"])
        # stack name -> its members ({model, kind, layer}; layer a number or "best")
        self.stacks: dict[str, list[dict[str, Any]]] = {
            stack["name"]: stack_members(stack, self.models) for stack in c["stacks"]
        }
        # partition name -> its bands ({model, kind, layer, name}; layer a number or "best")
        self.partitions: dict[str, list[dict[str, Any]]] = {
            part["name"]: partition_bands(part, self.models) for part in c["partitions"]
        }
        # ---- paths
        self.vision_root = (
            "results/data/{dataset}"
            if self.vision_source == "synthetic"
            else (vision["dataset"]["dir"] or f"results/data/{self.vision_dataset}").rstrip("/")
        )
        self.paths: dict[str, str] = {
            **language_paths(),
            **vision_paths(self.vision_root),
            **SURFACE_PATHS,
        }
        # ---- stories
        if self.source == "openneuro":
            manifest = Path(c["download"]["manifest"])
            self.manifest = read_manifest(
                manifest if manifest.is_absolute() else self.root / manifest
            )
            self.manifest_index = self.manifest.set_index("path")
            self.available = {s: manifest_stories(self.manifest, s) for s in self.subjects}
        else:
            # imported here: a real study's parse needs nothing from the demo
            from ..demo.names import synthetic_story_names

            self.manifest = self.manifest_index = None
            stories = synthetic_story_names(c["synthetic"]["n_train_stories"])
            self.available = {s: sorted([*stories, self.test_story]) for s in self.subjects}
        for subject in self.subjects:
            if self.test_story not in self.available[subject]:
                raise ConfigError(
                    f"config key 'dataset.test_story' is {self.test_story!r}, but {subject} has "
                    "no responses for it in the dataset"
                )
        self.all_stories: list[str] = sorted(
            {self.test_story}.union(*(self.train_stories(s) for s in self.subjects))
        )
        self.fit_groups: list[list[str]] = self._fit_groups()
        # model -> the fixed widths d its layers are also fitted at (features.fixed_dim)
        self.fixed_dims: dict[str, list[int]] = self._fixed_dims()
        # a model its extraction job cannot hold fails here, when the workflow is parsed
        self.check_extraction_sizes()
        # ---- anatomy
        # a pycortex database with surfaces: downloaded (ds003020 ships one per subject) or the demo's
        self.has_cortex: bool = self.source == "openneuro" or c["synthetic"]["cortex"] is not None
        self.atlases: list[str] = sorted(
            {atlas for spec in c["rois"]["groups"].values() for atlas in spec}
        )
        self.formats: list[str] = list(c["figures"]["formats"])
        self.map_formats: list[str] = list(c["figures"]["map_formats"])

    def _models_where(self, keep: Callable[[Mapping[str, Any]], bool]) -> list[str]:
        return [name for name, spec in self.models.items() if keep(spec)]

    # ------------------------------------------------------------------------------ paths

    def path(self, name: str, /, **values: Any) -> str:
        """The path template ``name`` with ``values`` filled in (the others left open)."""
        return fill(self.paths[name], **values)

    def log(self, rule: str, name: str, /, **values: Any) -> str:
        """``results/logs/<rule>/<key of output name>.log`` (mirrors the output path)."""
        return f"results/logs/{rule}/{log_key(self.paths[name], **values)}.log"

    def benchmark(self, rule: str, name: str, /, **values: Any) -> str:
        """``results/benchmarks/<rule>/<key of output name>.tsv`` (mirrors the output path)."""
        return f"results/benchmarks/{rule}/{log_key(self.paths[name], **values)}.tsv"

    def formats_of(self, name: str, /, **values: Any) -> list[str]:
        """The files of one figure, one per configured format (``figures.map_formats`` for
        the per-subject brain maps, ``figures.formats`` for the others)."""
        formats = self.map_formats if name in MAP_FIGURES else self.formats
        return [self.path(name, **values, fmt=fmt) for fmt in formats]

    def vpath(self, name: str, /, **values: Any) -> str:
        """`path` in the vision track's dataset."""
        return self.path(name, dataset=self.vision_dataset, **values)

    def wildcard_constraints(self) -> dict[str, str]:
        """The language track's wildcard constraints (the vision rules narrow them further)."""
        return dict(
            dataset=re.escape(self.dataset),
            subject=alternatives(self.subjects),
            model=alternatives(self.run_models),
            layer=r"\d+",
            n=r"\d+",
            seed=r"\d+",
            width=r"\d+",
            story=r"[A-Za-z0-9_-]+",
            stack=alternatives(list(self.stacks)),
            partition=alternatives(list(self.partitions)),
        )

    def dataset_constraint(self, source: str) -> str:
        """The dataset wildcard of rules that make data of ``source`` (synthetic: the demo's
        generator; openneuro: the downloads); matches nothing when the study's data come
        from elsewhere."""
        return re.escape(self.dataset) if self.source == source else NEVER

    # ---------------------------------------------------------------------------- stories

    def train_stories(self, subject: str) -> list[str]:
        """Training stories of ``subject``: the configured list, or every story with responses
        but the test story and the excluded ones."""
        wanted = self.config["dataset"]["train_stories"]
        available = self.available[subject]
        if wanted == "all":
            excluded = set(self.config["dataset"]["exclude_stories"]) | {self.test_story}
            return [s for s in available if s not in excluded]
        missing = [s for s in wanted if s not in available]
        if missing:
            raise ConfigError(
                f"config key 'dataset.train_stories' lists {missing}, which have no responses "
                f"for {subject} in the dataset (available: {len(available)} stories)"
            )
        return list(wanted)

    def prepared_stories(self, subject: str) -> list[str]:
        """Stories of a subject's prepared responses: every training story, then the test story."""
        return [*self.train_stories(subject), self.test_story]

    def prepared_responses(self, subject: str) -> list[str]:
        """The raw response files a subject's prepared responses are built from, in order."""
        return self.responses_of(subject, self.prepared_stories(subject))

    def responses_of(self, subject: str, stories: Sequence[str]) -> list[str]:
        return [
            self.path("responses", dataset=self.dataset, subject=subject, story=s) for s in stories
        ]

    def manifest_sizes(self, subject: str) -> dict[str, int]:
        """Bytes of a subject's raw response files, story -> size, where the manifest knows them."""
        if self.manifest_index is None:
            return {}
        return {
            story: int(
                self.manifest_index.loc[
                    relpath_for("responses", subject=subject, story=story), "size"
                ]
            )
            for story in self.prepared_stories(subject)
        }

    def timing_tables(self, kind: str) -> list[str]:
        """One timing table per story (``{dataset}`` left open)."""
        return [self.path("timing", story=s, kind=kind) for s in self.all_stories]

    # ----------------------------------------------------------------------------- models

    def model_dir(self, model: str) -> str:
        """Snapshot folder of a model: a local path, or results/models/<model> made by a rule."""
        source = self.models[model]["source"]
        return source["local"] if "local" in source else self.path("model", model=model)

    def layers_of(self, model: str) -> list[int]:
        return model_layers(self.models[model])

    def n_layers(self, model: str) -> int:
        return int(self.models[model]["n_layers"])

    def kind_of(self, model: str) -> str:
        return str(self.models[model]["kind"])

    @functools.cache  # noqa: B019 (one Study per workflow; its config never changes)
    def extraction_sizing(self, model: str) -> ExtractionSizing | None:
        """The memory and GPUs of ``model``'s extraction job (`fmriscaling.sizing`; None for a
        model without ``n_params`` in the registry, which is not sized)."""
        c = self.config
        return extraction_sizing(model, self.models[model], c["features"], c["compute"])

    def extract_gpus(self, model: str) -> int:
        """GPUs of ``model``'s extraction job: as many as its weights and activations need
        (`fmriscaling.sizing`), one for a model that is not sized, none without
        ``compute.gpu``."""
        if not self.config["compute"]["gpu"]:
            return 0
        sizing = self.extraction_sizing(model)
        return 1 if sizing is None else sizing.n_gpus

    def check_extraction_sizes(self) -> None:
        """Refuse, before any job runs, a text or speech model that its extraction job cannot
        hold: more GPUs than ``compute.max_gpus_per_job``, or more host memory than
        ``compute.extract_mem_mb`` (`fmriscaling.sizing.check_extraction`)."""
        for model in self.run_models:
            check_extraction(self.extraction_sizing(model), self.config["compute"])

    def source_field(self, model: str, key: str) -> Any:
        """One field of a model's ``source`` (hub id, revision, gated, build), False if absent."""
        return self.models[model]["source"].get(key, False)

    def tiny_models_corpus(self) -> dict[str, Any]:
        """What the demo's tiny text models train their tokenizer on: the demo stories' words,
        drawn from the generator's seed and settings (`fmriscaling.demo.synthetic.story_texts`),
        so the models are built beside the dataset, not after it ({} when no text model is
        built, or the stories are a real dataset's: then `tiny_models_textgrids`)."""
        if self.source != "synthetic" or not self._builds_text_models():
            return {}
        return dict(self.config["synthetic"], test_story=self.test_story,
                    tr=self.config["stimuli"]["tr"])  # fmt: skip

    def tiny_models_textgrids(self) -> list[str]:
        """A real dataset's TextGrids, the tiny text models' tokenizer corpus there."""
        if self.source == "synthetic" or not self._builds_text_models():
            return []
        return [self.path("textgrid", dataset=self.dataset, story=s) for s in self.all_stories]

    def _builds_text_models(self) -> bool:
        return any(self.models[m]["kind"] == "text" for m in self.built_models)

    def tiny_model_builds(self) -> dict[str, dict[str, Any]]:
        """What rule build_tiny_models builds: per model its kind, ``source.build`` (arch,
        preset, seed) and the layer count the config declares."""
        return {
            m: dict(
                kind=self.kind_of(m), build=self.source_field(m, "build"), n_layers=self.n_layers(m)
            )
            for m in self.built_models
        }

    # ------------------------------------------------------------------------- downloads

    def manifest_entry(self, path: str) -> dict[str, Any]:
        """Size and md5 of a manifest path; a clear error for a path the snapshot does not have."""
        try:
            row = self.manifest_index.loc[path]
        except (KeyError, AttributeError):
            raise ValueError(
                f"{path} is not in {self.config['download']['manifest']}: the workflow can "
                "only download files of the ds003020 snapshot listed there"
            ) from None
        return {"size": int(row["size"]), "md5": str(row["md5"])}

    def download_kinds(self) -> list[str]:
        """Kinds of ds003020 file the configured analysis needs, plus the extra kinds asked for."""
        kinds = ["respdict", "responses", "textgrids"] + (["audio"] if self.speech_models else [])
        extra = set(self.config["download"]["kinds"])
        if self.config["figures"]["brain_maps"] or self.surface_enabled:
            extra.add("pycortex")
        return kinds + sorted(extra)

    def dataset_files(self) -> list[str]:
        """Every data file the configured analysis needs: the library's selection of the
        manifest (the downloader's own), or the generated demo files."""
        data = self.path("data", dataset=self.dataset)
        if self.source != "openneuro":
            return sorted(
                [self.path("respdict", dataset=self.dataset)]
                + [self.path("textgrid", dataset=self.dataset, story=s) for s in self.all_stories]
                + [f for s in self.subjects for f in self.prepared_responses(s)]
            )
        kinds = self.download_kinds()
        story_kinds = [k for k in kinds if k in ("respdict", "textgrids", "audio")]
        subject_kinds = [k for k in kinds if k in ("pycortex", "freesurfer")]
        files = select_files(
            self.manifest, subjects=None, stories=self.all_stories, kinds=story_kinds
        )
        for subject in self.subjects:
            stories = self.prepared_stories(subject)
            files += select_files(
                self.manifest, subjects=[subject], stories=stories, kinds=["responses"]
            )
            files += select_files(self.manifest, subjects=[subject], kinds=subject_kinds)
            if self.download_spheres():
                files += [sphere_relpath(subject, hemi) for hemi in ("lh", "rh")]
        return sorted({f"{data}/{relpath}" for relpath in files})

    # ------------------------------------------------------------------------------- fits

    def _fit_groups(self) -> list[list[str]]:
        """Subjects grouped by training set (same stories, same order), in config order.

        The design matrix depends on the features and the stories only: subjects in one group
        share every Gram and eigendecomposition, so one fit job serves the whole group. A
        subject whose training set differs is a group of its own, fitted alone.
        """
        groups: dict[tuple[str, ...], list[str]] = {}
        for subject in self.subjects:
            groups.setdefault(tuple(self.train_stories(subject)), []).append(subject)
        return list(groups.values())

    def group_of(self, subject: str) -> int:
        """Index of the fit group of ``subject``."""
        return next(i for i, group in enumerate(self.fit_groups) if subject in group)

    @staticmethod
    def fit_rule_name(kind: str, index: int) -> str:
        """Rule of group ``index`` for outputs ``kind``: fit_encoding(_subset), then _2, _3, ..."""
        return FIT_KINDS[kind] + ("" if index == 0 else f"_{index + 1}")

    def group_outputs(self, kind: str, subjects: Sequence[str], ext: str) -> list[str]:
        """Per-subject outputs of a group's fit job."""
        return [self.path(kind, subject=s, ext=ext) for s in subjects]

    @staticmethod
    def group_label(subjects: Sequence[str]) -> str:
        """What a group job's log and benchmark are filed under: its subjects joined by '+'."""
        return "+".join(subjects)

    def fit_stories(
        self, subjects: Sequence[str], n: int | None = None, seed: int = -1
    ) -> list[str]:
        """Training stories of a group's fit: all of them, or the draw of ``n`` stories with
        ``seed`` (subjects with one story list get one draw)."""
        stories = self.train_stories(subjects[0])
        return stories if n is None else draw_subset(stories, int(n), int(seed))

    def _fixed_dims(self) -> dict[str, list[int]]:
        """Per run model, the widths d of ``features.fixed_dim`` its layers are fitted at: those
        of the kinds ``features.fixed_dim_kinds`` names, less the widths above the model's
        ``hidden_size`` where the registry gives it (left out of that curve, with a warning; a
        model without one is fitted and flagged by the fit, `fmriscaling.encoding.width`)."""
        features = self.config["features"]
        dims: dict[str, list[int]] = {}
        for model in self.run_models:
            if self.kind_of(model) not in features["fixed_dim_kinds"]:
                dims[model] = []
                continue
            hidden = self.models[model].get("hidden_size")
            narrower = [d for d in features["fixed_dim"] if hidden is not None and hidden < d]
            if narrower:
                logger.warning(
                    "%s (hidden_size %d) is narrower than features.fixed_dim %s: left out of "
                    "the fixed-width curve(s) at %s",
                    model,
                    hidden,
                    narrower,
                    ", ".join(f"d = {d}" for d in narrower),
                )
            dims[model] = [int(d) for d in features["fixed_dim"] if d not in narrower]
        return dims

    def width_encoding_params(self, width: int | str) -> dict[str, Any]:
        """The settings of a fixed-width fit job: every fit's (`encoding_params`) and the
        projection of its layer to ``width`` dimensions (``features.fixed_dim_method``,
        ``fixed_dim_seed``; `fmriscaling.encoding.width`)."""
        features = self.config["features"]
        projection = dict(
            dim=int(width), method=features["fixed_dim_method"], seed=features["fixed_dim_seed"]
        )
        return dict(self.encoding_params(), projection=projection)

    def alphas(self) -> list[float]:
        """The ridge penalty grid (``encoding.alphas``: log-spaced)."""
        return alpha_grid(self.config["encoding"]["alphas"])

    def subsample_sizes(self, subject: str) -> list[int]:
        """Story counts of the data-size sweep, below all: the full fit is the all-stories
        point (a subset of every story is the same for every seed)."""
        n_all = len(self.train_stories(subject))
        return sweep_sizes(n_all, self.config["subsampling"]["n_stories"], unit="stories")

    def encoding_params(self) -> dict[str, Any]:
        """The settings of every fit job (its ``encoding`` param: a change reruns the fits)."""
        enc = self.config["encoding"]
        params = dict(
            test_story=self.test_story,
            delays=enc["delays"],
            alphas=self.alphas(),
            cv=enc["cv"],
            n_folds=enc["n_folds"],
            test_extra_trim=enc["test_extra_trim"],
            backend=enc["backend"],
            solver=enc["solver"],
            solver_impl=enc["solver_impl"],
            score_dtype=enc["score_dtype"],
            save_weights=enc["save_weights"],
            save_predictions=enc["save_predictions"],
            statistics=self.config["statistics"],
        )
        if enc["cv"] == "bootstrap":
            # only bootstrap CV draws chunks: a story-CV fit does not rerun when these change
            params.update(bootstrap=enc["bootstrap"], seed=enc["seed"])
        return params

    def stack_member_params(self) -> dict[str, Any]:
        """A stack member is its model's ridge fit (same designs, folds and alpha search)."""
        skip = ("solver_impl", "save_weights", "save_predictions", "statistics")
        return {k: v for k, v in self.encoding_params().items() if k not in skip}

    # --------------------------------------------------------------------------- entries

    @functools.cached_property
    def table_entries(self) -> list[dict[str, Any]]:
        """Metadata of every fit and its scores path (``{ext}`` open), in the tables' row order."""
        entries = []
        for subject in self.subjects:
            for model in self.run_models:
                spec = self.models[model]
                for layer in self.layers_of(model):
                    labels = dict(dataset=self.dataset, subject=subject, model=model, layer=layer)
                    common = dict(
                        subject=subject,
                        model=model,
                        family=spec["family"],
                        kind=spec["kind"],
                        n_params=spec["n_params"],
                        layer=layer,
                        n_layers=spec["n_layers"],
                    )
                    entries.append(
                        dict(common, n_train=None, seed=-1, path=self.path("fit", **labels))
                    )
                    for d in self.fixed_dims[model]:
                        path = self.path("width_fit", **labels, width=d)
                        entries.append(dict(common, n_train=None, seed=-1, width=d, path=path))
                    for fit in self.config["subsampling"]["fits"]:
                        if fit["model"] != model or layer not in fit["layers"]:
                            continue
                        for n in self.subsample_sizes(subject):
                            for seed in self.config["subsampling"]["seeds"]:
                                path = self.path("subset_fit", **labels, n=n, seed=seed)
                                entries.append(dict(common, n_train=n, seed=seed, path=path))
        return entries

    def full_fits_of(self, subject: str) -> list[dict[str, Any]]:
        """A subject's fits on all training stories and native features (no fixed width)."""
        return [
            e
            for e in self.table_entries
            if e["subject"] == subject and e["n_train"] is None and "width" not in e
        ]

    @staticmethod
    def entry_labels(entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The entries' metadata without their paths, for params (a moved file reruns nothing)."""
        return [{k: v for k, v in e.items() if k != "path"} for e in entries]

    @staticmethod
    def entry_files(entries: Sequence[Mapping[str, Any]], ext: str) -> list[str]:
        return [fill(e["path"], ext=ext) for e in entries]

    # --------------------------------------------------------------------------- stacking

    def member_fit_layers(self, model: str, layer: str) -> list[int]:
        """Layer fits a stack member reads: every layer of its model for "best" (the CV
        choice), else its own layer's fit where the sweep has it (to compare alphas)."""
        layers = self.layers_of(model)
        return layers if layer == "best" else [n for n in layers if n == int(layer)]

    def member_fits(self, dataset: str, subject: str, model: str, layer: str) -> list[str]:
        return [
            self.path("fit", dataset=dataset, subject=subject, model=model, layer=n, ext="npz")
            for n in self.member_fit_layers(model, layer)
        ]

    def stack_member_files(self, dataset: str, subject: str, stack: str) -> list[str]:
        """Member files of a stack for one subject, in the stack's member order."""
        return [
            self.path(
                "stack_member", dataset=dataset, subject=subject, model=m["model"], layer=m["layer"]
            )
            for m in self.stacks[stack]
        ]

    def stack_member_labels(self, stack: str) -> list[dict[str, str]]:
        return [
            {"model": m["model"], "kind": m["kind"], "layer_spec": str(m["layer"])}
            for m in self.stacks[stack]
        ]

    @functools.cached_property
    def stack_entries(self) -> list[dict[str, str]]:
        return [
            {
                "subject": s,
                "stack": name,
                "path": self.path("stack", dataset=self.dataset, subject=s, stack=name),
            }
            for s in self.subjects
            for name in self.stacks
        ]

    @property
    def stack_table_names(self) -> list[str]:
        return list(outputs.STACKING_TABLES) if self.stacks else []

    def stacking_voxel_labels(self) -> dict[str, Any]:
        """The voxel groups the stacking tables summarise besides all voxels: the subjects' ROI
        labels (datasets with pycortex surfaces) and the demo's ground truth (its voxel groups:
        auditory / semantic / unresponsive)."""
        groups: dict[str, Any] = {"rois": self.rois_of_subjects()} if self.has_cortex else {}
        if self.source == "synthetic":
            groups["ground_truth"] = self.path("ground_truth", dataset=self.dataset)
        return groups

    def stacking_weight_maps(self, subject: str) -> list[str]:
        """A subject's stack scores, drawn as weight maps beside the best model's maps."""
        return [e["path"] for e in self.stack_entries if e["subject"] == subject]

    # ----------------------------------------------------------------------- partitions

    def member_spaces(self) -> list[tuple[str, str]]:
        """(model, layer) of every stack member and partition band, once each: the
        stack_member jobs (a band's single fit is a member's refit)."""
        spaces = [(m["model"], str(m["layer"])) for ms in self.stacks.values() for m in ms]
        spaces += [(b["model"], str(b["layer"])) for bs in self.partitions.values() for b in bs]
        return list(dict.fromkeys(spaces))

    def partition_member_files(self, dataset: str, subject: str, partition: str) -> list[str]:
        """The bands' member files of a partition for one subject, in band order."""
        return [
            self.path(
                "stack_member", dataset=dataset, subject=subject, model=b["model"], layer=b["layer"]
            )
            for b in self.partitions[partition]
        ]

    def partition_feature_dirs(self, dataset: str, partition: str) -> list[str]:
        """Each band's model feature folder (the joint fit reads the member's layer)."""
        return [
            self.path("features", dataset=dataset, model=b["model"])
            for b in self.partitions[partition]
        ]

    def partition_labels(self, partition: str) -> dict[str, list[str]]:
        """Band labels and kinds of a partition (the fit job's params)."""
        bands = self.partitions[partition]
        return {"bands": [b["name"] for b in bands], "kinds": [b["kind"] for b in bands]}

    def partitioning_params(self) -> dict[str, Any]:
        """The ridge stage's settings a joint fit uses (its designs, folds and alpha grid)."""
        keep = ("test_story", "delays", "alphas", "cv", "n_folds", "test_extra_trim", "backend")
        keep += ("bootstrap", "seed")
        return {k: v for k, v in self.encoding_params().items() if k in keep}

    @functools.cached_property
    def partition_entries(self) -> list[dict[str, str]]:
        return [
            {
                "subject": s,
                "partition": name,
                "path": self.path("partition", dataset=self.dataset, subject=s, partition=name),
            }
            for s in self.subjects
            for name in self.partitions
        ]

    @property
    def partition_table_names(self) -> list[str]:
        return list(outputs.PARTITION_TABLES) if self.partitions else []

    def partition_table_outputs(self) -> dict[str, str]:
        """Named outputs of rule partition_table: the summaries and the per-voxel table."""
        if not self.partitions:
            return {}
        return {
            **{n: self.path("table", name=n) for n in outputs.PARTITION_TABLES},
            outputs.PARTITION_VOXELS: self.path("table_gz", name=outputs.PARTITION_VOXELS),
        }

    def partition_maps_of(self, subject: str) -> list[str]:
        """A subject's partition scores, drawn as flatmaps of the regions."""
        return [e["path"] for e in self.partition_entries if e["subject"] == subject]

    # ---------------------------------------------------------------------------- anatomy

    def demo_pycortex_outputs(self, subject: str) -> list[str]:
        """What the demo generator writes into a subject's pycortex folder besides the masks."""
        if self.config["synthetic"]["cortex"] is None:
            return []
        xfm = transform_files(subject, f"{subject}_auto")[0]  # matrices.xfm; the masks are apart
        return [
            self.path("pycortex_file", subject=subject, file=f) for f in [*DEMO_PYCORTEX_FILES, xfm]
        ]

    def demo_dataset_outputs(self) -> dict[str, str | list[str]]:
        """What rule generate_demo_dataset writes, by output name (``{dataset}`` open):
        ``ground_truth`` is a folder; with ``synthetic.cortex`` the rest of each subject's
        pycortex folder and its annotations too."""
        subjects, stories = self.subjects, self.all_stories
        return dict(
            respdict=self.path("respdict"),
            textgrids=[self.path("textgrid", story=s) for s in stories],
            audio=[self.path("audio", story=s) for s in stories],
            responses=[
                self.path("responses", subject=sub, story=s) for sub in subjects for s in stories
            ],
            masks=[
                self.path("transform", subject=sub, name=name)
                for sub in subjects
                for name in ("mask_thick", "reference")
            ],
            pycortex=[f for sub in subjects for f in self.demo_pycortex_outputs(sub)],
            annotations=(
                [f for sub in subjects for f in self.annotation_files(sub)]
                if self.has_cortex
                else []
            ),
            spheres=(
                [f for sub in subjects for f in self.sphere_files(sub, "{dataset}")]
                if self.has_cortex
                else []
            ),
            ground_truth=self.path("ground_truth"),
        )

    def annotation_files(self, subject: str) -> list[str]:
        """The FreeSurfer annotations (lh, rh) of every atlas the ROI groups use."""
        return [
            self.path("dataset_file", path=annotation_relpath(subject, hemi, atlas))
            for atlas in self.atlases
            for hemi in ("lh", "rh")
        ]

    def annotation_inputs(self, dataset: str, subject: str) -> list[str]:
        return [fill(f, dataset=dataset) for f in self.annotation_files(subject)]

    def pycortex_inputs(self, subject: str) -> list[str]:
        """The subject's pycortex files a map or the ROI labels read (masks included)."""
        masks = [
            self.path("transform", dataset=self.dataset, subject=subject, name=n)
            for n in ("mask_thick", "reference")
        ]
        if self.source == "openneuro":
            files = select_files(self.manifest, subjects=[subject], kinds=["pycortex"])
            return sorted(
                {*masks, *(self.path("dataset_file", dataset=self.dataset, path=f) for f in files)}
            )
        return masks + [fill(f, dataset=self.dataset) for f in self.demo_pycortex_outputs(subject)]

    @staticmethod
    def pycortex_db(mask: str) -> str:
        """The pycortex filestore of a transform's mask (<db>/<subject>/transforms/<xfm>/...)."""
        return str(Path(mask).parents[3])

    def rois_of_subjects(self) -> list[str]:
        """The ROI labels of every subject, when the dataset has pycortex surfaces."""
        return [self.path("rois", subject=s) for s in self.subjects] if self.has_cortex else []

    # ----------------------------------------------------------------------------- targets

    @property
    def table_names(self) -> list[str]:
        return [
            *outputs.ENCODING_TABLES,
            *outputs.SCALING_TABLES,
            outputs.ROI_TABLE,
            outputs.COST_TABLE,
        ]

    @property
    def figure_names(self) -> list[str]:
        return outputs.scaling_figure_names(
            speech=bool(self.speech_models), sweep=bool(self.config["subsampling"]["fits"])
        )

    def figure_outputs(self) -> dict[str, list[str]]:
        """Named outputs of the scaling_figures rule (figure name -> its file per format)."""
        return {name: self.formats_of("figure", name=name) for name in self.figure_names}

    def benchmark_records(self) -> list[dict[str, Any]]:
        """Every extraction and fit job with its benchmark file, for the cost table."""
        records = []
        for model in self.run_models:
            job = f"extract_{self.models[model]['kind']}_features"
            where = self.benchmark(job, "features", dataset=self.dataset, model=model)
            records.append(dict(rule=job, model=model, path=where))
        # one fit job per (model, layer[, subset]) and group of subjects that share a training set
        seen = set()
        for entry in self.table_entries:
            kind = "fit" if entry["n_train"] is None else "subset_fit"
            kind = "width_fit" if "width" in entry else kind
            index = self.group_of(entry["subject"])
            job, group = self.fit_rule_name(kind, index), self.group_label(self.fit_groups[index])
            labels = {k: entry[k] for k in ("model", "layer", "n_train", "seed")}
            where = self.benchmark(
                job,
                kind,
                dataset=self.dataset,
                subject=group,
                **labels,
                n=entry["n_train"],
                width=entry.get("width"),
            )
            if where not in seen:
                seen.add(where)
                width = width_label(entry.get("width"))
                records.append(dict(labels, width=width, subject=group, rule=job, path=where))
        return records

    def final_targets(self) -> list[str]:
        """The language track's tables, figures and maps (when it runs models), and the vision
        track's tables and figures (when it is enabled)."""
        if not self.run_models:
            return self.vision_targets() + self.surface_targets()
        d = self.dataset
        names = self.table_names + self.stack_table_names + self.partition_table_names
        tables = [self.path("table", dataset=d, name=name) for name in names]
        if self.partitions:
            tables.append(self.path("table_gz", dataset=d, name=outputs.PARTITION_VOXELS))
        figures = [fill(f, dataset=d) for files in self.figure_outputs().values() for f in files]
        extra = [outputs.NOISE_CEILING_FIGURE, outputs.COST_FIGURE]
        extra += [outputs.STACKING_FIGURE] if self.stacks else []
        extra += [outputs.PARTITION_FIGURE] if self.partitions else []
        figures += [f for name in extra for f in self.formats_of("figure", dataset=d, name=name)]
        maps = []
        if self.config["figures"]["brain_maps"]:
            kinds = ["brain_map"] + (["partition_map"] if self.partitions else [])
            maps = [
                f
                for s in self.subjects
                for kind in kinds
                for f in self.formats_of(kind, dataset=d, subject=s)
            ]
        return tables + figures + maps + self.vision_targets() + self.surface_targets()

    # ---------------------------------------------------------------------------- the jobs

    def jobs(self) -> list[Any]:
        """Every job of the study's default target, in stage order (`fmriscaling.workflow.jobs`)."""
        from .jobs import study_jobs

        return study_jobs(self)
