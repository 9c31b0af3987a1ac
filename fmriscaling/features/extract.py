"""One extraction driver for every model kind: per story, model features at stimulus times,
Lanczos-downsampled to the TRs that have a response, written for every layer.

`extract_model` holds what text and speech models share: the checks of the story lists and of
the model's layer count, reading (or checking) every story's inputs before the first slow
forward pass, the per-story loop, `FeatureWriter` and ``provenance.json``. What differs per kind
is a `StoryExtractor`: `fmriscaling.features.lm.extract_text_model` builds one around a causal
LM (input: a words table), `fmriscaling.features.speech.extract_speech_model` around a speech
model (input: a wav file).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .._utils import DataError, write_json
from ..interpolation import downsample_story
from ..stimuli import kept_tr_rows
from .io import FeatureWriter, check_layer_padding

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunRecord:
    """What the driver knows of a finished run, for the extractor's provenance record.

    Attributes
    ----------
    params : mapping or None
        The rule's params.
    lanczos_window : int
    lanczos_normalize : bool
    seconds : float
        Wall time of the story loop.
    """

    params: Mapping[str, Any] | None
    lanczos_window: int
    lanczos_normalize: bool
    seconds: float


class LoadedModel(Protocol):
    """What the driver reads of a loaded model (`LoadedLM`, `SpeechModel`).

    A model may also have ``layer_widths`` (`LoadedLM`): the width of each of its
    ``n_layers + 1`` layers, when they differ (see `extract_model`).
    """

    model_dir: Path
    n_layers: int


class StoryExtractor(Protocol):
    """The model-specific part of `extract_model`, around one loaded model.

    Attributes
    ----------
    model : LoadedModel
        The model; ``model.n_layers`` transformer layers give ``n_layers + 1`` layer files.
    """

    model: LoadedModel

    def read_input(self, story: str, path: str | os.PathLike) -> Any:
        """Read or check one story's input cheaply; runs for every story before the first pass.

        Returns what `story_features` needs of it (e.g. the words and their times).
        """

    def story_features(
        self, story: str, story_input: Any, tr_times: np.ndarray, rows: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, Any]:
        """Run the model over one story.

        Parameters
        ----------
        story : str
        story_input : object
            What `read_input` returned for the story.
        tr_times : array of shape (n_trs,)
            Every TR time of the story (seconds from sound onset).
        rows : array of shape (n_rows,), int
            Indices into ``tr_times`` of the TRs that are written.

        Returns
        -------
        feats : array of shape (n_layers + 1, n_times, n_dims)
            Features of every layer at ``times``; ``n_dims = max(layer_widths)`` with NaN
            past each narrower layer's width, for a model whose layers differ in width.
        times : array of shape (n_times,)
            Stimulus times of the features (word times, window ends), seconds from sound onset.
        stats : object
            What the story cost; handed back to `story_written`.
        """

    def story_written(self, story: str, stats: Any, n_rows: int, progress: str) -> None:
        """Log one written story and add it to the run's record.

        ``n_rows`` TRs were written; ``progress`` is the story's place in the run, ``"[k/n]"``.
        """

    def provenance_record(self, run: RunRecord) -> dict[str, Any]:
        """The content of ``provenance.json``, after the last story."""


def check_story_inputs(
    inputs: Mapping[str, Any],
    trs_tables: Mapping[str, Any],
    *,
    input_name: str,
    model_name: str,
) -> None:
    """Refuse story lists that cannot be extracted: stories lacking one table, or no story.

    Parameters
    ----------
    inputs, trs_tables : mapping story -> path
        Each story's model input and TR table.
    input_name : str
        What an input is, in the message: ``"a words table"``, ``"a wav file"``.
    model_name : str
        The model's name in the config, in the message.

    Raises
    ------
    DataError
        Naming the stories that have an input but no TR table or the reverse, or saying that
        there is no story.
    """
    missing = sorted(set(inputs) ^ set(trs_tables))
    if missing:
        raise DataError(
            f"stories {missing} have {input_name} or a TR table but not both; every story needs "
            "both (check the dataset's story list and the stimulus timing outputs)"
        )
    if not inputs:
        raise DataError(
            f"no stories given for model {model_name!r}; check the dataset's story list"
        )


def check_n_layers(model: LoadedModel, expected_n_layers: int | None, model_name: str) -> None:
    """Refuse a model whose layer count differs from the config's ``n_layers``.

    Raises
    ------
    DataError
        Naming the model, its folder, both counts and the fix.
    """
    if expected_n_layers is not None and model.n_layers != expected_n_layers:
        raise DataError(
            f"model {model_name!r} in {model.model_dir} has {model.n_layers} layers but the "
            f"config expects {expected_n_layers} (n_layers: {expected_n_layers}); fix "
            "`n_layers` of this model in the config or re-download the snapshot"
        )


def extract_model(
    load: Callable[[], StoryExtractor],
    inputs: Mapping[str, str | os.PathLike],
    trs_tables: Mapping[str, str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    input_name: str,
    model_name: str,
    expected_n_layers: int | None = None,
    lanczos_window: int = 3,
    lanczos_normalize: bool = False,
    params: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Extract one model's features for every story and write them per layer at TR times.

    The story lists are checked (`check_story_inputs`), the model is loaded (``load``) and its
    layer count checked, then every story's input and TR table is read or checked, so a bad
    file fails before the first slow story. Then story by story (memory holds one story's
    features): the extractor's features at stimulus times -> Lanczos interpolation to every TR
    time -> the rows with ``response_row >= 0``, in response-row order
    (`fmriscaling.interpolation.downsample_story`) -> one write to every layer file. Last,
    ``out_dir/provenance.json``.

    A model whose layers differ in width (its ``layer_widths``, e.g. OPT-350m's projected last
    hidden state) gives features as wide as its widest layer, NaN past each narrower layer's
    width: the padding is checked at stimulus times (`check_layer_padding`), the
    downsampling maps each column on its own, and each layer file is written at its own
    width (`FeatureWriter`'s ``layer_widths``).

    Parameters
    ----------
    load : callable () -> StoryExtractor
        Loads the model; called once the story lists are known to be good.
    inputs : mapping story -> path
        Each story's model input (words table, wav file), in extraction order.
    trs_tables : mapping story -> path
        TR tables (columns tr_index, time, response_row; -1 = dropped), read with
        `fmriscaling.stimuli.kept_tr_rows`. Same stories as ``inputs``.
    out_dir : path-like
        Output directory for ``layer-0.h5 .. layer-<n_layers>.h5`` (see `FeatureWriter`) and
        ``provenance.json``.
    input_name : str
        What an input is, for messages: ``"a words table"``, ``"a wav file"``.
    model_name : str
        The model's name in the config.
    expected_n_layers : int, optional
        Transformer layers the config declares (``n_layers``); a different count is an error.
    lanczos_window : int
        Lanczos lobes.
    lanczos_normalize : bool
        Normalise the Lanczos kernel (the paper does not).
    params : mapping, optional
        The rule's params, stored (and hashed) in the provenance.

    Returns
    -------
    paths : list of Path
        The layer files, layer 0 first.

    Raises
    ------
    DataError
        When the story lists do not match, the layer count differs from the config's, or an
        input is missing or unreadable; nothing is written then. When a story's features hold
        NaN or padding that is not NaN (layers of different widths); nothing is written then
        either.
    """
    check_story_inputs(inputs, trs_tables, input_name=input_name, model_name=model_name)
    out_dir = Path(out_dir)
    extractor = load()
    model = extractor.model
    check_n_layers(model, expected_n_layers, model_name)
    # every input before the first (slow) story, so a bad file fails fast
    story_inputs = {story: extractor.read_input(story, path) for story, path in inputs.items()}
    story_rows = {story: kept_tr_rows(trs_tables[story], story) for story in inputs}
    # layers of different widths come NaN-padded to the widest (None: all as wide, no padding)
    widths = getattr(model, "layer_widths", None)
    if widths is not None and len(set(widths)) == 1:
        widths = None

    t0 = time.perf_counter()
    with FeatureWriter(out_dir, model.n_layers, model_name, layer_widths=widths) as writer:
        for k, story in enumerate(inputs):
            tr_times, rows = story_rows[story]
            feats, times, stats = extractor.story_features(
                story, story_inputs[story], tr_times, rows
            )
            if widths is not None:
                check_layer_padding(feats, widths, what=f"model {model_name!r}, story {story!r}")
            tr_feats = downsample_story(
                feats, times, tr_times, rows, window=lanczos_window, normalize=lanczos_normalize
            )
            del feats
            writer.write_story(story, tr_feats)
            extractor.story_written(story, stats, tr_feats.shape[1], f"[{k + 1}/{len(inputs)}]")
        paths = writer.final_paths()
    run = RunRecord(params, lanczos_window, lanczos_normalize, time.perf_counter() - t0)
    write_json(out_dir / "provenance.json", extractor.provenance_record(run))
    return paths
