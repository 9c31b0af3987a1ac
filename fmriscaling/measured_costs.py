"""What the analysis cost: seconds and peak memory of each job, from Snakemake's benchmarks
(measured; `fmriscaling.cost` is the model that predicts them before a run).

Snakemake's ``benchmark:`` files are TSVs with one row per repeat and the columns ``s``
(wall seconds), ``max_rss`` (peak resident memory, MB), ``max_vms``, ``max_uss``, ``max_pss``,
``io_in``, ``io_out``, ``mean_load`` and ``cpu_time``. `benchmark_table` gathers those of the
feature-extraction and ridge jobs into one tidy table, labelled with the model, its size and
the fit.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ._utils import DataError

logger = logging.getLogger(__name__)

__all__ = ["COST_COLUMNS", "benchmark_table", "cost_table_file"]

#: Columns of the cost table, in order.
COST_COLUMNS = (
    "rule",
    "model",
    "family",
    "kind",
    "n_params",
    "subject",
    "layer",
    "width",
    "n_train",
    "seed",
    "seconds",
    "cpu_seconds",
    "max_rss_mb",
)


def benchmark_table(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per benchmarked job.

    Parameters
    ----------
    records : sequence of mapping
        One per job: ``rule``, ``path`` (its benchmark TSV) and labels (``model``, ``family``,
        ``kind``, ``n_params``, ``subject``, ``layer``, ``width`` (a fit's: ``native`` or the
        fixed width d), ``n_train``, ``seed``; missing ones are NaN). A job whose file is absent (run before benchmarks were kept) is skipped and
        logged.

    Returns
    -------
    DataFrame
        Columns `COST_COLUMNS`; repeats of a job are averaged.

    Raises
    ------
    DataError
        When no benchmark file exists at all, or one lacks the ``s`` / ``max_rss`` columns.
    """
    rows, absent = [], []
    for record in records:
        path = Path(record["path"])
        if not path.is_file():
            absent.append(str(path))
            continue
        bench = pd.read_csv(path, sep="\t")
        missing = sorted({"s", "max_rss"} - set(bench.columns))
        if missing:
            raise DataError(f"{path}: not a Snakemake benchmark file (no column(s) {missing})")
        rows.append(
            {
                **{c: record.get(c) for c in COST_COLUMNS[: COST_COLUMNS.index("seconds")]},
                "seconds": float(bench["s"].mean()),
                "cpu_seconds": _mean(bench, "cpu_time"),
                "max_rss_mb": _mean(bench, "max_rss"),
            }
        )
    if absent:
        logger.warning("%d benchmark file(s) absent, e.g. %s; left out", len(absent), absent[0])
    if not rows:
        raise DataError(f"no benchmark files found (looked for {len(absent)}, e.g. {absent[:1]})")
    return pd.DataFrame(rows, columns=list(COST_COLUMNS))


def _mean(bench: pd.DataFrame, column: str) -> float:
    """Mean of a benchmark column over repeats (Snakemake writes ``NA`` where unmeasured)."""
    if column not in bench:
        return float("nan")
    return float(pd.to_numeric(bench[column], errors="coerce").mean())


def cost_table_file(
    records: Sequence[Mapping[str, Any]], encoding_csv: str | os.PathLike, out: str | os.PathLike
) -> pd.DataFrame:
    """`benchmark_table` of the jobs, with each model's family, kind and size from the encoding
    table (the tiny models' sizes are only known after they are built), written to ``out``.

    Parameters
    ----------
    records : sequence of mapping
        See `benchmark_table`.
    encoding_csv : path-like
        The encoding table (columns model, family, model_kind, n_params).
    out : path-like

    Returns
    -------
    DataFrame
    """
    from .encoding.tables import write_table

    encoding = pd.read_csv(encoding_csv)
    models = encoding.groupby("model").agg(
        family=("family", "first"), kind=("model_kind", "first"), n_params=("n_params", "first")
    )
    labelled = [
        {**record, **models.loc[record["model"]].to_dict()}
        if record["model"] in models.index
        else dict(record)
        for record in records
    ]
    table = benchmark_table(labelled)
    write_table(table, out)
    return table
