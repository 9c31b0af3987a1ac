"""Causal language model features at word times, with the paper's dynamic word context.

The context policy and the window schedule (one forward pass per window serves every word
whose context starts there) are in `fmriscaling.features.context`. A word's feature is the hidden
state (every layer, embeddings = layer 0) at the word's last sub-word token, from a forward pass
over ``[BOS] + tokens(context words)``.

Empty words. The timing stage keeps empty TextGrid labels ("") as words. They are not shown to
the model and do not count towards the context; each gets the feature of the closest preceding
non-empty word (zeros if there is none), as in the companion code. Words are stripped of
surrounding whitespace first, so a whitespace-only word counts as empty.

Word-to-token alignment. The words of a pass are joined with single spaces and tokenised
without special tokens, with ``return_offsets_mapping``; a token belongs to the word that holds
its last character, and a word's feature is read at its last token. This relies only on the
tokenizer (no model-specific sentinels), and assumes tokens do not merge across a space (true
of the byte-level BPE and SentencePiece tokenizers of GPT-2, OPT, Pythia and LLaMA).

The module (~630 lines, 170 of them docstrings) holds the loader, the pass engine and the
text model's hooks into the one extraction driver (`fmriscaling.features.extract`): all three
share `LoadedLM` and the pass schedule, and the speech track has the same shape in
`fmriscaling.features.speech`.
"""

from __future__ import annotations

import bisect
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._utils import DataError, provenance
from ..models import pick_device, pick_dtype, require_model_dir, snapshot_record
from ..stimuli import read_words
from .context import check_context, context_starts, window_schedule
from .extract import RunRecord, extract_model

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]


@dataclass
class ExtractionStats:
    """Cost of one story's extraction.

    Attributes
    ----------
    n_words : int
        Non-empty words (the words the model saw).
    n_story_tokens : int
        Tokens of the whole story tokenised once (no BOS).
    n_tokens_processed : int
        Tokens fed to the model over all passes, BOS included, padding excluded.
    n_passes : int
        Sequences run (windows, or words for the naive method).
    n_batches : int
        Forward calls.
    seconds : float
        Wall time of tokenisation + forward passes.
    """

    n_words: int = 0
    n_story_tokens: int = 0
    n_tokens_processed: int = 0
    n_passes: int = 0
    n_batches: int = 0
    seconds: float = 0.0

    @property
    def token_ratio(self) -> float:
        """``n_tokens_processed / n_story_tokens`` (≈ 2 for the dynamic window)."""
        return self.n_tokens_processed / self.n_story_tokens if self.n_story_tokens else 0.0

    @property
    def words_per_second(self) -> float:
        return self.n_words / self.seconds if self.seconds > 0 else float("inf")


@dataclass
class LoadedLM:
    """A causal LM and its tokenizer, loaded once and reused across stories.

    Attributes
    ----------
    model : transformers.PreTrainedModel
        The causal LM (its ``base_model`` is run).
    tokenizer : transformers fast tokenizer
    model_dir : Path
    device : str
    dtype : torch.dtype
    n_layers : int
        Transformer blocks; hidden states have ``n_layers + 1`` entries.
    hidden_size : int
    bos_token_id : int
    max_positions : int or None
        The model's maximum sequence length, when its config says.
    n_params : int
    """

    model: Any
    tokenizer: Any
    model_dir: Path
    device: str
    dtype: torch.dtype
    n_layers: int
    hidden_size: int
    bos_token_id: int
    max_positions: int | None
    n_params: int


