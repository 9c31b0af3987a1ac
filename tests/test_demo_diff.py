"""The demo-diff tool finds a changed cell and ignores only the run-dependent columns."""

import importlib.util
from pathlib import Path

import pandas as pd

TOOL = Path(__file__).resolve().parent / "demo_diff.py"
spec = importlib.util.spec_from_file_location("demo_diff", TOOL)
demo_diff = importlib.util.module_from_spec(spec)
spec.loader.exec_module(demo_diff)


def _tables(folder: Path, mean_r: float, seconds: float) -> Path:
    folder.mkdir()
    pd.DataFrame({"model": ["a"], "mean_r": [mean_r], "fit_seconds": [seconds]}).to_csv(
        folder / "encoding.csv", index=False
    )
    return folder


def test_equal_results_with_other_timings_match(tmp_path):
    a = _tables(tmp_path / "a", 0.125, 1.0)
    b = _tables(tmp_path / "b", 0.125, 9.0)
    assert demo_diff.compare_tables(a, b) == []


def test_a_changed_cell_is_reported(tmp_path):
    a = _tables(tmp_path / "a", 0.125, 1.0)
    b = _tables(tmp_path / "b", 0.125 + 1e-12, 1.0)
    (problem,) = demo_diff.compare_tables(a, b)
    assert problem.startswith("encoding.csv") and "mean_r" in problem


def test_a_missing_table_is_reported(tmp_path):
    a = _tables(tmp_path / "a", 0.125, 1.0)
    b = tmp_path / "b"
    b.mkdir()
    assert demo_diff.compare_tables(a, b) == [f"encoding.csv is in only one of {a}, {b}"]
