"""Compare the demo's tables between two commits (or two results folders), cell for cell.

A refactoring must leave the demo's numbers as they were: same seeds, same tables. Timings and
memory peaks differ from run to run, so those columns are left out; every other cell must be
equal (floats exactly, not approximately).

    make demo-diff REF=<commit>                    # runs the demo at REF and at HEAD, compares
    python tests/demo_diff.py --ref <commit>       # the same
    python tests/demo_diff.py --tables A B         # compare two existing tables folders

Exit status 0 when every table matches, 1 otherwise (the differing cells are printed).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
# cells that measure the run, not the result
RUN_DEPENDENT = ("fit_seconds", "peak_memory_mb", "seconds", "cpu_seconds", "max_rss_mb")


def compare_tables(a: Path, b: Path) -> list[str]:
    """Differences between the CSV tables of folders ``a`` and ``b`` (empty when equal).

    Both folders must hold the same CSV names; columns in `RUN_DEPENDENT` are ignored.
    """
    names_a = {p.name for p in a.glob("*.csv")}
    names_b = {p.name for p in b.glob("*.csv")}
    problems = []
    if not names_a:
        problems.append(f"{a} holds no CSV tables")
    for name in sorted(names_a ^ names_b):
        problems.append(f"{name} is in only one of {a}, {b}")
    for name in sorted(names_a & names_b):
        ta, tb = (pd.read_csv(folder / name) for folder in (a, b))
        ta = ta.drop(columns=[c for c in RUN_DEPENDENT if c in ta])
        tb = tb.drop(columns=[c for c in RUN_DEPENDENT if c in tb])
        if list(ta.columns) != list(tb.columns) or ta.shape != tb.shape:
            problems.append(
                f"{name}: columns/shape differ: {list(ta.columns)} {ta.shape} vs "
                f"{list(tb.columns)} {tb.shape}"
            )
            continue
        try:
            pd.testing.assert_frame_equal(ta, tb, check_exact=True)
        except AssertionError as err:
            problems.append(f"{name}: {err}")
    return problems


def run_demo(commit: str, dest: Path) -> Path:
    """Clone ``commit`` of this repository into ``dest``, run its demo, return its tables."""
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dest)], check=True)
    subprocess.run(["git", "-C", str(dest), "checkout", "-q", commit], check=True)
    snakemake = Path(sys.executable).with_name("snakemake")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", MPLBACKEND="Agg")
    env.pop("PYTHONPATH", None)  # each clone's workflow puts its own library first
    print(f"running the demo at {commit} in {dest} ...", flush=True)
    subprocess.run(
        [
            str(snakemake),
            "--cores",
            "2",
            "--workflow-profile",
            "config/profiles/default",
            "--configfile",
            "config/config.yaml",
            "--quiet",
            "rules",
        ],
        cwd=dest,
        env=env,
        check=True,
    )
    return dest / "results" / "tables" / "demo"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--ref", help="commit to compare HEAD with")
    group.add_argument("--tables", nargs=2, type=Path, metavar=("A", "B"))
    parser.add_argument("--head", default="HEAD", help="commit compared with --ref")
    args = parser.parse_args(argv)
    if args.tables:
        a, b = args.tables
    else:
        work = Path(tempfile.mkdtemp(prefix="demo-diff-"))
        a = run_demo(args.ref, work / "ref")
        b = run_demo(args.head, work / "head")
    problems = compare_tables(a, b)
    for problem in problems:
        print(problem)
    if not problems:
        names = ", ".join(sorted(p.name for p in a.glob("*.csv")))
        print(f"identical tables ({names}), run-dependent columns {RUN_DEPENDENT} left out")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