def load_causal_lm(
    model_dir: str | os.PathLike,
    *,
    device: str = "auto",
    dtype: str = "auto",
    model_name: str | None = None,
    bos_token_id: int | None = None,
) -> LoadedLM:
    """Load a causal LM snapshot offline for feature extraction.

    Parameters
    ----------
    model_dir : path-like
        Snapshot directory (``config.json``, weights, tokenizer files).
    device : str
        ``"auto"`` (CUDA when visible), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
    dtype : {"auto", "float32", "float16", "bfloat16"}
        ``auto`` = bf16/fp16 on GPU, fp32 on CPU (`fmriscaling.models.pick_dtype`).
    model_name : str, optional
        Name used in error messages (defaults to the directory name).
    bos_token_id : int, optional
        Fallback BOS id for a model whose tokenizer and config define none.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = require_model_dir(model_dir, model_name)
    device = pick_device(device)
    torch_dtype = pick_dtype(dtype, device)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    if not getattr(tokenizer, "is_fast", False):
        raise DataError(
            f"the tokenizer in {model_dir} is not a fast (Rust) tokenizer, so it cannot map "
            "tokens to words with offsets; add a tokenizer.json to the snapshot"
        )
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, local_files_only=True, dtype=torch_dtype
    )
    model.to(device)
    model.eval()
    config = model.config
    bos = tokenizer.bos_token_id
    if bos is None:
        bos = getattr(config, "bos_token_id", None)
    if bos is None:
        bos = bos_token_id
    if bos is None:
        raise DataError(
            f"model {model_name or model_dir.name!r} ({model_dir}) defines no BOS token in its "
            "tokenizer or config; every window starts with BOS, so pass a fallback "
            "`bos_token_id` (e.g. the EOS id) in the model's config entry"
        )
    max_positions = getattr(config, "max_position_embeddings", None) or getattr(
        config, "n_positions", None
    )
    lm = LoadedLM(
        model=model,
        tokenizer=tokenizer,
        model_dir=model_dir,
        device=device,
        dtype=torch_dtype,
        n_layers=int(config.num_hidden_layers),
        hidden_size=int(config.hidden_size),
        bos_token_id=int(bos),
        max_positions=int(max_positions) if max_positions else None,
        n_params=sum(p.numel() for p in model.parameters()),
    )
    logger.info(
        "loaded %s: %d layers, hidden %d, %.3g parameters, %s on %s, BOS id %d",
        model_dir,
        lm.n_layers,
        lm.hidden_size,
        lm.n_params,
        torch_dtype,
        device,
        lm.bos_token_id,
    )
    return lm


# ---------------------------------------------------------------------------- engine


@dataclass
class _Pass:
    input_ids: list[int]  # BOS + tokens
    positions: list[int]  # token position of each served word's last token
    served: list[int]  # indices (into the non-empty words) of the served words


def _tokenize_pass(
    tokenizer, words: Sequence[str], start: int, first: int, stop: int, bos: int
) -> _Pass:
    """Tokenise ``words[start:stop]`` and locate the last token of words ``first .. stop-1``."""
    ctx = words[start:stop]
    word_starts, pos = [], 0
    for w in ctx:
        word_starts.append(pos)
        pos += len(w) + 1
    enc = tokenizer(" ".join(ctx), add_special_tokens=False, return_offsets_mapping=True)
    last_token = [-1] * len(ctx)
    for t, (a, b) in enumerate(enc["offset_mapping"]):
        if b <= a:
            continue
        # the word holding the token's last character (a space belongs to none)
        j = bisect.bisect_right(word_starts, b - 1) - 1
        if j >= 0 and b - 1 < word_starts[j] + len(ctx[j]):
            last_token[j] = t
    served = list(range(first, stop))
    positions = []
    for i in served:
        t = last_token[i - start]
        if t < 0:
            raise DataError(
                f"word {i} ({words[i]!r}) got no token from the tokenizer; check the words "
                "table for unusual characters"
            )
        positions.append(t + 1)  # + 1 for BOS
    return _Pass([bos, *enc["input_ids"]], positions, served)


def _run_passes(
    lm: LoadedLM,
    passes: list[_Pass],
    n_words: int,
    layer_idx: list[int],
    batch_size: int,
    progress: ProgressFn | None,
) -> tuple[np.ndarray, int, int]:
    """Run ``passes`` in batches; gather the served words' hidden states.

    Returns (features (n_sel_layers, n_words, hidden) float32, tokens processed, batches).
    """
    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for p in passes:
        if lm.max_positions is not None and len(p.input_ids) > lm.max_positions:
            raise DataError(
                f"a context of {len(p.input_ids)} tokens (BOS included) exceeds the model's "
                f"{lm.max_positions} positions ({lm.model_dir}); lower max_words / reset_words "
                "for this model in the config"
            )
    feats = np.zeros((len(layer_idx), n_words, lm.hidden_size), dtype=np.float32)
    pad_id = lm.tokenizer.pad_token_id
    if pad_id is None:
        pad_id = lm.bos_token_id  # masked out, its value never matters
    # longest first: batches of similar lengths waste little on padding
    order = sorted(range(len(passes)), key=lambda k: -len(passes[k].input_ids))
    base = lm.model.base_model
    n_tokens = n_batches = n_done = 0
    for lo in range(0, len(order), batch_size):
        batch = [passes[k] for k in order[lo : lo + batch_size]]
        length = max(len(p.input_ids) for p in batch)
        ids = torch.full((len(batch), length), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), length), dtype=torch.long)
        for b, p in enumerate(batch):
            ids[b, : len(p.input_ids)] = torch.tensor(p.input_ids)
            mask[b, : len(p.input_ids)] = 1
        # right padding: real tokens never attend to the pads after them (causal mask)
        with torch.inference_mode():
            out = base(
                input_ids=ids.to(lm.device),
                attention_mask=mask.to(lm.device),
                output_hidden_states=True,
                use_cache=False,
                return_dict=True,
            )
        hidden = out.hidden_states
        if len(hidden) != lm.n_layers + 1:
            raise DataError(
                f"{lm.model_dir}: the model returned {len(hidden)} hidden states, expected "
                f"num_hidden_layers + 1 = {lm.n_layers + 1}; this architecture is not supported"
            )
        rows = torch.tensor([b for b, p in enumerate(batch) for _ in p.positions], device=lm.device)
        cols = torch.tensor([t for p in batch for t in p.positions], device=lm.device)
        served = np.array([i for p in batch for i in p.served], dtype=np.int64)
        for li, layer in enumerate(layer_idx):
            feats[li, served] = hidden[layer][rows, cols].float().cpu().numpy()
        n_tokens += int(mask.sum())
        n_batches += 1
        n_done += len(served)
        if progress is not None:
            progress(n_done, n_words)
        del out, hidden
    return feats, n_tokens, n_batches


def _layer_indices(layers: Sequence[int] | None, n_layers: int) -> list[int]:
    if layers is None:
        return list(range(n_layers + 1))
    idx = [int(layer) for layer in layers]
    bad = [layer for layer in idx if not 0 <= layer <= n_layers]
    if bad:
        raise ValueError(f"layers {bad} out of range 0..{n_layers} (0 = embeddings)")
    return idx


def _clean_words(words: Sequence[Any]) -> list[str]:
    # pandas may read "" as NaN; anything that is not a string counts as empty
    return [w.strip() if isinstance(w, str) else "" for w in words]


def lm_features_and_stats(
    lm: LoadedLM,
    words: Sequence[str],
    *,
    naive: bool = False,
    max_words: int = 512,
    reset_words: int = 256,
    batch_size: int = 8,
    layers: Sequence[int] | None = None,
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, ExtractionStats]:
    """The features of `extract_lm_features` (or `naive_lm_features`) and what they cost.

    Parameters
    ----------
    lm : LoadedLM
        A model loaded with `load_causal_lm`.
    words : sequence of str, length n_words
        The story's words in order; "" (empty) words are allowed, see the module docstring.
    naive : bool
        One pass per word over exactly its own context (`naive_lm_features`) instead of one
        pass per window of the schedule (`extract_lm_features`).
    max_words, reset_words, batch_size, layers, progress
        As in `extract_lm_features`.

    Returns
    -------
    feats : array of shape (n_layers + 1, n_words, hidden_size), float32
        (``len(layers)`` rows when ``layers`` is given.)
    stats : ExtractionStats
        Words, tokens, passes, forward calls and seconds.
    """
    check_context(max_words, reset_words)
    layer_idx = _layer_indices(layers, lm.n_layers)
    clean = _clean_words(words)
    kept = np.flatnonzero([bool(w) for w in clean])
    real = [clean[i] for i in kept]
    n = len(real)
    t0 = time.perf_counter()
    if naive:
        starts = context_starts(n, max_words, reset_words)
        schedule = [(int(starts[i]), i, i + 1) for i in range(n)]
    else:
        schedule = window_schedule(n, max_words, reset_words)
    passes = [_tokenize_pass(lm.tokenizer, real, *w, lm.bos_token_id) for w in schedule]
    feats_real, n_tokens, n_batches = _run_passes(lm, passes, n, layer_idx, batch_size, progress)
    seconds = time.perf_counter() - t0
    n_story_tokens = (
        len(lm.tokenizer(" ".join(real), add_special_tokens=False)["input_ids"]) if n else 0
    )
    stats = ExtractionStats(
        n_words=n,
        n_story_tokens=n_story_tokens,
        n_tokens_processed=n_tokens,
        n_passes=len(passes),
        n_batches=n_batches,
        seconds=seconds,
    )

    # empty words carry the previous non-empty word's feature (zeros before the first)
    feats = np.zeros((len(layer_idx), len(clean), lm.hidden_size), dtype=np.float32)
    if n:
        owner = np.full(len(clean), -1, dtype=np.int64)
        owner[kept] = np.arange(n)
        owner = np.maximum.accumulate(owner)
        has = owner >= 0
        feats[:, has] = feats_real[:, owner[has]]
    logger.debug(
        "%s extraction: %d words, %d passes, %d tokens (%.2fx story), %.1f s",
        "naive" if naive else "dynamic",
        n,
        stats.n_passes,
        n_tokens,
        stats.token_ratio,
        seconds,
    )
    return feats, stats


def _as_loaded(model: str | os.PathLike | LoadedLM, device: str, dtype: str) -> LoadedLM:
    return (
        model if isinstance(model, LoadedLM) else load_causal_lm(model, device=device, dtype=dtype)
    )


def extract_lm_features(
    model: str | os.PathLike | LoadedLM,
    words: Sequence[str],
    *,
    max_words: int = 512,
    reset_words: int = 256,
    batch_size: int = 8,
    device: str = "auto",
    dtype: str = "auto",
    layers: Sequence[int] | None = None,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """Hidden states of every layer at each word, with the dynamic word context.

    One forward pass per window of the schedule (see the module docstring); each word's
    feature equals that of a pass over exactly its own context (`naive_lm_features`).
    `lm_features_and_stats` also returns what the extraction cost.

    Parameters
    ----------
    model : path-like or LoadedLM
        Snapshot directory, or a model already loaded with `load_causal_lm` (then ``device``
        and ``dtype`` are ignored).
    words : sequence of str, length n_words
        The story's words in order; "" (empty) words are allowed, see the module docstring.
    max_words : int
        Longest context, in words (512 in the paper).
    reset_words : int
        Context length, in words, right after a reset (256 in the paper).
    batch_size : int
        Windows per forward call (right-padded).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ...
    dtype : {"auto", "float32", "float16", "bfloat16"}
    layers : sequence of int, optional
        Hidden-state indices to keep (0 = embeddings); default all.
    progress : callable (n_done_words, n_words) -> None, optional
        Called after every forward call.

    Returns
    -------
    feats : array of shape (n_layers + 1, n_words, hidden_size), float32
        (``len(layers)`` rows when ``layers`` is given.)
    """
    feats, _ = lm_features_and_stats(
        _as_loaded(model, device, dtype),
        words,
        max_words=max_words,
        reset_words=reset_words,
        batch_size=batch_size,
        layers=layers,
        progress=progress,
    )
    return feats


def naive_lm_features(
    model: str | os.PathLike | LoadedLM,
    words: Sequence[str],
    *,
    max_words: int = 512,
    reset_words: int = 256,
    batch_size: int = 1,
    device: str = "auto",
    dtype: str = "auto",
    layers: Sequence[int] | None = None,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """Reference: one forward pass per word over exactly its own context.

    Word ``i``'s context start comes from `context_starts` (the policy applied word by word);
    its pass is ``[BOS] + tokens(words[start:i+1])``. Same parameters and return value as
    `extract_lm_features`; ``batch_size`` defaults to 1 (no padding at all).
    """
    feats, _ = lm_features_and_stats(
        _as_loaded(model, device, dtype),
        words,
        naive=True,
        max_words=max_words,
        reset_words=reset_words,
        batch_size=batch_size,
        layers=layers,
        progress=progress,
    )
    return feats


# ---------------------------------------------------------------------------- driver


@dataclass
class _TextExtraction:
    """The causal-LM part of `fmriscaling.features.extract.extract_model`."""

    model: LoadedLM
    model_name: str
    context: dict[str, int]  # max_words, reset_words, batch_size
    totals: ExtractionStats = field(default_factory=ExtractionStats)
    stories: list[str] = field(default_factory=list)

    def read_input(self, story: str, path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
        """The story's words (cleaned, see `extract_lm_features`) and their times, (n_words,)."""
        words_df = read_words(path)
        words = _clean_words(list(words_df["word"]))
        if not any(words):
            raise DataError(
                f"story {story!r} has no words in {path}; check its TextGrid word "
                "tier and re-run the stimulus timing stage"
            )
        return words, np.asarray(words_df["time"], dtype=np.float64)

    def story_features(
        self,
        story: str,
        story_input: tuple[list[str], np.ndarray],
        tr_times: np.ndarray,
        rows: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, ExtractionStats]:
        words, word_times = story_input
        feats, stats = lm_features_and_stats(self.model, words, **self.context)
        return feats, word_times, stats

    def story_written(self, story: str, stats: ExtractionStats, n_rows: int, progress: str) -> None:
        for name in ("n_words", "n_story_tokens", "n_tokens_processed", "n_passes"):
            setattr(self.totals, name, getattr(self.totals, name) + getattr(stats, name))
        self.totals.seconds += stats.seconds
        self.stories.append(story)
        logger.info(
            "%s %s: %d words -> %d TRs, %.1f words/s, %.2fx story tokens",
            progress,
            story,
            stats.n_words,
            n_rows,
            stats.words_per_second,
            stats.token_ratio,
        )

    def provenance_record(self, run: RunRecord) -> dict[str, Any]:
        # the per-story costs are in stats; the loop's wall time is not recorded for LMs
        lm = self.model
        return provenance(
            run.params,
            model_name=self.model_name,
            model_dir=str(lm.model_dir),
            **snapshot_record(lm.model_dir),
            dtype=str(lm.dtype).removeprefix("torch."),
            device=lm.device,
            n_params=lm.n_params,
            n_layers=lm.n_layers,
            hidden_size=lm.hidden_size,
            bos_token_id=lm.bos_token_id,
            stats=asdict(self.totals),
            **self.context,
            lanczos_window=run.lanczos_window,
            lanczos_normalize=run.lanczos_normalize,
            stories=self.stories,
        )


def extract_text_model(
    model_dir: str | os.PathLike,
    words_tables: Mapping[str, str | os.PathLike],
    trs_tables: Mapping[str, str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    model_name: str,
    max_words: int = 512,
    reset_words: int = 256,
    batch_size: int = 8,
    device: str = "auto",
    dtype: str = "auto",
    bos_token_id: int | None = None,
    **options: Any,
) -> list[Path]:
    """Extract a causal LM's features for every story and write them per layer at TR times.

    `fmriscaling.features.extract.extract_model` with a causal LM: every story's words table
    is read first (a story without words is an error), then per story `extract_lm_features`
    at the word times, downsampled to the TRs with ``response_row >= 0`` and appended to
    ``layer-<l>.h5``. Writes ``out_dir/provenance.json``.

    Parameters
    ----------
    model_dir : path-like
        Offline model snapshot.
    words_tables : mapping story -> path
        Words tables (columns word, start, end, time), read with `fmriscaling.stimuli.read_words`.
    trs_tables : mapping story -> path
        TR tables (columns tr_index, time, response_row; -1 = dropped), read with
        `fmriscaling.stimuli.read_trs`. Same stories as ``words_tables``.
    out_dir : path-like
        Output directory for ``layer-0.h5 .. layer-<n_layers>.h5`` and ``provenance.json``.
    model_name : str
        The model's name in the config.
    max_words, reset_words, batch_size, device, dtype
        As in `extract_lm_features`.
    bos_token_id : int, optional
        Fallback BOS id for a model whose tokenizer and config define none.
    **options
        ``expected_n_layers``, ``lanczos_window``, ``lanczos_normalize``, ``params``: as in
        `fmriscaling.features.extract.extract_model`.

    Returns
    -------
    paths : list of Path
        The layer files, layer 0 first.
    """

    def load() -> _TextExtraction:
        lm = load_causal_lm(
            model_dir, device=device, dtype=dtype, model_name=model_name, bos_token_id=bos_token_id
        )
        context = {"max_words": max_words, "reset_words": reset_words, "batch_size": batch_size}
        return _TextExtraction(lm, model_name, context)

    return extract_model(
        load,
        words_tables,
        trs_tables,
        out_dir,
        input_name="a words table",
        model_name=model_name,
        **options,
    )
